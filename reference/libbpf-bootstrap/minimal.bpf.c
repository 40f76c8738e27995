// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bpfreplay's reference: the BPF half of libbpf-bootstrap's "minimal" example,
 * written for this project. It prints a line to the trace pipe each time the
 * process whose pid user space stored in my_pid enters write(). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space through the skeleton's .bss before load. */
int my_pid = 0;

SEC("tp/syscalls/sys_enter_write")
int handle_tp(void *ctx)
{
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (pid != my_pid)
		return 0;

	bpf_printk("BPF triggered from PID %d.\n", pid);

	return 0;
}
