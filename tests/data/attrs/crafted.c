/* Crafted bpf() and perf_event_open() calls for the attr decoder's differential test:
 * every command with a plausible attr (most fail with EBADF/EINVAL: the attr is what
 * is tested, not the result), short sizes that cut a field, non-zero bytes past the
 * known fields, unknown enum values, many flags, each member of link_create's union,
 * the 5-argument BPF_COMMON_ATTRS form, and perf events of every type with ioctls.
 *
 * Attrs are written byte by byte at the offsets include/uapi/linux/bpf.h gives; where
 * the installed (6.1) header has the field, a static assertion checks the offset.
 * Deterministic: two runs make the same calls with the same fds and sizes (pointers
 * differ). Everything it creates is closed at exit; nothing is pinned or attached. */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BADFD 1000
#define NO_IFINDEX 999999
#define CHECK(field, off) _Static_assert(offsetof(union bpf_attr, field) == (off), #field)

static unsigned char a[4096];
static char text[256];
static uint64_t keys[4], values[4], out_batch;
static unsigned char data_in[64], data_out[64];

static void clear(void) { memset(a, 0, sizeof(a)); }
static void p8(int off, uint8_t v) { a[off] = v; }
static void p16(int off, uint16_t v) { memcpy(a + off, &v, 2); }
static void p32(int off, uint32_t v) { memcpy(a + off, &v, 4); }
static void p64(int off, uint64_t v) { memcpy(a + off, &v, 8); }
static uint64_t ptr(const void *p) { return (uint64_t)(uintptr_t)p; }

static long bpf(long cmd, unsigned size)
{
	long ret = syscall(__NR_bpf, cmd, a, size);
	printf("bpf cmd=%ld size=%u ret=%ld errno=%d\n", cmd, size, ret, ret < 0 ? errno : 0);
	return ret;
}

/* map_create */
CHECK(map_type, 0); CHECK(map_flags, 16); CHECK(map_name, 28); CHECK(map_extra, 64);
static long map_create(uint32_t type, uint32_t key, uint32_t value, uint32_t max,
		       uint32_t flags, const char *name, unsigned size)
{
	clear();
	p32(0, type); p32(4, key); p32(8, value); p32(12, max); p32(16, flags);
	strncpy((char *)a + 28, name, 16);
	return bpf(BPF_MAP_CREATE, size);
}

/* map_elem */
CHECK(map_fd, 0); CHECK(key, 8); CHECK(value, 16); CHECK(flags, 24);
static void map_elem(int cmd, int fd, const void *key, const void *value, uint64_t flags,
		     unsigned size)
{
	clear();
	p32(0, fd); p64(8, ptr(key)); p64(16, ptr(value)); p64(24, flags);
	bpf(cmd, size);
}

/* prog_load */
CHECK(prog_type, 0); CHECK(insns, 8); CHECK(log_buf, 32); CHECK(kern_version, 40);
CHECK(prog_flags, 44); CHECK(prog_name, 48); CHECK(expected_attach_type, 68);
CHECK(attach_btf_id, 108); CHECK(attach_prog_fd, 112); CHECK(fd_array, 120);
static struct bpf_insn ret1[] = {
	{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 1 },
	{ .code = BPF_JMP | BPF_EXIT },
};
static char log_buf[4096];

static void prog_load_attr(uint32_t type, uint32_t flags, uint32_t expected, const char *name)
{
	clear();
	p32(0, type); p32(4, 2); p64(8, ptr(ret1)); p64(16, ptr("GPL"));
	p32(40, (6 << 16) | (1 << 8) | 0); /* KERNEL_VERSION(6, 1, 0) */
	p32(44, flags); strncpy((char *)a + 48, name, 16); p32(68, expected);
}

static unsigned char btf_blob[] = {
	0x9f, 0xeb, 1, 0, 24, 0, 0, 0,  0, 0, 0, 0, 16, 0, 0, 0,  16, 0, 0, 0, 5, 0, 0, 0,
	1, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 32, 0, 0, 0,  0, 'i', 'n', 't', 0,
};

static void link_create(int prog, int target, uint32_t attach, uint32_t flags)
{
	clear();
	p32(0, prog); p32(4, target); p32(8, attach); p32(12, flags);
}

