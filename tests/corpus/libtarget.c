// SPDX-License-Identifier: MIT
/* A shared library target of the corpus's usdt_lib object: a USDT probe with a
 * semaphore (corpus_lib:hit), which libbpf finds through the library's
 * .note.stapsdt and .probes sections. */
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

unsigned short corpus_lib_hit_semaphore __attribute__((section(".probes")));

int corpus_lib_hit(int value)
{
	if (corpus_lib_hit_semaphore)
		DTRACE_PROBE1(corpus_lib, hit, value);
	return value + 1;
}
