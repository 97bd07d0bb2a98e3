// SPDX-License-Identifier: MIT
/* Guest memory: layout around the PCI hole, checked access, dirty marking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "guest_mem.h"
#include "layout.h"

static void test_layout_small(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_layout(&m, 256ULL << 20), 0);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].size, 256ULL << 20);
}

static void test_layout_split(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_layout(&m, 4ULL << 30), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.regions[0].size, LAYOUT_LOW_RAM_MAX);
	assert_int_equal(m.regions[1].gpa, LAYOUT_HIGH_RAM_BASE);
	assert_int_equal(m.regions[1].size, (4ULL << 30) - LAYOUT_LOW_RAM_MAX);
	assert_int_equal(m.regions[1].file_offset, LAYOUT_LOW_RAM_MAX);
	/* Exactly the hole size: no second region. */
	assert_int_equal(guest_mem_layout(&m, LAYOUT_LOW_RAM_MAX), 0);
	assert_int_equal(m.nr_regions, 1);
}

static void test_layout_rejects(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_layout(&m, 4096), -EINVAL);
	assert_int_equal(guest_mem_layout(&m, (16ULL << 20) + 1), -EINVAL);
	assert_int_equal(guest_mem_layout(&m, 1ULL << 41), -E2BIG);
}

static void test_checked_access(void **state)
{
	struct guest_mem m;
	uint8_t buf[16] = {1, 2, 3};

	(void)state;
	assert_int_equal(guest_mem_init(&m, 16ULL << 20), 0);
	assert_non_null(guest_mem_ptr(&m, 0, 16ULL << 20));
	assert_null(guest_mem_ptr(&m, 1, 16ULL << 20));
	assert_null(guest_mem_ptr(&m, (16ULL << 20) - 8, 16));
	assert_null(guest_mem_ptr(&m, UINT64_MAX - 4, 16)); /* wraps */
	assert_null(guest_mem_ptr(&m, 4096, UINT64_MAX));   /* wraps */
	assert_null(guest_mem_ptr(&m, LAYOUT_IOAPIC, 4));   /* MMIO, not RAM */
	assert_int_equal(guest_mem_write(&m, 0x5000, buf, 3), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(guest_mem_read(&m, 0x5000, buf, 3), 0);
	assert_int_equal(buf[2], 3);
	assert_int_equal(guest_mem_write(&m, (16ULL << 20) - 2, buf, 3), -EFAULT);
	assert_int_equal(guest_mem_read(&m, (16ULL << 20), buf, 1), -EFAULT);
	assert_true(guest_mem_is_ram(&m, 0));
	assert_false(guest_mem_is_ram(&m, 16ULL << 20));
	guest_mem_destroy(&m);
}

static int dirty(const struct guest_mem *m, uint64_t page)
{
	return (int)((m->dirty[page / 64] >> (page % 64)) & 1);
}

static void test_dirty_marking(void **state)
{
	struct guest_mem m;
	uint8_t buf[8192] = {0};

	(void)state;
	assert_int_equal(guest_mem_init(&m, 16ULL << 20), 0);
	assert_int_equal(dirty(&m, 5), 0);
	/* A write straddling a page boundary dirties both pages, nothing else. */
	assert_int_equal(guest_mem_write(&m, 5 * 4096 + 4000, buf, 200), 0);
	assert_int_equal(dirty(&m, 4), 0);
	assert_int_equal(dirty(&m, 5), 1);
	assert_int_equal(dirty(&m, 6), 1);
	assert_int_equal(dirty(&m, 7), 0);
	guest_mem_mark_dirty(&m, 100 * 4096, 1);
	assert_int_equal(dirty(&m, 100), 1);
	/* Out of range: ignored, no crash. */
	guest_mem_mark_dirty(&m, 1ULL << 40, 4096);
	/* A failed write dirties nothing. */
	assert_int_equal(guest_mem_write(&m, (16ULL << 20) - 10, buf, 20), -EFAULT);
	assert_int_equal(dirty(&m, 4095), 0);
	guest_mem_destroy(&m);
}

static void test_dirty_high_region(void **state)
{
	struct guest_mem m;
	uint8_t b = 7;

	(void)state;
	/* 3 GiB + 8 MiB: the last 8 MiB live above 4 GiB; file offsets continue after the hole. */
	assert_int_equal(guest_mem_init(&m, LAYOUT_LOW_RAM_MAX + (8ULL << 20)), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(guest_mem_write(&m, LAYOUT_HIGH_RAM_BASE + 4096, &b, 1), 0);
	assert_int_equal(dirty(&m, LAYOUT_LOW_RAM_MAX / 4096 + 1), 1);
	assert_int_equal(m.host_base[LAYOUT_LOW_RAM_MAX + 4096], 7);
	assert_null(guest_mem_ptr(&m, LAYOUT_LOW_RAM_MAX, 1)); /* the hole */
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_small),   cmocka_unit_test(test_layout_split),
	    cmocka_unit_test(test_layout_rejects), cmocka_unit_test(test_checked_access),
	    cmocka_unit_test(test_dirty_marking),  cmocka_unit_test(test_dirty_high_region),
	};
	return cmocka_run_group_tests_name("guest_mem", tests, NULL, NULL);
}
