// SPDX-License-Identifier: MIT
/* The object of tests/test_attach_net.py: one program of each kind `bpfreplay run
 * --tc/--xdp/--xdp-netlink/--socket/--perf-event` attaches, each counting in `counts`
 * what it saw: frames of the test's own EtherType (so that other traffic on the veth
 * never counts), and perf samples per CPU. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define TEST_ETHERTYPE 0x88b5 /* IEEE 802 local experimental */
#define MAX_CPUS 64

enum { COUNT_TC, COUNT_XDP, COUNT_SOCKET, COUNT_KINDS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNT_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, __u32);
	__type(value, __u64);
} samples SEC(".maps");

static void bump(void *map, __u32 key)
{
	__u64 *value = bpf_map_lookup_elem(map, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(TEST_ETHERTYPE))
		bump(&counts, COUNT_TC);
	return TC_ACT_OK;
}

SEC("xdp")
int count_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) <= end && eth->h_proto == bpf_htons(TEST_ETHERTYPE))
		bump(&counts, COUNT_XDP);
	return XDP_PASS;
}

SEC("socket")
int count_socket(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(TEST_ETHERTYPE))
		bump(&counts, COUNT_SOCKET);
	return 0; /* nothing is queued on the socket */
}

SEC("perf_event")
int count_sample(void *ctx)
{
	bump(&samples, bpf_get_smp_processor_id());
	return 0;
}
