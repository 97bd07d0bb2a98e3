// SPDX-License-Identifier: MIT
/* i8042: reset paths, Linux's probe sequence with empty ports, IRQs, port 0x61, save/load. */
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
#include "i8042.h"
#include "layout.h"
#include "state.h"

struct fixture {
	struct bus pio;
	struct i8042 k;
	int resets;
	int level[16];
	int irq_calls; /* set_level calls on either line */
};

static void on_reset(void *opaque)
{
	struct fixture *f = opaque;

	/* Called without the device lock: touching the device here must not deadlock. */
	uint8_t v;
	assert_int_equal(bus_access(&f->pio, PORT_I8042_CMD, &v, 1, false), 0);
	f->resets++;
}

static void on_irq(void *opaque, unsigned gsi, int level)
{
	struct fixture *f = opaque;

	assert_true(gsi == 1 || gsi == 12);
	f->level[gsi] = level;
	f->irq_calls++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || bus_init(&f->pio, "pio"))
		return -1;
	if (i8042_init(&f->k, &f->pio, (struct irq_line){on_irq, f, 1},
		       (struct irq_line){on_irq, f, 12}, on_reset, f))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	i8042_destroy(&f->k);
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
	uint8_t v = 0;

	assert_int_equal(bus_access(&f->pio, port, &v, 1, false), 0);
	return v;
}

static uint8_t status(struct fixture *f)
{
	return in(f, PORT_I8042_CMD);
}

/* Linux's i8042_command(): wait for IBF clear, write, wait for OBF, read. */
static uint8_t command_reply(struct fixture *f, uint8_t cmd)
{
	assert_false(status(f) & I8042_STR_IBF);
	out(f, PORT_I8042_CMD, cmd);
	assert_true(status(f) & I8042_STR_OBF);
	return in(f, PORT_I8042_DATA);
}

static void test_reset_by_pulse(void **state)
{
	struct fixture *f = *state;

	out(f, PORT_I8042_CMD, 0xff); /* pulses nothing */
	assert_int_equal(f->resets, 0);
	out(f, PORT_I8042_CMD, 0xfe);
	assert_int_equal(f->resets, 1);
}

static void test_reset_by_output_port(void **state)
{
	struct fixture *f = *state;

	/* Bit 0 set keeps the CPU running (and A20 toggles are harmless). */
	out(f, PORT_I8042_CMD, 0xd1);
	out(f, PORT_I8042_DATA, 0x03);
	assert_int_equal(f->resets, 0);
	assert_int_equal(command_reply(f, 0xd0), 0x03);
	out(f, PORT_I8042_CMD, 0xdd);
	assert_int_equal(command_reply(f, 0xd0), 0x01);
	out(f, PORT_I8042_CMD, 0xdf);
	assert_int_equal(command_reply(f, 0xd0), 0x03);
	assert_int_equal(f->resets, 0);

	out(f, PORT_I8042_CMD, 0xd1);
	out(f, PORT_I8042_DATA, 0x02);
	assert_int_equal(f->resets, 1);
}

