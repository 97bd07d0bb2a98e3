// SPDX-License-Identifier: MIT
/* The bus: registration rules, dispatch with offsets, unregister, absent addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "bus.h"

/* A device that records its last access and reads back 0xA0 + offset. */
struct rec {
	int calls;
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t wdata[8];
	int fail; /* returned instead of 0 when non-zero */
};

static int rec_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct rec *r = opaque;

	r->calls++;
	r->offset = offset;
	r->len = len;
	r->is_write = is_write;
	if (is_write)
		memcpy(r->wdata, data, len);
	else
		for (uint32_t i = 0; i < len; i++)
			data[i] = (uint8_t)(0xa0 + offset + i);
	return r->fail;
}

static void test_register_rejects_overlap_and_wrap(void **state)
{
	struct bus b;
	struct rec r = {0};

	(void)state;
	assert_int_equal(bus_init(&b, "pio"), 0);
	assert_int_equal(bus_register(&b, 0x100, 0x10, rec_io, &r, "a"), 0);
	assert_int_equal(bus_register(&b, 0x100, 0x10, rec_io, &r, "dup"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x10f, 1, rec_io, &r, "last byte"), -EEXIST);
	assert_int_equal(bus_register(&b, 0xf0, 0x11, rec_io, &r, "first byte"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x80, 0x100, rec_io, &r, "covers"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x104, 2, rec_io, &r, "inside"), -EEXIST);
	/* Neighbours touching either end are fine. */
	assert_int_equal(bus_register(&b, 0xf0, 0x10, rec_io, &r, "below"), 0);
	assert_int_equal(bus_register(&b, 0x110, 0x10, rec_io, &r, "above"), 0);
	assert_int_equal(bus_register(&b, 0x200, 0, rec_io, &r, "empty"), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX - 0xf, 0x11, rec_io, &r, "wraps"), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX, UINT64_MAX, rec_io, &r, "wraps"), -EINVAL);
	/* Ending exactly at the top of the space does not wrap. */
	assert_int_equal(bus_register(&b, UINT64_MAX - 0xf, 0x10, rec_io, &r, "top"), 0);
	assert_int_equal(b.nr_ranges, 4);
	for (int i = 1; i < b.nr_ranges; i++)
		assert_true(b.ranges[i - 1].base < b.ranges[i].base);
	bus_destroy(&b);
}

