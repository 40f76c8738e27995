// SPDX-License-Identifier: MIT
/* task_iter_app: the application of the corpus's task_iter object, doing what
 * libbpf-bootstrap's task_iter application does with it: the skeleton opened and
 * loaded (no skeleton attach), the iterator program attached by hand with
 * bpf_program__attach_iter() and a zeroed union bpf_iter_link_info as its link_info
 * (pid 0: no filtering), one iterator fd made from the link (bpf_iter_create), read()
 * until it returns 0 (again on EAGAIN), that fd closed, the skeleton destroyed. The
 * object writes text lines (BPF_SEQ_PRINTF) where upstream's writes struct task_info
 * records, so each read asks for a page, as `bpfreplay run` does; what it read goes to
 * stdout. `bpfreplay run task_iter.bpf.o` is its counterpart
 * (tests/test_runtime_parity.py).
 *
 *   usage: task_iter_app    (exit 0 when the iterator was read to its end) */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "task_iter.skel.h"

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_iter_attach_opts, opts);
	union bpf_iter_link_info linfo;
	struct task_iter_bpf *skel;
	char buf[4096];
	int iter_fd, err = 0;
	ssize_t n;

	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: task_iter_app\n");
		return 1;
	}
	skel = task_iter_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "task_iter_app: open and load failed: %s\n", strerror(errno));
		return 3;
	}
	memset(&linfo, 0, sizeof(linfo));
	opts.link_info = &linfo;
	opts.link_info_len = sizeof(linfo);
	skel->links.list_tasks = bpf_program__attach_iter(skel->progs.list_tasks, &opts);
	if (!skel->links.list_tasks) {
		fprintf(stderr, "task_iter_app: attach failed: %s\n", strerror(errno));
		task_iter_bpf__destroy(skel);
		return 4;
	}
	iter_fd = bpf_iter_create(bpf_link__fd(skel->links.list_tasks));
	if (iter_fd < 0) {
		fprintf(stderr, "task_iter_app: bpf_iter_create failed: %s\n", strerror(errno));
		task_iter_bpf__destroy(skel);
		return 4;
	}
	for (;;) {
		n = read(iter_fd, buf, sizeof(buf));
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0) {
			fprintf(stderr, "task_iter_app: read failed: %s\n", strerror(errno));
			err = 5;
			break;
		}
		if (n == 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	fflush(stdout);
	close(iter_fd);
	task_iter_bpf__destroy(skel);
	return err;
}
