// SPDX-License-Identifier: MIT
/* corpus: fentry/ on a function the kernel does not have: libbpf looks for it in
 * vmlinux BTF, then in module BTFs, and fails the load (-ESRCH) before PROG_LOAD. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("fentry/corpus_no_such_function")
int on_missing_function(void *ctx)
{
	return 0;
}
