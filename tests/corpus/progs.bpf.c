// SPDX-License-Identifier: MIT
/* corpus: how programs call code — a program array with initial slots filled by
 * libbpf (tail calls into two programs), static and global subprograms shared by
 * several programs, and a bpf_loop callback. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 total, loops;

static __noinline int add_static(int a, int b)
{
	return a + b;
}

__noinline int twice_global(int x)
{
	return x * 2 + (x > 100);
}

static int loop_step(__u32 index, void *data)
{
	*(__u64 *)data += index;
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int tail_one(void *ctx)
{
	total += add_static(1, twice_global(2));
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int tail_two(void *ctx)
{
	__u64 sum = 0;

	bpf_loop(8, loop_step, &sum, 0);
	loops += sum + add_static(3, 4);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int (void *));
} jump_table SEC(".maps") = {
	.values = {
		[0] = (void *)&tail_one,
		[2] = (void *)&tail_two,
	},
};

SEC("tp/syscalls/sys_enter_getppid")
int dispatch(void *ctx)
{
	int slot = twice_global(1) - 2;

	bpf_tail_call(ctx, &jump_table, slot);
	bpf_tail_call(ctx, &jump_table, slot + 2);
	return 0;
}
