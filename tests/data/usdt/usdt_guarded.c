// SPDX-License-Identifier: MIT
/* The probe of usdt_target with a semaphore: with _SDT_HAS_SEMAPHORES every probe of a
 * translation unit names PROVIDER_NAME_semaphore, a 2-byte counter in .probes that the
 * kernel raises while a uprobe with its ref_ctr_offset is attached. */
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

unsigned short bpfreplay_guarded_semaphore __attribute__((unused, section(".probes")));

unsigned short guarded_semaphore_value(void)
{
	return *(volatile unsigned short *)&bpfreplay_guarded_semaphore;
}

void fire_guarded(int round)
{
	if (guarded_semaphore_value())
		DTRACE_PROBE2(bpfreplay, guarded, round, -5);
}
