// SPDX-License-Identifier: MIT
/* profile_app: the application of the corpus's profile object, doing what
 * libbpf-bootstrap's profile application does with it: the skeleton opened and loaded
 * (no skeleton attach: libbpf never attaches SEC("perf_event")), then for every online
 * CPU (of the possible ones, in order) a sampling perf event (pid -1, that CPU, no group,
 * PERF_FLAG_FD_CLOEXEC; attr.freq = 1, attr.sample_freq = FREQ) of the software
 * cpu-clock (this machine has no hardware PMU; upstream tries cpu-cycles first) and
 * bpf_program__attach_perf_event() of the program to it; then it waits for SIGINT or
 * SIGTERM, destroys the links (which close the events) and the skeleton. The ring buffer
 * upstream's application reads is left alone. `bpfreplay run profile.bpf.o --perf-event
 * cpu-clock:FREQ` is its counterpart (tests/test_runtime_parity.py).
 *
 *   usage: profile_app [FREQ]    (default 50; exit 0 after a clean run) */
#include <errno.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "profile.skel.h"

#define MAX_CPUS 1024

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* which CPUs /sys/devices/system/cpu/online lists ("0-3,5") */
static int online_cpus(bool *online)
{
	FILE *f = fopen("/sys/devices/system/cpu/online", "r");
	int first, last;
	char sep;

	if (!f)
		return -1;
	while (fscanf(f, "%d", &first) == 1) {
		last = first;
		if (fscanf(f, "%c", &sep) == 1 && sep == '-') {
			if (fscanf(f, "%d", &last) != 1)
				break;
			if (fscanf(f, "%c", &sep) != 1)
				sep = '\n';
		}
		for (int cpu = first; cpu <= last && cpu < MAX_CPUS; cpu++)
			online[cpu] = true;
		if (sep != ',')
			break;
	}
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	static struct bpf_link *links[MAX_CPUS];
	static bool online[MAX_CPUS];
	struct perf_event_attr attr;
	struct profile_bpf *skel;
	int ncpus, status = 0;
	long freq = argc > 1 ? strtol(argv[1], NULL, 0) : 50;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	ncpus = libbpf_num_possible_cpus();
	if (argc > 2 || freq <= 0 || ncpus <= 0 || online_cpus(online)) {
		fprintf(stderr, "usage: profile_app [FREQ]\n");
		return 1;
	}
	skel = profile_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "profile_app: open and load failed: %s\n", strerror(errno));
		return 3;
	}
	memset(&attr, 0, sizeof(attr));
	attr.type = PERF_TYPE_SOFTWARE;
	attr.size = sizeof(attr);
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.sample_freq = freq;
	attr.freq = 1;
	for (int cpu = 0; cpu < ncpus && cpu < MAX_CPUS && !status; cpu++) {
		int pfd;

		if (!online[cpu])
			continue;
		pfd = syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (pfd < 0) {
			fprintf(stderr, "profile_app: perf_event_open on CPU %d: %s\n", cpu,
				strerror(errno));
			status = 4;
			break;
		}
		links[cpu] = bpf_program__attach_perf_event(skel->progs.on_sample, pfd);
		if (!links[cpu]) {
			fprintf(stderr, "profile_app: attach on CPU %d: %s\n", cpu, strerror(errno));
			close(pfd);
			status = 4;
		}
	}
	if (!status) {
		fprintf(stderr, "profile_app: sampling cpu-clock at %ld Hz\n", freq);
		while (!stop)
			pause();
	}
	for (int cpu = 0; cpu < MAX_CPUS; cpu++)
		bpf_link__destroy(links[cpu]);
	profile_bpf__destroy(skel);
	return status;
}
