// SPDX-License-Identifier: MIT
/* corpus: a program under a license the kernel does not take as GPL-compatible that
 * calls a GPL-only helper (bpf_probe_read_kernel): the verifier rejects it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Proprietary";

__u64 out;

SEC("tp/syscalls/sys_enter_getppid")
int read_kernel(void *ctx)
{
	bpf_probe_read_kernel(&out, sizeof(out), ctx);
	return 0;
}
