// SPDX-License-Identifier: MIT
/* bpfreplay pinning test object whose program the verifier refuses (a hash map's value
 * used without its NULL check), after its pinned map was created and pinned: libbpf
 * unpins what it pinned when the load fails. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} doomed_counts SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int unchecked(void *ctx)
{
	__u32 zero = 0;
	__u64 *value = bpf_map_lookup_elem(&doomed_counts, &zero);

	return *value;
}
