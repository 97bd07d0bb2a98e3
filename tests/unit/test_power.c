// SPDX-License-Identifier: MIT
/* ACPI sleep registers and the test-exit port: power-off paths, save/load through the state tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libfdt.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "layout.h"
#include "power.h"
#include "state.h"

#define TREE_SIZE 1024

struct fixture {
	struct bus pio;
	struct power pm;
	int poweroffs, last_status;
};

static void on_poweroff(void *opaque, int status)
{
	struct fixture *f = opaque;

	f->poweroffs++;
	f->last_status = status;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || bus_init(&f->pio, "pio") || power_init(&f->pm, &f->pio, on_poweroff, f))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	bus_destroy(&f->pio);
	free(f);
	return 0;
}

static void out(struct fixture *f, uint16_t port, uint8_t v)
{
	assert_int_equal(bus_access(&f->pio, port, &v, 1, true), 0);
}

static uint8_t in(struct fixture *f, uint16_t port)
{
	uint8_t v = 0x5a;

	assert_int_equal(bus_access(&f->pio, port, &v, 1, false), 0);
	return v;
}

static void test_s5_powers_off(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in(f, PORT_ACPI_SLEEP_CTL), 0);
	assert_int_equal(in(f, PORT_ACPI_SLEEP_STS), 0);
	/* Other sleep types, or S5 without SLP_EN, are ignored. */
	out(f, PORT_ACPI_SLEEP_CTL, ACPI_SLP_EN | (3 << 2));
	out(f, PORT_ACPI_SLEEP_CTL, ACPI_SLP_TYP_S5 << 2);
	assert_int_equal(f->poweroffs, 0);
	out(f, PORT_ACPI_SLEEP_CTL, ACPI_SLEEP_S5_VALUE);
	assert_int_equal(f->poweroffs, 1);
	assert_int_equal(f->last_status, 0);
}

static void test_debug_exit(void **state)
{
	struct fixture *f = *state;
	uint8_t d[4] = {0x2a, 0, 0, 0};

	assert_int_equal(in(f, PORT_DEBUG_EXIT), 0xff);
	assert_int_equal(bus_access(&f->pio, PORT_DEBUG_EXIT, d, 4, true), 0);
	assert_int_equal(f->poweroffs, 1);
	assert_int_equal(f->last_status, 0x2a);
}

static void *save_tree(struct fixture *f)
{
	void *t = malloc(TREE_SIZE);

	assert_non_null(t);
	assert_int_equal(state_tree_begin(t, TREE_SIZE), 0);
	assert_int_equal(fdt_begin_node(t, "power"), 0);
	assert_int_equal(power_save(&f->pm, t), 0);
	assert_int_equal(fdt_end_node(t), 0);
	assert_int_equal(state_tree_end(t), 0);
	assert_int_equal(fdt_check_full(t, TREE_SIZE), 0);
	return t;
}

static int load_tree(struct fixture *f, const void *t)
{
	int node = state_find_node(t, 0, "power");

	assert_true(node >= 0);
	return power_load(&f->pm, t, node);
}

static void test_save_load_round_trip(void **state)
{
	struct fixture *f = *state, *g = NULL;
	void *t;

	out(f, PORT_ACPI_SLEEP_CTL, ACPI_SLP_EN | (3 << 2)); /* ignored: leaves nothing behind */
	t = save_tree(f);
	assert_int_equal(setup((void **)&g), 0);
	assert_int_equal(load_tree(g, t), 0);
	assert_int_equal(in(g, PORT_ACPI_SLEEP_CTL), in(f, PORT_ACPI_SLEEP_CTL));
	assert_int_equal(in(g, PORT_ACPI_SLEEP_STS), in(f, PORT_ACPI_SLEEP_STS));
	assert_int_equal(g->poweroffs, 0);
	out(g, PORT_ACPI_SLEEP_CTL, ACPI_SLEEP_S5_VALUE);
	assert_int_equal(g->poweroffs, 1);
	free(t);
	teardown((void **)&g);
}

static void test_load_rejects_bad_trees(void **state)
{
	struct fixture *f = *state;
	void *good = save_tree(f), *t = malloc(TREE_SIZE);
	uint8_t junk[2] = {0};
	int node;

	assert_non_null(t);
	/* Missing. */
	assert_int_equal(fdt_open_into(good, t, TREE_SIZE), 0);
	node = state_find_node(t, 0, "power");
	assert_int_equal(fdt_delprop(t, node, "sleep-status"), 0);
	assert_int_equal(load_tree(f, t), -EINVAL);
	/* Wrong size. */
	assert_int_equal(fdt_open_into(good, t, TREE_SIZE), 0);
	node = state_find_node(t, 0, "power");
	assert_int_equal(fdt_setprop(t, node, "sleep-status", junk, sizeof(junk)), 0);
	assert_int_equal(load_tree(f, t), -EINVAL);
	/* A wake status this model cannot hold. */
	assert_int_equal(fdt_open_into(good, t, TREE_SIZE), 0);
	node = state_find_node(t, 0, "power");
	assert_int_equal(fdt_setprop_u32(t, node, "sleep-status", 0x80), 0);
	assert_int_equal(load_tree(f, t), -EINVAL);
	/* The device still works. */
	assert_int_equal(in(f, PORT_ACPI_SLEEP_STS), 0);
	assert_int_equal(load_tree(f, good), 0);
	free(t);
	free(good);
}

static void test_save_no_room(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256];
	size_t size = 32;

	/* The smallest tree that holds the open node has no room for the property. */
	while (state_tree_begin(buf, size) || fdt_begin_node(buf, "power"))
		size += 4;
	assert_true(size < sizeof(buf));
	assert_int_equal(power_save(&f->pm, buf), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_s5_powers_off, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_debug_exit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_rejects_bad_trees, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_no_room, setup, teardown),
	};
	return cmocka_run_group_tests_name("power", tests, NULL, NULL);
}
