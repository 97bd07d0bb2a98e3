// SPDX-License-Identifier: MIT
/* State-tree helpers: round trips, missing and mis-sized properties. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libfdt.h>
#include <string.h>

#include "state.h"

static void test_round_trip(void **state)
{
	uint8_t buf[4096], bytes[5] = {1, 2, 3, 4, 5}, got[5];
	uint32_t v32;
	uint64_t v64;
	int node;

	(void)state;
	assert_int_equal(state_tree_begin(buf, sizeof(buf)), 0);
	assert_int_equal(fdt_begin_node(buf, "dev"), 0);
	assert_int_equal(state_put_u32(buf, "a", 0xdeadbeef), 0);
	assert_int_equal(state_put_u64(buf, "b", 0x0123456789abcdefULL), 0);
	assert_int_equal(state_put_bytes(buf, "c", bytes, sizeof(bytes)), 0);
	assert_int_equal(fdt_end_node(buf), 0);
	assert_int_equal(state_tree_end(buf), 0);
	assert_int_equal(fdt_check_full(buf, sizeof(buf)), 0);

	node = state_find_node(buf, 0, "dev");
	assert_true(node > 0);
	assert_int_equal(state_find_node(buf, 0, "nope"), -ENOENT);
	assert_int_equal(state_get_u32(buf, node, "a", &v32), 0);
	assert_int_equal(v32, 0xdeadbeef);
	assert_int_equal(state_get_u64(buf, node, "b", &v64), 0);
	assert_int_equal(v64, 0x0123456789abcdefULL);
	assert_int_equal(state_get_bytes(buf, node, "c", got, sizeof(got)), 0);
	assert_memory_equal(got, bytes, sizeof(got));
	/* Wrong sizes and missing names are errors, never partial reads. */
	assert_int_equal(state_get_u64(buf, node, "a", &v64), -EINVAL);
	assert_int_equal(state_get_u32(buf, node, "b", &v32), -EINVAL);
	assert_int_equal(state_get_bytes(buf, node, "c", got, 4), -EINVAL);
	assert_int_equal(state_get_u32(buf, node, "zz", &v32), -EINVAL);
}

static void test_no_space(void **state)
{
	uint8_t buf[128], big[256] = {0};

	(void)state;
	assert_int_equal(state_tree_begin(buf, sizeof(buf)), 0);
	assert_int_equal(state_put_bytes(buf, "big", big, sizeof(big)), -ENOSPC);
}

/*
 * state_tree_check: a tree as written passes; one of another length, a
 * bad magic, or a version other than 17 is refused before fdt_check_full
 * sees it (libfdt 1.6.1 dereferenced NULL on a fuzzed version-3 tree).
 */
static void test_tree_check(void **state)
{
	static uint8_t buf[1024] __attribute__((aligned(8)));
	static uint8_t bad[1024] __attribute__((aligned(8)));
	size_t len;

	(void)state;
	assert_int_equal(state_tree_begin(buf, sizeof(buf)), 0);
	assert_int_equal(state_put_u32(buf, "a", 1), 0);
	assert_int_equal(state_tree_end(buf), 0);
	len = fdt_totalsize(buf);
	assert_int_equal(state_tree_check(buf, len), 0);
	assert_int_equal(state_tree_check(buf, len + 8), -EINVAL);
	assert_int_equal(state_tree_check(buf, len - 1), -EINVAL);
	assert_int_equal(state_tree_check(buf, 8), -EINVAL);
	memcpy(bad, buf, len);
	fdt_set_version(bad, 3);
	assert_int_equal(state_tree_check(bad, len), -EINVAL);
	memcpy(bad, buf, len);
	fdt_set_magic(bad, 0x12345678);
	assert_int_equal(state_tree_check(bad, len), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_no_space),
	    cmocka_unit_test(test_tree_check),
	};
	return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
