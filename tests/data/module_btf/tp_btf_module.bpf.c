// SPDX-License-Identifier: MIT
/* Module-BTF test object (e): a tp_btf program on a tracepoint defined in a module
 * (9p_client_req, in 9pnet: its btf_trace_9p_client_req typedef is in 9pnet's BTF
 * only). libbpf walks the module BTFs as for fentry (find_kernel_btf_id). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 requests;

SEC("tp_btf/9p_client_req")
int on_9p_client_req(void *ctx)
{
	__sync_fetch_and_add(&requests, 1);
	return 0;
}
