// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: CO-RE relocations whose every type vmlinux has (fields,
 * a field existence check, a type size, an enum value). libbpf finds all candidates in
 * vmlinux BTF, so it never walks the kernel's BTF objects for module BTFs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

__u64 seen[4];

SEC("tp/syscalls/sys_enter_getppid")
int core_present(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	seen[0] = BPF_CORE_READ(t, real_parent, tgid);
	seen[1] = bpf_core_field_exists(t->pid);
	seen[2] = bpf_core_type_size(struct task_struct);
	seen[3] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_ARRAY);
	return 0;
}