static void test_probe_self_test_and_ctr(void **state)
{
	struct fixture *f = *state;
	uint8_t st, ctr;

	/* i8042_controller_check(): nothing to flush. */
	st = status(f);
	assert_false(st & I8042_STR_OBF);
	assert_true(st & I8042_STR_UNLOCK); /* no "keylock active" */
	assert_true(st & I8042_STR_SYS);

	assert_int_equal(command_reply(f, 0xaa), 0x55);
	assert_true(status(f) & I8042_STR_CMD);

	/* i8042_controller_init(): two equal CTR reads, then write it back changed. */
	ctr = command_reply(f, 0x20);
	assert_int_equal(command_reply(f, 0x20), ctr);
	assert_true(ctr & I8042_CTR_XLATE);
	ctr = (uint8_t)((ctr | I8042_CTR_KBDDIS) & ~I8042_CTR_KBDINT);
	out(f, PORT_I8042_CMD, 0x60);
	out(f, PORT_I8042_DATA, ctr);
	assert_false(status(f) & I8042_STR_CMD);
	assert_int_equal(command_reply(f, 0x20), ctr);
	/* Enable/disable commands edit the same byte. */
	out(f, PORT_I8042_CMD, 0xae);
	out(f, PORT_I8042_CMD, 0xa7);
	assert_int_equal(command_reply(f, 0x20), (ctr & ~I8042_CTR_KBDDIS) | I8042_CTR_AUXDIS);
	/* The SYS status bit mirrors the command byte. */
	out(f, PORT_I8042_CMD, 0x60);
	out(f, PORT_I8042_DATA, 0);
	assert_false(status(f) & I8042_STR_SYS);

	/* Interface tests: no error. */
	assert_int_equal(command_reply(f, 0xab), 0x00);
	assert_int_equal(command_reply(f, 0xa9), 0x00);
	/* Other RAM bytes are storage. */
	out(f, PORT_I8042_CMD, 0x65);
	out(f, PORT_I8042_DATA, 0x99);
	assert_int_equal(command_reply(f, 0x25), 0x99);
	assert_int_equal(f->resets, 0);
}

static void test_aux_loop_and_irqs(void **state)
{
	struct fixture *f = *state;

	/* i8042_check_aux(): loopback echoes with the AUX flag. */
	out(f, PORT_I8042_CMD, 0xd3);
	out(f, PORT_I8042_DATA, 0x5a);
	assert_int_equal(status(f) & (I8042_STR_OBF | I8042_STR_AUXDATA),
			 I8042_STR_OBF | I8042_STR_AUXDATA);
	assert_int_equal(f->level[12], 0); /* AUXINT is off */
	assert_int_equal(in(f, PORT_I8042_DATA), 0x5a);
	assert_false(status(f) & (I8042_STR_OBF | I8042_STR_AUXDATA));

	/* With AUXINT on, the loop raises IRQ 12 until the byte is read. */
	out(f, PORT_I8042_CMD, 0x60);
	out(f, PORT_I8042_DATA, I8042_CTR_AUXINT | I8042_CTR_KBDINT | I8042_CTR_SYS);
	out(f, PORT_I8042_CMD, 0xd3);
	out(f, PORT_I8042_DATA, 0xa5);
	assert_int_equal(f->level[12], 1);
	assert_int_equal(f->level[1], 0);
	assert_int_equal(in(f, PORT_I8042_DATA), 0xa5);
	assert_int_equal(f->level[12], 0);

	/* A reply to a controller command comes from the keyboard side: IRQ 1. */
	out(f, PORT_I8042_CMD, 0x20);
	assert_int_equal(f->level[1], 1);
	in(f, PORT_I8042_DATA);
	assert_int_equal(f->level[1], 0);
}

static void test_absent_devices_time_out_at_once(void **state)
{
	struct fixture *f = *state;

	out(f, PORT_I8042_CMD, 0x60);
	out(f, PORT_I8042_DATA, I8042_CTR_AUXINT | I8042_CTR_KBDINT | I8042_CTR_SYS);

	/* atkbd's first command (GET ID) to the keyboard: timeout, IRQ 1. */
	out(f, PORT_I8042_DATA, 0xf2);
	assert_int_equal(status(f) & (I8042_STR_OBF | I8042_STR_TIMEOUT | I8042_STR_AUXDATA),
			 I8042_STR_OBF | I8042_STR_TIMEOUT);
	assert_int_equal(f->level[1], 1);
	assert_int_equal(in(f, PORT_I8042_DATA), 0xfe);
	assert_false(status(f) & (I8042_STR_OBF | I8042_STR_TIMEOUT));
	assert_int_equal(f->level[1], 0);

	/* psmouse's first command through 0xd4: timeout on the AUX side, IRQ 12. */
	out(f, PORT_I8042_CMD, 0xd4);
	out(f, PORT_I8042_DATA, 0xf2);
	assert_int_equal(status(f) & (I8042_STR_OBF | I8042_STR_TIMEOUT | I8042_STR_AUXDATA),
			 I8042_STR_OBF | I8042_STR_TIMEOUT | I8042_STR_AUXDATA);
	assert_int_equal(f->level[12], 1);
	assert_int_equal(in(f, PORT_I8042_DATA), 0xfe);
	assert_int_equal(f->level[12], 0);
	assert_int_equal(f->resets, 0);
}

