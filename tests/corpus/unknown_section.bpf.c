// SPDX-License-Identifier: MIT
/* corpus: a program in a section libbpf 1.1.2 does not know (uprobe.multi/ came
 * later): opened typeless, the load fails at it ("missing BPF prog type"). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("uprobe.multi/corpus:corpus_target_*")
int future_section(void *ctx)
{
	return 0;
}
