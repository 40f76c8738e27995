// SPDX-License-Identifier: MIT
/* corpus: kprobe.multi/ and kretprobe.multi/ with a glob (libbpf resolves it in
 * /proc/kallsyms and attaches with one BPF_LINK_CREATE): no kprobes on this kernel,
 * the attach fails; compared as a failure. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 hits;

SEC("kprobe.multi/do_unlinka*")
int on_unlink_multi(void *ctx)
{
	hits++;
	return 0;
}

SEC("kretprobe.multi/do_unlinka*")
int on_unlink_multi_return(void *ctx)
{
	hits++;
	return 0;
}
