/* SPDX-License-Identifier: MIT */
/* The record bootstrap.bpf.c writes to its ring buffer, shared with its application
 * (bootstrap_app.c) and read by `bpfreplay run --event 'struct event' --header` (the
 * type is not in the object's BTF: nothing in the object has it). */
#ifndef BOOTSTRAP_H
#define BOOTSTRAP_H

#define TASK_COMM_LEN 16

struct event {
	int pid;
	int ppid;
	unsigned exit_code;
	unsigned long long duration_ns;
	char comm[TASK_COMM_LEN];
	bool exit_event;
};

#endif
