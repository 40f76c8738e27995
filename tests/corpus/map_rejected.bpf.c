// SPDX-License-Identifier: MIT
/* corpus: a hash map of no entries, which the kernel refuses: libbpf retries the
 * create without BTF, and the load fails at the second MAP_CREATE (EINVAL). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 0);
	__type(key, __u32);
	__type(value, __u64);
} empty SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int uses_empty(void *ctx)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&empty, &key) != 0;
}
