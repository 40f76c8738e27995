// SPDX-License-Identifier: MIT
/* corpus: maps of maps of other inner kinds — an array of ring buffers and a hash of
 * hashes created BPF_F_NO_PREALLOC, each with an initial slot — and a program array
 * whose initial slot names a program that is not autoloaded. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring0 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct ring);
} rings SEC(".maps") = {
	.values = { [1] = &ring0 },
};

struct inner_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} hash0 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_hash);
} hashes SEC(".maps") = {
	.values = { [3] = &hash0 },
};

SEC("tp/syscalls/sys_enter_getppid")
int use_inner(void *ctx)
{
	__u32 one = 1, three = 3;
	void *ring = bpf_map_lookup_elem(&rings, &one);
	void *hash = bpf_map_lookup_elem(&hashes, &three);

	if (ring)
		bpf_ringbuf_output(ring, &one, sizeof(one), 0);
	if (hash)
		bpf_map_update_elem(hash, &one, &three, BPF_ANY);
	return 0;
}
