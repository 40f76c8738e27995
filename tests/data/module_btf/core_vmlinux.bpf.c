// SPDX-License-Identifier: MIT
/* Module-BTF test object (b): CO-RE relocations whose types all exist in vmlinux
 * (task_struct, and a flavor of it), so libbpf must find its candidates there and
 * make NO module BTF walk, even on a kernel whose modules have BTF. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct task_struct___flavor {
	int pid;
} __attribute__((preserve_access_index));

int tgid_seen;
int parent_tgid_seen;
int pid_seen;

SEC("tracepoint/syscalls/sys_enter_getppid")
int read_vmlinux_structs(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	tgid_seen = BPF_CORE_READ(t, tgid);
	parent_tgid_seen = BPF_CORE_READ(t, real_parent, tgid);
	pid_seen = BPF_CORE_READ((struct task_struct___flavor *)t, pid);
	return 0;
}
