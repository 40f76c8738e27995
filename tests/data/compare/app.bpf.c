// SPDX-License-Identifier: MIT
/* An object whose C application (app.c) makes calls of its own after the load, for
 * tests/test_compare_sections.py: a ring buffer and a perf buffer it consumes, a map
 * it writes from main, a socket filter it attaches with setsockopt and a perf_event
 * program it attaches by hand to a software event; the tracepoint is auto-attached. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(int));
} perf_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, int);
	__type(value, long);
} settings SEC(".maps");

int my_pid = 0;

SEC("tp/syscalls/sys_enter_write")
int on_write(void *ctx)
{
	int pid = bpf_get_current_pid_tgid() >> 32;
	long *value;
	int key = 0;

	if (pid != my_pid)
		return 0;
	value = bpf_map_lookup_elem(&settings, &key);
	if (value)
		bpf_ringbuf_output(&events, value, sizeof(*value), 0);
	bpf_perf_event_output(ctx, &perf_out, BPF_F_CURRENT_CPU, &pid, sizeof(pid));
	return 0;
}

SEC("socket")
int filter(struct __sk_buff *skb)
{
	return 0;
}

SEC("perf_event")
int on_tick(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
