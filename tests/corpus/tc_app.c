// SPDX-License-Identifier: MIT
/* tc_app: the application of the corpus's tc object, doing what libbpf-bootstrap's tc
 * application does with it: the skeleton opened and loaded (no skeleton attach: libbpf
 * never attaches SEC("tc")), bpf_tc_hook_create() on DEV (EEXIST: a clsact qdisc was
 * there already and is not ours), bpf_tc_attach() of the program with libbpf's default
 * options (handle 0, priority 0: the kernel chooses; upstream asks for 1 and 1); then it
 * waits for SIGINT or SIGTERM, bpf_tc_detach()es the filter, and when the qdisc was its
 * own destroys it (bpf_tc_hook_destroy() with BPF_TC_INGRESS|BPF_TC_EGRESS: upstream
 * destroys the ingress hook only, which leaves the qdisc), then destroys the skeleton.
 * `bpfreplay run tc.bpf.o --tc DEV[:DIRECTION]` is its counterpart
 * (tests/test_runtime_parity.py).
 *
 *   usage: tc_app DEV [ingress|egress]    (exit 0 after a clean run) */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "tc.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts);
	bool created = false;
	struct tc_bpf *skel;
	int err, status = 0;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "ingress") &&
				     strcmp(argv[2], "egress"))) {
		fprintf(stderr, "usage: tc_app DEV [ingress|egress]\n");
		return 1;
	}
	hook.ifindex = if_nametoindex(argv[1]);
	hook.attach_point = argc == 3 && !strcmp(argv[2], "egress") ? BPF_TC_EGRESS
								     : BPF_TC_INGRESS;
	if (!hook.ifindex) {
		fprintf(stderr, "tc_app: no device %s\n", argv[1]);
		return 1;
	}
	skel = tc_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "tc_app: open and load failed: %s\n", strerror(errno));
		return 3;
	}
	err = bpf_tc_hook_create(&hook);
	if (!err)
		created = true;
	if (err && err != -EEXIST) {
		fprintf(stderr, "tc_app: bpf_tc_hook_create: %s\n", strerror(-err));
		status = 4;
		goto out;
	}
	opts.prog_fd = bpf_program__fd(skel->progs.tc_ingress);
	err = bpf_tc_attach(&hook, &opts);
	if (err) {
		fprintf(stderr, "tc_app: bpf_tc_attach: %s\n", strerror(-err));
		status = 4;
		goto out;
	}
	fprintf(stderr, "tc_app: attached to %s (handle %#x, priority %u)\n", argv[1],
		opts.handle, opts.priority);
	while (!stop)
		pause();
	opts.flags = opts.prog_fd = opts.prog_id = 0;
	err = bpf_tc_detach(&hook, &opts);
	if (err) {
		fprintf(stderr, "tc_app: bpf_tc_detach: %s\n", strerror(-err));
		status = 4;
	}
out:
	if (created) {
		hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		bpf_tc_hook_destroy(&hook);
	}
	tc_bpf__destroy(skel);
	return status;
}
