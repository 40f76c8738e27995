/* Test program: one BPF_MAP_CREATE, then N write() calls of one byte to /dev/null:
 * recording it must cost little, since the seccomp filter lets write() through.
 * usage: write_heavy N */
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	int map = syscall(__NR_bpf, BPF_MAP_CREATE, &attr, 72);
	if (map < 0) {
		perror("write_heavy: BPF_MAP_CREATE");
		return 1;
	}
	int out = open("/dev/null", O_WRONLY);
	for (long i = 0; i < n; i++)
		if (write(out, "x", 1) != 1) {
			perror("write_heavy: write");
			return 1;
		}
	close(out);
	close(map);
	return 0;
}
