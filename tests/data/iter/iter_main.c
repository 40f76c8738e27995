// SPDX-License-Identifier: MIT
/* The skeleton application for iterator objects, for `bpfreplay run --compare` tests:
 * the object's bpftool skeleton comes in through SKEL_H, its functions are named
 * through SKEL. It opens, loads and attaches the skeleton (auto-attach: no iterator
 * options), then, for each attached iterator program in the skeleton's order, makes
 * an iterator fd from its link (bpf_iter_create), copies what read() returns until
 * read() returns 0, closes that fd; at the end it destroys the skeleton. That is the
 * sequence of libbpf-bootstrap's task_iter application. What an iterator wrote goes
 * to stdout, or with DIR to the file DIR/<program name>.
 *
 *   usage: X_iter [DIR]    (exit 0 when every iterator was read to its end) */
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

static int read_iterator(struct bpf_link *link, FILE *out)
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
		fwrite(buf, 1, (size_t)n, out);
	}
	if (n < 0)
		fprintf(stderr, "iter_main: read failed: %s\n", strerror(errno));
	close(fd);
	return n < 0;
}

static FILE *output(const char *dir, const char *name)
{
	char path[4096];

	if (!dir)
		return stdout;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return fopen(path, "wb");
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : NULL;
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
		FILE *out;

		if (!*p->link || bpf_program__expected_attach_type(*p->prog) != BPF_TRACE_ITER)
			continue;
		out = output(dir, p->name);
		if (!out) {
			fprintf(stderr, "iter_main: opening the output of %s: %s\n", p->name,
				strerror(errno));
			err = 1;
			break;
		}
		err = read_iterator(*p->link, out);
		if (out != stdout)
			fclose(out);
	}
	fflush(stdout);
	FN(destroy)(skel);
	return err;
}
