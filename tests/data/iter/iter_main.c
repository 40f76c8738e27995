// SPDX-License-Identifier: MIT
/* The skeleton application for iterator objects, for `bpfreplay run --compare` tests:
 * the object's bpftool skeleton comes in through SKEL_H, its functions are named
 * through SKEL. It opens, loads and attaches the skeleton (auto-attach: no iterator
 * options), then, for each attached iterator program in the skeleton's order, makes
 * an iterator fd from its link (bpf_iter_create), copies what read() returns to
 * stdout until read() returns 0, closes that fd; at the end it destroys the skeleton.
 * That is the sequence of libbpf-bootstrap's task_iter application.
 *
 *   usage: X_iter          (exit 0 when every iterator was read to its end) */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include SKEL_H

#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)
#define FN(suffix) XCAT(SKEL, XCAT(__, suffix))

static int read_iterator(struct bpf_link *link)
{
	char buf[4096];
	ssize_t n;
	int fd = bpf_iter_create(bpf_link__fd(link));

	if (fd < 0) {
		fprintf(stderr, "iter_main: bpf_iter_create failed: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	if (n < 0)
		fprintf(stderr, "iter_main: read failed: %s\n", strerror(errno));
	close(fd);
	return n < 0;
}

int main(void)
{
	struct SKEL *skel = FN(open)();
	int err, i;

	if (!skel) {
		fprintf(stderr, "iter_main: open failed\n");
		return 1;
	}
	err = FN(load)(skel);
	if (!err)
		err = FN(attach)(skel);
	if (err) {
		fprintf(stderr, "iter_main: load/attach failed: %d\n", err);
		FN(destroy)(skel);
		return 1;
	}
	for (i = 0; i < skel->skeleton->prog_cnt && !err; i++) {
		struct bpf_prog_skeleton *p = &skel->skeleton->progs[i];

		if (*p->link && bpf_program__expected_attach_type(*p->prog) == BPF_TRACE_ITER)
			err = read_iterator(*p->link);
	}
	fflush(stdout);
	FN(destroy)(skel);
	return err;
}
