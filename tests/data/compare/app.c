// SPDX-License-Identifier: MIT
/* The application of app.bpf.c: load and attach with the skeleton, then calls libbpf's
 * load and attach do not make (ring_buffer__new, perf_buffer__new, a map update from
 * main, setsockopt(SO_ATTACH_BPF), a perf event of its own with a program attached by
 * hand), poll once, write to trigger the tracepoint, destroy. With "hand-first", the
 * program is attached by hand to its perf event before the skeleton's attach: libbpf
 * then runs its perf-link probe for the application's attach, not for its own.
 *
 *   usage: app [SECONDS [hand-first]]   (exit 0 when everything worked) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "app.skel.h"

static int on_event(void *ctx, void *data, size_t size) { return 0; }
static void on_sample(void *ctx, int cpu, void *data, unsigned int size) {}

/* A software perf event of our own, on CPU 0, with on_tick attached to it by hand. */
static struct bpf_link *attach_tick(struct app_bpf *skel, int *pfd)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.sample_period = 1000000;
	*pfd = syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (*pfd < 0)
		return NULL;
	return bpf_program__attach_perf_event(skel->progs.on_tick, *pfd);
}

int main(int argc, char **argv)
{
	double duration = argc > 1 ? atof(argv[1]) : 0;
	int hand_first = argc > 2 && strcmp(argv[2], "hand-first") == 0;
	struct ring_buffer *rb = NULL;
	struct perf_buffer *pb = NULL;
	struct bpf_link *tick = NULL;
	struct app_bpf *skel;
	int key = 0, sock = -1, pfd = -1, err = 1;
	long value = 42;

	skel = app_bpf__open();
	if (!skel)
		return 1;
	skel->bss->my_pid = getpid();
	if (app_bpf__load(skel))
		goto out;
	if (hand_first && !(tick = attach_tick(skel, &pfd)))
		goto out;
	if (app_bpf__attach(skel))
		goto out;
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL, NULL);
	pb = perf_buffer__new(bpf_map__fd(skel->maps.perf_out), 1, on_sample, NULL, NULL, NULL);
	if (!rb || !pb)
		goto out;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.settings), &key, &value, BPF_ANY))
		goto out;
	sock = socket(AF_INET, SOCK_DGRAM, 0);
	int prog = bpf_program__fd(skel->progs.filter);
	if (sock < 0 || setsockopt(sock, SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof(prog)))
		goto out;
	if (!tick && !(tick = attach_tick(skel, &pfd)))
		goto out;
	if (write(1, "", 0) < 0)
		goto out;
	ring_buffer__poll(rb, 10);
	perf_buffer__poll(pb, 10);
	if (duration > 0)
		usleep((useconds_t)(duration * 1e6));
	err = 0;
out:
	bpf_link__destroy(tick);
	if (sock >= 0)
		close(sock);
	perf_buffer__free(pb);
	ring_buffer__free(rb);
	app_bpf__destroy(skel);
	return err;
}
