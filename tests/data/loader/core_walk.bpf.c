// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: two programs, the first with CO-RE relocations vmlinux
 * satisfies, the second with a local type no kernel BTF has (any flavour), read only
 * after checking that it exists. For that type alone libbpf 1.1.2 walks every BTF
 * object of the kernel looking for module BTFs (bpf_core_find_cands), once, after the
 * maps are made and before the first program loads; the walk finds nothing and the
 * guarded read is poisoned-free dead code the verifier removes. A weak typed __ksym
 * that no BTF has is resolved (to nothing) by the same walk, earlier: during extern
 * resolution, before the object's BTF is loaded. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct bpfreplay_nowhere {
	int value;
} __attribute__((preserve_access_index));

#ifdef WITH_KSYM
extern const int bpfreplay_no_such_ksym __ksym __weak;
#endif

__u64 seen[4];

SEC("tp/syscalls/sys_enter_getppid")
int found_everywhere(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	seen[0] = BPF_CORE_READ(t, tgid);
	return 0;
}

SEC("tp/syscalls/sys_enter_getpgid")
int found_nowhere(void *ctx)
{
	struct bpfreplay_nowhere *p = (void *)bpf_get_current_task();

	seen[1] = bpf_core_type_exists(struct bpfreplay_nowhere);
	if (bpf_core_field_exists(p->value))
		seen[2] = BPF_CORE_READ(p, value);
#ifdef WITH_KSYM
	seen[3] = &bpfreplay_no_such_ksym ? 1 : 0;
#endif
	return 0;
}
