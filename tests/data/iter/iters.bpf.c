// SPDX-License-Identifier: GPL-2.0
/* Three iterators for tests/test_iter.py, attached and read in this order:
 *   iter/task     text with BPF_SEQ_PRINTF: a header line, then "tgid pid comm" per task;
 *   iter/bpf_map  binary with bpf_seq_write: {u32 id; u32 max_entries; char name[16]}
 *                 per map in the kernel. The object's own array (br_iter_mark, 7
 *                 entries) is there for the test to find;
 *   iter.s/task   a sleepable one (loaded with BPF_F_SLEEPABLE): a header line, then
 *                 the pid of each task. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} br_iter_mark SEC(".maps");

SEC("iter/task")
int br_iter_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;  /* the end of the walk: nothing to add */
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "tgid pid comm\n");
	BPF_SEQ_PRINTF(seq, "%d %d %s\n", task->tgid, task->pid, task->comm);
	return 0;
}

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

SEC("iter.s/task")
int br_iter_sleepy(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(ctx->meta->seq, "sleepable pid\n");
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d\n", task->pid);
	return 0;
}
