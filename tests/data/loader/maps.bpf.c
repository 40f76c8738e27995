// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: BTF-defined maps of several types, a ring buffer
 * whose size libbpf rounds up, maps of maps with initial slots, a program array,
 * and a map name longer than the kernel keeps. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} counts_by_process_id SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 16);
} raw_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, int);
	__type(value, struct stats);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 10000);
} events SEC(".maps");

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, int);
} inner1 SEC(".maps"), inner2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, int);
	__array(values, struct inner_array);
} outer SEC(".maps") = {
	.values = { &inner1, [2] = &inner2 },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, int);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 8);
		__type(key, int);
		__type(value, long);
	});
} outer_hash SEC(".maps");

int tail(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, int);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail },
};

SEC("tp/syscalls/sys_enter_getppid")
int tail(void *ctx)
{
	return 0;
}

SEC("tp/syscalls/sys_enter_getpid")
int use_maps(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32, key = 0;
	__u64 one = 1, *count;
	struct stats *s;
	void *inner;
	int *v;

	count = bpf_map_lookup_elem(&counts_by_process_id, &pid);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&counts_by_process_id, &pid, &one, BPF_ANY);
	s = bpf_map_lookup_elem(&percpu, &key);
	if (s)
		s->packets++;
	if (bpf_map_lookup_elem(&raw_array, &key))
		bpf_ringbuf_output(&events, &pid, sizeof(pid), 0);
	inner = bpf_map_lookup_elem(&outer, &key);
	if (inner) {
		v = bpf_map_lookup_elem(inner, &key);
		if (v)
			*v += 1;
	}
	if (bpf_map_lookup_elem(&outer_hash, &key))
		return 1;
	bpf_tail_call(ctx, &jumps, 1);
	return 0;
}
