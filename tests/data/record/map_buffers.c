/* Test program for the recorder's copies of map keys and values. One attr on the stack
 * is reused for every call, as loops do:
 *   1. 8 updates of a hash map, key and value on the stack next to the attr;
 *   2. 8 lookups of the same keys (the value is written by the kernel);
 *   3. 4 updates with key and value in static memory (another page);
 *   4. the map closed and made again with other sizes: the same fd number and the very
 *      same attr bytes, 4 updates of 8-byte keys and 24-byte values;
 *   5. an update with the value in a page of its own, then the page unmapped and the
 *      same attr passed again (the kernel answers EFAULT);
 *   6. the map closed with close_range() (no close() call to see) and made again with
 *      other sizes on the same fd: 2 updates through the same attr.
 * Prints nothing; exits 0 when every call did what it should. tests/test_record_capture.py
 * knows what each call passes. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr, unsigned int size)
{
	return syscall(__NR_bpf, cmd, attr, size);
}

static int create(unsigned int key_size, unsigned int value_size)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_HASH;
	attr.key_size = key_size;
	attr.value_size = value_size;
	attr.max_entries = 64;
	return sys_bpf(BPF_MAP_CREATE, &attr, 72);
}

static uint64_t static_key[2];
static uint64_t static_value[4];

int main(void)
{
	union bpf_attr attr;
	uint32_t key;
	uint64_t value;
	int fd = create(4, 8);

	if (fd < 0)
		return 1;
	memset(&attr, 0, sizeof(attr));
	attr.map_fd = fd;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)&value;
	for (int i = 0; i < 8; i++) {
		key = i;
		value = 1000 + i;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32))
			return 2;
	}
	for (int i = 0; i < 8; i++) {
		key = i;
		value = 0;
		if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr, 32) || value != 1000 + (uint64_t)i)
			return 3;
	}
	attr.key = (uintptr_t)static_key;
	attr.value = (uintptr_t)static_value;
	for (int i = 0; i < 4; i++) {
		static_key[0] = 100 + i;
		static_value[0] = 2000 + i;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32))
			return 4;
	}
	close(fd);
	if (create(8, 24) != fd)  /* the lowest free fd: the one just closed */
		return 5;
	for (int i = 0; i < 4; i++) {
		static_key[0] = 200 + i;
		static_value[0] = 3000 + i;
		static_value[1] = 4000 + i;
		static_value[2] = 5000 + i;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32))
			return 6;
	}
	uint64_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
	if (page == MAP_FAILED)
		return 7;
	attr.value = (uintptr_t)page;
	page[0] = 6000;
	page[1] = 6001;
	page[2] = 6002;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32))
		return 8;
	munmap(page, 4096);
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32) != -1 || errno != EFAULT)
		return 9;
	if (close_range(fd, fd, 0) || create(4, 16) != fd)
		return 10;
	attr.value = (uintptr_t)static_value;
	for (int i = 0; i < 2; i++) {
		static_key[0] = 400 + i;
		static_value[0] = 7000 + i;
		static_value[1] = 8000 + i;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32))
			return 11;
	}
	close(fd);
	return 0;
}
