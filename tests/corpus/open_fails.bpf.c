// SPDX-License-Identifier: MIT
/* bpfreplay corpus: an object libbpf 1.1.2 refuses at open, before any syscall: a call
 * of an undefined function that is no __ksym (as bcc's sigsnoop built with headers
 * without bpf_ksym_exists), so its extern has no BTF section libbpf knows. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern int bpfreplay_nowhere_func(int x);

__u64 seen;

SEC("tp/syscalls/sys_enter_getpgid")
int calls_nowhere(void *ctx)
{
	seen = bpfreplay_nowhere_func(1);
	return 0;
}
