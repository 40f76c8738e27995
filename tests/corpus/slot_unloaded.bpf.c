// SPDX-License-Identifier: MIT
/* corpus: a program array whose initial slot names a program that is not autoloaded
 * (SEC("?...")): libbpf 1.1.2 cannot fill the slot. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("?tp/syscalls/sys_enter_getppid")
int not_loaded_target(void *ctx)
{
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int (void *));
} slots SEC(".maps") = {
	.values = { [0] = (void *)&not_loaded_target },
};

SEC("tp/syscalls/sys_enter_getppid")
int jumper(void *ctx)
{
	bpf_tail_call(ctx, &slots, 0);
	return 0;
}