static long perf_open(struct perf_event_attr *attr, int pid, int cpu, unsigned long flags)
{
	long fd = syscall(__NR_perf_event_open, attr, pid, cpu, -1, flags);
	printf("perf_event_open ret=%ld errno=%d\n", fd, fd < 0 ? errno : 0);
	return fd;
}

static long read_number(const char *path)
{
	FILE *f = fopen(path, "r");
	long value = -1;
	if (f) {
		if (fscanf(f, "%ld", &value) != 1)
			value = -1;
		fclose(f);
	}
	return value;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int cgroup = open("/sys/fs/cgroup/unified", O_RDONLY | O_DIRECTORY);
	if (cgroup < 0)
		cgroup = open("/sys/fs/cgroup", O_RDONLY | O_DIRECTORY);

	/* --- maps --- */
	long map = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 4, 0, "crafted_map", 72);
	long frozen = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_RDONLY_PROG, "crafted_ro", 96);
	/* size 18 cuts map_flags after two bytes: the kernel reads 0x0400 (BPF_F_MMAPABLE) */
	clear();
	p32(0, BPF_MAP_TYPE_ARRAY); p32(4, 4); p32(8, 4); p32(12, 1); p16(16, 0x0400);
	long cut_map = bpf(BPF_MAP_CREATE, 18);
	/* unknown type, every flag, a NUMA node, the newer fields */
	map_create(200, 4, 4, 1, 0xfffff, "crafted_bad", 96);
	p32(24, 0xffffffff); p64(64, 0x10000); p32(72, BADFD); p32(76, BADFD);
	p64(80, ptr(text)); p32(88, 32);
	bpf(BPF_MAP_CREATE, 96);
	/* non-zero past sizeof(union bpf_attr): E2BIG */
	map_create(BPF_MAP_TYPE_HASH, 4, 4, 1, BPF_F_NO_PREALLOC, "crafted_e2big", 208);
	p8(200, 0x5a); p8(203, 0xa5);
	bpf(BPF_MAP_CREATE, 208);

	uint32_t key = 1, next_key;
	uint64_t value = 42;
	map_elem(BPF_MAP_UPDATE_ELEM, map, &key, &value, BPF_ANY, 32);
	map_elem(BPF_MAP_UPDATE_ELEM, map, &key, &value, BPF_EXIST, 32);
	map_elem(BPF_MAP_UPDATE_ELEM, map, &key, &value, BPF_NOEXIST | BPF_F_LOCK, 32);
	map_elem(BPF_MAP_LOOKUP_ELEM, map, &key, &value, 0, 32);
	map_elem(BPF_MAP_LOOKUP_ELEM, map, &key, &value, BPF_F_LOCK, 32);
	map_elem(BPF_MAP_DELETE_ELEM, map, &key, NULL, 0, 16);
	map_elem(BPF_MAP_GET_NEXT_KEY, map, NULL, &next_key, 0, 24);
	map_elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, map, &key, &value, 0, 32);
	map_elem(BPF_MAP_FREEZE, frozen, NULL, NULL, 0, 4);
	/* FREEZE reads map_fd only: key and flags are bytes it must not see */
	map_elem(BPF_MAP_FREEZE, frozen, (void *)0x1122, NULL, 5, 32);

	/* batches */
	keys[0] = 0; keys[1] = 1; values[0] = 7; values[1] = 8;
	clear();
	p64(0, 0); p64(8, ptr(&out_batch)); p64(16, ptr(keys)); p64(24, ptr(values));
	p32(32, 2); p32(36, map); p64(40, 0); p64(48, 0);
	bpf(BPF_MAP_LOOKUP_BATCH, 56);
	p32(32, 2);
	bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, 56);
	p32(32, 2); p64(40, BPF_NOEXIST);
	bpf(BPF_MAP_UPDATE_BATCH, 56);
	p32(32, 2); p64(40, BPF_F_LOCK); p64(48, 3);
	bpf(BPF_MAP_DELETE_BATCH, 56);

	/* --- programs --- */
	prog_load_attr(BPF_PROG_TYPE_SOCKET_FILTER, 0, 0, "crafted_prog");
	p32(24, 1); p32(28, sizeof(log_buf)); p64(32, ptr(log_buf));
	long prog = bpf(BPF_PROG_LOAD, 168);
	/* cgroup_skb's expected_attach_type 0 really is BPF_CGROUP_INET_INGRESS */
	prog_load_attr(BPF_PROG_TYPE_CGROUP_SKB, 0, BPF_CGROUP_INET_INGRESS, "crafted_skb");
	long skb = bpf(BPF_PROG_LOAD, 128);
	/* unknown type, every prog flag, unknown attach type, a token fd */
	prog_load_attr(300, 0x100ff, 99, "crafted_bad");
	p32(64, NO_IFINDEX); p32(72, BADFD); p32(108, 77); p32(112, BADFD); p32(144, BADFD);
	bpf(BPF_PROG_LOAD, 168);
	/* a tracing program naming a module's BTF object in attach_btf_obj_fd */
	prog_load_attr(BPF_PROG_TYPE_TRACING, BPF_F_SLEEPABLE, BPF_TRACE_FENTRY, "crafted_fentry");
	p32(108, 1234); p32(112, BADFD);
	bpf(BPF_PROG_LOAD, 128);
	/* size 50 cuts prog_name after two characters */
	prog_load_attr(BPF_PROG_TYPE_SOCKET_FILTER, 0, 0, "cut_name");
	bpf(BPF_PROG_LOAD, 50);
	/* non-zero bytes past the last field the kernel knows: E2BIG */
	prog_load_attr(BPF_PROG_TYPE_SOCKET_FILTER, 0, 0, "crafted_e2big");
	p8(190, 0xee);
	bpf(BPF_PROG_LOAD, 200);
	/* the 5-argument form with a struct bpf_common_attr */
	prog_load_attr(BPF_PROG_TYPE_SOCKET_FILTER, 0, 0, "crafted_common");
	struct { uint64_t log_buf; uint32_t log_size, log_level, log_true_size, pad; } common = {
		ptr(log_buf), 256, 1, 0, 0 };
	long ret = syscall(__NR_bpf, BPF_PROG_LOAD | (1 << 16), a, 128, &common, sizeof(common));
	printf("bpf cmd=common size=128 ret=%ld errno=%d\n", ret, ret < 0 ? errno : 0);
	printf("common log_buf=%#lx log_size=256 log_level=1 size=%zu\n",
	       (unsigned long)ptr(log_buf), sizeof(common));

	/* --- objects --- */
	clear();
	p64(0, ptr("/sys/fs/bpf/bpfreplay_crafted_never")); p32(8, BADFD);
	bpf(BPF_OBJ_PIN, 16);
	p32(12, 1 << 14 /* BPF_F_PATH_FD */); p32(16, (uint32_t)AT_FDCWD);
	bpf(BPF_OBJ_PIN, 20);
	clear();
	p64(0, ptr("/sys/fs/bpf/bpfreplay_crafted_never")); p32(12, BPF_F_RDONLY);
	bpf(BPF_OBJ_GET, 16);

	/* --- attach --- */
	CHECK(target_fd, 0); CHECK(attach_bpf_fd, 4); CHECK(attach_type, 8);
	CHECK(attach_flags, 12); CHECK(replace_bpf_fd, 16);
	clear();
	p32(0, BADFD); p32(4, prog); p32(8, BPF_CGROUP_INET_EGRESS);
	p32(12, BPF_F_ALLOW_MULTI | BPF_F_REPLACE); p32(16, BADFD);
	bpf(BPF_PROG_ATTACH, 20);
	clear(); /* tcx: an ifindex, relative to a program id */
	p32(0, NO_IFINDEX); p32(4, prog); p32(8, 46 /* BPF_TCX_INGRESS */);
	p32(12, (1 << 3) | (1 << 5) /* BPF_F_BEFORE | BPF_F_ID */); p32(20, 7); p64(24, 3);
	bpf(BPF_PROG_ATTACH, 32);
	clear();
	p32(0, BADFD); p32(8, BPF_CGROUP_INET_INGRESS);
	bpf(BPF_PROG_DETACH, 12);
	p32(4, prog); p32(12, BPF_F_ALLOW_OVERRIDE);
	bpf(BPF_PROG_DETACH, 32);

	/* --- test run --- */
	clear();
	p32(0, prog); p32(8, sizeof(data_in)); p32(12, sizeof(data_out));
	p64(16, ptr(data_in)); p64(24, ptr(data_out)); p32(32, 1);
	bpf(BPF_PROG_TEST_RUN, 80);
	p32(64, 0x7 /* ON_CPU | XDP_LIVE_FRAMES | SKB_CHECKSUM_COMPLETE */); p32(68, 1);
	p32(72, 16);
	bpf(BPF_PROG_TEST_RUN, 80);

	/* --- ids --- */
	clear();
	bpf(BPF_PROG_GET_NEXT_ID, 12);
	bpf(BPF_MAP_GET_NEXT_ID, 12);
	bpf(BPF_BTF_GET_NEXT_ID, 12);
	bpf(BPF_LINK_GET_NEXT_ID, 12);
	clear();
	p32(0, 0x7fffffff); p32(8, BPF_F_RDONLY);
	bpf(BPF_PROG_GET_FD_BY_ID, 12);
	bpf(BPF_MAP_GET_FD_BY_ID, 12);
	p32(8, 0);
	bpf(BPF_BTF_GET_FD_BY_ID, 4);
	bpf(BPF_LINK_GET_FD_BY_ID, 4);
	p32(8, 1 << 16 /* BPF_F_TOKEN_FD */); p32(12, BADFD);
	bpf(BPF_MAP_GET_FD_BY_ID, 16);

	/* --- info, query --- */
	static unsigned char info[80];
	clear();
	p32(0, map); p32(4, sizeof(info)); p64(8, ptr(info));
	bpf(BPF_OBJ_GET_INFO_BY_FD, 16);
	static uint32_t prog_ids[4];
	clear();
	p32(0, cgroup); p32(4, BPF_CGROUP_INET_INGRESS); p32(8, BPF_F_QUERY_EFFECTIVE);
	p64(16, ptr(prog_ids)); p32(24, 4);
	bpf(BPF_PROG_QUERY, 28);
	clear(); /* tcx query: target_ifindex and count */
	p32(0, NO_IFINDEX); p32(4, 47 /* BPF_TCX_EGRESS */); p32(24, 4);
	bpf(BPF_PROG_QUERY, 64);

	/* --- raw tracepoint, BTF, task_fd_query --- */
	clear();
	p64(0, ptr("sched_switch")); p32(8, prog);
	bpf(BPF_RAW_TRACEPOINT_OPEN, 16);
	p64(16, 0x1234);
	bpf(BPF_RAW_TRACEPOINT_OPEN, 24);
	clear();
	p64(0, ptr(btf_blob)); p64(8, ptr(log_buf)); p32(16, sizeof(btf_blob));
	p32(20, sizeof(log_buf)); p32(24, 1);
	long btf = bpf(BPF_BTF_LOAD, 40);
	p32(32, 1 << 16 /* BPF_F_TOKEN_FD */); p32(36, BADFD);
	bpf(BPF_BTF_LOAD, 40);
	clear();
	p32(0, 1); p32(4, BADFD); p32(12, sizeof(text)); p64(16, ptr(text));
	bpf(BPF_TASK_FD_QUERY, 48);

	/* --- links: every member of the inner union --- */
	static const char *syms[] = { "vfs_read", "vfs_write" };
	static uint64_t cookies[2] = { 1, 2 };
	static uint64_t offsets[1] = { 0x1000 };
	static uint32_t iter_map[1];
	iter_map[0] = map;
	link_create(prog, BADFD, BPF_PERF_EVENT, 0);
	p64(16, 0xdeadbeef);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, 0, BPF_TRACE_KPROBE_MULTI, 0);
	p32(16, 1 /* RETURN */); p32(20, 2); p64(24, ptr(syms)); p64(40, ptr(cookies));
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, 0, BPF_TRACE_ITER, 0);
	p64(16, ptr(iter_map)); p32(24, sizeof(iter_map));
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, 0, 48 /* BPF_TRACE_UPROBE_MULTI */, 0);
	p64(16, ptr("/bin/true")); p64(24, ptr(offsets)); p64(40, ptr(cookies));
	p32(48, 1); p32(52, 1 /* RETURN */); p32(56, 1);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, 0, BPF_TRACE_FENTRY, 0);
	p32(16, 1234); p64(24, 0x42);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, 0, 45 /* BPF_NETFILTER */, 0);
	p32(16, 2 /* NFPROTO_IPV4 */); p32(20, 1 /* NF_INET_LOCAL_IN */);
	p32(24, (uint32_t)-128); p32(28, 1 /* BPF_F_NETFILTER_IP_DEFRAG */);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, NO_IFINDEX, 46 /* BPF_TCX_INGRESS */, (1 << 3) | (1 << 5));
	p32(16, 5); p64(24, 3);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, NO_IFINDEX, 55 /* BPF_NETKIT_PEER */, 1 << 4 /* BPF_F_AFTER */);
	p32(16, BADFD);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, cgroup, BPF_CGROUP_INET_EGRESS, 1 << 3 /* BPF_F_BEFORE */);
	p32(16, BADFD);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, BADFD, 0, 0); /* freplace: attach type 0 and a target_btf_id */
	p32(16, 77);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, NO_IFINDEX, BPF_XDP, 1 << 1 /* XDP_FLAGS_SKB_MODE */);
	bpf(BPF_LINK_CREATE, 48);
	link_create(map, 0, 44 /* BPF_STRUCT_OPS */, 0);
	bpf(BPF_LINK_CREATE, 32);
	link_create(prog, BADFD, 200, 0); /* unknown attach type: the union is unknown */
	p64(16, 0x1122334455667788ULL);
	bpf(BPF_LINK_CREATE, 64);
	link_create(prog, BADFD, 59 /* BPF_TRACE_FENTRY_MULTI, newer */, 0);
	p64(16, ptr(cookies)); p32(32, 2);
	bpf(BPF_LINK_CREATE, 64);

	clear();
	p32(0, BADFD); p32(4, prog); p32(8, BPF_F_REPLACE); p32(12, skb);
	bpf(BPF_LINK_UPDATE, 16);
	clear();
	p32(0, BADFD);
	bpf(BPF_LINK_DETACH, 4);
	bpf(BPF_ITER_CREATE, 8);

	/* --- the newer commands --- */
	clear();
	long stats = bpf(BPF_ENABLE_STATS, 4); /* BPF_STATS_RUN_TIME, closed at once */
	if (stats >= 0)
		close(stats);
	clear();
	p32(0, prog); p32(4, map);
	bpf(BPF_PROG_BIND_MAP, 12);
	clear();
	p32(4, BADFD);
	bpf(36 /* BPF_TOKEN_CREATE */, 8);
	clear();
	p64(0, ptr(text)); p32(8, sizeof(text)); p32(12, 2 /* BPF_STREAM_STDERR */);
	p32(16, prog);
	bpf(37 /* BPF_PROG_STREAM_READ_BY_FD */, 20);
	clear();
	p32(0, map); p32(4, prog);
	bpf(38 /* BPF_PROG_ASSOC_STRUCT_OPS */, 12);
	bpf(39 /* no such command */, 8);

	/* --- perf events --- */
	struct perf_event_attr pe;
	memset(&pe, 0, sizeof(pe));
	pe.type = PERF_TYPE_SOFTWARE;
	pe.size = 136;
	pe.config = PERF_COUNT_SW_CPU_CLOCK;
	pe.freq = 1;
	pe.sample_freq = 99;
	pe.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CALLCHAIN;
	pe.read_format = PERF_FORMAT_ID;
	pe.disabled = 1;
	pe.exclude_kernel = 1;
	pe.wakeup_events = 1;
	long sw = perf_open(&pe, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (sw >= 0) {
		uint64_t period = 1000, id;
		ioctl(sw, PERF_EVENT_IOC_ENABLE, 0);
		ioctl(sw, PERF_EVENT_IOC_PERIOD, &period);
		ioctl(sw, PERF_EVENT_IOC_ID, &id);
		ioctl(sw, PERF_EVENT_IOC_RESET, 0);
		ioctl(sw, PERF_EVENT_IOC_REFRESH, 1);
		ioctl(sw, PERF_EVENT_IOC_SET_FILTER, "x");
		ioctl(sw, PERF_EVENT_IOC_SET_BPF, (int)prog);
		ioctl(sw, PERF_EVENT_IOC_PAUSE_OUTPUT, 1);
		ioctl(sw, PERF_EVENT_IOC_DISABLE, 0);
		ioctl(sw, PERF_EVENT_IOC_SET_OUTPUT, -1);
		clear(); /* task_fd_query of a perf event fd (of another process: fails) */
		p32(0, 1); p32(4, sw); p32(12, sizeof(text)); p64(16, ptr(text));
		bpf(BPF_TASK_FD_QUERY, 48);
	}
	long tp_id = read_number("/sys/kernel/tracing/events/syscalls/sys_enter_getpid/id");
	if (tp_id < 0)
		tp_id = read_number("/sys/kernel/debug/tracing/events/syscalls/sys_enter_getpid/id");
	memset(&pe, 0, sizeof(pe));
	pe.type = PERF_TYPE_TRACEPOINT;
	pe.size = 128;
	pe.config = tp_id;
	pe.sample_period = 1;
	pe.sample_type = PERF_SAMPLE_RAW;
	long tp = perf_open(&pe, -1, 0, PERF_FLAG_FD_CLOEXEC);
	if (tp >= 0) {
		link_create(prog, tp, BPF_PERF_EVENT, 0);
		bpf(BPF_LINK_CREATE, 48);
	}
	static volatile uint32_t watched;
	memset(&pe, 0, sizeof(pe));
	pe.type = PERF_TYPE_BREAKPOINT;
	pe.size = 112;
	pe.bp_type = HW_BREAKPOINT_W;
	pe.bp_addr = ptr((void *)&watched);
	pe.bp_len = HW_BREAKPOINT_LEN_4;
	pe.sample_period = 1;
	perf_open(&pe, 0, -1, PERF_FLAG_FD_CLOEXEC);
	memset(&pe, 0, sizeof(pe));
	pe.type = PERF_TYPE_HW_CACHE;
	pe.size = 128;
	pe.config = PERF_COUNT_HW_CACHE_L1D | (PERF_COUNT_HW_CACHE_OP_READ << 8) |
		    (PERF_COUNT_HW_CACHE_RESULT_MISS << 16);
	pe.exclude_hv = 1;
	pe.precise_ip = 2;
	perf_open(&pe, 0, -1, 0);
	memset(&pe, 0, sizeof(pe));
	pe.type = PERF_TYPE_HARDWARE;
	pe.size = 128;
	pe.config = PERF_COUNT_HW_CPU_CYCLES | (4ULL << 32);
	pe.inherit = 1;
	pe.pinned = 1;
	perf_open(&pe, -1, 0, PERF_FLAG_FD_NO_GROUP);
	long uprobe_type = read_number("/sys/bus/event_source/devices/uprobe/type");
	memset(&pe, 0, sizeof(pe));
	pe.type = uprobe_type;
	pe.size = 128;
	pe.config = 1; /* retprobe */
	pe.config1 = ptr("/bin/true");
	pe.config2 = 0x1000;
	long up = perf_open(&pe, -1, 0, PERF_FLAG_FD_CLOEXEC);
	if (up >= 0)
		close(up);
	/* size 0: the kernel reads PERF_ATTR_SIZE_VER0 bytes */
	memset(&pe, 0, sizeof(pe));
	pe.type = PERF_TYPE_SOFTWARE;
	pe.config = PERF_COUNT_SW_DUMMY;
	pe.use_clockid = 1;
	pe.clockid = 1; /* CLOCK_MONOTONIC: beyond VER0, not read */
	perf_open(&pe, 0, -1, PERF_FLAG_FD_CLOEXEC);
	/* many bits, a clock, a watermark, a branch sample type */
	memset(&pe, 0, sizeof(pe));
	pe.type = PERF_TYPE_SOFTWARE;
	pe.size = 128;
	pe.config = PERF_COUNT_SW_DUMMY;
	pe.sample_type = PERF_SAMPLE_BRANCH_STACK | PERF_SAMPLE_STACK_USER;
	pe.branch_sample_type = PERF_SAMPLE_BRANCH_ANY | PERF_SAMPLE_BRANCH_USER;
	pe.sample_stack_user = 4096;
	pe.watermark = 1;
	pe.wakeup_watermark = 4096;
	pe.use_clockid = 1;
	pe.clockid = 1;
	pe.mmap = 1; pe.comm = 1; pe.task = 1; pe.sample_id_all = 1; pe.mmap2 = 1;
	pe.context_switch = 1; pe.ksymbol = 1; pe.bpf_event = 1; pe.sigtrap = 1;
	pe.remove_on_exec = 1;
	pe.sig_data = 0xabcdef;
	perf_open(&pe, 0, -1, PERF_FLAG_FD_CLOEXEC);
	/* non-zero past the last field the kernel knows: E2BIG */
	static unsigned char big[256];
	memcpy(big, &pe, sizeof(pe));
	((struct perf_event_attr *)big)->size = 200;
	big[190] = 0x77;
	perf_open((struct perf_event_attr *)big, 0, -1, PERF_FLAG_FD_CLOEXEC);

	(void)cut_map; (void)btf;
	return 0;
}
