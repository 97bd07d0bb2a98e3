// SPDX-License-Identifier: MIT
/*
 * Heartbeat timing (include/heartbeat.h) against a simulated clock: the
 * primary's heartbeat thread, next to an epoch thread that holds the send
 * lock for random spans and a standby slow to acknowledge, never leaves the
 * receiver silent for the failover timeout (1 ms to 60 s); a heartbeat is
 * due exactly at the interval; a clock that goes back is not trusted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "heartbeat.h"

#define MS	  1000000ULL
#define MAX_HOLDS 200000

static uint64_t rng_state, first_seed; /* HEARTBEAT_SEED=N to vary the runs */

static uint64_t rnd(void) /* splitmix64: reproducible runs */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t upto(uint64_t max) /* 0..max */
{
	return max ? rnd() % (max + 1) : 0;
}

/* Timeouts from 1 ms to 60 s: small ones densely, then a log sweep, then the option's extremes. */
static const unsigned timeouts_ms[] = {1,    2,	   3,	 4,    5,     7,     10,    13,	  20,
				       50,   100,  250,	 499,  500,   501,   799,   800,  801,
				       1000, 2000, 3333, 5000, 10000, 30000, 59999, 60000};
#define NR_TIMEOUTS (sizeof(timeouts_ms) / sizeof(timeouts_ms[0]))

/* ---- the receiver's view: what it heard and the longest silence between ---- */

struct hold {
	uint64_t start, end; /* the epoch thread has the send lock, bytes flow */
};

struct sim {
	const struct heartbeat_timing *t;
	struct hold *holds;
	size_t nr_holds, next_hold;
	uint64_t last_heard, max_gap;
	uint64_t last_send; /* the sender's stamp, in its own clock */
	uint64_t heartbeats;
	uint64_t jump_at; /* from then on the sender's clock is off by jump_ns */
	int64_t jump_ns;
};

/* Far from zero, so that a clock going back stays a clock. */
#define CLOCK_BASE (1ULL << 60)

static uint64_t sender_clock(const struct sim *s, uint64_t now)
{
	return CLOCK_BASE + now + (now >= s->jump_at ? (uint64_t)s->jump_ns : 0);
}

static void hear(struct sim *s, uint64_t from, uint64_t to)
{
	if (from > s->last_heard && from - s->last_heard > s->max_gap)
		s->max_gap = from - s->last_heard;
	if (to > s->last_heard)
		s->last_heard = to;
}

/* Every epoch that ended by time now has been heard, and stamped last_send at its end. */
static void advance(struct sim *s, uint64_t now)
{
	while (s->next_hold < s->nr_holds && s->holds[s->next_hold].end <= now) {
		struct hold *h = &s->holds[s->next_hold++];

		hear(s, h->start, h->end);
		s->last_send = sender_clock(s, h->end);
	}
}

/* The epoch holding the send lock at now, if any (after advance(now)). */
static struct hold *held(struct sim *s, uint64_t now)
{
	if (s->next_hold < s->nr_holds && s->holds[s->next_hold].start <= now)
		return &s->holds[s->next_hold];
	return NULL;
}

/*
 * The epoch thread: mostly an epoch every epoch_ns, sometimes a wait for a
 * standby slow to acknowledge (no epoch for up to three timeouts, and one
 * of two timeouts halfway for sure); each epoch holds the send lock for a
 * random span, now and then for longer than the timeout (a big epoch on a
 * slow link: its bytes keep flowing).  epoch_ns 0: no epochs at all.
 */
static size_t make_holds(struct hold *h, size_t max, uint64_t timeout_ns, uint64_t epoch_ns,
			 uint64_t horizon)
{
	uint64_t t = 0;
	bool long_wait = false;
	size_t n = 0;

	while (epoch_ns && n < max) {
		unsigned pick = (unsigned)upto(99);
		uint64_t len;

		t += pick < 80	 ? upto(epoch_ns)
		     : pick < 95 ? upto(timeout_ns / 2)
				 : upto(3 * timeout_ns);
		if (!long_wait && t >= horizon / 2) {
			t += 2 * timeout_ns;
			long_wait = true;
		}
		pick = (unsigned)upto(99);
		len = pick < 70	  ? upto(epoch_ns / 2)
		      : pick < 90 ? upto(timeout_ns / 4)
		      : pick < 99 ? upto(2 * timeout_ns)
				  : 0;
		if (t >= horizon)
			break;
		h[n++] = (struct hold){t, t + len};
		t += len;
	}
	return n;
}

