// SPDX-License-Identifier: MIT
/* Module-BTF test object (d): an fentry program on a function of a module
 * (p9_client_read, in 9pnet; the guest's root is 9p, so it fires). libbpf finds no
 * such FUNC in vmlinux, walks the module BTFs (libbpf_prepare_prog_load ->
 * find_kernel_btf_id -> load_module_btfs) and loads the program with
 * attach_btf_obj_fd = 9pnet's BTF fd. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 reads;

SEC("fentry/p9_client_read")
int on_p9_client_read(void *ctx)
{
	__sync_fetch_and_add(&reads, 1);
	return 0;
}
