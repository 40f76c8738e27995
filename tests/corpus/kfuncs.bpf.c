// SPDX-License-Identifier: MIT
/* corpus: kfunc calls (bpf_task_acquire/bpf_task_release, bpf_rcu_read_lock/unlock)
 * from a tp_btf program: libbpf resolves them in vmlinux BTF and adds a "dummy_ksym"
 * variable to the BTF it loads; and a weak kfunc the kernel does not have. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern void corpus_no_such_kfunc(void) __ksym __weak;

__u64 out[2];

SEC("tp_btf/sys_enter")
int use_kfuncs(u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf(), *held;

	bpf_rcu_read_lock();
	out[0] = t->pid;
	bpf_rcu_read_unlock();
	held = bpf_task_acquire(t);
	if (held) {
		out[1] = held->tgid;
		bpf_task_release(held);
	}
	if (corpus_no_such_kfunc)
		corpus_no_such_kfunc();
	return 0;
}
