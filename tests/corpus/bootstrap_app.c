// SPDX-License-Identifier: MIT
/* bootstrap_app: the application of the corpus's bootstrap object, doing what
 * libbpf-bootstrap's bootstrap application does with it: the skeleton opened, its
 * .rodata min_duration_ns set (-d MS, default 0), loaded and attached; a ring buffer
 * manager on the "rb" map (ring_buffer__new() with a callback printing each exec/exit
 * event, no options), ring_buffer__poll() every 100 ms until SIGINT or SIGTERM; then
 * ring_buffer__free() and the skeleton destroyed. `bpfreplay run bootstrap.bpf.o
 * --event 'struct event' --header bootstrap.h` is its counterpart
 * (tests/test_runtime_parity.py).
 *
 *   usage: bootstrap_app [-d MIN_DURATION_MS]    (exit 0 after a clean run) */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "bootstrap.h"
#include "bootstrap.skel.h"

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

static int handle_event(void *ctx, void *data, size_t data_sz)
{
	const struct event *e = data;
	char ts[32];
	time_t t;

	(void)ctx;
	(void)data_sz;
	time(&t);
	strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&t));
	if (e->exit_event) {
		printf("%-8s %-5s %-16s %-7d %-7d [%u]", ts, "EXIT", e->comm, e->pid, e->ppid,
		       e->exit_code);
		if (e->duration_ns)
			printf(" (%llums)", e->duration_ns / 1000000);
		printf("\n");
	} else {
		printf("%-8s %-5s %-16s %-7d %-7d\n", ts, "EXEC", e->comm, e->pid, e->ppid);
	}
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct ring_buffer *rb = NULL;
	struct bootstrap_bpf *skel;
	long min_duration_ms = 0;
	int err;

	if (argc == 3 && !strcmp(argv[1], "-d")) {
		min_duration_ms = strtol(argv[2], NULL, 0);
	} else if (argc != 1) {
		fprintf(stderr, "usage: bootstrap_app [-d MIN_DURATION_MS]\n");
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	skel = bootstrap_bpf__open();
	if (!skel) {
		fprintf(stderr, "bootstrap_app: open failed: %s\n", strerror(errno));
		return 3;
	}
	skel->rodata->min_duration_ns = min_duration_ms * 1000000ULL;
	err = bootstrap_bpf__load(skel);
	if (err) {
		fprintf(stderr, "bootstrap_app: load failed: %s\n", strerror(-err));
		goto cleanup;
	}
	err = bootstrap_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "bootstrap_app: attach failed: %s\n", strerror(-err));
		goto cleanup;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.rb), handle_event, NULL, NULL);
	if (!rb) {
		err = -errno;
		fprintf(stderr, "bootstrap_app: ring_buffer__new: %s\n", strerror(errno));
		goto cleanup;
	}
	printf("%-8s %-5s %-16s %-7s %-7s %s\n", "TIME", "EVENT", "COMM", "PID", "PPID",
	       "EXIT CODE");
	fflush(stdout);
	while (!exiting) {
		err = ring_buffer__poll(rb, 100 /* timeout, ms */);
		if (err == -EINTR) {
			err = 0;
			break;
		}
		if (err < 0) {
			fprintf(stderr, "bootstrap_app: polling the ring buffer: %d\n", err);
			break;
		}
	}
cleanup:
	ring_buffer__free(rb);
	bootstrap_bpf__destroy(skel);
	return err < 0 ? -err : 0;
}
