// SPDX-License-Identifier: MIT
/* Output commit: guest output held per epoch until the standby has it. */
#include "output_buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct output_item {
	struct output_item *next;
	uint64_t epoch;
	uint64_t t_ns; /* when the guest produced it */
	enum output_kind kind;
	unsigned dev;
	size_t len;
	uint8_t data[];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
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

/* Emit, in order, every item the buffer lets go (all if not holding, else epochs <= upto). */
static void drain(struct output_buffer *ob, bool all, uint64_t upto)
{
	pthread_mutex_lock(&ob->emit_lock);
	for (;;) {
		struct output_item *it;

		pthread_mutex_lock(&ob->lock);
		it = ob->head;
		if (!it || (!all && ob->holding && it->epoch > upto)) {
			pthread_mutex_unlock(&ob->lock);
			break;
		}
		ob->head = it->next;
		if (!ob->head)
			ob->tail = NULL;
		ob->held_bytes -= it->len;
		ob->held_items--;
		ob->released_items++;
		if (ob->holding) {
			uint64_t held = now_ns() - it->t_ns;

			ob->hold_ns_total += held;
			if (held > ob->hold_ns_max)
				ob->hold_ns_max = held;
		}
		pthread_mutex_unlock(&ob->lock);
		ob->emit(ob->opaque, it->kind, it->dev, it->data, it->len);
		free(it);
	}
	pthread_mutex_unlock(&ob->emit_lock);
}

int output_buffer_submit(struct output_buffer *ob, enum output_kind kind, unsigned dev,
			 const struct iovec *iov, int iovcnt)
{
	struct output_item *it;
	size_t len = 0, off = 0;
	bool holding;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	it = malloc(sizeof(*it) + len);
	if (!it)
		return -ENOMEM;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(it->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	it->next = NULL;
	it->kind = kind;
	it->dev = dev;
	it->len = len;
	it->t_ns = now_ns();
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
