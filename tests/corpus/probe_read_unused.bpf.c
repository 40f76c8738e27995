// SPDX-License-Identifier: MIT
/* bpfreplay corpus: bpf_probe_read_kernel only where nothing loads it — in a .text
 * function no program calls (as usdt.bpf.h's weak bpf_usdt_arg in an object that
 * never calls it) and in a program not autoloaded. libbpf 1.1.2's
 * bpf_object__load_progs() sanitises every program of the object first, so it still
 * asks the probe_read_kern feature probe before the first program loads. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 seen;

__attribute__((weak)) __noinline int never_called(const void *p)
{
	long v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), p);
	return v;
}

SEC("?tp/syscalls/sys_enter_getppid")
int not_autoloaded(void *ctx)
{
	long v = 0;

	bpf_probe_read_user(&v, sizeof(v), ctx);
	seen = v;
	return 0;
}

SEC("tp/syscalls/sys_enter_getpgid")
int plain(void *ctx)
{
	seen++;
	return 0;
}
