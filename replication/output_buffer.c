// SPDX-License-Identifier: MIT
/* Output commit: guest output held per epoch until the standby has it. */
#include "output_buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mono_time.h"

struct output_item {
	struct output_item *next;
	uint64_t epoch;
	uint64_t t_ns; /* when the guest produced it */
	enum output_kind kind;
	unsigned dev;
	size_t len, cap;
	uint8_t data[];
};

/*
 * Held console bytes of one epoch gather in one item: the UART hands them
 * over one at a time, and a release then writes them in one go, which also
 * narrows the window in which a dying primary leaves half a line out.
 */
#define CONSOLE_ITEM_CAP 4096

static bool is_byte_stream(enum output_kind kind)
{
	return kind == OUTPUT_CONSOLE || kind == OUTPUT_HVC;
}

static void copy_iov(uint8_t *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

void output_buffer_init(struct output_buffer *ob, output_emit_fn emit, void *opaque)
{
	memset(ob, 0, sizeof(*ob));
	pthread_mutex_init(&ob->lock, NULL);
	pthread_mutex_init(&ob->emit_lock, NULL);
	ob->emit = emit;
	ob->opaque = opaque;
}

void output_buffer_destroy(struct output_buffer *ob)
{
	struct output_item *it = ob->head;

	while (it) {
		struct output_item *next = it->next;

		free(it);
		it = next;
	}
	ob->head = ob->tail = NULL;
	pthread_mutex_destroy(&ob->lock);
	pthread_mutex_destroy(&ob->emit_lock);
}

/*
 * Take out, in order, every item the buffer lets go (all if not holding,
 * else epochs <= upto), keeping emit_lock until output_buffer_emit: one
 * batch at a time, so batches leave in order.
 */
static void take(struct output_buffer *ob, bool all, uint64_t upto, struct output_batch *b)
{
	struct output_item **end = &b->head;
	uint64_t now = mono_ns();

	pthread_mutex_lock(&ob->emit_lock);
	pthread_mutex_lock(&ob->lock);
	b->head = NULL;
	while (ob->head && (all || !ob->holding || ob->head->epoch <= upto)) {
		struct output_item *it = ob->head;

		ob->head = it->next;
		if (!ob->head)
			ob->tail = NULL;
		it->next = NULL;
		*end = it;
		end = &it->next;
		ob->held_bytes -= it->len;
		ob->held_items--;
		ob->released_items++;
		if (ob->holding) {
			uint64_t held = now - it->t_ns;

			ob->hold_ns_total += held;
			if (held > ob->hold_ns_max)
				ob->hold_ns_max = held;
		}
	}
	pthread_mutex_unlock(&ob->lock);
}

void output_buffer_take(struct output_buffer *ob, uint64_t upto, struct output_batch *b)
{
	take(ob, false, upto, b);
}

void output_buffer_emit(struct output_buffer *ob, struct output_batch *b)
{
	struct output_item *it = b->head;

	while (it) {
		struct output_item *next = it->next;

		ob->emit(ob->opaque, it->kind, it->dev, it->data, it->len);
		free(it);
		it = next;
	}
	b->head = NULL;
	pthread_mutex_unlock(&ob->emit_lock);
}

static void drain(struct output_buffer *ob, bool all, uint64_t upto)
{
	struct output_batch b;

	take(ob, all, upto, &b);
	output_buffer_emit(ob, &b);
}

int output_buffer_submit(struct output_buffer *ob, enum output_kind kind, unsigned dev,
			 const struct iovec *iov, int iovcnt)
{
	struct output_item *it, *tail;
	size_t len = 0, cap;
	bool holding;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	pthread_mutex_lock(&ob->lock);
	tail = ob->tail;
	if (ob->holding && tail && is_byte_stream(kind) && tail->kind == kind && tail->dev == dev &&
	    tail->epoch == ob->epoch && tail->cap - tail->len >= len) {
		copy_iov(tail->data + tail->len, iov, iovcnt);
		tail->len += len;
		ob->held_bytes += len;
		pthread_mutex_unlock(&ob->lock);
		return 0;
	}
	pthread_mutex_unlock(&ob->lock);
	cap = is_byte_stream(kind) && len < CONSOLE_ITEM_CAP ? CONSOLE_ITEM_CAP : len;
	it = malloc(sizeof(*it) + cap);
	if (!it)
		return -ENOMEM;
	copy_iov(it->data, iov, iovcnt);
	it->next = NULL;
	it->kind = kind;
	it->dev = dev;
	it->len = len;
	it->cap = cap;
	it->t_ns = mono_ns();
	pthread_mutex_lock(&ob->lock);
	it->epoch = ob->epoch;
	if (ob->tail)
		ob->tail->next = it;
	else
		ob->head = it;
	ob->tail = it;
	ob->held_bytes += len;
	ob->held_items++;
	holding = ob->holding;
	pthread_mutex_unlock(&ob->lock);
	if (!holding)
		drain(ob, true, 0);
	return 0;
}

void output_buffer_hold(struct output_buffer *ob, uint64_t epoch)
{
	pthread_mutex_lock(&ob->lock);
	ob->holding = true;
	ob->epoch = epoch;
	pthread_mutex_unlock(&ob->lock);
}

void output_buffer_set_epoch(struct output_buffer *ob, uint64_t epoch)
{
	pthread_mutex_lock(&ob->lock);
	ob->epoch = epoch;
	pthread_mutex_unlock(&ob->lock);
}

void output_buffer_release(struct output_buffer *ob, uint64_t upto)
{
	drain(ob, false, upto);
}

void output_buffer_unhold(struct output_buffer *ob)
{
	pthread_mutex_lock(&ob->lock);
	ob->holding = false;
	pthread_mutex_unlock(&ob->lock);
	drain(ob, true, 0);
}
