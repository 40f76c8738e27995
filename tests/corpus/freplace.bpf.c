// SPDX-License-Identifier: MIT
/* corpus: a freplace/ program with no target program set (a skeleton cannot give one
 * before load): libbpf looks for the function in kernel BTF and fails the load. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("freplace/corpus_replaced_function")
int replacement(void *ctx)
{
	return 0;
}
