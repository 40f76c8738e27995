// SPDX-License-Identifier: MIT
/* corpus: global data larger than a page in each data section (.bss of 70000 bytes,
 * .data of 5000, .rodata of 9000): the sizes of the maps, their mmaps and the initial
 * values libbpf writes. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

char big_bss[70000];
__u32 big_data[1250] = { 1, 2, 3, [1249] = 0xdeadbeef };
const volatile __u8 big_rodata[9000] = { 7, [8999] = 9 };

SEC("tp/syscalls/sys_enter_getppid")
int touch_big(void *ctx)
{
	__u32 i = bpf_get_prandom_u32() & 1023;

	big_bss[i] = big_rodata[i] + (char)big_data[i];
	return 0;
}
