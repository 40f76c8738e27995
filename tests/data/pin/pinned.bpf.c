// SPDX-License-Identifier: MIT
/* bpfreplay pinning test object: two maps pinned by name (a hash and an array whose
 * name is longer than the 15 bytes the kernel keeps), and one map that is not
 * pinned, used by one tracepoint program (no global data: the C reference loads with
 * bpf_object__load(), which does not mmap data maps as a skeleton does). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_array_with_long_name SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} private_total SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int count_getppid(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	__u64 one = 1, *value;

	value = bpf_map_lookup_elem(&pinned_counts, &pid);
	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(&pinned_counts, &pid, &one, BPF_NOEXIST);
	value = bpf_map_lookup_elem(&pinned_array_with_long_name, &zero);
	if (value)
		__sync_fetch_and_add(value, 1);
	value = bpf_map_lookup_elem(&private_total, &zero);
	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}
