// SPDX-License-Identifier: MIT
/* corpus: the "sockfilter" kind — a socket filter counting packets by IP protocol
 * and sending small records through a ring buffer (attached by the application with
 * setsockopt, never by libbpf). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} by_protocol SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

SEC("socket")
int count_packets(struct __sk_buff *skb)
{
	__u8 protocol = 0;
	__u32 key;
	__u64 *count;
	__u32 *rec;

	if (bpf_skb_load_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, protocol),
			       &protocol, 1) < 0)
		return 0;
	key = protocol;
	count = bpf_map_lookup_elem(&by_protocol, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (rec) {
		*rec = skb->len;
		bpf_ringbuf_submit(rec, 0);
	}
	return skb->len;
}
