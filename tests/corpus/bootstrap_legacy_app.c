// SPDX-License-Identifier: MIT
/* bootstrap_legacy_app: the application of the corpus's bootstrap_legacy object, doing
 * what libbpf-bootstrap's bootstrap application does, with the perf buffer its legacy
 * variant reads instead of a ring buffer: the skeleton opened, loaded and attached; a
 * perf buffer on the "pb" map (perf_buffer__new() with 8 pages per CPU, a sample
 * callback printing each exec event and a lost-samples callback, no options),
 * perf_buffer__poll() every 100 ms until SIGINT or SIGTERM; then perf_buffer__free()
 * and the skeleton destroyed. `bpfreplay run bootstrap_legacy.bpf.o --event 'struct
 * event'` is its counterpart (tests/test_runtime_parity.py).
 *
 *   usage: bootstrap_legacy_app    (exit 0 after a clean run) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "bootstrap_legacy.h"
#include "bootstrap_legacy.skel.h"

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

static void handle_event(void *ctx, int cpu, void *data, __u32 data_sz)
{
	const struct event *e = data;
	char ts[32];
	time_t t;

	(void)ctx;
	(void)cpu;
	(void)data_sz;
	time(&t);
	strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&t));
	printf("%-8s %-5s %-16s %-7d %-7d\n", ts, "EXEC", e->comm, e->pid, e->ppid);
	fflush(stdout);
}

static void handle_lost_events(void *ctx, int cpu, __u64 lost_cnt)
{
	(void)ctx;
	fprintf(stderr, "lost %llu events on CPU #%d\n", (unsigned long long)lost_cnt, cpu);
}

int main(int argc, char **argv)
{
	struct perf_buffer *pb = NULL;
	struct bootstrap_legacy_bpf *skel;
	int err;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: bootstrap_legacy_app\n");
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	skel = bootstrap_legacy_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "bootstrap_legacy_app: open and load failed: %s\n", strerror(errno));
		return 3;
	}
	err = bootstrap_legacy_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "bootstrap_legacy_app: attach failed: %s\n", strerror(-err));
		goto cleanup;
	}
	pb = perf_buffer__new(bpf_map__fd(skel->maps.pb), 8 /* 32 KiB per CPU */, handle_event,
			      handle_lost_events, NULL, NULL);
	if (!pb) {
		err = -errno;
		fprintf(stderr, "bootstrap_legacy_app: perf_buffer__new: %s\n", strerror(errno));
		goto cleanup;
	}
	printf("%-8s %-5s %-16s %-7s %-7s\n", "TIME", "EVENT", "COMM", "PID", "PPID");
	fflush(stdout);
	while (!exiting) {
		err = perf_buffer__poll(pb, 100 /* timeout, ms */);
		if (err == -EINTR) {
			err = 0;
			break;
		}
		if (err < 0) {
			fprintf(stderr, "bootstrap_legacy_app: polling the perf buffer: %d\n", err);
			break;
		}
	}
cleanup:
	perf_buffer__free(pb);
	bootstrap_legacy_bpf__destroy(skel);
	return err < 0 ? -err : 0;
}
