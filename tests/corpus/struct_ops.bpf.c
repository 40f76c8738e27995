// SPDX-License-Identifier: MIT
/* corpus: a struct_ops map (a TCP congestion control, tcp_congestion_ops) with its
 * programs; libbpf creates the map with the kernel's value type and fills it after
 * load; the skeleton does not attach struct_ops maps in libbpf 1.1.2. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("struct_ops/corpus_ssthresh")
__u32 BPF_PROG(corpus_ssthresh, struct sock *sk)
{
	return 10;
}

SEC("struct_ops/corpus_undo_cwnd")
__u32 BPF_PROG(corpus_undo_cwnd, struct sock *sk)
{
	return 10;
}

SEC("struct_ops/corpus_cong_avoid")
void BPF_PROG(corpus_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC(".struct_ops")
struct tcp_congestion_ops corpus_cc = {
	.ssthresh = (void *)corpus_ssthresh,
	.undo_cwnd = (void *)corpus_undo_cwnd,
	.cong_avoid = (void *)corpus_cong_avoid,
	.name = "corpus_cc",
};