static void test_dispatch_offsets(void **state)
{
	struct bus b;
	struct rec lo = {0}, hi = {0}, top = {0};
	uint8_t d[8];

	(void)state;
	assert_int_equal(bus_init(&b, "mmio"), 0);
	/* Registered out of order: the bus keeps them sorted. */
	assert_int_equal(bus_register(&b, 0xd0000000, 0x1000, rec_io, &hi, "hi"), 0);
	assert_int_equal(bus_register(&b, 0xc0000000, 0x1000, rec_io, &lo, "lo"), 0);
	assert_int_equal(bus_register(&b, UINT64_MAX - 0xf, 0x10, rec_io, &top, "top"), 0);

	assert_int_equal(bus_access(&b, 0xd0000010, d, 4, false), 0);
	assert_int_equal(hi.calls, 1);
	assert_int_equal(hi.offset, 0x10);
	assert_int_equal(hi.len, 4);
	assert_int_equal(d[0], 0xb0);
	assert_int_equal(d[3], 0xb3);
	assert_int_equal(lo.calls, 0);

	memcpy(d, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	assert_int_equal(bus_access(&b, 0xc0000ff8, d, 8, true), 0);
	assert_int_equal(lo.calls, 1);
	assert_int_equal(lo.offset, 0xff8);
	assert_true(lo.is_write);
	assert_memory_equal(lo.wdata, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);

	assert_int_equal(bus_access(&b, 0xc0000000, d, 1, false), 0);
	assert_int_equal(lo.offset, 0);
	assert_int_equal(bus_access(&b, UINT64_MAX - 7, d, 8, false), 0);
	assert_int_equal(top.offset, 8);
	bus_destroy(&b);
}

static void test_absent_and_straddling(void **state)
{
	struct bus b;
	struct rec r = {0};
	uint8_t d[8];

	(void)state;
	assert_int_equal(bus_init(&b, "pio"), 0);
	memset(d, 0, sizeof(d));
	assert_int_equal(bus_access(&b, 0x3f8, d, 1, false), -ENODEV); /* empty bus */
	assert_int_equal(d[0], 0xff);

	assert_int_equal(bus_register(&b, 0x3f8, 8, rec_io, &r, "uart"), 0);
	memset(d, 0, sizeof(d));
	assert_int_equal(bus_access(&b, 0x3f7, d, 1, false), -ENODEV);
	assert_int_equal(bus_access(&b, 0x400, d, 1, false), -ENODEV);
	/* Starts inside, ends outside: nobody may see offset + len past the range. */
	assert_int_equal(bus_access(&b, 0x3fe, d, 4, false), -ENODEV);
	assert_memory_equal(d, "\xff\xff\xff\xff", 4);
	assert_int_equal(bus_access(&b, 0x3fc, d, 4, false), 0);
	assert_int_equal(r.offset, 4);
	/* Odd sizes are refused, not passed on. */
	assert_int_equal(bus_access(&b, 0x3f8, d, 3, false), -EINVAL);
	assert_int_equal(bus_access(&b, 0x3f8, d, 0, true), -EINVAL);
	assert_int_equal(r.calls, 1);
	/* Writes to nothing are dropped. */
	assert_int_equal(bus_access(&b, 0x80, d, 1, true), -ENODEV);
	bus_destroy(&b);
}

static void test_unregister(void **state)
{
	struct bus b;
	struct rec a = {0}, c = {0};
	uint8_t d[4];

	(void)state;
	assert_int_equal(bus_init(&b, "pio"), 0);
	assert_int_equal(bus_register(&b, 0x60, 1, rec_io, &a, "a"), 0);
	assert_int_equal(bus_register(&b, 0x64, 1, rec_io, &c, "c"), 0);
	assert_int_equal(bus_unregister(&b, 0x61), -ENOENT); /* not a base */
	assert_int_equal(bus_unregister(&b, 0x60), 0);
	assert_int_equal(bus_unregister(&b, 0x60), -ENOENT);
	assert_int_equal(bus_access(&b, 0x60, d, 1, false), -ENODEV);
	assert_int_equal(bus_access(&b, 0x64, d, 1, false), 0);
	assert_int_equal(c.calls, 1);
	/* The space is free again. */
	assert_int_equal(bus_register(&b, 0x5f, 2, rec_io, &a, "a2"), 0);
	assert_int_equal(bus_access(&b, 0x60, d, 1, false), 0);
	assert_int_equal(a.offset, 1);
	bus_destroy(&b);
}

static void test_handler_error(void **state)
{
	struct bus b;
	struct rec r = {.fail = -EIO};
	uint8_t d[2] = {0, 0};

	(void)state;
	assert_int_equal(bus_init(&b, "mmio"), 0);
	assert_int_equal(bus_register(&b, 0x1000, 0x100, rec_io, &r, "broken"), 0);
	assert_int_equal(bus_access(&b, 0x1000, d, 2, false), -EIO);
	assert_int_equal(d[0], 0xff); /* the handler's data is replaced by all-ones */
	assert_int_equal(d[1], 0xff);
	assert_true(b.ranges[0].warned);
	assert_int_equal(bus_access(&b, 0x1000, d, 2, true), -EIO);
	bus_destroy(&b);
}

/* A handler that moves itself: the bus lock must not be held during dispatch. */
struct mover {
	struct bus *bus;
	uint64_t base;
	struct rec rec;
};

static int mover_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct mover *m = opaque;

	if (is_write) {
		assert_int_equal(bus_unregister(m->bus, m->base), 0);
		m->base = data[0] * 0x100ULL;
		return bus_register(m->bus, m->base, 0x10, mover_io, m, "mover");
	}
	return rec_io(&m->rec, offset, data, len, is_write);
}

static void test_handler_may_reregister(void **state)
{
	struct bus b;
	struct mover m = {.bus = &b, .base = 0x100};
	uint8_t d = 0x20;

	(void)state;
	assert_int_equal(bus_init(&b, "pio"), 0);
	assert_int_equal(bus_register(&b, 0x100, 0x10, mover_io, &m, "mover"), 0);
	assert_int_equal(bus_access(&b, 0x104, &d, 1, true), 0);
	assert_int_equal(bus_access(&b, 0x104, &d, 1, false), -ENODEV);
	assert_int_equal(bus_access(&b, 0x2004, &d, 1, false), 0);
	assert_int_equal(m.rec.offset, 4);
	bus_destroy(&b);
}

static void test_many_ranges(void **state)
{
	static struct rec r[100];
	struct bus b;
	uint8_t d;

	(void)state;
	assert_int_equal(bus_init(&b, "mmio"), 0);
	/* Interleaved order, past the initial capacity. */
	for (int i = 0; i < 100; i++) {
		int k = (i * 37) % 100;

		assert_int_equal(bus_register(&b, 0x1000 + k * 0x10ULL, 0x10, rec_io, &r[k], "r"),
				 0);
	}
	for (int k = 0; k < 100; k++) {
		assert_int_equal(bus_access(&b, 0x1000 + k * 0x10ULL + 5, &d, 1, false), 0);
		assert_int_equal(r[k].calls, 1);
		assert_int_equal(r[k].offset, 5);
	}
	assert_int_equal(bus_access(&b, 0x1000 + 100 * 0x10, &d, 1, false), -ENODEV);
	bus_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_rejects_overlap_and_wrap),
	    cmocka_unit_test(test_dispatch_offsets),
	    cmocka_unit_test(test_absent_and_straddling),
	    cmocka_unit_test(test_unregister),
	    cmocka_unit_test(test_handler_error),
	    cmocka_unit_test(test_handler_may_reregister),
	    cmocka_unit_test(test_many_ranges),
	};
	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
