// SPDX-License-Identifier: MIT
/* The target of the corpus's usdt_args object, built -O2: USDT probes whose argument
 * specs take every form the compiler gives (constants, registers, stack memory
 * with an offset, %rip-relative globals, signed bytes, 64-bit values), a probe at two sites (inlined
 * twice), each with a semaphore, one of them tested before firing.
 *
 *   usage: target2 [COUNT] */
#define _SDT_HAS_SEMAPHORES 1
#include <stdlib.h>
#include <unistd.h>
#include <sys/sdt.h>

/* with _SDT_HAS_SEMAPHORES every probe of the file has one */
#define CORPUS2_SEMAPHORE(name) \
	unsigned short corpus2_##name##_semaphore __attribute__((section(".probes")))
CORPUS2_SEMAPHORE(guarded);
CORPUS2_SEMAPHORE(twice);
CORPUS2_SEMAPHORE(constants);
CORPUS2_SEMAPHORE(mixed);
CORPUS2_SEMAPHORE(stack);
long corpus2_global = 12345;
struct corpus2_pair { int a; long long b; } corpus2_pair = { 7, -9 };

static inline __attribute__((always_inline)) void twice(int v)
{
	DTRACE_PROBE1(corpus2, twice, v);
}

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 1;
	volatile signed char small = -3;

	for (int i = 0; i < count; i++) {
		DTRACE_PROBE3(corpus2, constants, 42, -1, 0x123456789LL);
		DTRACE_PROBE4(corpus2, mixed, i, small, corpus2_global, corpus2_pair.b);
		DTRACE_PROBE1(corpus2, stack, small);
		twice(i);
		twice(i * 2);
		if (corpus2_guarded_semaphore)
			DTRACE_PROBE1(corpus2, guarded, corpus2_pair.a);
		usleep(1000);
	}
	return 0;
}
