// SPDX-License-Identifier: MIT
/* corpus: the "minimal_legacy" kind — no global variables; the pid to watch is kept
 * in an array map (which user space would fill), as for kernels without mmapable
 * global data. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s32);
} watched_pid SEC(".maps");

SEC("tp/syscalls/sys_enter_write")
int on_write_legacy(void *ctx)
{
	__u32 zero = 0;
	__s32 *want = bpf_map_lookup_elem(&watched_pid, &zero);
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (!want || *want != pid)
		return 0;
	bpf_printk("corpus minimal_legacy: write from %d", pid);
	return 0;
}
