// SPDX-License-Identifier: MIT
/*
 * The etcd witness against a real etcd.  Skipped (every case, with a
 * message) unless WITNESS_ETCD=http://HOST:PORT is set;
 * tests/integration/witness_etcd.sh starts a throwaway etcd and sets it,
 * together with:
 *   WITNESS_TTL_MS    the lease TTL to use (default 1000)
 *   WITNESS_ETCDCTL   an etcdctl command line for that etcd: cross-checks
 *                     what we wrote with etcd's own client
 *   WITNESS_EXT_VM    a VM whose key etcdctl holds as "etcdctl-holder"
 *   WITNESS_ETCD_PID  etcd's pid: the last case kills it
 * Each case uses its own key, /vmm/wt-<pid>-<case>/active.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "witness.h"

static const char *etcd;
static unsigned ttl_ms = 1000;

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void need_etcd(void)
{
	if (!etcd)
		skip();
}

static struct witness *open_as(const char *vm, const char *holder)
{
	struct witness *w;
	char err[160];

	if (witness_open(&w, etcd, vm, holder, ttl_ms, err, sizeof(err)))
		fail_msg("witness_open: %s", err);
	return w;
}

static void vm_name(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "wt-%d-%s", (int)getpid(), what);
}

static void holder_is(struct witness *w, const char *want)
{
	char buf[WITNESS_MAX_HOLDER + 1];

	assert_int_equal(witness_holder(w, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

/* etcdctl's view of a key's value, "" when absent. */
static void etcdctl_get(const char *key, char *buf, size_t len)
{
	const char *ctl = getenv("WITNESS_ETCDCTL");
	char cmd[512];
	FILE *f;
	size_t n;

	buf[0] = '\0';
	snprintf(cmd, sizeof(cmd), "%s get --print-value-only '%s'", ctl, key);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	assert_int_equal(pclose(f), 0);
}

/* A acquires; B cannot (wait 0) and sees A; A renews. */
static void test_acquire_exclusive(void **state)
{
	char vm[64], a_id[64], key[128], got[300];
	struct witness *a, *b;
	int64_t t0;
	(void)state;

	need_etcd();
	vm_name(vm, sizeof(vm), "excl");
	snprintf(a_id, sizeof(a_id), "host-a:%d", (int)getpid());
	a = open_as(vm, a_id);
	b = open_as(vm, "host-b:2");
	assert_false(witness_valid(a));
	t0 = ms_now();
	assert_int_equal(witness_acquire(a, 0), 0);
	print_message("  acquire took %lld ms (gateway %s, lease TTL granted %u s)\n",
		      (long long)(ms_now() - t0), witness_api_prefix(a), witness_granted_ttl(a));
	assert_true(witness_valid(a));
	holder_is(a, a_id);
	t0 = ms_now();
	assert_int_equal(witness_acquire(b, 0), -EBUSY);
	print_message("  busy answer in %lld ms\n", (long long)(ms_now() - t0));
	assert_false(witness_valid(b));
	holder_is(b, a_id);
	assert_int_equal(witness_renew(a), 0);
	assert_true(witness_valid(a));
	assert_int_equal(witness_renew(b), -ENOLCK);
	/* acquiring again while holding just renews */
	assert_int_equal(witness_acquire(a, 0), 0);
	if (getenv("WITNESS_ETCDCTL")) {
		snprintf(key, sizeof(key), "/vmm/%s/active", vm);
		etcdctl_get(key, got, sizeof(got));
		assert_string_equal(got, a_id);
	}
	witness_close(b);
	witness_close(a);
}

/* Renewing every ttl/3 keeps the key through several TTLs. */
static void test_renew_keeps(void **state)
{
	char vm[64];
	struct witness *a, *b;
	int64_t end;
	int renews = 0;
	(void)state;

	need_etcd();
	vm_name(vm, sizeof(vm), "keep");
	a = open_as(vm, "host-a:1");
	b = open_as(vm, "host-b:2");
	assert_int_equal(witness_acquire(a, 0), 0);
	end = ms_now() + 3 * (int64_t)ttl_ms;
	while (ms_now() < end) {
		usleep(ttl_ms / 3 * 1000);
		assert_int_equal(witness_renew(a), 0);
		assert_true(witness_valid(a));
		renews++;
	}
	assert_int_equal(witness_acquire(b, 0), -EBUSY);
	holder_is(b, "host-a:1");
	print_message("  %d renews over %u ms, key kept\n", renews, 3 * ttl_ms);
	witness_close(b);
	witness_close(a);
}

