// SPDX-License-Identifier: MIT
/* pin_load: open an eBPF object with the system libbpf, its pinned maps under the
 * directory given on the command line (bpf_object_open_opts.pin_root_path), load it,
 * optionally attach its programs, and close it, for bpfreplay's pinning tests.
 *
 *   pin_load OBJ PIN_ROOT [--attach] [--duration SECONDS]
 *
 * Exits 0 when the object loaded (and attached), 1 otherwise, with libbpf's messages
 * on stderr (its debug messages too when PIN_LOAD_DEBUG is set). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>

static int print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !getenv("PIN_LOAD_DEBUG"))
		return 0;
	return vfprintf(stderr, fmt, args);
}

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s OBJ PIN_ROOT [--attach] [--duration S]\n", argv0);
	return 2;
}

int main(int argc, char **argv)
{
	struct bpf_program *prog;
	struct bpf_object *obj;
	double duration = 0;
	int attach = 0, i, err;

	if (argc < 3)
		return usage(argv[0]);
	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--attach"))
			attach = 1;
		else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
			duration = atof(argv[++i]);
		else
			return usage(argv[0]);
	}
	libbpf_set_print(print);

	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = argv[2]);
	obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) {
		fprintf(stderr, "pin_load: opening %s failed\n", argv[1]);
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "pin_load: loading %s: %s\n", argv[1], strerror(-err));
		bpf_object__close(obj);
		return 1;
	}
	if (attach) {
		bpf_object__for_each_program(prog, obj) {
			if (!bpf_program__attach(prog)) {
				fprintf(stderr, "pin_load: attaching %s failed\n",
					bpf_program__name(prog));
				bpf_object__close(obj);
				return 1;
			}
		}
	}
	if (duration > 0)
		usleep((useconds_t)(duration * 1e6));
	bpf_object__close(obj);
	return 0;
}
