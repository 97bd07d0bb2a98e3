/* SPDX-License-Identifier: MIT */
/*
 * CLOCK_MONOTONIC in nanoseconds: the one clock for durations (pauses,
 * epochs, timeouts), naps, and brief polls before a sleep.
 */
#ifndef VMM_MONO_TIME_H
#define VMM_MONO_TIME_H

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Sleep ns, resuming after signals. */
static inline void mono_sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ULL),
			      .tv_nsec = (long)(ns % 1000000000ULL)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* One look's pause in a poll: a little spinning, then let another thread of this CPU run. */
static inline void mono_relax(void)
{
	for (int i = 0; i < 64; i++)
		__builtin_ia32_pause();
	sched_yield();
}

/*
 * Watch *flag for up to ns before a caller sleeps on a condition variable:
 * waking a sleeping thread costs hundreds of microseconds on a nested host,
 * more than the wait itself often lasts.  Yields between looks, so that a
 * thread sharing this CPU (the one being waited for, on a busy host) runs.
 * True if *flag reached want.
 */
static inline bool mono_poll_u32(const unsigned *flag, unsigned want, uint64_t ns)
{
	uint64_t until = mono_ns() + ns;

	do {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) >= want)
			return true;
		mono_relax();
	} while (mono_ns() < until);
	return false;
}

#endif
