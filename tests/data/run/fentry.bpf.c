// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* An fentry program: this machine's policy refuses fentry/fexit/lsm at load (EPERM);
 * bpfreplay run must say so clearly. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("fentry/do_unlinkat")
int on_unlink(void *ctx)
{
	return 0;
}
