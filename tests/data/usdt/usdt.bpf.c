// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* USDT programs on ./usdt_target (run from the directory that holds it), their
 * arguments read through libbpf's <bpf/usdt.bpf.h> (its spec map, filled by the USDT
 * manager at attach, and the BPF cookie of each uprobe). Each program counts its hits
 * and keeps what its arguments were in `seen`, for the test to read back. The bare
 * SEC("usdt") program names no target: libbpf loads it and does not attach it; the
 * tests attach it by hand (as bpf_program__attach_usdt() with a pid and a cookie). */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

enum { CONSTANT_HITS, CONSTANT_ARG, REGISTER_HITS, REGISTER_ARG, MEMORY_HITS, MEMORY_ARG,
       SITES_HITS, SITES_SECOND_SUM, GUARDED_HITS, GUARDED_ARG, ARG_COUNTS, BY_HAND_HITS,
       BY_HAND_ARG, BY_HAND_COOKIE, SLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __s64);
} seen SEC(".maps");

static __always_inline void put(__u32 slot, __s64 value)
{
	bpf_map_update_elem(&seen, &slot, &value, BPF_ANY);
}

static __always_inline void add(__u32 slot, __s64 value)
{
	__s64 *at = bpf_map_lookup_elem(&seen, &slot);

	if (at)
		__sync_fetch_and_add(at, value);
}

SEC("usdt")
int BPF_USDT(attached_by_hand, int value)
{
	add(BY_HAND_HITS, 1);
	put(BY_HAND_ARG, value);
	put(BY_HAND_COOKIE, bpf_usdt_cookie(ctx));
	return 0;
}

SEC("usdt/./usdt_target:bpfreplay:constant")
int BPF_USDT(on_constant, int value)
{
	add(CONSTANT_HITS, 1);
	put(CONSTANT_ARG, value);
	add(ARG_COUNTS, bpf_usdt_arg_cnt(ctx));
	return 0;
}

SEC("usdt/./usdt_target:bpfreplay:in_register")
int BPF_USDT(on_register, int value)
{
	add(REGISTER_HITS, 1);
	put(REGISTER_ARG, value);
	return 0;
}

SEC("usdt/./usdt_target:bpfreplay:in_memory")
int BPF_USDT(on_memory, int value)
{
	add(MEMORY_HITS, 1);
	put(MEMORY_ARG, value);
	return 0;
}

SEC("usdt/./usdt_target:bpfreplay:sites")
int BPF_USDT(on_sites, int round, int second)
{
	add(SITES_HITS, 1);
	add(SITES_SECOND_SUM, second);
	add(ARG_COUNTS, bpf_usdt_arg_cnt(ctx));
	return 0;
}

SEC("usdt/./usdt_target:bpfreplay:guarded")
int BPF_USDT(on_guarded, int round, int negative)
{
	add(GUARDED_HITS, 1);
	put(GUARDED_ARG, negative);
	return 0;
}
