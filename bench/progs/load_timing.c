// SPDX-License-Identifier: MIT
/* Benchmark helper: the reference minimal's skeleton, timed phase by phase in the
 * process (open, load, attach, destroy), N times; prints one line per round:
 * "open_ns load_ns attach_ns destroy_ns". Built by bench/progs/Makefile. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "minimal.skel.h"

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 1;

	libbpf_set_print(quiet);
	for (int i = 0; i < rounds; i++) {
		long long t0 = now_ns();
		struct minimal_bpf *skel = minimal_bpf__open();
		long long t1 = now_ns();

		if (!skel)
			return 1;
		skel->bss->my_pid = getpid();
		if (minimal_bpf__load(skel))
			return 1;
		long long t2 = now_ns();
		if (minimal_bpf__attach(skel))
			return 1;
		long long t3 = now_ns();
		minimal_bpf__destroy(skel);
		long long t4 = now_ns();
		printf("%lld %lld %lld %lld\n", t1 - t0, t2 - t1, t3 - t2, t4 - t3);
	}
	return 0;
}
