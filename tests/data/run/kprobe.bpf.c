// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* A kprobe program: it loads, but this kernel has no kprobes (CONFIG_KPROBES off), so
 * attaching must fail with a clear error and leave nothing behind. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("kprobe/do_unlinkat")
int on_unlink(void *ctx)
{
	return 0;
}