static void test_port_b_refresh_toggles(void **state)
{
	struct fixture *f = *state;
	uint8_t a, b, c;

	a = in(f, PORT_I8042_PORTB);
	b = in(f, PORT_I8042_PORTB);
	c = in(f, PORT_I8042_PORTB);
	assert_int_equal((a ^ b) & 0x10, 0x10);
	assert_int_equal((b ^ c) & 0x10, 0x10);
	out(f, PORT_I8042_PORTB, 0xff);
	assert_int_equal(in(f, PORT_I8042_PORTB) & 0x0f, 0x0f);
	out(f, PORT_I8042_PORTB, 0x01);
	assert_int_equal(in(f, PORT_I8042_PORTB) & 0x0f, 0x01);
}

static void test_state_roundtrip(void **state)
{
	struct fixture *f = *state, *g = NULL;
	struct i8042_state st, bad;

	out(f, PORT_I8042_CMD, 0x60);
	out(f, PORT_I8042_DATA, I8042_CTR_AUXINT | I8042_CTR_SYS);
	out(f, PORT_I8042_CMD, 0xd3);
	out(f, PORT_I8042_DATA, 0x77);
	out(f, PORT_I8042_CMD, 0xd1); /* waiting for its data byte */
	i8042_get_state(&f->k, &st);

	assert_int_equal(setup((void **)&g), 0);
	assert_int_equal(i8042_set_state(&g->k, &st), 0);
	assert_int_equal(g->level[12], 1);
	assert_int_equal(in(g, PORT_I8042_DATA), 0x77);
	out(g, PORT_I8042_DATA, 0x00); /* completes the 0xd1 from before the snapshot */
	assert_int_equal(g->resets, 1);

	bad = st;
	bad.pending_cmd = 0xaa;
	assert_int_equal(i8042_set_state(&g->k, &bad), -EINVAL);
	teardown((void **)&g);
}

/* State tree: a whole tree with the controller as node "i8042". */
#define TREE_SIZE 4096

static void *save_tree(struct fixture *f)
{
	void *t = malloc(TREE_SIZE);

	assert_non_null(t);
	assert_int_equal(state_tree_begin(t, TREE_SIZE), 0);
	assert_int_equal(fdt_begin_node(t, "i8042"), 0);
	assert_int_equal(i8042_save(&f->k, t), 0);
	assert_int_equal(fdt_end_node(t), 0);
	assert_int_equal(state_tree_end(t), 0);
	assert_int_equal(fdt_check_full(t, TREE_SIZE), 0);
	return t;
}

static int load_tree(struct fixture *f, const void *t)
{
	int node = state_find_node(t, 0, "i8042");

	assert_true(node >= 0);
	return i8042_load(&f->k, t, node);
}

/*
 * RAM bytes, command byte, A20 off, port B with its refresh bit flipped,
 * an AUX timeout byte in the output buffer raising IRQ 12, and 0xd3
 * waiting for its data byte.
 */
