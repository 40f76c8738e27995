// SPDX-License-Identifier: MIT
/* tests/test_ringbuf.py: a one-page ring buffer that wraps around many times. Each
 * getppid() of target_pid reserves a 200-byte record numbered by a counter (at its
 * start and its end) and submits it, except every third one, which it discards. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct record {
	__u64 counter;
	__u8 middle[184];
	__u64 counter_again;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} small_rb SEC(".maps");

const volatile int target_pid = 0;
__u64 counter = 0;

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct record *r;

	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	r = bpf_ringbuf_reserve(&small_rb, sizeof(*r), 0);
	if (!r)
		return 0;
	r->counter = counter;
	r->counter_again = counter;
	if (counter++ % 3 == 2)
		bpf_ringbuf_discard(r, 0);
	else
		bpf_ringbuf_submit(r, 0);
	return 0;
}
