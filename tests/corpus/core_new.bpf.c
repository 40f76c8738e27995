// SPDX-License-Identifier: MIT
/* corpus: the CO-RE relocations clang 14 cannot emit, built with clang-22:
 * type-match relocations (bpf_core_type_matches) of a matching and of a mismatching
 * flavour, and enum64 value relocations (a local ENUM64 flavour of the kernel's
 * perf_callchain_context, whose values need 64 bits). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#ifndef BPF_TYPE_MATCHES
#define BPF_TYPE_MATCHES 2 /* enum bpf_type_info_kind, newer than libbpf 1.1.2's headers */
#endif

struct callback_head___match {
	struct callback_head___match *next;
	void (*func)(struct callback_head___match *head);
};

struct callback_head___nomatch {
	int next;
};

enum perf_callchain_context___v1 {
	PERF_CONTEXT_KERNEL___v1 = 0xffffffffffffff80ULL,
	PERF_CONTEXT_CORPUS_NOT_THERE___v1 = 0xfffffffffffff123ULL,
};

__u64 out[6];

SEC("tp/syscalls/sys_enter_getppid")
int core_new(void *ctx)
{
	out[0] = __builtin_preserve_type_info(*(struct callback_head___match *)0,
					      BPF_TYPE_MATCHES);
	out[1] = __builtin_preserve_type_info(*(struct callback_head___nomatch *)0,
					      BPF_TYPE_MATCHES);
	out[2] = bpf_core_enum_value_exists(enum perf_callchain_context___v1,
					    PERF_CONTEXT_KERNEL___v1);
	out[3] = bpf_core_enum_value(enum perf_callchain_context___v1, PERF_CONTEXT_KERNEL___v1);
	out[4] = bpf_core_enum_value_exists(enum perf_callchain_context___v1,
					    PERF_CONTEXT_CORPUS_NOT_THERE___v1);
	return 0;
}
