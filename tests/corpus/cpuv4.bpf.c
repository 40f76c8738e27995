// SPDX-License-Identifier: MIT
/* corpus: instructions of BPF ISA v4, built by clang-22 -mcpu=v4 (sign-extending
 * loads and moves, signed division and modulo, unconditional byte swaps, 32-bit-offset
 * jumps), with v3 atomics returning values and a subprogram call across them. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__s64 values[8] = { -5, 3, 1000, -7 };
__s8 small[4] = { -1, 2, -3, 4 };
__u64 swapped;
__u32 counter;

static __noinline __s64 mix(__s64 a, __s64 b)
{
	return a / (b | 1) + a % (b | 1);
}

SEC("tp/syscalls/sys_enter_getppid")
int v4_insns(void *ctx)
{
	__s64 a = values[0], b = values[3];
	int i = (int)(bpf_get_prandom_u32() & 3);

	values[4] = mix(a, b);
	values[5] = (__s64)small[i];          /* ldsx */
	values[6] = (__s64)(__s32)values[2];  /* movsx */
	swapped = __builtin_bswap64(values[1]);
	values[7] = __sync_fetch_and_add(&counter, 1) + __sync_val_compare_and_swap(&counter, 5, 0);
	return 0;
}
