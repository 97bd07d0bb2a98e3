// SPDX-License-Identifier: MIT
/* A small epoll loop: fd -> callback. */
#include "event_loop.h"
#include "mono_time.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct event_source {
	int fd;
	event_fn fn;
	void *opaque;
	bool removed;
	struct event_source *next;
};

static void on_wake(void *opaque, uint32_t events)
{
	struct event_loop *loop = opaque;
	uint64_t v;

	(void)events;
	if (read(loop->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
}

int event_loop_init(struct event_loop *loop)
{
	int ret;

	loop->sources = NULL;
	loop->stop = false;
	loop->park_requests = 0;
	loop->parked = loop->running = loop->ended = false;
	pthread_mutex_init(&loop->park_lock, NULL);
	pthread_cond_init(&loop->park_cond, NULL);
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		return -errno;
	loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->wake_fd < 0) {
		ret = -errno;
		close(loop->epfd);
		return ret;
	}
	ret = event_loop_add(loop, loop->wake_fd, EPOLLIN, on_wake, loop);
	if (ret) {
		close(loop->wake_fd);
		close(loop->epfd);
	}
	return ret;
}

static void reap(struct event_loop *loop)
{
	struct event_source **p = &loop->sources;

	while (*p) {
		struct event_source *s = *p;

		if (s->removed) {
			*p = s->next;
			free(s);
		} else {
			p = &s->next;
		}
	}
}

void event_loop_destroy(struct event_loop *loop)
{
	struct event_source *s;

	for (s = loop->sources; s; s = s->next)
		s->removed = true;
	reap(loop);
	if (loop->wake_fd >= 0)
		close(loop->wake_fd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	loop->wake_fd = loop->epfd = -1;
}

int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *opaque)
{
	struct event_source *s = calloc(1, sizeof(*s));
	struct epoll_event ev = {.events = events};

	if (!s)
		return -ENOMEM;
	s->fd = fd;
	s->fn = fn;
	s->opaque = opaque;
	ev.data.ptr = s;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int ret = -errno;

		free(s);
		return ret;
	}
	s->next = loop->sources;
	loop->sources = s;
	return 0;
}

int event_loop_remove(struct event_loop *loop, int fd)
{
	struct event_source *s;

	for (s = loop->sources; s; s = s->next) {
		if (s->fd == fd && !s->removed) {
			/* Freed after the current batch: a pending event may still point at it. */
			s->removed = true;
			epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
			return 0;
		}
	}
	return -ENOENT;
}

/* Between batches: hold still while another thread has the loop parked. */
static void check_park(struct event_loop *loop)
{
	pthread_mutex_lock(&loop->park_lock);
	if (loop->park_requests && !__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&loop->parked, true, __ATOMIC_RELEASE); /* polled */
		pthread_cond_broadcast(&loop->park_cond);
		while (loop->park_requests && !__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&loop->park_cond, &loop->park_lock);
		__atomic_store_n(&loop->parked, false, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&loop->park_lock);
}

static void set_running(struct event_loop *loop, bool running)
{
	pthread_mutex_lock(&loop->park_lock);
	loop->running = running;
	loop->ended |= !running;
	pthread_cond_broadcast(&loop->park_cond);
	pthread_mutex_unlock(&loop->park_lock);
}

int event_loop_run(struct event_loop *loop)
{
	struct epoll_event events[16];
	int n, i, ret = 0;

	set_running(loop, true);
	while (!__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE)) {
		check_park(loop);
		n = epoll_wait(loop->epfd, events, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		for (i = 0; i < n && !__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE); i++) {
			struct event_source *s = events[i].data.ptr;

			if (!s->removed)
				s->fn(s->opaque, events[i].events);
		}
		reap(loop);
	}
	set_running(loop, false);
	return ret;
}

static void wake(struct event_loop *loop)
{
	uint64_t one = 1;

	if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: the loop is awake anyway. */
	}
}

/* Polling first for a park; a loop busy in a long callback is slept on. */
#define LOOP_PARK_POLL_NS 500000ULL

void event_loop_park_request(struct event_loop *loop)
{
	pthread_mutex_lock(&loop->park_lock);
	loop->park_requests++;
	pthread_mutex_unlock(&loop->park_lock);
	wake(loop);
}

bool event_loop_park_wait(struct event_loop *loop)
{
	bool parked;

	mono_poll_u32(&loop->parked, 1, LOOP_PARK_POLL_NS);
	pthread_mutex_lock(&loop->park_lock);
	/* A loop not started yet is waited for: its VM's start may race our caller's thread. */
	while (!loop->parked && !loop->ended && !__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&loop->park_cond, &loop->park_lock);
	parked = loop->parked;
	pthread_mutex_unlock(&loop->park_lock);
	return parked;
}

bool event_loop_park(struct event_loop *loop)
{
	event_loop_park_request(loop);
	return event_loop_park_wait(loop);
}

void event_loop_unpark(struct event_loop *loop)
{
	pthread_mutex_lock(&loop->park_lock);
	if (loop->park_requests)
		loop->park_requests--;
	pthread_cond_broadcast(&loop->park_cond);
	pthread_mutex_unlock(&loop->park_lock);
}

void event_loop_stop(struct event_loop *loop)
{
	__atomic_store_n(&loop->stop, true, __ATOMIC_RELEASE);
	wake(loop);
	/* A parked loop must see the stop too. */
	pthread_mutex_lock(&loop->park_lock);
	pthread_cond_broadcast(&loop->park_cond);
	pthread_mutex_unlock(&loop->park_lock);
}
