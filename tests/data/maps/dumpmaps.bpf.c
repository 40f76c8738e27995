// SPDX-License-Identifier: MIT
/* Maps for `bpfreplay run --dump-maps` and obj.maps[...].typed against bpftool map dump
 * (tests/test_dump_maps.py). The first write(2) of the process whose tgid is
 * target_pid fills them, once (done), with values that depend on nothing else: a dump
 * taken while running and one taken at exit see the same bytes. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

enum colour { RED = 0, GREEN = 1, BLUE = 7, NEGATIVE = -3 };
typedef __u16 port_t;

struct flow_key {
	__u32 pid;
	enum colour colour;
};

struct inner {
	__s16 small;
	__u8 bytes[3];
	bool flag;
};

struct flow_value {
	__u64 count;
	__s32 delta;
	char comm[16];
	enum colour colour;
	port_t ports[4];
	struct inner inner;
	unsigned int low : 3, high : 5;
	union {
		__u32 word;
		__u8 octets[4];
	} u;
	char raw[4];  /* no NUL: an array of numbers */
	signed char c;
};

struct counter {
	__u64 packets;
	__u32 cpu_tag;
	char label[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct counter);
} per_cpu SEC(".maps");

/* no BTF types: bpftool's hex forms (single line, and names on their own lines) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 8);
} raw_small SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__uint(key_size, 8);
	__uint(value_size, 20);
} raw_wide SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 12);
} raw_per_cpu SEC(".maps");

volatile const __u32 target_pid;
bool done;
__s64 totals[3] = {1, -2, 3};
char greeting[12] = "hi there";

SEC("tp/syscalls/sys_enter_write")
int fill(void *ctx)
{
	__u32 zero = 0, one = 1, three = 3;
	struct flow_key key = {.pid = 42, .colour = BLUE};
	struct flow_value value = {
		.count = 0xfffffffffffffff0ULL, .delta = -5, .comm = "dumper",
		.colour = NEGATIVE, .ports = {80, 443, 0, 65535},
		.inner = {.small = -300, .bytes = {1, 2, 255}, .flag = true},
		.low = 5, .high = 17, .u = {.word = 0x01020304}, .raw = {'a', 'b', 'c', 'd'},
		.c = -1,
	};
	struct counter counter = {.packets = 7, .cpu_tag = 1, .label = "eth0"};
	__u64 small = 0x1122334455667788ULL;
	__u8 wide[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
	__u64 wide_key = 0xabcdef;
	__u8 twelve[12] = {0xde, 0xad, 0xbe, 0xef};
	struct counter *slot;

	if ((bpf_get_current_pid_tgid() >> 32) != target_pid || done)
		return 0;
	done = true;
	bpf_map_update_elem(&flows, &key, &value, BPF_ANY);
	key.pid = 7;
	key.colour = 5;  /* no enumerator: a number */
	value.comm[0] = '\0';
	value.colour = GREEN;
	bpf_map_update_elem(&flows, &key, &value, BPF_ANY);
	bpf_map_update_elem(&counters, &one, &counter, BPF_ANY);
	counter.packets = 1ULL << 40;
	bpf_map_update_elem(&counters, &three, &counter, BPF_ANY);
	slot = bpf_map_lookup_elem(&per_cpu, &one);
	if (slot) {
		slot->packets = 99;
		slot->cpu_tag = bpf_get_smp_processor_id() + 100;
		__builtin_memcpy(slot->label, "cpu", 4);
	}
	bpf_map_update_elem(&raw_small, &zero, &small, BPF_ANY);
	bpf_map_update_elem(&raw_wide, &wide_key, wide, BPF_ANY);
	bpf_map_update_elem(&raw_per_cpu, &three, twelve, BPF_ANY);
	totals[1] = -2000000;
	return 0;
}
