// SPDX-License-Identifier: MIT
/* sockfilter_app: the application of the corpus's sockfilter object, doing what
 * libbpf-bootstrap's sockfilter application does with it: the skeleton opened and
 * loaded (no skeleton attach: libbpf never attaches SEC("socket")), a raw AF_PACKET
 * socket (non-blocking, close-on-exec, ETH_P_ALL) bound to DEV, the program attached to
 * it with setsockopt(SOL_SOCKET, SO_ATTACH_BPF, &prog_fd); then it waits for SIGINT or
 * SIGTERM, closes the socket and destroys the skeleton. The ring buffer upstream's
 * application reads is left alone. `bpfreplay run sockfilter.bpf.o --socket DEV` is
 * its counterpart (tests/test_runtime_parity.py).
 *
 *   usage: sockfilter_app DEV    (exit 0 after a clean run) */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sockfilter.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int open_raw_socket(const char *dev)
{
	struct sockaddr_ll where;
	int sock = socket(PF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));

	if (sock < 0)
		return -1;
	memset(&where, 0, sizeof(where));
	where.sll_family = AF_PACKET;
	where.sll_ifindex = if_nametoindex(dev);
	where.sll_protocol = htons(ETH_P_ALL);
	if (!where.sll_ifindex || bind(sock, (struct sockaddr *)&where, sizeof(where))) {
		close(sock);
		return -1;
	}
	return sock;
}

int main(int argc, char **argv)
{
	struct sockfilter_bpf *skel;
	int sock, prog_fd, status = 0;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (argc != 2) {
		fprintf(stderr, "usage: sockfilter_app DEV\n");
		return 1;
	}
	skel = sockfilter_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "sockfilter_app: open and load failed: %s\n", strerror(errno));
		return 3;
	}
	sock = open_raw_socket(argv[1]);
	if (sock < 0) {
		fprintf(stderr, "sockfilter_app: raw socket on %s: %s\n", argv[1], strerror(errno));
		status = 4;
		goto out;
	}
	prog_fd = bpf_program__fd(skel->progs.count_packets);
	if (setsockopt(sock, SOL_SOCKET, SO_ATTACH_BPF, &prog_fd, sizeof(prog_fd))) {
		fprintf(stderr, "sockfilter_app: SO_ATTACH_BPF: %s\n", strerror(errno));
		status = 4;
	} else {
		fprintf(stderr, "sockfilter_app: attached to a raw socket on %s\n", argv[1]);
		while (!stop)
			pause();
	}
	close(sock);
out:
	sockfilter_bpf__destroy(skel);
	return status;
}
