/* SPDX-License-Identifier: MIT */
/*
 * Heartbeat timing on the replication link: when a side with nothing to
 * say must say it is alive, so that its peer, which takes failover_timeout
 * of silence for death (SO_RCVTIMEO on its socket), never does while it
 * lives.  Pure arithmetic on CLOCK_MONOTONIC nanoseconds the caller reads:
 * no clock, no threads, no sockets (tests/unit/test_heartbeat.c drives it
 * with a simulated clock).
 *
 * The rule: a heartbeat is due once the link has been idle (nothing
 * written) for interval_ns, a quarter of the timeout.  A sender looks at
 * least every check_ns (half the interval, at most HEARTBEAT_MAX_CHECK_NS so
 * a stopping thread leaves promptly).  The primary skips a look while an
 * epoch is being written (its bytes are the proof of life), so its peer
 * hears nothing for at most interval + check (3/8 of the timeout) plus the
 * sender's scheduling delay: the rest of the timeout is the margin for a
 * loaded host.
 */
#ifndef VMM_HEARTBEAT_H
#define VMM_HEARTBEAT_H

#include <stdbool.h>
#include <stdint.h>

#define HEARTBEAT_MIN_TIMEOUT_MS 1	      /* shorter (0) is taken as this */
#define HEARTBEAT_MAX_CHECK_NS	 100000000ULL /* 100 ms: a stop waits no longer */

struct heartbeat_timing {
	uint64_t timeout_ns;  /* silence the peer takes for death */
	uint64_t interval_ns; /* idle this long: a heartbeat is due */
	uint64_t check_ns;    /* a sender looks at least this often */
};

/* The timing for --failover-timeout-ms failover_timeout_ms. */
void heartbeat_timing_init(struct heartbeat_timing *t, unsigned failover_timeout_ms);

/*
 * Is a heartbeat due at now_ns, the link's last write having ended at
 * last_send_ns?  Exactly when the idle time reaches interval_ns.  A
 * last_send_ns after now_ns (a clock that went back, a stamp from another
 * clock) is due at once: an extra heartbeat costs 16 bytes, a missing one
 * a failover.
 */
bool heartbeat_due(const struct heartbeat_timing *t, uint64_t last_send_ns, uint64_t now_ns);

/*
 * How long a sender may sleep at now_ns before its next look: until the
 * heartbeat falls due, at most check_ns, 0 if it is due now.
 */
uint64_t heartbeat_nap_ns(const struct heartbeat_timing *t, uint64_t last_send_ns, uint64_t now_ns);

/*
 * The longest the peer hears nothing from a sender that follows the rule,
 * scheduling delays aside: interval + check.  Always below the timeout.
 */
uint64_t heartbeat_max_silence_ns(const struct heartbeat_timing *t);

#endif