/*
 * A stops renewing (a partitioned primary).  B, waiting, gets the key once
 * A's lease expired on etcd; by then A's own clock already said "not
 * valid" (self-fenced before the other side could start).  A's next renew
 * is -ENOLCK.
 */
static void test_partition_takeover(void **state)
{
	char vm[64];
	struct witness *a, *b;
	int64_t t0, a_fenced_at, b_at;
	(void)state;

	need_etcd();
	vm_name(vm, sizeof(vm), "part");
	a = open_as(vm, "host-a:1");
	b = open_as(vm, "host-b:2");
	assert_int_equal(witness_acquire(a, 0), 0);
	t0 = ms_now();
	a_fenced_at = t0 + witness_valid_ms(a);
	assert_int_equal(witness_acquire(b, 10 * ttl_ms), 0);
	b_at = ms_now();
	assert_false(witness_valid(a));
	print_message("  A valid for %lld ms by its own clock; B took over after %lld ms "
		      "(granted TTL %u s); A had stopped %lld ms before\n",
		      (long long)(a_fenced_at - t0), (long long)(b_at - t0), witness_granted_ttl(a),
		      (long long)(b_at - a_fenced_at));
	assert_true(b_at > a_fenced_at);
	assert_true(b_at - t0 >= (int64_t)witness_granted_ttl(a) * 1000 - 100);
	assert_true(b_at - t0 <= (int64_t)witness_granted_ttl(a) * 1000 + 2000);
	assert_true(witness_valid(b));
	holder_is(a, "host-b:2");
	assert_int_equal(witness_renew(a), -ENOLCK);
	assert_false(witness_valid(a));
	/* A, back, cannot take it from B */
	assert_int_equal(witness_acquire(a, 0), -EBUSY);
	assert_int_equal(witness_renew(b), 0);
	witness_close(a);
	witness_close(b);
}

/* A clean release frees the key at once. */
static void test_release(void **state)
{
	char vm[64], buf[64];
	struct witness *a, *b;
	int64_t t0;
	(void)state;

	need_etcd();
	vm_name(vm, sizeof(vm), "rel");
	a = open_as(vm, "host-a:1");
	b = open_as(vm, "host-b:2");
	assert_int_equal(witness_acquire(a, 0), 0);
	assert_int_equal(witness_acquire(b, 0), -EBUSY);
	t0 = ms_now();
	witness_release(a);
	assert_false(witness_valid(a));
	assert_int_equal(witness_holder(b, buf, sizeof(buf)), -ENOENT);
	assert_string_equal(buf, "");
	assert_int_equal(witness_acquire(b, 0), 0);
	print_message("  release to new holder: %lld ms\n", (long long)(ms_now() - t0));
	holder_is(a, "host-b:2");
	assert_int_equal(witness_renew(a), -ENOLCK);
	/* closing a holder releases too */
	witness_close(b);
	assert_int_equal(witness_acquire(a, 0), 0);
	witness_close(a);
}

/* A key put by etcdctl under its own lease blocks us. */
static void test_external_holder(void **state)
{
	const char *vm = getenv("WITNESS_EXT_VM");
	struct witness *w;
	(void)state;

	need_etcd();
	if (!vm) {
		print_message("skipped: WITNESS_EXT_VM not set\n");
		skip();
	}
	w = open_as(vm, "host-c:3");
	assert_int_equal(witness_acquire(w, 0), -EBUSY);
	holder_is(w, "etcdctl-holder");
	witness_close(w);
}

/* Concurrent acquires of a free key, one thread each: exactly one wins. */
struct racer {
	struct witness *w;
	pthread_barrier_t *go;
	int r;
};

static void *race_one(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->go);
	r->r = witness_acquire(r->w, 0);
	return NULL;
}

