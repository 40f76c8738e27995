// SPDX-License-Identifier: MIT
/* corpus: one BTF-defined map of each type libbpf 1.1.2 creates on this kernel that
 * the other corpus objects do not already have (they hold hash, array, percpu array,
 * ring buffer, perf event array, stack trace, prog array and maps of maps), and two
 * programs using the ones that need a program (queue, stack, bloom filter, lpm trie,
 * task storage). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 16);
	 __type(key, u32); __type(value, u64); } m_percpu_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 16);
	 __type(key, u32); __type(value, u64); } m_lru_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH); __uint(max_entries, 16);
	 __type(key, u32); __type(value, u64); } m_lru_percpu_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 16);
	 __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, struct lpm_key); __type(value, u32); } m_lpm_trie SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_QUEUE); __uint(max_entries, 16);
	 __type(value, u32); } m_queue SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_STACK); __uint(max_entries, 16);
	 __type(value, u64); } m_stack SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_BLOOM_FILTER); __uint(max_entries, 64);
	 __uint(map_extra, 3); __type(value, u32); } m_bloom SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_TASK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, int); __type(value, u64); } m_task_storage SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_INODE_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, int); __type(value, u64); } m_inode_storage SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, int); __type(value, u64); } m_sk_storage SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_CGROUP_ARRAY); __uint(max_entries, 4);
	 __type(key, u32); __type(value, u32); } m_cgroup_array SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_DEVMAP); __uint(max_entries, 4);
	 __type(key, u32); __type(value, u32); } m_devmap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_DEVMAP_HASH); __uint(max_entries, 4);
	 __type(key, u32); __type(value, u32); } m_devmap_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_CPUMAP); __uint(max_entries, 2);
	 __type(key, u32); __type(value, struct bpf_cpumap_val); } m_cpumap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_XSKMAP); __uint(max_entries, 4);
	 __type(key, u32); __type(value, u32); } m_xskmap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SOCKMAP); __uint(max_entries, 4);
	 __type(key, u32); __type(value, u64); } m_sockmap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SOCKHASH); __uint(max_entries, 4);
	 __type(key, u32); __type(value, u64); } m_sockhash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY); __uint(max_entries, 4);
	 __type(key, u32); __type(value, u64); } m_reuseport SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_USER_RINGBUF); __uint(max_entries, 4096);
	 } m_user_ringbuf SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int use_maps(void *ctx)
{
	struct lpm_key key = { .prefixlen = 32, .addr = 0x0100007f };
	u32 v = 7, *found;
	u64 w = 9;

	bpf_map_push_elem(&m_queue, &v, BPF_ANY);
	bpf_map_push_elem(&m_stack, &w, BPF_ANY);
	bpf_map_push_elem(&m_bloom, &v, BPF_ANY);
	if (bpf_map_peek_elem(&m_bloom, &v) == 0)
		bpf_map_update_elem(&m_lru_hash, &v, &w, BPF_ANY);
	found = bpf_map_lookup_elem(&m_lpm_trie, &key);
	if (found)
		bpf_map_update_elem(&m_percpu_hash, found, &w, BPF_ANY);
	return 0;
}

SEC("tp_btf/sys_enter")
int use_task_storage(u64 *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 *seen = bpf_task_storage_get(&m_task_storage, task, 0,
					 BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (seen)
		*seen += 1;
	return 0;
}
