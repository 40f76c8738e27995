// SPDX-License-Identifier: MIT
/* corpus: the "usdt" kind — a USDT probe of our target binary (corpus:tick) with its
 * two arguments read through libbpf's usdt.bpf.h, and a bare SEC("usdt") program that
 * libbpf does not auto-attach. TARGET is the binary's absolute path. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

long last_i, last_sum;

SEC("usdt/" TARGET ":corpus:tick")
int BPF_USDT(on_tick, int i, int sum)
{
	last_i = i;
	last_sum = sum;
	return 0;
}

SEC("usdt")
int BPF_USDT(on_any, long a)
{
	last_i = a;
	return 0;
}
