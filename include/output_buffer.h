/* SPDX-License-Identifier: MIT */
/*
 * Output commit: what the guest sends to the outside world (console bytes,
 * network frames) during epoch N is kept here and leaves only when the
 * standby has acknowledged epoch N, so nobody outside ever sees a state a
 * failover could lose.  Without replication (or once the standby is lost)
 * the buffer is transparent: output leaves at once, in order, after
 * anything still held.
 *
 * Every item keeps its order across kinds: a console line and a frame
 * leave in the order the guest produced them.  emit() runs with no buffer
 * lock held, one item at a time, never concurrently.
 *
 * Threads: submit from any thread (vCPU for the UART, loop for net and
 * hvc); set_epoch from the epoch thread while the guest is paused;
 * release from the acknowledgement thread.
 */
#ifndef VMM_OUTPUT_BUFFER_H
#define VMM_OUTPUT_BUFFER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum output_kind {
	OUTPUT_CONSOLE, /* serial console (and hvc0 on stdio): stdout */
	OUTPUT_HVC,	/* hvc0 on a file or socket */
	OUTPUT_NET,	/* a frame (with its virtio-net header) for tap `dev` */
};

struct output_item;

typedef void (*output_emit_fn)(void *opaque, enum output_kind kind, unsigned dev,
			       const uint8_t *data, size_t len);

struct output_buffer {
	pthread_mutex_t lock;	   /* the list and counters */
	pthread_mutex_t emit_lock; /* one emitter at a time: order */
	bool holding;		   /* protected: keep items until their epoch is released */
	uint64_t epoch;		   /* tag for new items */
	struct output_item *head, *tail;
	uint64_t held_bytes, held_items;
	uint64_t released_items;
	uint64_t hold_ns_total, hold_ns_max; /* time items spent held */
	output_emit_fn emit;
	void *opaque;
};

void output_buffer_init(struct output_buffer *ob, output_emit_fn emit, void *opaque);
void output_buffer_destroy(
    struct output_buffer *ob); /* emits nothing: held output is lost with the VM */

/* Guest output: copied; emitted now unless holding.  -ENOMEM drops it (counted by the caller). */
int output_buffer_submit(struct output_buffer *ob, enum output_kind kind, unsigned dev,
			 const struct iovec *iov, int iovcnt);

/* Start holding, tagging new items with epoch. */
void output_buffer_hold(struct output_buffer *ob, uint64_t epoch);

/* Items submitted from now on belong to epoch (the guest is paused at the boundary). */
void output_buffer_set_epoch(struct output_buffer *ob, uint64_t epoch);

/* Epochs up to upto are safe: emit their items, in order. */
void output_buffer_release(struct output_buffer *ob, uint64_t upto);

/*
 * output_buffer_release in two steps, for the replication engine: take
 * epochs <= upto's items out, tell the standby, then emit them, so nothing
 * but the write itself lies between the standby committing an epoch and its
 * output leaving (a lock held by a preempted vCPU thread cannot widen the
 * window).  Every take must be followed by one emit, from the same thread;
 * other releases wait in between.
 */
struct output_batch {
	struct output_item *head;
};
void output_buffer_take(struct output_buffer *ob, uint64_t upto, struct output_batch *b);
void output_buffer_emit(struct output_buffer *ob, struct output_batch *b);

/* Stop holding (standby lost or replication stopped): emit everything, go transparent. */
void output_buffer_unhold(struct output_buffer *ob);

#endif
