// SPDX-License-Identifier: MIT
/* The application of hand_uprobe.bpf.c, shaped like upstream libbpf-bootstrap's uprobe.c:
 * after the skeleton's load, uretprobe_add (SEC("uretprobe"), which libbpf cannot
 * auto-attach) is attached by hand to uprobed_add in /proc/self/exe for every process
 * (pid -1: the same calls an auto-attach makes), then the skeleton's attach attaches
 * the two programs whose sections name /proc/self/exe:uprobed_sub. Then it calls both
 * functions every 100 ms until it is stopped (no teardown, as upstream's).
 *
 *   usage: hand_uprobe */
#include <stdio.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "hand_uprobe.skel.h"

__attribute__((noinline)) int uprobed_add(int a, int b)
{
	asm volatile("");
	return a + b;
}

__attribute__((noinline)) int uprobed_sub(int a, int b)
{
	asm volatile("");
	return a - b;
}

int main(void)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = "uprobed_add", .retprobe = true);
	struct hand_uprobe_bpf *skel;
	int i;

	skel = hand_uprobe_bpf__open_and_load();
	if (!skel)
		return 1;
	skel->links.uretprobe_add = bpf_program__attach_uprobe_opts(
		skel->progs.uretprobe_add, -1, "/proc/self/exe", 0, &opts);
	if (!skel->links.uretprobe_add || hand_uprobe_bpf__attach(skel)) {
		hand_uprobe_bpf__destroy(skel);
		return 1;
	}
	for (i = 0;; i++) {
		uprobed_add(i, i + 1);
		uprobed_sub(i * i, i);
		usleep(100000);
	}
}
