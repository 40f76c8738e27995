// SPDX-License-Identifier: MIT
/* corpus: the "tc" kind — a SEC("tc") classifier (attached by the application with
 * bpf_tc_attach, never by libbpf) that reads the packet through direct access. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("tc")
int tc_ingress(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		bpf_printk("corpus tc: IPv4 packet of %d bytes", ctx->len);
	return TC_ACT_OK;
}
