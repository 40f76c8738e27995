// SPDX-License-Identifier: MIT
/* corpus: the "ksyscall" kind — SEC("ksyscall/kill") and SEC("kretsyscall/kill")
 * with BPF_KSYSCALL arguments (libbpf finds the arch's syscall wrapper name). No
 * kprobes on this kernel: compared as a failure. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("ksyscall/kill")
int BPF_KSYSCALL(on_kill, pid_t pid, int sig)
{
	bpf_printk("corpus ksyscall: kill(%d, %d)", pid, sig);
	return 0;
}

SEC("kretsyscall/kill")
int BPF_KRETPROBE(on_kill_return, long ret)
{
	bpf_printk("corpus kretsyscall: kill returned %ld", ret);
	return 0;
}
