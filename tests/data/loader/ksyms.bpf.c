// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: __ksym externs — a typed kernel variable, a typeless
 * kernel symbol, a weak variable the kernel does not have, and kfunc calls (which make
 * libbpf add a "dummy_ksym" VAR to the BTF it loads). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern const int bpf_prog_active __ksym;
extern const void _text __ksym;
extern const int bpfreplay_no_such_var __ksym __weak;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

__u64 out[4];

SEC("tp_btf/sys_enter")
int use_ksyms(u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf(), *held;
	const int *active = bpf_this_cpu_ptr(&bpf_prog_active);

	out[0] = *active;
	out[1] = (__u64)&_text;
	if (&bpfreplay_no_such_var)
		out[2] = 1;
	held = bpf_task_acquire(t);
	if (held) {
		out[3] = held->pid;
		bpf_task_release(held);
	}
	return 0;
}
