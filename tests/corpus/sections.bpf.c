// SPDX-License-Identifier: MIT
/* corpus: global data in .data, .rodata, .bss, custom .data.* and .rodata.* sections,
 * string literals (.rodata.str1.1), .kconfig externs (strong and weak, one the
 * kernel lacks), and two programs sharing them. */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

int counter = 5;                                    /* .data */
const volatile int limit = 100;                     /* .rodata */
__u64 hits[2];                                      /* .bss */
int tuned SEC(".data.tuning") = 77;                 /* .data.tuning */
__u32 table[4] SEC(".data.table") = { 1, 2, 3, 4 }; /* .data.table */
const volatile char tag[8] SEC(".rodata.tag") = "corpus"; /* .rodata.tag */

extern int LINUX_KERNEL_VERSION __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig;
extern int CONFIG_CORPUS_NOT_THERE __kconfig __weak;

SEC("tp/syscalls/sys_enter_getppid")
int use_sections(void *ctx)
{
	if (counter < limit && CONFIG_BPF_SYSCALL)
		hits[0] += table[counter & 3] + tuned + tag[0];
	hits[1] = LINUX_KERNEL_VERSION + CONFIG_CORPUS_NOT_THERE;
	bpf_printk("corpus sections: %d", counter);
	return 0;
}

SEC("raw_tp/sys_exit")
int count_exits(void *ctx)
{
	__sync_fetch_and_add(&counter, 1);
	return 0;
}
