// SPDX-License-Identifier: MIT
/* corpus: more program and expected attach types libbpf loads but does not attach:
 * sk_reuseport (and /migrate), cgroup dev, sysctl, sock_addr (connect4, bind6,
 * sendmsg4, recvmsg6, getpeername4), post_bind4, sock_release, setsockopt, lwt
 * out/xmit/seg6local, sk_skb parser, xdp/devmap, xdp/cpumap, action, classifier. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 seen[24];

#define COUNT(i) (seen[i]++)

SEC("sk_reuseport")
int on_reuseport(struct sk_reuseport_md *ctx) { COUNT(0); return SK_PASS; }
SEC("sk_reuseport/migrate")
int on_reuseport_migrate(struct sk_reuseport_md *ctx) { COUNT(1); return SK_PASS; }
SEC("cgroup/dev")
int on_dev(struct bpf_cgroup_dev_ctx *ctx) { COUNT(2); return 1; }
SEC("cgroup/sysctl")
int on_sysctl(struct bpf_sysctl *ctx) { COUNT(3); return 1; }
SEC("cgroup/connect4")
int on_connect4(struct bpf_sock_addr *ctx) { COUNT(4); return 1; }
SEC("cgroup/bind6")
int on_bind6(struct bpf_sock_addr *ctx) { COUNT(5); return 1; }
SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx) { COUNT(6); return 1; }
SEC("cgroup/recvmsg6")
int on_recvmsg6(struct bpf_sock_addr *ctx) { COUNT(7); return 1; }
SEC("cgroup/getpeername4")
int on_getpeername4(struct bpf_sock_addr *ctx) { COUNT(8); return 1; }
SEC("cgroup/post_bind4")
int on_post_bind4(struct bpf_sock *ctx) { COUNT(9); return 1; }
SEC("cgroup/sock_release")
int on_sock_release(struct bpf_sock *ctx) { COUNT(10); return 1; }
SEC("cgroup/setsockopt")
int on_setsockopt(struct bpf_sockopt *ctx) { COUNT(11); return 1; }
SEC("lwt_out")
int on_lwt_out(struct __sk_buff *skb) { COUNT(12); return BPF_OK; }
SEC("lwt_xmit")
int on_lwt_xmit(struct __sk_buff *skb) { COUNT(13); return BPF_OK; }
SEC("lwt_seg6local")
int on_lwt_seg6local(struct __sk_buff *skb) { COUNT(14); return BPF_OK; }
SEC("sk_skb/stream_parser")
int on_stream_parser(struct __sk_buff *skb) { COUNT(15); return skb->len; }
SEC("xdp/devmap")
int on_xdp_devmap(struct xdp_md *ctx) { COUNT(16); return XDP_PASS; }
SEC("xdp/cpumap")
int on_xdp_cpumap(struct xdp_md *ctx) { COUNT(17); return XDP_PASS; }
SEC("action")
int on_action(struct __sk_buff *skb) { COUNT(18); return 0; }
SEC("classifier")
int on_classifier(struct __sk_buff *skb) { COUNT(19); return 0; }
