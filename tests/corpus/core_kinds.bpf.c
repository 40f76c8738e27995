// SPDX-License-Identifier: MIT
/* corpus: CO-RE relocations of every kind clang 14 emits, with ___v1 flavours and
 * what the kernel lacks: field byte offset / size / exists / signed / lshift / rshift
 * (bitfields), type id local / target, type exists / size, enum value exists / value;
 * a missing type, a missing field, a missing enum value, and a poisoned relocation
 * (a read of a missing field, in a branch the verifier sees is dead). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* a flavour with fields in another order, one renamed away, one that is a bitfield */
struct task_struct___v1 {
	int tgid;
	int pid;
	unsigned int in_execve: 1;
	unsigned int sched_reset_on_fork: 1;
	int corpus_gone_field;
	struct task_struct___v1 *real_parent;
} __attribute__((preserve_access_index));

/* a type the kernel does not have at all */
struct corpus_no_such_type {
	int x;
} __attribute__((preserve_access_index));

/* a flavour of a kernel enum, with a value the kernel does not have */
enum bpf_map_type___v1 {
	BPF_MAP_TYPE_HASH___v1 = 1,
	BPF_MAP_TYPE_CORPUS_NOT_THERE___v1 = 9999,
};

enum corpus_local_only { CORPUS_LOCAL = 3 };

__u64 out[24];
__s64 sout[4];

SEC("tp/syscalls/sys_enter_getppid")
int core_kinds(void *ctx)
{
	struct task_struct___v1 *t = (void *)bpf_get_current_task();

	out[0] = bpf_core_field_offset(t->pid);
	out[1] = bpf_core_field_size(t->tgid);
	out[2] = bpf_core_field_exists(t->corpus_gone_field);
	out[3] = __builtin_preserve_field_info(t->pid, BPF_FIELD_SIGNED);
	out[4] = BPF_CORE_READ_BITFIELD_PROBED(t, in_execve);
	out[5] = BPF_CORE_READ_BITFIELD_PROBED(t, sched_reset_on_fork);
	out[6] = bpf_core_type_id_local(struct task_struct___v1);
	out[7] = bpf_core_type_id_kernel(struct task_struct___v1);
	out[8] = bpf_core_type_exists(struct corpus_no_such_type);
	out[9] = bpf_core_type_size(struct task_struct___v1);
	out[10] = bpf_core_type_id_kernel(struct corpus_no_such_type);
	out[11] = bpf_core_enum_value_exists(enum bpf_map_type___v1, BPF_MAP_TYPE_HASH___v1);
	out[12] = bpf_core_enum_value(enum bpf_map_type___v1, BPF_MAP_TYPE_HASH___v1);
	out[13] = bpf_core_enum_value_exists(enum bpf_map_type___v1,
					     BPF_MAP_TYPE_CORPUS_NOT_THERE___v1);
	out[14] = bpf_core_type_exists(enum corpus_local_only);
	out[15] = BPF_CORE_READ(t, real_parent, tgid);
	out[16] = bpf_core_field_size(t->sched_reset_on_fork);
	out[17] = __builtin_preserve_field_info(t->sched_reset_on_fork, BPF_FIELD_LSHIFT_U64);
	out[18] = __builtin_preserve_field_info(t->sched_reset_on_fork, BPF_FIELD_RSHIFT_U64);
	if (bpf_core_field_exists(t->corpus_gone_field))
		sout[0] = BPF_CORE_READ(t, corpus_gone_field); /* poisoned: the field is gone */
	return 0;
}
