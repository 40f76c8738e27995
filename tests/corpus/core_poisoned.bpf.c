// SPDX-License-Identifier: MIT
/* corpus: a CO-RE read of a field the kernel does not have, with no existence check:
 * libbpf poisons the instruction (a call to helper 0xbad2310) and the verifier
 * rejects the program where it is reached. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct task_struct___poison {
	int corpus_field_not_in_kernel;
} __attribute__((preserve_access_index));

int out;

SEC("tp/syscalls/sys_enter_getppid")
int reads_missing_field(void *ctx)
{
	struct task_struct___poison *t = (void *)bpf_get_current_task();

	out = BPF_CORE_READ(t, corpus_field_not_in_kernel);
	return 0;
}
