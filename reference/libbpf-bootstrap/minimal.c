// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bpfreplay's reference: the user half of libbpf-bootstrap's "minimal" example,
 * written for this project. It opens the skeleton, stores its pid in the BPF
 * program's .bss, loads and attaches, then writes a dot to stderr every second
 * (each write() fires the program) until DURATION seconds have passed (if given)
 * or SIGINT/SIGTERM arrives, and tears everything down.
 *
 * usage: minimal [DURATION]
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "minimal.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int print_libbpf(enum libbpf_print_level level, const char *format, va_list args)
{
	if (level == LIBBPF_DEBUG && !getenv("MINIMAL_DEBUG"))
		return 0;
	return vfprintf(stderr, format, args);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double duration = argc > 1 ? atof(argv[1]) : -1, start, left;
	struct minimal_bpf *skel;
	struct sigaction sa = { .sa_handler = on_signal };
	int err;

	libbpf_set_print(print_libbpf);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	skel = minimal_bpf__open();
	if (!skel) {
		fprintf(stderr, "minimal: opening the BPF skeleton failed\n");
		return 1;
	}
	/* Only this process's writes should trigger the program. */
	skel->bss->my_pid = getpid();

	err = minimal_bpf__load(skel);
	if (err) {
		fprintf(stderr, "minimal: loading the BPF object failed: %d\n", err);
		goto out;
	}
	err = minimal_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "minimal: attaching the BPF program failed: %d\n", err);
		goto out;
	}
	fprintf(stderr, "minimal: attached; see the output with "
		"'cat /sys/kernel/debug/tracing/trace_pipe'\n");

	start = now();
	while (!stop) {
		left = duration < 0 ? 1 : duration - (now() - start);
		if (left <= 0)
			break;
		fprintf(stderr, ".");
		struct timespec ts = { .tv_sec = left >= 1 ? 1 : 0,
				       .tv_nsec = left >= 1 ? 0 : (long)(left * 1e9) };
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "\n");
out:
	minimal_bpf__destroy(skel);
	return err ? 1 : 0;
}
