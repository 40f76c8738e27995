// SPDX-License-Identifier: MIT
/* corpus: the "kprobe" kind — a kprobe and a kretprobe on do_unlinkat with
 * BPF_KPROBE arguments. This kernel has no kprobes (CONFIG_KPROBES off): the programs
 * load and the attach fails; compared as a failure. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("kprobe/do_unlinkat")
int BPF_KPROBE(on_unlinkat, int dfd, struct filename *name)
{
	const char *path = BPF_CORE_READ(name, name);

	bpf_printk("corpus kprobe: unlinkat %s", path);
	return 0;
}

SEC("kretprobe/do_unlinkat")
int BPF_KRETPROBE(on_unlinkat_return, long ret)
{
	bpf_printk("corpus kretprobe: unlinkat returned %ld", ret);
	return 0;
}
