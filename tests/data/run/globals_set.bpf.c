// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Global data in .data, .bss, .rodata and custom .data.* / .rodata.* sections, for
 * `bpfreplay run --compare` without --set: its reference (globals_set.c) changes some
 * of them through the skeleton before load; the others keep the ELF's values. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

int counter = 1;                           /* .data: changed by the reference */
int untouched = 2;                         /* .data: left as it is */
int my_pid;                                /* .bss: the reference's pid */
__u64 zeros[2];                            /* .bss: left as it is */
const volatile int threshold = 7;          /* .rodata: changed */
const volatile int kept = 8;               /* .rodata: left as it is */
int custom SEC(".data.custom") = 42;       /* .data.custom: changed */
const volatile char tag[8] SEC(".rodata.tag") = "abc"; /* .rodata.tag: changed */

SEC("tp/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	if ((int)(bpf_get_current_pid_tgid() >> 32) != my_pid)
		return 0;
	counter += untouched + threshold + kept + custom + tag[0];
	zeros[counter & 1] = counter;
	return 0;
}
