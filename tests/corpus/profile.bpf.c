// SPDX-License-Identifier: MIT
/* corpus: the "profile" kind — a perf_event program (attached by the application to
 * software clock events) that sends kernel and user stacks through a ring buffer, and
 * a stack trace map. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define MAX_STACK_DEPTH 32

struct stack_event {
	u32 pid;
	u32 cpu_id;
	s64 kstack_sz;
	s64 ustack_sz;
	u64 kstack[MAX_STACK_DEPTH];
	u64 ustack[MAX_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(u64));
} stacks SEC(".maps");

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	struct stack_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	bpf_get_stackid(ctx, &stacks, 0);
	if (!e)
		return 1;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->cpu_id = bpf_get_smp_processor_id();
	e->kstack_sz = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
	e->ustack_sz = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
