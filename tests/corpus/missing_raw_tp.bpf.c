// SPDX-License-Identifier: MIT
/* corpus: a raw tracepoint that does not exist: the program loads and
 * BPF_RAW_TRACEPOINT_OPEN fails (ENOENT). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp/corpus_no_such_raw_tp")
int on_missing_raw(void *ctx)
{
	return 0;
}
