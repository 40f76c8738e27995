// SPDX-License-Identifier: MIT
/* corpus: the "minimal_ns" kind — the pid filter in the pid namespace given by the
 * device and inode of /proc/self/ns/pid (bpf_get_ns_current_pid_tgid). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

int my_pid = 0;
unsigned long long dev = 0;
unsigned long long ino = 0;

SEC("tp/syscalls/sys_enter_write")
int on_write_ns(void *ctx)
{
	struct bpf_pidns_info ns = {};

	if (bpf_get_ns_current_pid_tgid(dev, ino, &ns, sizeof(ns)))
		return 0;
	if (ns.pid != my_pid)
		return 0;
	bpf_printk("corpus minimal_ns: write from %d", ns.pid);
	return 0;
}
