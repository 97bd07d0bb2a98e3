// SPDX-License-Identifier: MIT
/* Heartbeat timing on the replication link: when silence must be broken (include/heartbeat.h). */
#include "heartbeat.h"

void heartbeat_timing_init(struct heartbeat_timing *t, unsigned failover_timeout_ms)
{
	if (failover_timeout_ms < HEARTBEAT_MIN_TIMEOUT_MS)
		failover_timeout_ms = HEARTBEAT_MIN_TIMEOUT_MS;
	t->timeout_ns = (uint64_t)failover_timeout_ms * 1000000ULL;
	t->interval_ns = t->timeout_ns / 4;
	t->check_ns = t->interval_ns / 2;
	if (t->check_ns > HEARTBEAT_MAX_CHECK_NS)
		t->check_ns = HEARTBEAT_MAX_CHECK_NS;
}

bool heartbeat_due(const struct heartbeat_timing *t, uint64_t last_send_ns, uint64_t now_ns)
{
	return now_ns < last_send_ns || now_ns - last_send_ns >= t->interval_ns;
}

uint64_t heartbeat_nap_ns(const struct heartbeat_timing *t, uint64_t last_send_ns, uint64_t now_ns)
{
	uint64_t left;

	if (heartbeat_due(t, last_send_ns, now_ns))
		return 0;
	left = t->interval_ns - (now_ns - last_send_ns);
	return left < t->check_ns ? left : t->check_ns;
}

uint64_t heartbeat_max_silence_ns(const struct heartbeat_timing *t)
{
	return t->interval_ns + t->check_ns;
}
