// SPDX-License-Identifier: MIT
/* Module-BTF test object (a): CO-RE relocations against types that exist only in
 * module BTFs on Debian's 6.1 kernel, so libbpf finds no candidate in vmlinux and
 * walks the module BTFs (bpf_core_find_cands -> load_module_btfs).
 *   struct p9_client          in 9pnet, 9pnet_virtio and 9p (three equal candidates)
 *   struct v9fs_session_info  in 9p only
 *   struct ovl_fs             in overlay only (a type-exists relocation)
 * The types are declared here with only the fields we read; the pointer read at run
 * time is never valid (client_addr stays 0): what matters is the relocation. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct p9_client {
	unsigned int msize;
} __attribute__((preserve_access_index));

struct v9fs_session_info {
	unsigned int maxdata;
} __attribute__((preserve_access_index));

struct ovl_fs {
	int bpfreplay_unused;
} __attribute__((preserve_access_index));

__u64 client_addr;
__u64 session_addr;
__u32 msize_seen;
__u32 maxdata_seen;
int read_err;
int have_ovl_fs;

SEC("tracepoint/syscalls/sys_enter_getppid")
int read_module_structs(void *ctx)
{
	struct p9_client *c = (void *)client_addr;
	struct v9fs_session_info *s = (void *)session_addr;

	read_err = bpf_core_read(&msize_seen, sizeof(msize_seen), &c->msize);
	read_err |= bpf_core_read(&maxdata_seen, sizeof(maxdata_seen), &s->maxdata);
	have_ovl_fs = bpf_core_type_exists(struct ovl_fs);
	return 0;
}