enum looks {
	LOOK_NAP,   /* as the thread does: nap heartbeat_nap_ns, check_ns after a busy lock */
	LOOK_FIXED, /* look every check_ns, whatever is due */
	LOOK_NONE,  /* no heartbeats at all: is the scenario a test? */
};

struct run {
	enum looks looks;
	uint64_t epoch_ns;  /* the epoch cadence (0: no epochs) */
	uint64_t jitter_ns; /* every wake-up and every send is late by up to this */
	uint64_t horizon;
	uint64_t jump_at; /* UINT64_MAX: the sender's clock never jumps */
	int64_t jump_ns;
	uint64_t heartbeats; /* out */
};

/*
 * The primary's heartbeat thread against those epochs: it naps, looks
 * (trylock: an epoch holds the lock, look again a check later), sends if
 * due; a send that finds an epoch holding the lock goes after it.  Returns
 * the longest silence the receiver saw.
 */
static uint64_t simulate(const struct heartbeat_timing *t, struct run *r, struct hold *holds)
{
	struct sim s = {.t = t, .holds = holds, .jump_at = r->jump_at, .jump_ns = r->jump_ns};
	uint64_t now = 0, wait = t->check_ns;
	struct hold *h;

	s.last_send = sender_clock(&s, 0); /* the sync's last write */
	s.nr_holds = make_holds(holds, MAX_HOLDS, t->timeout_ns, r->epoch_ns, r->horizon);
	while (now < r->horizon) {
		uint64_t clock;
		bool due;

		now += wait + upto(r->jitter_ns);
		advance(&s, now);
		wait = t->check_ns;
		if (r->looks == LOOK_NONE || held(&s, now))
			continue; /* trylock failed: an epoch is being written */
		clock = sender_clock(&s, now);
		due = heartbeat_due(t, s.last_send, clock);
		if (r->looks == LOOK_NAP)
			wait = heartbeat_nap_ns(t, s.last_send, clock);
		assert_true(wait <= t->check_ns);
		assert_true(due == (wait == 0) || r->looks == LOOK_FIXED);
		if (!due)
			continue;
		now += upto(r->jitter_ns); /* from the look to the send */
		advance(&s, now);
		h = held(&s, now);
		if (h) { /* blocked behind an epoch: sends when it ends */
			now = h->end;
			advance(&s, now);
		}
		hear(&s, now, now);
		s.last_send = sender_clock(&s, now);
		s.heartbeats++;
		wait = t->check_ns;
	}
	advance(&s, r->horizon);
	h = held(&s, r->horizon); /* an epoch still being written at the end is heard */
	hear(&s, h ? h->start : r->horizon, r->horizon);
	r->heartbeats = s.heartbeats;
	return s.max_gap;
}

/* ---- tests ---- */

static struct hold holds_buf[MAX_HOLDS];

static void test_timing_from_timeout(void **state)
{
	struct heartbeat_timing t, t1;

	(void)state;
	for (unsigned ms = 1; ms <= 600000; ms += ms < 2000 ? 1 : 997) {
		heartbeat_timing_init(&t, ms);
		assert_int_equal(t.timeout_ns, (uint64_t)ms * MS);
		assert_int_equal(t.interval_ns, (uint64_t)ms * MS / 4);
		assert_true(t.check_ns > 0);
		assert_true(t.check_ns <= t.interval_ns / 2);
		assert_true(t.check_ns <= HEARTBEAT_MAX_CHECK_NS);
		if (t.interval_ns / 2 <= HEARTBEAT_MAX_CHECK_NS)
			assert_int_equal(t.check_ns, t.interval_ns / 2);
		/* The silence bound: 3/8 of the timeout at most, well below it. */
		assert_int_equal(heartbeat_max_silence_ns(&t), t.interval_ns + t.check_ns);
		assert_true(heartbeat_max_silence_ns(&t) * 8 <= t.timeout_ns * 3);
	}
	/* The documented values: 500 ms -> 125 ms and 62.5 ms; 60 s -> 15 s, looks every 100 ms. */
	heartbeat_timing_init(&t, 500);
	assert_int_equal(t.interval_ns, 125 * MS);
	assert_int_equal(t.check_ns, 62500000ULL);
	heartbeat_timing_init(&t, 60000);
	assert_int_equal(t.interval_ns, 15000 * MS);
	assert_int_equal(t.check_ns, HEARTBEAT_MAX_CHECK_NS);
	/* No timeout is taken as the shortest, never as "no interval" (a busy loop). */
	heartbeat_timing_init(&t, 0);
	heartbeat_timing_init(&t1, HEARTBEAT_MIN_TIMEOUT_MS);
	assert_int_equal(t.interval_ns, t1.interval_ns);
	assert_int_equal(t.check_ns, t1.check_ns);
	assert_true(t.check_ns > 0);
}

