// SPDX-License-Identifier: MIT
/* The user-space target of the corpus's uprobe and usdt objects: a function to probe
 * by name and by offset, and a USDT probe (corpus:tick) with two arguments.
 *
 *   usage: target [COUNT]   (calls the function and fires the probe COUNT times) */
#include <stdlib.h>
#include <unistd.h>
#include <sys/sdt.h>

__attribute__((noinline)) int corpus_target_add(int a, int b)
{
	return a + b;
}

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 1, sum = 0;

	for (int i = 0; i < count; i++) {
		sum = corpus_target_add(sum, i);
		DTRACE_PROBE2(corpus, tick, i, sum);
		usleep(1000);
	}
	return sum == -1;
}
