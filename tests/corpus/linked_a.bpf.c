// SPDX-License-Identifier: MIT
/* corpus: one half of an object linked by libbpf's static linker (`bpftool gen object
 * linked.bpf.o linked_a.bpf.o linked_b.bpf.o`): a program calling a global function
 * and sharing a map defined in the other file. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern int shared_step(int x);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} shared_counts SEC(".maps");

int a_value = 1;

SEC("tp/syscalls/sys_enter_getppid")
int linked_entry(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&shared_counts, &key);

	if (v)
		*v += shared_step(a_value);
	return 0;
}
