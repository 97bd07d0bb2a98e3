// SPDX-License-Identifier: MIT
/* i8042: reset paths, Linux's probe sequence with empty ports, IRQs, port 0x61. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "i8042.h"
#include "layout.h"

struct fixture {
	struct bus pio;
	struct i8042 k;
	int resets;
	int level[16];
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
	};
	return cmocka_run_group_tests_name("i8042", tests, NULL, NULL);
}
