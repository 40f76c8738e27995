// SPDX-License-Identifier: MIT
/* corpus: the "fentry" kind — fentry and fexit on do_unlinkat with BPF_PROG
 * arguments (attach target found in vmlinux BTF). This machine's policy refuses
 * fentry/fexit at load (EPERM): compared as a failure. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("fentry/do_unlinkat")
int BPF_PROG(enter_unlinkat, int dfd, struct filename *name)
{
	bpf_printk("corpus fentry: unlinkat %s", name->name);
	return 0;
}

SEC("fexit/do_unlinkat")
int BPF_PROG(exit_unlinkat, int dfd, struct filename *name, long ret)
{
	bpf_printk("corpus fexit: unlinkat %s returned %ld", name->name, ret);
	return 0;
}