static void test_race(void **state)
{
	enum { N = 4, ROUNDS = 5 };
	char vm[64], id[32];
	struct racer rc[N];
	pthread_t th[N];
	pthread_barrier_t go;
	int wins[N] = {0};
	(void)state;

	need_etcd();
	vm_name(vm, sizeof(vm), "race");
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "host-%d", i);
		rc[i].w = open_as(vm, id);
		rc[i].go = &go;
	}
	for (int round = 0; round < ROUNDS; round++) {
		int winner = -1, won = 0;

		assert_int_equal(pthread_barrier_init(&go, NULL, N), 0);
		for (int i = 0; i < N; i++)
			assert_int_equal(pthread_create(&th[i], NULL, race_one, &rc[i]), 0);
		for (int i = 0; i < N; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&go);
		for (int i = 0; i < N; i++) {
			if (!rc[i].r) {
				won++;
				winner = i;
			} else {
				assert_int_equal(rc[i].r, -EBUSY);
			}
		}
		assert_int_equal(won, 1);
		wins[winner]++;
		snprintf(id, sizeof(id), "host-%d", winner);
		holder_is(rc[(winner + 1) % N].w, id);
		witness_release(rc[winner].w);
	}
	print_message("  %d rounds of %d racers: wins %d/%d/%d/%d\n", ROUNDS, N, wins[0], wins[1],
		      wins[2], wins[3]);
	for (int i = 0; i < N; i++)
		witness_close(rc[i].w);
}

/*
 * etcd dies: renew says unreachable, the lease stays valid by our clock
 * until the window ends, then not; acquire fails unreachable.  Last case.
 */
static void test_etcd_killed(void **state)
{
	const char *pid_s = getenv("WITNESS_ETCD_PID");
	char vm[64], buf[64];
	struct witness *a, *b;
	int64_t t0, renewed, invalid_at;
	unsigned window;
	int r;
	(void)state;

	need_etcd();
	if (!pid_s) {
		print_message("skipped: WITNESS_ETCD_PID not set\n");
		skip();
	}
	vm_name(vm, sizeof(vm), "kill");
	a = open_as(vm, "host-a:1");
	b = open_as(vm, "host-b:2");
	assert_int_equal(witness_acquire(a, 0), 0);
	renewed = ms_now();
	assert_int_equal(witness_renew(a), 0);
	window = witness_valid_ms(a);
	assert_int_equal(kill((pid_t)atoi(pid_s), SIGKILL), 0);
	usleep(100000);
	t0 = ms_now();
	r = witness_renew(a);
	print_message("  renew with etcd dead: %s in %lld ms\n", strerror(-r),
		      (long long)(ms_now() - t0));
	assert_true(r == -EHOSTUNREACH || r == -ETIMEDOUT);
	assert_true(witness_valid(a)); /* still inside the window */
	while (witness_valid(a)) {
		r = witness_renew(a);
		assert_true(r == -EHOSTUNREACH || r == -ETIMEDOUT);
		usleep(20000);
	}
	invalid_at = ms_now();
	print_message("  lease invalid %lld ms after the last renew (window %u ms, TTL %u ms)\n",
		      (long long)(invalid_at - renewed), window, ttl_ms);
	assert_true(invalid_at - renewed <= (int64_t)ttl_ms);
	assert_true(invalid_at - renewed >= (int64_t)window - 50);
	r = witness_acquire(b, 0);
	assert_true(r == -EHOSTUNREACH || r == -ETIMEDOUT);
	assert_false(witness_valid(b));
	r = witness_holder(b, buf, sizeof(buf));
	assert_true(r == -EHOSTUNREACH || r == -ETIMEDOUT);
	witness_close(a); /* the revoke fails quietly */
	witness_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_acquire_exclusive),  cmocka_unit_test(test_renew_keeps),
	    cmocka_unit_test(test_partition_takeover), cmocka_unit_test(test_release),
	    cmocka_unit_test(test_external_holder),    cmocka_unit_test(test_race),
	    cmocka_unit_test(test_etcd_killed),
	};
	const char *t = getenv("WITNESS_TTL_MS");

	etcd = getenv("WITNESS_ETCD");
	if (etcd && !*etcd)
		etcd = NULL;
	if (!etcd)
		print_message(
		    "test_witness_etcd: skipped, needs a real etcd: set "
		    "WITNESS_ETCD=http://HOST:PORT (tests/integration/witness_etcd.sh does)\n");
	if (t)
		ttl_ms = (unsigned)strtoul(t, NULL, 10);
	if (!getenv("WITNESS_VERBOSE"))
		log_verbosity = LOG_ERR - 1; /* the failures provoked here are expected */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
