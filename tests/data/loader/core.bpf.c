// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: CO-RE relocations of every common kind against the
 * kernel's types, in an entry program and in a subprogram, with local "flavors". */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* a flavor of task_struct with a field the kernel does not have */
struct task_struct___missing {
	int bpfreplay_no_such_field;
} __attribute__((preserve_access_index));

/* a flavor with only what we read, in another order */
struct task_struct___mine {
	char comm[16];
	int tgid;
	int pid;
} __attribute__((preserve_access_index));

enum bpfreplay_local_enum { BPFREPLAY_ONE = 1 };

__u64 out[16];

static __noinline int read_tgid(struct task_struct *t)
{
	struct task_struct___mine *m = (void *)t;

	return BPF_CORE_READ(m, tgid);
}

SEC("raw_tp/sys_enter")
int core_raw(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct task_struct___missing *missing = (void *)t;

	out[0] = BPF_CORE_READ(t, pid);
	out[1] = read_tgid(t);
	out[2] = bpf_core_field_exists(missing->bpfreplay_no_such_field);
	out[3] = bpf_core_field_exists(t->pid);
	out[4] = bpf_core_field_size(t->comm);
	out[5] = __builtin_preserve_field_info(t->pid, BPF_FIELD_SIGNED);
	out[6] = bpf_core_type_exists(struct task_struct);
	out[7] = bpf_core_type_size(struct task_struct);
	out[8] = bpf_core_type_id_kernel(struct task_struct);
	out[9] = bpf_core_type_id_local(struct task_struct);
	out[10] = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out[11] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out[12] = bpf_core_type_exists(enum bpfreplay_local_enum);
	out[13] = BPF_CORE_READ(t, mm, map_count);
	out[14] = BPF_CORE_READ_BITFIELD_PROBED(t, sched_reset_on_fork);
	out[15] = bpf_core_field_offset(t->tgid);
	return 0;
}

SEC("tp_btf/sys_enter")
int core_btf(u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();

	out[0] = t->pid + t->tgid;
	return read_tgid(t);
}
