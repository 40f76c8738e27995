// SPDX-License-Identifier: MIT
/* corpus: a tracepoint that does not exist: the programs load and the attach fails
 * while libbpf reads the tracepoint's id from tracefs (no perf_event_open). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp/corpus/no_such_event")
int on_missing(void *ctx)
{
	return 0;
}
