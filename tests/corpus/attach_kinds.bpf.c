// SPDX-License-Identifier: MIT
/* corpus: program types and expected attach types of the sections libbpf loads but
 * does not auto-attach (xdp, xdp.frags, cgroup_skb, cgroup/sock_create, cgroup
 * sockopt, sockops, sk_msg, sk_skb, sk_lookup, flow_dissector, lwt_in, syscall), beside
 * two it does: tp_btf/ (raw tracepoint with BTF) and a sleepable uprobe.s/ on our
 * target. TARGET is the target binary's absolute path. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 seen[16];

SEC("xdp")
int on_xdp(struct xdp_md *ctx) { seen[0]++; return XDP_PASS; }

SEC("xdp.frags")
int on_xdp_frags(struct xdp_md *ctx) { seen[1]++; return XDP_PASS; }

SEC("cgroup_skb/ingress")
int on_cgroup_ingress(struct __sk_buff *skb) { seen[2]++; return 1; }

SEC("cgroup_skb/egress")
int on_cgroup_egress(struct __sk_buff *skb) { seen[3]++; return 1; }

SEC("cgroup/sock_create")
int on_sock_create(struct bpf_sock *sk) { seen[4]++; return 1; }

SEC("cgroup/getsockopt")
int on_getsockopt(struct bpf_sockopt *ctx) { seen[5]++; return 1; }

SEC("sockops")
int on_sockops(struct bpf_sock_ops *ops) { seen[6]++; return 1; }

SEC("sk_msg")
int on_sk_msg(struct sk_msg_md *msg) { seen[7]++; return SK_PASS; }

SEC("sk_skb/stream_verdict")
int on_stream_verdict(struct __sk_buff *skb) { seen[8]++; return SK_PASS; }

SEC("sk_lookup")
int on_sk_lookup(struct bpf_sk_lookup *ctx) { seen[9]++; return SK_PASS; }

SEC("flow_dissector")
int on_flow(struct __sk_buff *skb) { seen[10]++; return BPF_OK; }

SEC("lwt_in")
int on_lwt_in(struct __sk_buff *skb) { seen[11]++; return BPF_OK; }

SEC("syscall")
int on_syscall(void *ctx) { seen[12]++; return 0; }

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	seen[13]++;
	return 0;
}

SEC("uprobe.s/" TARGET ":corpus_target_add")
int on_add_sleepable(struct pt_regs *ctx)
{
	seen[14]++;
	return 0;
}
