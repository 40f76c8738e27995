/* SPDX-License-Identifier: MIT */
/* The record bootstrap_legacy.bpf.c writes to its perf buffer, shared with its
 * application (bootstrap_legacy_app.c). */
#ifndef BOOTSTRAP_LEGACY_H
#define BOOTSTRAP_LEGACY_H

struct event {
	int pid;
	int ppid;
	char comm[16];
};

#endif
