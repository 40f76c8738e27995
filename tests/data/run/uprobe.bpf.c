// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* A uprobe on libc's getpid() and a uretprobe on it: attached through the uprobe PMU
 * the way libbpf does (the library found on libbpf's search paths, the function's file
 * offset from its ELF symbols). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

int target_pid = 0;

SEC("uprobe/libc.so.6:getpid")
int on_getpid(void *ctx)
{
	if ((int)(bpf_get_current_pid_tgid() >> 32) == target_pid)
		bpf_printk("getpid() entered by %d", target_pid);
	return 0;
}

SEC("uretprobe/libc.so.6:getpid")
int on_getpid_return(void *ctx)
{
	if ((int)(bpf_get_current_pid_tgid() >> 32) == target_pid)
		bpf_printk("getpid() returned in %d", target_pid);
	return 0;
}
