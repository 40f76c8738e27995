/* LINK_CREATE of kind kprobe_multi, once with symbol names (a char ** array), once
 * with addresses, both with cookies, then of kind uprobe_multi (path, offsets,
 * ref_ctr_offsets, cookies) for a pid that does not exist: what bpfreplay record must
 * follow at entry. The kernel refuses all three here (no CONFIG_KPROBES; ESRCH for the
 * uprobes, so that nothing is attached); the entries are what the tests read. The
 * uprobe_multi arrays are printed on stdout (strace 6.1 does not decode them).
 * Usage: kprobe_multi_syms [--bad] SYM... (at least one); --bad makes the second
 * element of syms an unreadable pointer (0x1). Exit 0 whatever the kernel says. */
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr, unsigned int size)
{
	return syscall(__NR_bpf, cmd, attr, size);
}

/* r0 = 0; exit: a kprobe program for the multi-kprobe attach type. */
static int load_prog(int attach_type)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_KPROBE;
	attr.expected_attach_type = attach_type;
	attr.insns = (uint64_t)(uintptr_t)insns;
	attr.insn_cnt = 2;
	attr.license = (uint64_t)(uintptr_t)"GPL";
	return sys_bpf(BPF_PROG_LOAD, &attr, sizeof(attr));
}

static void link_create(int prog_fd, const char **syms, const uint64_t *addrs,
			const uint64_t *cookies, unsigned int cnt)
{
	union bpf_attr attr;
	long ret;

	memset(&attr, 0, sizeof(attr));
	attr.link_create.prog_fd = prog_fd;
	attr.link_create.attach_type = BPF_TRACE_KPROBE_MULTI;
	attr.link_create.kprobe_multi.cnt = cnt;
	attr.link_create.kprobe_multi.syms = (uint64_t)(uintptr_t)syms;
	attr.link_create.kprobe_multi.addrs = (uint64_t)(uintptr_t)addrs;
	attr.link_create.kprobe_multi.cookies = (uint64_t)(uintptr_t)cookies;
	ret = sys_bpf(BPF_LINK_CREATE, &attr, sizeof(attr));
	if (ret >= 0)
		close(ret);
	else
		perror("BPF_LINK_CREATE kprobe_multi");
}

#define UPROBES 3
#define NO_SUCH_PID 0x7ffffff0
/* Debian 12's <linux/bpf.h> (6.1) predates uprobe_multi (6.6): its attach type and
 * its member of link_create, at their uapi offsets in union bpf_attr. */
#define TRACE_UPROBE_MULTI 48
#define UPROBE_MULTI_PATH 16
#define UPROBE_MULTI_OFFSETS 24
#define UPROBE_MULTI_REF_CTR_OFFSETS 32
#define UPROBE_MULTI_COOKIES 40
#define UPROBE_MULTI_CNT 48
#define UPROBE_MULTI_PID 56

static void put_u64(union bpf_attr *attr, size_t offset, uint64_t value)
{
	memcpy((char *)attr + offset, &value, sizeof(value));
}

static void put_u32(union bpf_attr *attr, size_t offset, uint32_t value)
{
	memcpy((char *)attr + offset, &value, sizeof(value));
}

static void uprobe_multi(void)
{
	uint64_t offsets[UPROBES], ref_ctr_offsets[UPROBES], cookies[UPROBES];
	union bpf_attr attr;
	unsigned int i;
	long ret;
	int prog_fd = load_prog(TRACE_UPROBE_MULTI);

	for (i = 0; i < UPROBES; i++) {
		offsets[i] = 0x1000 + 0x40 * i;
		ref_ctr_offsets[i] = 0x3000 + 2 * i;
		cookies[i] = 0xc0de0000 + i;
	}
	memset(&attr, 0, sizeof(attr));
	attr.link_create.prog_fd = prog_fd;
	attr.link_create.attach_type = TRACE_UPROBE_MULTI;
	put_u64(&attr, UPROBE_MULTI_PATH, (uint64_t)(uintptr_t)"/proc/self/exe");
	put_u64(&attr, UPROBE_MULTI_OFFSETS, (uint64_t)(uintptr_t)offsets);
	put_u64(&attr, UPROBE_MULTI_REF_CTR_OFFSETS, (uint64_t)(uintptr_t)ref_ctr_offsets);
	put_u64(&attr, UPROBE_MULTI_COOKIES, (uint64_t)(uintptr_t)cookies);
	put_u32(&attr, UPROBE_MULTI_CNT, UPROBES);
	put_u32(&attr, UPROBE_MULTI_PID, NO_SUCH_PID);
	ret = sys_bpf(BPF_LINK_CREATE, &attr, sizeof(attr));
	if (ret >= 0)
		close(ret);
	for (i = 0; i < UPROBES; i++)
		printf("uprobe %u offset=%#llx ref_ctr_offset=%#llx cookie=%#llx\n", i,
		       (unsigned long long)offsets[i], (unsigned long long)ref_ctr_offsets[i],
		       (unsigned long long)cookies[i]);
	if (prog_fd >= 0)
		close(prog_fd);
}

int main(int argc, char **argv)
{
	uint64_t cookies[64], addrs[64];
	const char *syms[64];
	unsigned int cnt, i;
	int prog_fd, bad = argc > 1 && strcmp(argv[1], "--bad") == 0;

	cnt = argc - 1 - bad;

	if (cnt < 1 || cnt > 64) {
		fprintf(stderr, "usage: %s SYM... (1 to 64)\n", argv[0]);
		return 2;
	}
	for (i = 0; i < cnt; i++) {
		cookies[i] = 0x100 + i;
		addrs[i] = 0xffffffff81000000ull + 0x10 * i;
		syms[i] = argv[1 + bad + i];
	}
	if (bad && cnt > 1)
		syms[1] = (const char *)1;
	prog_fd = load_prog(BPF_TRACE_KPROBE_MULTI);
	if (prog_fd < 0)
		perror("BPF_PROG_LOAD kprobe");
	link_create(prog_fd, syms, NULL, cookies, cnt);
	link_create(prog_fd, NULL, addrs, cookies, cnt);
	if (prog_fd >= 0)
		close(prog_fd);
	uprobe_multi();
	return 0;
}
