// SPDX-License-Identifier: MIT
/* The skeleton application for iterator objects, for `bpfreplay run --compare` tests:
 * the object's bpftool skeleton comes in through SKEL_H, its functions are named
 * through SKEL. It opens, loads and attaches the skeleton (auto-attach: no iterator
 * options), then, for each attached iterator program in the skeleton's order, makes
 * an iterator fd from its link (bpf_iter_create), copies what read() returns until
 * read() returns 0, closes that fd; at the end it destroys the skeleton. That is the
 * sequence of libbpf-bootstrap's task_iter application. What an iterator wrote goes
 * to stdout, or with DIR to the file DIR/<program name>.
 * With --by-hand it attaches the iterator programs itself instead of the skeleton
 * attach, as upstream's task_iter does: bpf_program__attach_iter() with a zeroed
 * union bpf_iter_link_info as link_info (an iterator option the skeleton never passes).
 *
 *   usage: X_iter [--by-hand] [DIR]    (exit 0 when every iterator was read to its end) */
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

/* Each iterator program attached with a zeroed link_info, its link kept in the
 * skeleton (destroy detaches it). */
static int attach_by_hand(struct bpf_object_skeleton *s)
{
	union bpf_iter_link_info linfo;
	LIBBPF_OPTS(bpf_iter_attach_opts, opts);
	int i;

	memset(&linfo, 0, sizeof(linfo));
	opts.link_info = &linfo;
	opts.link_info_len = sizeof(linfo);
	for (i = 0; i < s->prog_cnt; i++) {
		struct bpf_prog_skeleton *p = &s->progs[i];

		if (bpf_program__expected_attach_type(*p->prog) != BPF_TRACE_ITER)
			continue;
		*p->link = bpf_program__attach_iter(*p->prog, &opts);
		if (!*p->link)
			return -errno;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int by_hand = argc > 1 && !strcmp(argv[1], "--by-hand");
	const char *dir = argc > 1 + by_hand ? argv[1 + by_hand] : NULL;
	struct SKEL *skel = FN(open)();
	int err, i;

	if (!skel) {
		fprintf(stderr, "iter_main: open failed\n");
		return 1;
	}
	err = FN(load)(skel);
	if (!err)
		err = by_hand ? attach_by_hand(skel->skeleton) : FN(attach)(skel);
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
