// SPDX-License-Identifier: MIT
/* corpus: odds and ends of libbpf's object handling — a program not autoloaded
 * (SEC("?...")), a BTF-defined array map created BPF_F_MMAPABLE by the object itself,
 * a map with a NUMA node, a read-only-for-programs map, raw key/value sizes without
 * BTF types, CO-RE string reads and array-element relocations, a raw tracepoint. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define BPF_F_NUMA_NODE_FLAG (1U << 2)
#define BPF_F_MMAPABLE_FLAG (1U << 10)
#define BPF_F_RDONLY_PROG_FLAG (1U << 7)

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8);
	 __uint(map_flags, BPF_F_MMAPABLE_FLAG);
	 __type(key, u32); __type(value, u64); } shared_array SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 8);
	 __uint(map_flags, BPF_F_NUMA_NODE_FLAG); __uint(numa_node, 0);
	 __type(key, u32); __type(value, u64); } numa_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2);
	 __uint(map_flags, BPF_F_RDONLY_PROG_FLAG);
	 __type(key, u32); __type(value, u32); } read_only SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 8);
	 __uint(key_size, 6); __uint(value_size, 10); } raw_sizes SEC(".maps");

char comm_copy[16];
char third;
__u64 counted;

SEC("?tp/syscalls/sys_enter_getppid")
int not_autoloaded(void *ctx)
{
	counted++;
	return 0;
}

SEC("raw_tp/sys_enter")
int strings(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	u32 zero = 0;
	u64 *slot = bpf_map_lookup_elem(&shared_array, &zero);
	u32 *ro = bpf_map_lookup_elem(&read_only, &zero);

	BPF_CORE_READ_STR_INTO(&comm_copy, t, comm);
	third = BPF_CORE_READ(t, comm[3]);
	if (slot)
		*slot += 1;
	if (ro)
		counted += *ro;
	bpf_map_update_elem(&numa_hash, &zero, &counted, BPF_ANY);
	return 0;
}