static void test_due_exactly_at_interval(void **state)
{
	struct heartbeat_timing t;

	(void)state;
	for (size_t i = 0; i < NR_TIMEOUTS; i++) {
		heartbeat_timing_init(&t, timeouts_ms[i]);
		for (int k = 0; k < 100; k++) {
			uint64_t last = rnd() >> 2; /* anywhere, far from wrapping */

			assert_false(heartbeat_due(&t, last, last));
			assert_false(heartbeat_due(&t, last, last + 1));
			assert_false(heartbeat_due(&t, last, last + t.interval_ns - 1));
			assert_true(heartbeat_due(&t, last, last + t.interval_ns));
			assert_true(heartbeat_due(&t, last, last + t.interval_ns + 1));
			assert_true(heartbeat_due(&t, last, last + 100 * t.timeout_ns));
		}
		/* Never sent (stamp 0), with the monotonic clock long past the interval. */
		assert_true(heartbeat_due(&t, 0, t.interval_ns));
		assert_false(heartbeat_due(&t, 0, t.interval_ns - 1));
	}
}

static void test_nap_lands_on_due(void **state)
{
	struct heartbeat_timing t;

	(void)state;
	for (size_t i = 0; i < NR_TIMEOUTS; i++) {
		heartbeat_timing_init(&t, timeouts_ms[i]);
		for (int k = 0; k < 1000; k++) {
			uint64_t last = rnd() >> 2, now = last + upto(2 * t.interval_ns);
			uint64_t nap = heartbeat_nap_ns(&t, last, now);

			assert_true(nap <= t.check_ns);
			assert_true((nap == 0) == heartbeat_due(&t, last, now));
			if (nap && nap < t.check_ns) { /* woken exactly when it falls due */
				assert_false(heartbeat_due(&t, last, now + nap - 1));
				assert_true(heartbeat_due(&t, last, now + nap));
			} else if (nap) {
				assert_false(heartbeat_due(&t, last, now + nap - 1));
			}
		}
	}
}

static void test_stamp_in_the_future(void **state)
{
	struct heartbeat_timing t;

	(void)state;
	heartbeat_timing_init(&t, 500);
	/* A stamp ahead of the clock is due now, not in (stamp - now) + interval. */
	assert_true(heartbeat_due(&t, 1001, 1000));
	assert_true(heartbeat_due(&t, UINT64_MAX, 0));
	assert_true(heartbeat_due(&t, 10000 * MS, 1 * MS));
	assert_int_equal(heartbeat_nap_ns(&t, UINT64_MAX, 0), 0);
	assert_int_equal(heartbeat_nap_ns(&t, 10000 * MS, 1 * MS), 0);
	/* ... and once re-stamped with the clock as it is, the cadence is the usual one. */
	assert_false(heartbeat_due(&t, 1 * MS, 1 * MS));
	assert_false(heartbeat_due(&t, 1 * MS, 1 * MS + t.interval_ns - 1));
	assert_true(heartbeat_due(&t, 1 * MS, 1 * MS + t.interval_ns));
	/* Wrap-around of the stamp arithmetic does not make "now" look idle for ever. */
	assert_true(heartbeat_due(&t, UINT64_MAX - 5, UINT64_MAX - 5 + t.interval_ns));
}

/*
 * The property the timeout rests on: for every timeout, epochs of random
 * length and spacing, a thread that looks as the real one does, late by up
 * to a quarter of its check period at every wake and send, the receiver
 * never hears nothing for the timeout, and the silence stays within the
 * bound heartbeat.h states.
 */
static void test_primary_never_silent_for_the_timeout(void **state)
{
	struct hold *holds = holds_buf;
	struct heartbeat_timing t;

	(void)state;
	for (size_t i = 0; i < NR_TIMEOUTS; i++) {
		heartbeat_timing_init(&t, timeouts_ms[i]);
		for (int n = 0; n < 6; n++) {
			uint64_t gap;
			struct run r = {
			    .looks = n % 2 ? LOOK_FIXED : LOOK_NAP,
			    .epoch_ns = 100000 + upto(2 * t.timeout_ns),
			    .jitter_ns = t.check_ns / 4,
			    .horizon = 200 * t.timeout_ns,
			    .jump_at = UINT64_MAX,
			};

			gap = simulate(&t, &r, holds);
			if (gap > heartbeat_max_silence_ns(&t) + 2 * r.jitter_ns ||
			    gap >= t.timeout_ns)
				print_message("timeout %u ms, run %d (HEARTBEAT_SEED=%#llx): "
					      "silent %llu ns\n",
					      timeouts_ms[i], n, (unsigned long long)first_seed,
					      (unsigned long long)gap);
			assert_true(gap <= heartbeat_max_silence_ns(&t) + 2 * r.jitter_ns);
			assert_true(gap < t.timeout_ns);
			assert_true(r.heartbeats > 0);
			/* Without heartbeats the same kind of run falls silent for the timeout. */
			r.looks = LOOK_NONE;
			assert_true(simulate(&t, &r, holds) >= t.timeout_ns);
		}
	}
}

