// SPDX-License-Identifier: MIT
/* Uprobes as upstream libbpf-bootstrap's uprobe example has them: two bare sections
 * libbpf's skeleton attach cannot auto-attach (hand_uprobe.c attaches uretprobe_add by
 * hand, for every process), and two on /proc/self/exe that it does auto-attach. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct pt_regs;

int hits;

SEC("uprobe")
int uprobe_add(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("uretprobe")
int uretprobe_add(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("uprobe//proc/self/exe:uprobed_sub")
int uprobe_sub(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("uretprobe//proc/self/exe:uprobed_sub")
int uretprobe_sub(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
