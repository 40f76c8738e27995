// SPDX-License-Identifier: MIT
/* corpus: the other half of linked.bpf.o: the global function, the map defined
 * weak here (the linker keeps linked_a's strong definition), and its own data. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} shared_counts SEC(".maps") __weak;

int b_value = 2;
const volatile int b_limit = 9;

__noinline int shared_step(int x)
{
	return x + b_value < b_limit ? x + b_value : 0;
}

SEC("tp/syscalls/sys_enter_getpgid")
int linked_other(void *ctx)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&shared_counts, &key);

	if (v)
		*v += shared_step(3);
	return 0;
}
