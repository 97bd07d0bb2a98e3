// SPDX-License-Identifier: MIT
/* Output commit: held per epoch, released in order, transparent when not holding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "output_buffer.h"

struct sink {
	char log[4096];
	size_t len;
	unsigned items;
};

static void emit(void *opaque, enum output_kind kind, unsigned dev, const uint8_t *data, size_t len)
{
	struct sink *s = opaque;

	s->len += (size_t)snprintf(s->log + s->len, sizeof(s->log) - s->len, "%c%u:%.*s|",
				   kind == OUTPUT_NET	? 'n'
				   : kind == OUTPUT_HVC ? 'h'
							: 'c',
				   dev, (int)len, (const char *)data);
	s->items++;
}

static void put(struct output_buffer *ob, enum output_kind kind, unsigned dev, const char *text)
{
	struct iovec iov[2] = {{(void *)text, 1}, {(void *)(text + 1), strlen(text) - 1}};

	assert_int_equal(output_buffer_submit(ob, kind, dev, iov, 2), 0);
}

static void test_transparent_without_holding(void **state)
{
	struct output_buffer ob;
	struct sink s = {0};

	(void)state;
	output_buffer_init(&ob, emit, &s);
	put(&ob, OUTPUT_CONSOLE, 0, "hello");
	put(&ob, OUTPUT_NET, 1, "frame");
	assert_string_equal(s.log, "c0:hello|n1:frame|");
	output_buffer_destroy(&ob);
}

static void test_release_by_epoch_in_order(void **state)
{
	struct output_buffer ob;
	struct sink s = {0};

	(void)state;
	output_buffer_init(&ob, emit, &s);
	output_buffer_hold(&ob, 2); /* the first checkpoint was 1: what follows is epoch 2 */
	put(&ob, OUTPUT_CONSOLE, 0, "a");
	put(&ob, OUTPUT_NET, 0, "f1");
	output_buffer_set_epoch(&ob, 3);
	put(&ob, OUTPUT_HVC, 0, "b");
	put(&ob, OUTPUT_CONSOLE, 0, "c");
	output_buffer_set_epoch(&ob, 4);
	put(&ob, OUTPUT_NET, 2, "f2");
	assert_int_equal(s.items, 0);
	assert_int_equal(ob.held_items, 5);
	output_buffer_release(&ob, 1); /* nothing of epoch 1 is held */
	assert_int_equal(s.items, 0);
	output_buffer_release(&ob, 2);
	assert_string_equal(s.log, "c0:a|n0:f1|");
	output_buffer_release(&ob, 2); /* twice is harmless */
	assert_int_equal(s.items, 2);
	output_buffer_release(&ob, 3);
	assert_string_equal(s.log, "c0:a|n0:f1|h0:b|c0:c|");
	/* Losing the standby lets the rest go, and new output passes straight through. */
	output_buffer_unhold(&ob);
	assert_string_equal(s.log, "c0:a|n0:f1|h0:b|c0:c|n2:f2|");
	put(&ob, OUTPUT_CONSOLE, 0, "d");
	assert_string_equal(s.log, "c0:a|n0:f1|h0:b|c0:c|n2:f2|c0:d|");
	assert_int_equal(ob.held_items, 0);
	assert_int_equal(ob.held_bytes, 0);
	output_buffer_destroy(&ob);
}

static void test_destroy_drops_held(void **state)
{
	struct output_buffer ob;
	struct sink s = {0};

	(void)state;
	output_buffer_init(&ob, emit, &s);
	output_buffer_hold(&ob, 2);
	put(&ob, OUTPUT_CONSOLE, 0, "never seen");
	output_buffer_destroy(&ob); /* the standby will produce it again */
	assert_int_equal(s.items, 0);
}

