// SPDX-License-Identifier: MIT
/* A skeleton user program for any BPF object, for `bpfreplay run --compare` tests: the
 * bpftool-generated skeleton of the object is included through SKEL_H and its
 * functions named through SKEL (the object's skeleton name, e.g. globals_bpf).
 * It opens, loads, attaches, waits DURATION seconds (default 0) and destroys, as the
 * reference minimal does, so that libbpf makes the calls a skeleton makes.
 *
 *   usage: X_skel [DURATION]   (exit 0 when the object loaded and attached) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include SKEL_H

#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)
#define FN(suffix) XCAT(SKEL, XCAT(__, suffix))

int main(int argc, char **argv)
{
	double duration = argc > 1 ? atof(argv[1]) : 0;
	struct SKEL *skel = FN(open)();
	int err;

	if (!skel) {
		fprintf(stderr, "skel_main: open failed\n");
		return 1;
	}
	err = FN(load)(skel);
	if (!err)
		err = FN(attach)(skel);
	if (err) {
		fprintf(stderr, "skel_main: load/attach failed: %d\n", err);
		FN(destroy)(skel);
		return 1;
	}
	if (duration > 0)
		usleep((useconds_t)(duration * 1e6));
	FN(destroy)(skel);
	return 0;
}
