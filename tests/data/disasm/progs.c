// Programs whose instructions tests/test_disasm.py prints and compares with the
// kernel's verifier log, bpftool's xlated dump and llvm-objdump. Compiled at test time
// (-mcpu=v1, v2 and v3) so that each compiler encoding of these constructs is seen.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

__u64 total = 0;                 /* .bss */
__s32 history[4] = {1, -2, 3};   /* .data */
volatile const __u32 limit = 7;  /* .rodata */

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

/* A bpf-to-bpf call. */
static __noinline __u64 mix(__u64 a, __u64 b)
{
	return (a * 31) ^ (b >> 3) ^ (a % 7) ^ ((__s64)b >> 2);
}

/* A callback: its address is an ld_imm64 of a subprogram. */
static int step(__u32 index, void *ctx)
{
	__u64 *sum = ctx;

	*sum += index * 3;
	return *sum > 1000;
}

SEC("tracepoint/syscalls/sys_enter_write")
int tp_prog(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, sum = 0, *value;
	__s32 signed_pid = pid;

	value = bpf_map_lookup_elem(&counts, &pid);
	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(&counts, &pid, &one, BPF_ANY);

	bpf_rcu_read_lock();
	bpf_loop(limit, step, &sum, 0);
	bpf_rcu_read_unlock();

	if (signed_pid < -5 || pid / 3 == limit)
		history[pid & 3] += __builtin_bswap32(pid) >> 5;
	switch (pid % 5) {
	case 0: sum += 11; break;
	case 1: sum ^= 0x7f; break;
	case 2: sum = sum << 3; break;
	default: sum = mix(sum, pid);
	}
	__sync_fetch_and_add(&total, sum);
	return (__u32)sum + (__u16)pid;
}

/* LD_ABS / LD_IND, through the LLVM intrinsics the kernel's samples use. */
unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

SEC("socket")
int sock_prog(struct __sk_buff *skb)
{
	__u64 proto = load_half(skb, 12);
	__u64 len = skb->len;

	if (proto == 0x0800) {
		__u64 ihl = load_byte(skb, 14) & 0xf;

		if (load_word(skb, 14 + ihl * 4) == 0x12345678)
			return -1;
	}
	return len > 100 ? 0 : (int)len;
}

char LICENSE[] SEC("license") = "GPL";
