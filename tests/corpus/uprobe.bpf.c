// SPDX-License-Identifier: MIT
/* corpus: the "uprobe" kind — a uprobe and a uretprobe on a function of our target
 * binary by name, and a uprobe by offset into it (func+1: after `push %rbp`, the
 * target is built -O0 without CET). TARGET is the binary's absolute path. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

__u64 calls, returns, by_offset;

SEC("uprobe/" TARGET ":corpus_target_add")
int on_add(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&calls, 1);
	return 0;
}

SEC("uretprobe/" TARGET ":corpus_target_add")
int on_add_return(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&returns, 1);
	return 0;
}

SEC("uprobe/" TARGET ":corpus_target_add+0x1")
int on_add_offset(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&by_offset, 1);
	return 0;
}
