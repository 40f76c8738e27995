// SPDX-License-Identifier: GPL-2.0
/* A task iterator (SEC("iter/task")) for tests/test_iter.py: one text line per task,
 * "tgid pid comm", after a header line, written with BPF_SEQ_PRINTF. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

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
