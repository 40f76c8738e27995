// SPDX-License-Identifier: MIT
/* corpus: an object with maps and global data but no program at all (a skeleton with
 * no programs): libbpf still probes, loads the BTF and creates the maps. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} lonely SEC(".maps");

__u64 lonely_counter = 3;
