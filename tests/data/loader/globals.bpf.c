// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: global data in every kind of data section, several
 * programs sharing static, global and hidden subprograms, a callback (subprogram
 * address), a sleepable program, and a program that is not autoloaded. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

int counter = 1;                          /* .data */
const volatile int threshold = 7;         /* .rodata */
int hits;                                 /* .bss */
__u64 last_seen[4];                       /* .bss */
static int hidden_static = 3;             /* .data, static: not seen by user space */
__hidden int hidden_global = 5;           /* .data, hidden: made static by libbpf */
int custom_data SEC(".data.custom") = 42; /* .data.custom */
const volatile char greeting[8] SEC(".rodata.greet") = "hello";
__u32 extra_bss SEC(".bss.extra");        /* .bss.extra */
static const int only_static = 11;        /* .rodata.* with no global variable */

static __noinline int add(int a, int b)
{
	return a + b + hidden_static;
}

__noinline int scale(int x)
{
	return x * threshold + only_static;
}

__hidden __noinline int clamp(int x)
{
	if (x > 100)
		return 100;
	return add(x, hidden_global);
}

struct loop_ctx {
	int sum;
};

static long step(__u32 i, void *data)
{
	struct loop_ctx *c = data;

	c->sum += i;
	return 0;
}

SEC("tp/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	struct loop_ctx c = { .sum = 0 };

	__sync_fetch_and_add(&hits, 1);
	counter = add(counter, 1);
	last_seen[hits & 3] = bpf_ktime_get_ns();
	bpf_loop(4, step, &c, 0);
	bpf_trace_printk("getpid %d\n", sizeof("getpid %d\n"), scale(c.sum));
	return 0;
}

SEC("raw_tp/sys_enter")
int on_raw(void *ctx)
{
	extra_bss = clamp(custom_data) + scale(1);
	bpf_printk("raw %s %d", greeting, extra_bss);
	return 0;
}

SEC("socket")
int sock_prog(struct __sk_buff *skb)
{
	return add(skb->len, threshold) > 0 ? 0 : -1;
}

SEC("xdp")
int xdp_prog(struct xdp_md *ctx)
{
	return counter > 0 ? XDP_PASS : XDP_DROP;
}

SEC("uprobe.s")
int sleepy(void *ctx)
{
	return scale(3);
}

SEC("?tp/syscalls/sys_enter_close")
int not_loaded(void *ctx)
{
	return scale(2);
}
