// SPDX-License-Identifier: MIT
/* corpus: a map pinned by name (LIBBPF_PIN_BY_NAME: libbpf pins it under the pin root,
 * /sys/fs/bpf by default, and reuses a pin it finds there) beside an unpinned one. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} corpus_pinned_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unpinned SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int count_pinned(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	__u64 one = 1, *count = bpf_map_lookup_elem(&corpus_pinned_counts, &pid);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&corpus_pinned_counts, &pid, &one, BPF_NOEXIST);
	count = bpf_map_lookup_elem(&unpinned, &zero);
	if (count)
		*count += 1;
	return 0;
}
