/* Loads a program the verifier rejects, with a log, and prints the log it got back:
 * the recorder must capture the same text as the program saw. Then makes the
 * 5-argument bpf() call with BPF_COMMON_ATTRS (newer kernels) and prints its result. */
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>

struct common_attr { uint64_t log_buf; uint32_t log_size, log_level, log_true_size; };

int main(void)
{
	/* r0 = *(u64 *)(r1 + 0); exit -- r0 from ctx of a socket filter is fine, but
	 * reading r2 (uninitialised) is not. */
	struct bpf_insn insns[] = {
		{ .code = BPF_LDX | BPF_MEM | BPF_DW, .dst_reg = 0, .src_reg = 2, .off = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	static char log[65536];
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insn_cnt = 2;
	attr.insns = (uint64_t)(uintptr_t)insns;
	attr.license = (uint64_t)(uintptr_t)"GPL";
	attr.log_level = 1;
	attr.log_size = sizeof(log);
	attr.log_buf = (uint64_t)(uintptr_t)log;
	int fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, 128);
	printf("ret=%d errno=%d\n", fd, fd < 0 ? errno : 0);
	fputs(log, stdout);
	printf("--- end of log\n");

	struct common_attr common = { .log_buf = (uint64_t)(uintptr_t)log, .log_size = 128,
				      .log_level = 1 };
	memset(log, 0, sizeof(log));
	fd = syscall(__NR_bpf, BPF_PROG_LOAD | (1 << 16), &attr, 128, &common, sizeof(common));
	printf("common ret=%d errno=%d\n", fd, fd < 0 ? errno : 0);
	return 0;
}
