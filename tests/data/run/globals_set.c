// SPDX-License-Identifier: MIT
/* The reference of globals_set.bpf.o: sets some of its globals through the bpftool
 * skeleton (one in each data section), loads, attaches, waits DURATION seconds
 * (default 0) and destroys.   usage: globals_set [DURATION] */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "globals_set.skel.h"

int main(int argc, char **argv)
{
	double duration = argc > 1 ? atof(argv[1]) : 0;
	struct globals_set_bpf *skel = globals_set_bpf__open();
	int err;

	if (!skel)
		return 1;
	skel->data->counter = 5;
	skel->bss->my_pid = getpid();
	skel->rodata->threshold = 9;
	skel->data_custom->custom = 43;
	memcpy((char *)skel->rodata_tag->tag, "xyz", 4);
	err = globals_set_bpf__load(skel);
	if (!err)
		err = globals_set_bpf__attach(skel);
	if (err)
		fprintf(stderr, "globals_set: load/attach failed: %d\n", err);
	else if (duration > 0)
		usleep((useconds_t)(duration * 1e6));
	globals_set_bpf__destroy(skel);
	return err ? 1 : 0;
}
