// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* USDT programs on binaries of the system that nobody here wrote: libstdc++'s
 * exception probes (a shared library named without a path, found on libbpf's library
 * search paths) and two probes of Debian's python3.11 (a position-dependent executable
 * whose probes have semaphores, one argument off %rsp). Rarely hit; they only count. */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

long hits;

SEC("usdt/libstdc++.so.6:libstdcxx:throw")
int BPF_USDT(on_throw, void *object, void *type)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("usdt/libstdc++.so.6:libstdcxx:catch")
int BPF_USDT(on_catch, void *object, void *type)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("usdt//usr/bin/python3.11:python:gc__start")
int BPF_USDT(on_gc_start, int generation)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("usdt//usr/bin/python3.11:python:import__find__load__done")
int BPF_USDT(on_import_done, const char *module, int found)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}
