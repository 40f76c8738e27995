// SPDX-License-Identifier: MIT
/* corpus: the libbpf-bootstrap "minimal" kind — a tracepoint program with a pid
 * filter in .bss, set from user space before load. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

int my_pid = 0;

SEC("tp/syscalls/sys_enter_write")
int on_write(void *ctx)
{
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (pid != my_pid)
		return 0;
	bpf_printk("corpus minimal: write from %d", pid);
	return 0;
}