static void distinctive_state(struct fixture *f)
{
	out(f, PORT_I8042_CMD, 0x65);
	out(f, PORT_I8042_DATA, 0x99);
	out(f, PORT_I8042_CMD, 0x7f);
	out(f, PORT_I8042_DATA, 0x42);
	out(f, PORT_I8042_CMD, 0x60);
	out(f, PORT_I8042_DATA,
	    I8042_CTR_AUXINT | I8042_CTR_KBDINT | I8042_CTR_SYS | I8042_CTR_KBDDIS);
	out(f, PORT_I8042_CMD, 0xdd); /* A20 off */
	out(f, PORT_I8042_PORTB, 0x0b);
	in(f, PORT_I8042_PORTB);
	out(f, PORT_I8042_CMD, 0xd4);
	out(f, PORT_I8042_DATA, 0xf2); /* to the absent mouse: 0xfe, timeout */
	out(f, PORT_I8042_CMD, 0xd3);
	assert_int_equal(f->level[12], 1);
	assert_int_equal(f->level[1], 0);
}

/* Reads (and the writes they need) that show all of the state, in a fixed order. */
static size_t read_all(struct fixture *f, uint8_t *v)
{
	size_t n = 0;

	v[n++] = status(f);
	v[n++] = in(f, PORT_I8042_PORTB);
	v[n++] = in(f, PORT_I8042_PORTB);
	v[n++] = (uint8_t)f->level[12];
	v[n++] = in(f, PORT_I8042_DATA);
	v[n++] = status(f);
	v[n++] = (uint8_t)f->level[12];
	out(f, PORT_I8042_DATA, 0x33); /* the data byte the pending 0xd3 waits for */
	v[n++] = status(f);
	v[n++] = in(f, PORT_I8042_DATA);
	v[n++] = command_reply(f, 0x20);
	v[n++] = command_reply(f, 0x25);
	v[n++] = command_reply(f, 0x3f);
	v[n++] = command_reply(f, 0xd0);
	return n;
}

static void test_save_load_round_trip(void **state)
{
	struct fixture *f = *state, *g = NULL;
	uint8_t a[32], b[32];
	size_t na, nb;
	void *t;

	distinctive_state(f);
	t = save_tree(f);
	assert_int_equal(setup((void **)&g), 0);
	assert_int_equal(load_tree(g, t), 0);
	/* Both lines driven at load, IRQ 12 high. */
	assert_int_equal(g->irq_calls, 2);
	assert_int_equal(g->level[12], 1);
	assert_int_equal(g->level[1], 0);

	na = read_all(f, a);
	nb = read_all(g, b);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na);
	assert_int_equal(b[0], I8042_STR_OBF | I8042_STR_CMD | I8042_STR_AUXDATA |
				   I8042_STR_TIMEOUT | I8042_STR_UNLOCK | I8042_STR_SYS);
	assert_int_equal(b[1], 0x0b | 0x10 | 0x20); /* refresh was 1 */
	assert_int_equal(b[2], 0x0b | 0x20);
	assert_int_equal(b[4], 0xfe); /* the pending output byte */
	assert_int_equal(b[5], I8042_STR_CMD | I8042_STR_UNLOCK | I8042_STR_SYS);
	assert_int_equal(b[6], 0);
	assert_int_equal(b[7], I8042_STR_OBF | I8042_STR_AUXDATA | I8042_STR_UNLOCK |
				   I8042_STR_SYS); /* 0xd3 completed: AUX loopback */
	assert_int_equal(b[8], 0x33);
	assert_int_equal(b[9],
			 I8042_CTR_AUXINT | I8042_CTR_KBDINT | I8042_CTR_SYS | I8042_CTR_KBDDIS);
	assert_int_equal(b[10], 0x99);
	assert_int_equal(b[11], 0x42);
	assert_int_equal(b[12], 0x01); /* A20 off, running */
	assert_int_equal(g->resets, 0);
	free(t);
	teardown((void **)&g);
}

static void *tree_copy(const void *t)
{
	void *c = malloc(TREE_SIZE);

	assert_non_null(c);
	assert_int_equal(fdt_open_into(t, c, TREE_SIZE), 0);
	return c;
}

static void put(void *t, const char *name, uint32_t v)
{
	assert_int_equal(fdt_setprop_u32(t, state_find_node(t, 0, "i8042"), name, v), 0);
}

