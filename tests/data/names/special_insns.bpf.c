// SPDX-License-Identifier: MIT
/* Special instructions for tests/test_explain_names.py: a bpf-to-bpf call of a static
 * subprogram, a callback's address (bpf_loop), kfunc calls, ld_imm64 of map values at
 * offsets inside .bss, and a CO-RE read of a type no kernel has, guarded: libbpf
 * poisons it (bpf_core_poison_insn) and the verifier drops it as dead code. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct bpfreplay_nowhere {
	int value;
} __attribute__((preserve_access_index));

extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

__u64 counter;
__u64 seen[4];

static __noinline int add_one(int x)
{
	return x + 1;
}

static int loop_step(__u32 index, void *ctx)
{
	seen[2] += index;
	return 0;
}

SEC("tp_btf/sys_enter")
int special(u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf(), *held;
	struct bpfreplay_nowhere *p = (void *)t;

	counter = add_one(counter);
	bpf_loop(2, loop_step, NULL, 0);
	held = bpf_task_acquire(t);
	if (held)
		bpf_task_release(held);
	if (bpf_core_field_exists(p->value))
		seen[1] = BPF_CORE_READ(p, value);
	return 0;
}
