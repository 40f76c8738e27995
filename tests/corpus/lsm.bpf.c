// SPDX-License-Identifier: MIT
/* corpus: the "lsm" kind — an LSM program on the bpf() hook that denies
 * BPF_PROG_LOAD to one pid. This machine's policy refuses lsm programs at load
 * (EPERM): compared as a failure. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

int guarded_pid = -1;

SEC("lsm/bpf")
int BPF_PROG(check_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	if (ret)
		return ret;
	if (cmd == BPF_PROG_LOAD && (int)(bpf_get_current_pid_tgid() >> 32) == guarded_pid)
		return -1;
	return 0;
}
