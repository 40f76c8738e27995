// SPDX-License-Identifier: MIT
/* tests/test_replay.py: a tracepoint program that counts, in .bss, the write() calls
 * of the process whose pid user space wrote into my_pid before load (refload -s
 * my_pid=pid). A replay of its recording must count its own writes: the recording's
 * pid in the .bss image becomes the replay's. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

int my_pid = 0;
__u64 hits = 0;

SEC("tp/syscalls/sys_enter_write")
int count_writes(void *ctx)
{
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (pid == my_pid)
		__sync_fetch_and_add(&hits, 1);
	return 0;
}
