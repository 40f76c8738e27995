// SPDX-License-Identifier: MIT
/* The USDT target of tests/test_usdt.py: probes from <sys/sdt.h> (systemtap-sdt-dev)
 * whose arguments come in each form libbpf's USDT manager reads: a constant ("-4@$42"),
 * a register (an expression's temporary, "-4@%eax"), memory addressed by %rbp (a local
 * at -O0, "-4@-20(%rbp)"), one probe at two call sites with the same argument spec and
 * one at a third site with another spec, and, in usdt_guarded.c, a probe with a
 * semaphore in .probes. Built at -O0 so that locals live on the stack.
 *
 *   usage: usdt_target [ROUNDS [wait]]   fires every probe ROUNDS times (default 1),
 *   with "wait" only once a line is read from stdin (its mappings exist before), then
 *   prints the semaphore's value (non-zero while a uprobe with ref_ctr_offset holds it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>

unsigned short guarded_semaphore_value(void);
void fire_guarded(int round);

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 1;
	int on_stack = 1000 + rounds;

	if (argc > 2 && strcmp(argv[2], "wait") == 0) {
		printf("usdt_target: waiting\n");
		fflush(stdout);
		getchar();
	}

	for (int i = 0; i < rounds; i++) {
		DTRACE_PROBE1(bpfreplay, constant, 42);
		DTRACE_PROBE1(bpfreplay, in_register, on_stack * 3);
		DTRACE_PROBE1(bpfreplay, in_memory, on_stack);
		DTRACE_PROBE2(bpfreplay, sites, i, 7);
		DTRACE_PROBE2(bpfreplay, sites, i, 7);
		DTRACE_PROBE2(bpfreplay, sites, on_stack, -9);
		fire_guarded(i);
	}
	printf("usdt_target: %d rounds, semaphore %u\n", rounds, guarded_semaphore_value());
	return 0;
}
