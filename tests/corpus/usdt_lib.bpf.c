// SPDX-License-Identifier: MIT
/* corpus: a USDT probe with a semaphore in a shared library of ours (LIBTARGET, its
 * absolute path): libbpf's USDT manager reads the library's notes, turns the probe's
 * address into a file offset and passes the semaphore as ref_ctr_offset. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

long last_value;

SEC("usdt/" LIBTARGET ":corpus_lib:hit")
int BPF_USDT(on_lib_hit, int value)
{
	last_value = value;
	return 0;
}
