// SPDX-License-Identifier: MIT
/*
 * Parking the event loop (include/event_loop.h) from another thread: a park
 * asked for before the loop thread has started waits for it (the replication
 * thread, started with the vCPUs, used to find the loop "not running" and
 * gave up the first sync); no callback runs while parked; a loop that has
 * ended or is told to stop is not waited for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "event_loop.h"

struct fixture {
	struct event_loop loop;
	pthread_t thread;
	int run_ret;
	int efd;	    /* an event source: each write runs on_event once */
	unsigned callbacks; /* __atomic */
};

static void on_event(void *opaque, uint32_t events)
{
	struct fixture *f = opaque;
	uint64_t v;

	(void)events;
	if (read(f->efd, &v, sizeof(v)) == sizeof(v))
		__atomic_fetch_add(&f->callbacks, 1, __ATOMIC_SEQ_CST);
}

static void *loop_thread(void *arg)
{
	struct fixture *f = arg;

	f->run_ret = event_loop_run(&f->loop);
	return NULL;
}

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int setup(void **state)
{
	static struct fixture f;

	f = (struct fixture){0};
	if (event_loop_init(&f.loop))
		return -1;
	f.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f.efd < 0 || event_loop_add(&f.loop, f.efd, EPOLLIN, on_event, &f))
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	event_loop_destroy(&f->loop);
	close(f->efd);
	return 0;
}

struct parker {
	struct event_loop *loop;
	bool parked, done; /* __atomic */
};

static void *park_thread(void *arg)
{
	struct parker *p = arg;
	bool parked = event_loop_park(p->loop);

	__atomic_store_n(&p->parked, parked, __ATOMIC_SEQ_CST);
	__atomic_store_n(&p->done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

static bool wait_done(struct parker *p, long ms)
{
	for (long i = 0; i < ms && !__atomic_load_n(&p->done, __ATOMIC_SEQ_CST); i++)
		nap_ms(1);
	return __atomic_load_n(&p->done, __ATOMIC_SEQ_CST);
}

static void test_park_before_start_waits(void **state)
{
	struct fixture *f = *state;
	struct parker p = {.loop = &f->loop};
	pthread_t parker;
	uint64_t one = 1;

	assert_int_equal(pthread_create(&parker, NULL, park_thread, &p), 0);
	nap_ms(50);
	assert_false(__atomic_load_n(&p.done, __ATOMIC_SEQ_CST)); /* waits, does not give up */
	assert_int_equal(pthread_create(&f->thread, NULL, loop_thread, f), 0);
	assert_true(wait_done(&p, 5000));
	assert_true(p.parked);
	/* Parked: an event does not run its callback until the unpark. */
	assert_int_equal(write(f->efd, &one, sizeof(one)), sizeof(one));
	nap_ms(30);
	assert_int_equal(__atomic_load_n(&f->callbacks, __ATOMIC_SEQ_CST), 0);
	event_loop_unpark(&f->loop);
	for (int i = 0; i < 5000 && !__atomic_load_n(&f->callbacks, __ATOMIC_SEQ_CST); i++)
		nap_ms(1);
	assert_int_equal(__atomic_load_n(&f->callbacks, __ATOMIC_SEQ_CST), 1);
	pthread_join(parker, NULL);
	event_loop_stop(&f->loop);
	pthread_join(f->thread, NULL);
	assert_int_equal(f->run_ret, 0);
}

static void test_park_after_end_fails(void **state)
{
	struct fixture *f = *state;
	struct parker p = {.loop = &f->loop};
	pthread_t parker;

	assert_int_equal(pthread_create(&f->thread, NULL, loop_thread, f), 0);
	event_loop_stop(&f->loop);
	pthread_join(f->thread, NULL);
	assert_int_equal(pthread_create(&parker, NULL, park_thread, &p), 0);
	assert_true(wait_done(&p, 5000));
	assert_false(p.parked);
	pthread_join(parker, NULL);
}

static void test_park_when_stopped_before_start_fails(void **state)
{
	struct fixture *f = *state;
	struct parker p = {.loop = &f->loop};
	pthread_t parker;

	assert_int_equal(pthread_create(&parker, NULL, park_thread, &p), 0);
	nap_ms(20);
	event_loop_stop(&f->loop); /* the VM failed before its loop ran: the waiter is let go */
	assert_true(wait_done(&p, 5000));
	assert_false(p.parked);
	pthread_join(parker, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_park_before_start_waits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_park_after_end_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_park_when_stopped_before_start_fails, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
