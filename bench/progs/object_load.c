// SPDX-License-Identifier: MIT
/* Benchmark helper: any BPF object through libbpf's generic API (no skeleton), as an
 * application loading a CO-RE object does: bpf_object__open_file, bpf_object__load,
 * bpf_program__attach of every program, bpf_object__close. Prints one line per round,
 * "open_ns load_ns attach_ns close_ns", and "attached" on stderr after the first
 * attach (the whole-process benchmark's marker). Built by bench/progs/Makefile. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <bpf/libbpf.h>

#define MAX_LINKS 64

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
	struct bpf_link *links[MAX_LINKS];
	struct bpf_program *prog;
	int rounds;

	if (argc < 2) {
		fprintf(stderr, "usage: %s OBJECT [ROUNDS]\n", argv[0]);
		return 2;
	}
	rounds = argc > 2 ? atoi(argv[2]) : 1;
	libbpf_set_print(quiet);
	for (int i = 0; i < rounds; i++) {
		int n = 0;
		long long t0 = now_ns();
		struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
		long long t1 = now_ns();

		if (!obj)
			return 1;
		if (bpf_object__load(obj))
			return 1;
		long long t2 = now_ns();
		bpf_object__for_each_program(prog, obj) {
			if (n == MAX_LINKS)
				break;
			links[n] = bpf_program__attach(prog);
			if (!links[n])
				return 1;
			n++;
		}
		long long t3 = now_ns();
		if (i == 0)
			fprintf(stderr, "attached\n");
		while (n--)
			bpf_link__destroy(links[n]);
		bpf_object__close(obj);
		long long t4 = now_ns();
		printf("%lld %lld %lld %lld\n", t1 - t0, t2 - t1, t3 - t2, t4 - t3);
	}
	return 0;
}
