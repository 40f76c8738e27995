// SPDX-License-Identifier: MIT
/* corpus: USDT probes of target2 (TARGET2, built -O2) with argument specs libbpf
 * 1.1.2 parses (constants, registers, stack memory with an offset, a signed byte,
 * 64-bit), a probe with two sites, all with semaphores: libbpf's USDT manager parses each spec into the specs map
 * and attaches one uprobe per site. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

long seen[8];

SEC("usdt/" TARGET2 ":corpus2:constants")
int BPF_USDT(on_constants, int a, int b, long long c)
{
	seen[0] = a + b + c;
	return 0;
}

SEC("usdt/" TARGET2 ":corpus2:stack")
int BPF_USDT(on_stack, int small)
{
	seen[1] = small;
	return 0;
}

SEC("usdt/" TARGET2 ":corpus2:twice")
int BPF_USDT(on_twice, int v)
{
	seen[2] += v;
	return 0;
}
