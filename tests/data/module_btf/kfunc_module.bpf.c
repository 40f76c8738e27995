// SPDX-License-Identifier: MIT
/* Module-BTF test object (c): kfuncs that live in a module's BTF. On Debian's 6.1
 * no module BTF has a VAR (so no typed __ksym variable can come from a module), but
 * nf_conntrack's BTF has the conntrack kfuncs: libbpf finds no bpf_xdp_ct_lookup in
 * vmlinux, walks the module BTFs (find_ksym_btf_id -> load_module_btfs) and passes
 * the module BTF's fd in the program's fd_array. record.sh loads nf_conntrack first.
 * The program is XDP and not attached (a skeleton attaches no XDP program). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct nf_conn {
	unsigned long status;
};

/* nf_conntrack's struct bpf_ct_opts (NF_BPF_CT_OPTS_SZ is 12 on 6.1) */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
};

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *bpf_tuple,
					 __u32 tuple__sz, struct bpf_ct_opts *opts,
					 __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

int lookups;
int found;

SEC("xdp")
int ct_lookup(struct xdp_md *ctx)
{
	struct bpf_ct_opts opts = { .netns_id = -1, .l4proto = 6 /* IPPROTO_TCP */ };
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;

	lookups++;
	ct = bpf_xdp_ct_lookup(ctx, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (ct) {
		found++;
		bpf_ct_release(ct);
	}
	return XDP_PASS;
}
