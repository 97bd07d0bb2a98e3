/* SPDX-License-Identifier: MIT */
/*
 * The VM's event loop: one thread, one epoll set.  Everything that is not a
 * vCPU exit (console input, signals, later ioeventfds, disk completions,
 * control and replication sockets) is a file descriptor with a callback here.
 */
#ifndef VMM_EVENT_LOOP_H
#define VMM_EVENT_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Called on the loop thread with the epoll events that fired. */
typedef void (*event_fn)(void *opaque, uint32_t events);

struct event_source;

struct event_loop {
	int epfd;
	int wake_fd; /* eventfd: event_loop_stop() from any thread */
	bool stop;   /* read and written with __atomic builtins */
	struct event_source *sources;
	pthread_mutex_t park_lock; /* guards the four below */
	pthread_cond_t park_cond;
	unsigned park_requests;
	unsigned parked; /* 1: the loop thread is holding still (also polled, __atomic) */
	bool running;	 /* event_loop_run is in progress */
	bool ended;	 /* event_loop_run has returned */
};

int event_loop_init(struct event_loop *loop);
void event_loop_destroy(struct event_loop *loop);

/* Watch fd for events (EPOLLIN etc.).  -errno (e.g. -EPERM for a regular file). */
int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *opaque);

/* Stop watching fd.  Safe from inside a callback (even fd's own). */
int event_loop_remove(struct event_loop *loop, int fd);

/* Dispatch until event_loop_stop().  Returns 0 or -errno from epoll. */
int event_loop_run(struct event_loop *loop);

/* Make event_loop_run() return; callable from any thread or signal-free context. */
void event_loop_stop(struct event_loop *loop);

/*
 * Hold the loop still between callbacks, so no device work runs (the VM's
 * state is captured meanwhile); returns once it is parked: true, or false
 * if the loop has ended or stops (one not started yet is waited for).  Not
 * from the loop thread.  Every
 * park is ended by one event_loop_unpark().
 */
bool event_loop_park(struct event_loop *loop);
/*
 * The same in two steps, so that the caller can stop other threads (the
 * vCPUs) while the loop gets to its park: request (never blocks), then wait
 * (as event_loop_park returns).  One wait for each request.
 */
void event_loop_park_request(struct event_loop *loop);
bool event_loop_park_wait(struct event_loop *loop);
void event_loop_unpark(struct event_loop *loop);

#endif
