// SPDX-License-Identifier: MIT
/* The guest memory map for small, hole-sized and split RAM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "e820.h"
#include "guest_mem.h"
#include "layout.h"

#define MIB (1ULL << 20)

static void test_small(void **state)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_layout(&m, 64 * MIB), 0);
	assert_int_equal(e820_low_ram_top(&m), 64 * MIB);
	assert_int_equal(e820_build(&m, map, E820_MAX_ENTRIES), 3);
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].size, LAYOUT_EBDA);
	assert_int_equal(map[0].type, E820_TYPE_RAM);
	assert_int_equal(map[1].addr, LAYOUT_EBDA);
	assert_int_equal(map[1].size, MIB - LAYOUT_EBDA);
	assert_int_equal(map[1].type, E820_TYPE_RESERVED);
	assert_int_equal(map[2].addr, MIB);
	assert_int_equal(map[2].size, 63 * MIB);
	assert_int_equal(map[2].type, E820_TYPE_RAM);
}

static void test_exactly_one_mib(void **state)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	struct guest_mem m;

	(void)state;
	/* Nothing above 1 MiB: no empty RAM entry. */
	assert_int_equal(guest_mem_layout(&m, MIB), 0);
	assert_int_equal(e820_build(&m, map, E820_MAX_ENTRIES), 2);
}

static void test_split(void **state)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_layout(&m, 8ULL << 30), 0);
	assert_int_equal(e820_low_ram_top(&m), LAYOUT_LOW_RAM_MAX);
	assert_int_equal(e820_build(&m, map, E820_MAX_ENTRIES), 4);
	assert_int_equal(map[2].addr + map[2].size, LAYOUT_LOW_RAM_MAX);
	assert_int_equal(map[3].addr, LAYOUT_HIGH_RAM_BASE);
	assert_int_equal(map[3].size, (8ULL << 30) - LAYOUT_LOW_RAM_MAX);
	assert_int_equal(map[3].type, E820_TYPE_RAM);
}

static void test_too_small_array(void **state)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_layout(&m, 8ULL << 30), 0);
	assert_int_equal(e820_build(&m, map, 3), -E2BIG);
	assert_int_equal(e820_build(&m, map, 0), -E2BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small),
	    cmocka_unit_test(test_exactly_one_mib),
	    cmocka_unit_test(test_split),
	    cmocka_unit_test(test_too_small_array),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