static void put_raw(void *t, const char *name, int len)
{
	uint8_t junk[64] = {0};

	assert_int_equal(fdt_setprop(t, state_find_node(t, 0, "i8042"), name, junk, len), 0);
}

static void drop(void *t, const char *name)
{
	assert_int_equal(fdt_delprop(t, state_find_node(t, 0, "i8042"), name), 0);
}

static void expect_rejected(struct fixture *g, void *t)
{
	struct i8042_state before, after;
	int calls = g->irq_calls;

	assert_int_equal(fdt_check_full(t, TREE_SIZE), 0);
	i8042_get_state(&g->k, &before);
	assert_int_equal(load_tree(g, t), -EINVAL);
	i8042_get_state(&g->k, &after);
	assert_memory_equal(&before, &after, sizeof(before));
	assert_int_equal(g->irq_calls, calls);
	free(t);
}

static void test_load_rejects_bad_trees(void **state)
{
	struct fixture *f = *state, *g = NULL;
	static const char *const props[] = {"ram",     "outport",	"outbuf",
					    "status",  "pending-cmd",	"portb",
					    "refresh", "kbd-irq-level", "aux-irq-level"};
	void *good, *t;

	distinctive_state(f);
	good = save_tree(f);
	assert_int_equal(setup((void **)&g), 0);

	for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
		t = tree_copy(good);
		drop(t, props[i]);
		expect_rejected(g, t);
		t = tree_copy(good);
		put_raw(t, props[i], strcmp(props[i], "ram") ? 8 : I8042_RAM_SIZE - 1);
		expect_rejected(g, t);
	}
	t = tree_copy(good);
	put(t, "outbuf", 0x100);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "outport", 0x1ff);
	expect_rejected(g, t);
	/* Status: IBF (never set), AUX data or timeout without a byte. */
	t = tree_copy(good);
	put(t, "status",
	    I8042_STR_OBF | I8042_STR_CMD | I8042_STR_AUXDATA | I8042_STR_TIMEOUT | I8042_STR_IBF);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "status", I8042_STR_CMD | I8042_STR_AUXDATA);
	put(t, "aux-irq-level", 0);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "status", I8042_STR_CMD | I8042_STR_TIMEOUT);
	put(t, "aux-irq-level", 0);
	expect_rejected(g, t);
	/* A pending command that takes no data byte, or one without the CMD bit. */
	t = tree_copy(good);
	put(t, "pending-cmd", 0xaa);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "status", I8042_STR_OBF | I8042_STR_AUXDATA | I8042_STR_TIMEOUT);
	expect_rejected(g, t);
	/* Port B beyond bits 0-3; a refresh flag that is not 0/1. */
	t = tree_copy(good);
	put(t, "portb", 0x1b);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "refresh", 2);
	expect_rejected(g, t);
	/* IRQ levels that disagree with status and command byte. */
	t = tree_copy(good);
	put(t, "kbd-irq-level", 1);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "aux-irq-level", 0);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "aux-irq-level", 2);
	expect_rejected(g, t);

	assert_int_equal(load_tree(g, good), 0);
	assert_int_equal(g->level[12], 1);
	assert_int_equal(in(g, PORT_I8042_DATA), 0xfe);
	free(good);
	teardown((void **)&g);
}

static void test_save_no_room(void **state)
{
	struct fixture *f = *state;
	uint8_t small[128];

	assert_int_equal(state_tree_begin(small, sizeof(small)), 0);
	assert_int_equal(fdt_begin_node(small, "i8042"), 0);
	assert_int_equal(i8042_save(&f->k, small), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_reset_by_pulse, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_by_output_port, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_probe_self_test_and_ctr, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_aux_loop_and_irqs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_absent_devices_time_out_at_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_port_b_refresh_toggles, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_state_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_rejects_bad_trees, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_no_room, setup, teardown),
	};
	return cmocka_run_group_tests_name("i8042", tests, NULL, NULL);
}
