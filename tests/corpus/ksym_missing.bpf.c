// SPDX-License-Identifier: MIT
/* corpus: a strong (non-weak) __ksym the kernel does not have, beside a typed one it
 * has: libbpf fails the load while resolving externs (after looking in module BTFs
 * too); compared as a failure. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern const int bpf_prog_active __ksym;
extern const int corpus_no_such_ksym __ksym;

__u64 out[2];

SEC("tp_btf/sys_enter")
int use_missing(u64 *ctx)
{
	out[0] = *(const int *)bpf_this_cpu_ptr(&bpf_prog_active);
	out[1] = (__u64)&corpus_no_such_ksym;
	return 0;
}
