/* Test program: creates an array map and makes N BPF_MAP_UPDATE_ELEM calls on it
 * (key i % max_entries, value i), to measure and test recording of many bpf() calls.
 * usage: bpf_heavy N */
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr, unsigned int size)
{
	return syscall(__NR_bpf, cmd, attr, size);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 8;
	attr.max_entries = 256;
	strcpy(attr.map_name, "bpf_heavy");
	int fd = sys_bpf(BPF_MAP_CREATE, &attr, 72);
	if (fd < 0) {
		perror("bpf_heavy: BPF_MAP_CREATE");
		return 1;
	}
	for (long i = 0; i < n; i++) {
		uint32_t key = i % 256;
		uint64_t value = i;

		memset(&attr, 0, sizeof(attr));
		attr.map_fd = fd;
		attr.key = (uint64_t)(uintptr_t)&key;
		attr.value = (uint64_t)(uintptr_t)&value;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32) < 0) {
			perror("bpf_heavy: BPF_MAP_UPDATE_ELEM");
			return 1;
		}
	}
	close(fd);
	return 0;
}