/* The simulation catches a timing that would fail: a heartbeat per timeout, or looks too rare. */
static void test_simulation_catches_bad_timing(void **state)
{
	struct hold *holds = holds_buf;
	struct heartbeat_timing t;
	struct run r = {.looks = LOOK_NAP, .epoch_ns = 20 * MS, .jump_at = UINT64_MAX};

	(void)state;
	heartbeat_timing_init(&t, 500);
	r.horizon = 200 * t.timeout_ns;
	t.interval_ns = t.timeout_ns; /* due only once silence already means death */
	assert_true(simulate(&t, &r, holds) >= t.timeout_ns);
	heartbeat_timing_init(&t, 500);
	t.check_ns = t.timeout_ns; /* looking too seldom */
	r.looks = LOOK_FIXED;
	assert_true(simulate(&t, &r, holds) >= t.timeout_ns);
}

/*
 * The sender's clock jumps back (or forward) by ten timeouts mid-run, so
 * its last stamp is in the future (or long past): the receiver still never
 * waits longer than the bound, and the sender does not fire a heartbeat at
 * every look afterwards either.  No epochs: only heartbeats break silence.
 */
static void test_clock_jumps(void **state)
{
	struct heartbeat_timing t;

	(void)state;
	for (size_t i = 0; i < NR_TIMEOUTS; i++) {
		heartbeat_timing_init(&t, timeouts_ms[i]);
		for (int dir = -1; dir <= 1; dir += 2) {
			struct run plain = {.looks = LOOK_NAP,
					    .horizon = 100 * t.timeout_ns,
					    .jump_at = UINT64_MAX};
			struct run jump = plain;

			jump.jump_at = plain.horizon / 2 + upto(t.interval_ns);
			jump.jump_ns = dir * (int64_t)(10 * t.timeout_ns);
			assert_true(simulate(&t, &jump, NULL) <= heartbeat_max_silence_ns(&t));
			assert_true(simulate(&t, &plain, NULL) <= heartbeat_max_silence_ns(&t));
			/* One heartbeat early at the jump at most, not one per look. */
			assert_true(jump.heartbeats <= plain.heartbeats + 1);
			assert_true(jump.heartbeats + 1 >= plain.heartbeats);
		}
	}
}

/*
 * The standby sends a heartbeat every interval whatever else it sends: a
 * thread that naps heartbeat_nap_ns, late by up to a quarter check at each
 * wake, is never silent for more than the bound.
 */
static void test_standby_cadence(void **state)
{
	struct heartbeat_timing t;

	(void)state;
	for (size_t i = 0; i < NR_TIMEOUTS; i++) {
		uint64_t now = 0, last = 0, max_gap = 0, jitter;

		heartbeat_timing_init(&t, timeouts_ms[i]);
		jitter = t.check_ns / 4;
		while (now < 200 * t.timeout_ns) {
			now += heartbeat_nap_ns(&t, last, now) + upto(jitter);
			if (!heartbeat_due(&t, last, now))
				continue;
			if (now - last > max_gap)
				max_gap = now - last;
			last = now;
		}
		assert_true(max_gap >= t.interval_ns); /* not more often than asked */
		assert_true(max_gap <= t.interval_ns + jitter);
		assert_true(max_gap < t.timeout_ns);
	}
}

int main(void)
{
	const char *seed = getenv("HEARTBEAT_SEED");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timing_from_timeout),
	    cmocka_unit_test(test_due_exactly_at_interval),
	    cmocka_unit_test(test_nap_lands_on_due),
	    cmocka_unit_test(test_stamp_in_the_future),
	    cmocka_unit_test(test_primary_never_silent_for_the_timeout),
	    cmocka_unit_test(test_simulation_catches_bad_timing),
	    cmocka_unit_test(test_clock_jumps),
	    cmocka_unit_test(test_standby_cadence),
	};

	rng_state = first_seed = seed ? strtoull(seed, NULL, 0) : 0x5eed4ea27beaULL;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
