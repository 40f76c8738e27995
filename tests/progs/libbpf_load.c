// SPDX-License-Identifier: MIT
/* libbpf_load: open and load an eBPF object with the system libbpf, for bpfreplay's
 * loader tests to record and compare against.
 *
 *   libbpf_load OBJ [--name NAME] [--attach] [--duration SECONDS]
 *
 * --name sets bpf_object_open_opts.object_name (what a bpftool skeleton passes);
 * --attach attaches every program libbpf can auto-attach; --duration sleeps before
 * tearing everything down. Exits 0 when the object loaded, 1 otherwise, with
 * libbpf's own messages on stderr. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>

static int print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !getenv("LIBBPF_LOAD_DEBUG"))
		return 0;
	return vfprintf(stderr, fmt, args);
}

int main(int argc, char **argv)
{
	const char *path = NULL, *name = NULL;
	struct bpf_program *prog;
	struct bpf_object *obj;
	double duration = 0;
	int attach = 0, i, err;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--name") && i + 1 < argc)
			name = argv[++i];
		else if (!strcmp(argv[i], "--attach"))
			attach = 1;
		else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
			duration = atof(argv[++i]);
		else if (!path && argv[i][0] != '-')
			path = argv[i];
		else {
			fprintf(stderr, "usage: %s OBJ [--name NAME] [--attach] [--duration S]\n",
				argv[0]);
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "usage: %s OBJ [--name NAME] [--attach] [--duration S]\n", argv[0]);
		return 2;
	}
	libbpf_set_print(print);

	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name);
	obj = bpf_object__open_file(path, &opts);
	if (!obj) {
		fprintf(stderr, "libbpf_load: opening %s: %s\n", path, strerror(errno));
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "libbpf_load: loading %s: %s\n", path, strerror(-err));
		bpf_object__close(obj);
		return 1;
	}
	if (attach) {
		bpf_object__for_each_program(prog, obj) {
			if (!bpf_program__autoload(prog))
				continue;
			/* links stay until the object is closed; failures are reported only */
			if (!bpf_program__attach(prog))
				fprintf(stderr, "libbpf_load: attaching %s: %s\n",
					bpf_program__name(prog), strerror(errno));
		}
	}
	if (duration > 0)
		usleep((useconds_t)(duration * 1e6));
	bpf_object__close(obj);
	return 0;
}