/* Held console bytes of one epoch leave in one write; kinds, devices and epochs split them. */
static void test_console_bytes_gather(void **state)
{
	struct output_buffer ob;
	struct sink s = {0};
	char big[5000];

	(void)state;
	output_buffer_init(&ob, emit, &s);
	output_buffer_hold(&ob, 2);
	put(&ob, OUTPUT_CONSOLE, 0, "co");
	put(&ob, OUTPUT_CONSOLE, 0, "unter: 1\n");
	put(&ob, OUTPUT_HVC, 0, "h1");
	put(&ob, OUTPUT_HVC, 0, "h2");
	put(&ob, OUTPUT_NET, 0, "f1");
	put(&ob, OUTPUT_NET, 0, "f2"); /* frames stay frames */
	put(&ob, OUTPUT_CONSOLE, 0, "x");
	output_buffer_set_epoch(&ob, 3);
	put(&ob, OUTPUT_CONSOLE, 0, "y"); /* the next epoch: its own item */
	assert_int_equal(ob.held_bytes, 21);
	output_buffer_release(&ob, 2);
	assert_string_equal(s.log, "c0:counter: 1\n|h0:h1h2|n0:f1|n0:f2|c0:x|");
	assert_int_equal(s.items, 5);
	output_buffer_release(&ob, 3);
	assert_string_equal(s.log, "c0:counter: 1\n|h0:h1h2|n0:f1|n0:f2|c0:x|c0:y|");
	/* Beyond an item's room, a new one; nothing is cut or lost. */
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	memset(&s, 0, sizeof(s));
	output_buffer_set_epoch(&ob, 4);
	put(&ob, OUTPUT_CONSOLE, 0, "ab");
	put(&ob, OUTPUT_CONSOLE, 0, big);
	assert_int_equal(ob.held_bytes, 2 + sizeof(big) - 1);
	output_buffer_release(&ob, 4);
	assert_int_equal(s.items, 2);
	assert_int_equal(ob.held_bytes, 0);
	output_buffer_destroy(&ob);
}

/* Take, then emit: nothing leaves in between, and later output stays behind. */
static void test_take_then_emit(void **state)
{
	struct output_buffer ob;
	struct output_batch b;
	struct sink s = {0};

	(void)state;
	output_buffer_init(&ob, emit, &s);
	output_buffer_hold(&ob, 2);
	put(&ob, OUTPUT_CONSOLE, 0, "a");
	put(&ob, OUTPUT_NET, 0, "f");
	output_buffer_set_epoch(&ob, 3);
	put(&ob, OUTPUT_CONSOLE, 0, "b");
	output_buffer_take(&ob, 2, &b);
	assert_int_equal(ob.held_items, 1); /* only epoch 3's item is still held */
	put(&ob, OUTPUT_CONSOLE, 0, "c");   /* same epoch as "b": joins it */
	assert_int_equal(s.items, 0);	    /* told the standby meanwhile: nothing out yet */
	output_buffer_emit(&ob, &b);
	assert_string_equal(s.log, "c0:a|n0:f|");
	output_buffer_release(&ob, 3);
	assert_string_equal(s.log, "c0:a|n0:f|c0:bc|");
	output_buffer_take(&ob, 3, &b); /* nothing left: an empty batch */
	assert_null(b.head);
	output_buffer_emit(&ob, &b);
	output_buffer_destroy(&ob);
}

struct producer {
	struct output_buffer *ob;
	char tag;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	char text[3] = {p->tag, 0, 0};

	for (int i = 0; i < 200; i++) {
		text[1] = (char)('0' + i % 10);
		put(p->ob, OUTPUT_CONSOLE, 0, text);
	}
	return NULL;
}

/* Many threads submitting while another releases: every item once, each thread's in order. */
static void test_concurrent_order(void **state)
{
	static struct sink s;
	struct output_buffer ob;
	pthread_t t[2];
	struct producer p[2] = {{&ob, 'x'}, {&ob, 'y'}};

	(void)state;
	memset(&s, 0, sizeof(s));
	output_buffer_init(&ob, emit, &s);
	output_buffer_hold(&ob, 1);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, produce, &p[i]);
	for (uint64_t e = 2; e < 50; e++) {
		output_buffer_set_epoch(&ob, e);
		output_buffer_release(&ob, e - 1);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	output_buffer_unhold(&ob);
	/* Per producer, all 200 pieces, digits cycling 0..9 in order. */
	for (char tag = 'x'; tag <= 'y'; tag++) {
		int next = 0, seen = 0;

		for (const char *q = s.log; (q = strchr(q, tag)); q++) {
			assert_int_equal(q[1] - '0', next);
			next = (next + 1) % 10;
			seen++;
		}
		assert_int_equal(seen, 200);
	}
	output_buffer_destroy(&ob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_transparent_without_holding),
	    cmocka_unit_test(test_release_by_epoch_in_order),
	    cmocka_unit_test(test_destroy_drops_held),
	    cmocka_unit_test(test_console_bytes_gather),
	    cmocka_unit_test(test_take_then_emit),
	    cmocka_unit_test(test_concurrent_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
