// SPDX-License-Identifier: GPL-2.0
/* A map iterator (SEC("iter/bpf_map")) for tests/test_iter.py writing binary records
 * with bpf_seq_write: {u32 id; u32 max_entries; char name[16]} per map in the kernel.
 * The object's own array (br_iter_mark, 7 entries) is there for the test to find. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} br_iter_mark SEC(".maps");

struct map_record {
	__u32 id;
	__u32 max_entries;
	char name[16];
};

SEC("iter/bpf_map")
int br_iter_maps(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;
	struct map_record record = {};

	if (!map)
		return 0;
	record.id = map->id;
	record.max_entries = map->max_entries;
	bpf_probe_read_kernel_str(record.name, sizeof(record.name), map->name);
	bpf_seq_write(seq, &record, sizeof(record));
	return 0;
}
