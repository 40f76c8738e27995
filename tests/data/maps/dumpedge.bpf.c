// SPDX-License-Identifier: MIT
/* The corners of bpftool's BTF dumper (tests/test_dump_maps.py): a float it refuses
 * mid-value, pointers (%p: "(nil)" and hex), a 128-bit int, a char array through a
 * typedef (numbers, not a string), strings with a quote and a backslash (bpftool
 * escapes the backslash as "\n"), a char array without a NUL, a bool array,
 * a per-CPU hash and an LRU hash, an empty hash. Values are written from user space by
 * the test; no program runs. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

typedef char name_t;
struct task;

struct corners {
	void *nothing;
	struct task *somewhere;
	unsigned __int128 wide;
	name_t typed_name[6];
	char quoted[12];
	char full[4];
	bool flags[3];
	__s8 tiny;
	unsigned short half;
};

struct with_float {
	__u32 before;
	float ratio;
	__u32 after;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u64);
	__type(value, struct corners);
} corners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct with_float);
} floats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4);
	__type(key, struct corners);
	__type(value, __s32);
} per_cpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4);
	__type(key, char[5]);
	__type(value, unsigned char);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} empty SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int touch(void *ctx)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&empty, &zero) != 0;
}
