// SPDX-License-Identifier: MIT
/* bpfreplay loader test object, compiled without -g: no .BTF, no .BTF.ext;
 * an old-style "version" section. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";
/* the pre-BTF way of naming the kernel a program was built for */
__u32 _version SEC("version") = 0x050a00;

int value = 3;
const volatile int limit = 9;

static __attribute__((noinline)) int twice(int x)
{
	return 2 * x;
}

SEC("socket")
int sock_nobtf(struct __sk_buff *skb)
{
	return twice(value) < limit ? 0 : skb->len;
}
