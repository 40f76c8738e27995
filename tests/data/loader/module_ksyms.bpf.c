// SPDX-License-Identifier: MIT
/* bpfreplay loader test object: what only a module's BTF has — a kfunc, a typed
 * variable and a tp_btf attach target — for tests/test_module_btf.py, which loads it
 * against a kernel answering as one with such a module (this machine has none). */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern int bpfreplay_mod_kfunc(int x) __ksym;
extern const int bpfreplay_mod_var __ksym;

__u64 seen[2];

SEC("tp_btf/bpfreplay_mod_event")
int module_things(__u64 *ctx)
{
	seen[0] = bpfreplay_mod_kfunc(7);
	seen[1] = bpfreplay_mod_var;
	return 0;
}
