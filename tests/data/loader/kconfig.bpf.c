// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: .kconfig externs of every kind libbpf fills. */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_BPF_JIT __kconfig __weak;
extern int CONFIG_HZ __kconfig;
extern char CONFIG_LOCALVERSION[16] __kconfig __weak;
extern __u64 CONFIG_BPFREPLAY_NOT_THERE __kconfig __weak;

__u64 seen;

SEC("tp/syscalls/sys_enter_getpid")
int read_kconfig(void *ctx)
{
	if (CONFIG_BPF_SYSCALL && CONFIG_BPF_JIT == TRI_YES && LINUX_HAS_BPF_COOKIE)
		seen = LINUX_KERNEL_VERSION + CONFIG_HZ + CONFIG_LOCALVERSION[1] +
		       CONFIG_BPFREPLAY_NOT_THERE;
	return 0;
}
