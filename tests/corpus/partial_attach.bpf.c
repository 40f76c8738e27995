// SPDX-License-Identifier: MIT
/* corpus: an attach that fails half way: the first program (a tracepoint) attaches,
 * the second (a uprobe on a function our target does not have) fails in libbpf's ELF
 * symbol lookup, and the skeleton's destroy detaches the first. TARGET is the target
 * binary's absolute path. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 hits;

SEC("tp/syscalls/sys_enter_getppid")
int attached_first(void *ctx)
{
	hits++;
	return 0;
}

SEC("uprobe/" TARGET ":corpus_no_such_function")
int never_attached(void *ctx)
{
	hits++;
	return 0;
}
