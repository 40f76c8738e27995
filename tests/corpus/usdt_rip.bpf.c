// SPDX-License-Identifier: MIT
/* corpus: USDT probes of target2 whose arguments are %rip-relative globals
 * ("-8@corpus2_global(%rip)"), which libbpf 1.1.2's USDT argument parser does not
 * know: the attach fails (-EINVAL) before any uprobe. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

long seen[2];

SEC("usdt/" TARGET2 ":corpus2:mixed")
int BPF_USDT(on_mixed, int i, int small, long global, long long b)
{
	seen[0] = i + small + global + b;
	return 0;
}

SEC("usdt/" TARGET2 ":corpus2:guarded")
int BPF_USDT(on_guarded, int a)
{
	seen[1] = a;
	return 0;
}
