// SPDX-License-Identifier: MIT
/*
 * counter: "counter: N" for N = 0, 1, 2, ... every interval_ms (default 10),
 * forever or until count= lines.  Migration and failover tests check the
 * sequence for gaps and repeats, so a number is never skipped: a stall
 * longer than an interval delays the next line instead.
 */
#include "kit.h"

int main(const char *cmdline)
{
	uint64_t interval_ms = cmdline_get_u64("interval_ms", 10);
	uint64_t count = cmdline_get_u64("count", 0);
	struct tsc_period period;
	uint64_t n;

	(void)cmdline;
	printf("counter: start interval_ms=%lu count=%lu tsc_khz=%lu (%s)\n", interval_ms, count,
	       tsc_khz(), tsc_khz_source());
	tsc_period_start(&period, interval_ms * tsc_khz());
	for (n = 0; !count || n < count; n++) {
		printf("counter: %lu\n", n);
		if (!count || n + 1 < count)
			tsc_period_wait(&period);
	}
	return KIT_EXIT_OK;
}
