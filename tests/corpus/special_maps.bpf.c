// SPDX-License-Identifier: MIT
/* corpus: map values with special fields the kernel reads from BTF (bpf_spin_lock,
 * bpf_timer, a referenced kptr with a type tag), a bpf_for_each_map_elem callback, a
 * timer callback, bpf_printk with more than three arguments (bpf_trace_vprintk) and a
 * static subprogram taking the lock. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define __kptr __attribute__((btf_type_tag("kptr")))

struct locked {
	struct bpf_spin_lock lock;
	__u64 value;
};

struct timed {
	struct bpf_timer timer;
	__u64 fired;
};

struct holder {
	struct task_struct __kptr *task;
	__u64 tag;
};

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
	 __type(key, int); __type(value, struct locked); } locks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
	 __type(key, int); __type(value, struct timed); } timers SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4);
	 __type(key, int); __type(value, struct holder); } holders SEC(".maps");

__u64 visited;

static long count_elem(struct bpf_map *map, int *key, struct locked *val, void *ctx)
{
	visited++;
	return 0;
}

static int timer_fired(void *map, int *key, struct timed *val)
{
	val->fired++;
	return 0;
}

static __noinline int add_locked(struct locked *l, __u64 n)
{
	if (!l)
		return 0;
	bpf_spin_lock(&l->lock);
	l->value += n;
	bpf_spin_unlock(&l->lock);
	return 1;
}

SEC("tc") /* tracing programs may not take spin locks */
int use_special(struct __sk_buff *ctx)
{
	int zero = 0;
	struct locked *l = bpf_map_lookup_elem(&locks, &zero);
	struct timed *t = bpf_map_lookup_elem(&timers, &zero);

	add_locked(l, 1);
	bpf_for_each_map_elem(&locks, count_elem, 0, 0);
	if (t) {
		bpf_timer_init(&t->timer, &timers, 1 /* CLOCK_MONOTONIC */);
		bpf_timer_set_callback(&t->timer, timer_fired);
		bpf_timer_start(&t->timer, 1000, 0);
	}
	bpf_printk("corpus special: %d %d %d %d", 1, 2, 3, (int)visited);
	return 0;
}
