// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bpfreplay's func/line info test: a program with subprograms whose signatures use
 * structs, pointers and const, so decoded func_info/line_info can be compared with
 * `bpftool prog dump xlated ... linum`. Nothing here touches the context or calls
 * helpers, so the verifier has no reason to rewrite instructions. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct point {
	int x;
	int y;
};

static __noinline int scale(struct point *p, const int factor)
{
	return p->x * factor + p->y;
}

static __noinline int clamp(int value, int limit)
{
	if (value > limit)
		return limit;
	return value;
}

SEC("tp/syscalls/sys_enter_getppid")
int lineinfo_main(void *ctx)
{
	struct point p = { .x = 2, .y = 3 };
	int v = scale(&p, 4);

	return clamp(v, 7) & 1;
}
