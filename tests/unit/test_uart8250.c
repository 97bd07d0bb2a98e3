// SPDX-License-Identifier: MIT
/*
 * 16550A UART: Linux's probe and start-up, interrupts and line levels, FIFO, loopback, threads,
 * save/load through the state tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libfdt.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "layout.h"
#include "state.h"
#include "uart8250.h"

#define BASE PORT_COM1

struct fixture {
	struct bus pio;
	struct uart8250 u;
	pthread_mutex_t lock; /* guards the recorders below */
	uint8_t out[65536];
	size_t out_len;
	int output_calls;
	int level, irq_changes;
	int rx_space_calls;
	bool echo; /* output callback feeds what it gets back as input */
};

static void rec_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct fixture *f = opaque;

	pthread_mutex_lock(&f->lock);
	assert_true(f->out_len + len <= sizeof(f->out));
	memcpy(f->out + f->out_len, buf, len);
	f->out_len += len;
	f->output_calls++;
	pthread_mutex_unlock(&f->lock);
	sched_yield(); /* give other writers a chance to queue behind us */
	if (f->echo)
		uart8250_receive(&f->u, buf, len); /* no lock is held: must not deadlock */
}

static void rec_rx_space(void *opaque)
{
	struct fixture *f = opaque;

	pthread_mutex_lock(&f->lock);
	f->rx_space_calls++;
	pthread_mutex_unlock(&f->lock);
}

static void rec_irq(void *opaque, unsigned gsi, int level)
{
	struct fixture *f = opaque;

	assert_int_equal(gsi, PORT_COM1_IRQ);
	f->level = level;
	f->irq_changes++;
}

static const struct uart8250_ops ops = {.output = rec_output, .rx_space = rec_rx_space};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct irq_line irq = {.set_level = rec_irq, .gsi = PORT_COM1_IRQ};

	if (!f)
		return -1;
	irq.opaque = f;
	pthread_mutex_init(&f->lock, NULL);
	if (bus_init(&f->pio, "pio") || uart8250_init(&f->u, &f->pio, BASE, irq, &ops, f))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	uart8250_destroy(&f->u);
	bus_destroy(&f->pio);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

static void out(struct fixture *f, unsigned reg, uint8_t v)
{
	assert_int_equal(bus_access(&f->pio, BASE + reg, &v, 1, true), 0);
}

static uint8_t in(struct fixture *f, unsigned reg)
{
	uint8_t v = 0;

	assert_int_equal(bus_access(&f->pio, BASE + reg, &v, 1, false), 0);
	return v;
}

/* drivers/tty/serial/8250 autoconfig(): the reads it bases its decision on. */
static void test_linux_autoconfig_finds_16550a(void **state)
{
	struct fixture *f = *state;
	uint8_t save_mcr, save_lcr;

	/* IER test: bits 0-3 read back, 0 reads 0. */
	out(f, UART_IER, 0);
	assert_int_equal(in(f, UART_IER) & 0x0f, 0);
	out(f, UART_IER, 0x0f);
	assert_int_equal(in(f, UART_IER) & 0x0f, 0x0f);
	out(f, UART_IER, 0);

	/* Loopback test: MCR = LOOP|OUT2|RTS must show DCD|CTS in MSR's status bits. */
	save_mcr = in(f, UART_MCR);
	save_lcr = in(f, UART_LCR);
	out(f, UART_MCR, UART_MCR_LOOP | 0x0a);
	assert_int_equal(in(f, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_CTS);
	out(f, UART_MCR, save_mcr);

	/* FIFO test: IIR bits 7:6 both set means 16550A. */
	out(f, UART_LCR, 0xbf);
	out(f, 2, 0); /* EFR on an enhanced UART, FCR here */
	out(f, UART_LCR, 0);
	out(f, UART_FCR, UART_FCR_ENABLE);
	assert_int_equal(in(f, UART_IIR) >> 6, 3);

	/* No EFR behind DLAB or LCR=0xbf: offset 2 reads IIR, non-zero. */
	out(f, UART_LCR, UART_LCR_DLAB);
	assert_int_not_equal(in(f, 2), 0);
	out(f, UART_LCR, 0xbf);
	assert_int_not_equal(in(f, 2), 0);

	/* Not an NS SuperIO: IIR bit 4 never follows MCR.LOOP. */
	out(f, UART_LCR, 0);
	out(f, UART_MCR, save_mcr ^ UART_MCR_LOOP);
	out(f, UART_LCR, 0xe0);
	assert_int_equal(in(f, 2) & UART_MCR_LOOP, 0);
	out(f, UART_LCR, 0);
	out(f, UART_MCR, save_mcr);

	/* Not a 16750: no 64-byte FIFO bit in IIR, with or without DLAB. */
	out(f, UART_FCR, UART_FCR_ENABLE | 0x20);
	assert_int_equal(in(f, UART_IIR) & 0xe0, 0xc0);
	out(f, UART_LCR, UART_LCR_DLAB);
	out(f, UART_FCR, UART_FCR_ENABLE | 0x20);
	assert_int_equal(in(f, UART_IIR) & 0xe0, 0xc0);
	out(f, UART_LCR, 0);

	/* Not an XScale: IER bit 6 (UUE) does not stick. */
	out(f, UART_IER, 0x40);
	assert_int_equal(in(f, UART_IER) & 0x40, 0);
	out(f, UART_IER, 0);

	out(f, UART_LCR, save_lcr);
	assert_int_equal(f->out_len, 0); /* nothing was transmitted by probing */
	assert_int_equal(f->level, 0);
}

/* serial8250_do_startup(): LSR sanity, the THRE re-assert test and the TX-enable test. */
static void test_linux_startup_thre_tests(void **state)
{
	struct fixture *f = *state;
	uint8_t iir1, iir, lsr;

	out(f, UART_FCR, UART_FCR_ENABLE);
	out(f, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLR_RX | UART_FCR_CLR_TX);
	out(f, UART_FCR, 0);
	in(f, UART_LSR);
	in(f, UART_RBR);
	in(f, UART_IIR);
	in(f, UART_MSR);
	assert_int_not_equal(in(f, UART_LSR), 0xff);

	out(f, UART_LCR, 0x03); /* 8N1 */
	out(f, UART_MCR, UART_MCR_OUT2 | UART_MCR_RTS | UART_MCR_DTR);

	/* THRE must re-assert each time ETBEI is set again. */
	out(f, UART_IER, UART_IER_THRI);
	assert_int_equal(f->level, 1);
	iir1 = in(f, UART_IIR);
	assert_int_equal(f->level, 0); /* reading IIR acknowledged THRE */
	out(f, UART_IER, 0);
	out(f, UART_IER, UART_IER_THRI);
	iir = in(f, UART_IIR);
	out(f, UART_IER, 0);
	assert_int_equal(iir1, UART_IIR_THRI);
	assert_int_equal(iir, UART_IIR_THRI);

	/* TX enable test: with ETBEI set and TEMT, IIR must report an interrupt. */
	out(f, UART_IER, UART_IER_THRI);
	lsr = in(f, UART_LSR);
	iir = in(f, UART_IIR);
	out(f, UART_IER, 0);
	assert_true(lsr & UART_LSR_TEMT);
	assert_false(iir & UART_IIR_NO_INT);
	assert_int_equal(f->level, 0);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;

	out(f, UART_IER, UART_IER_RDI);
	out(f, UART_LCR, UART_LCR_DLAB | 0x03);
	out(f, UART_DLL, 0x01); /* 115200 baud */
	out(f, UART_DLM, 0x02);
	assert_int_equal(in(f, UART_DLL), 0x01);
	assert_int_equal(in(f, UART_DLM), 0x02);
	assert_int_equal(f->out_len, 0); /* DLL writes are not transmitted */
	out(f, UART_LCR, 0x03);
	/* Same offsets, other registers now. */
	assert_int_equal(in(f, UART_IER), UART_IER_RDI);
	out(f, UART_THR, 'x');
	assert_int_equal(f->out_len, 1);
	out(f, UART_LCR, UART_LCR_DLAB | 0x03);
	assert_int_equal(in(f, UART_DLL), 0x01);
	assert_int_equal(in(f, UART_DLM), 0x02);
	assert_int_equal(in(f, UART_LCR), UART_LCR_DLAB | 0x03);
	/* Scratch register is plain storage. */
	out(f, UART_SCR, 0x5a);
	assert_int_equal(in(f, UART_SCR), 0x5a);
}

static void test_polled_output(void **state)
{
	struct fixture *f = *state;
	const char *msg = "hello, world\n";

	out(f, UART_LCR, 0x03);
	for (const char *p = msg; *p; p++) {
		assert_true(in(f, UART_LSR) & UART_LSR_THRE);
		out(f, UART_THR, (uint8_t)*p);
		assert_true(in(f, UART_LSR) & UART_LSR_TEMT);
	}
	assert_int_equal(f->out_len, strlen(msg));
	assert_memory_equal(f->out, msg, strlen(msg));
	assert_int_equal(f->irq_changes, 0); /* no interrupt was enabled */

	/* A 16-bit write to THR+IER is two byte writes. */
	uint16_t w = 'A' | (UART_IER_RDI << 8);
	assert_int_equal(bus_access(&f->pio, BASE, (uint8_t *)&w, 2, true), 0);
	assert_int_equal(f->out[f->out_len - 1], 'A');
	assert_int_equal(in(f, UART_IER), UART_IER_RDI);
}

static void test_thre_interrupt_and_out2(void **state)
{
	struct fixture *f = *state;

	out(f, UART_FCR, UART_FCR_ENABLE);
	/* Pending but OUT2 clear: a PC does not see it. */
	out(f, UART_IER, UART_IER_THRI);
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	assert_int_equal(f->level, 0);
	out(f, UART_IER, 0);

	out(f, UART_MCR, UART_MCR_OUT2);
	out(f, UART_IER, UART_IER_THRI);
	assert_int_equal(f->level, 1);
	/* Writing THR clears THRE, and the instant transmitter raises it again. */
	out(f, UART_THR, 'a');
	assert_int_equal(f->level, 1);
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	assert_int_equal(f->level, 0);
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	out(f, UART_THR, 'b');
	assert_int_equal(f->level, 1);
	/* Dropping ETBEI or OUT2 lowers the line. */
	out(f, UART_MCR, 0);
	assert_int_equal(f->level, 0);
	out(f, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(f->level, 1);
	out(f, UART_IER, 0);
	assert_int_equal(f->level, 0);
	/* Re-writing ETBEI while already set is not an edge. */
	out(f, UART_IER, UART_IER_THRI);
	in(f, UART_IIR);
	out(f, UART_IER, UART_IER_THRI | UART_IER_RDI);
	assert_int_equal(f->level, 0);
	assert_memory_equal(f->out, "ab", 2);
}

static void test_rx_fifo_interrupts_and_space(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[20];

	for (int i = 0; i < 20; i++)
		buf[i] = (uint8_t)('A' + i);
	out(f, UART_FCR, UART_FCR_ENABLE | 0xc0); /* trigger at 14 */
	out(f, UART_MCR, UART_MCR_OUT2);
	out(f, UART_IER, UART_IER_RDI);
	assert_false(in(f, UART_LSR) & UART_LSR_DR);

	/* The FIFO takes 16; the caller keeps the rest. */
	assert_int_equal(uart8250_receive(&f->u, buf, 20), UART8250_FIFO_SIZE);
	assert_int_equal(uart8250_receive(&f->u, buf + 16, 4), 0);
	assert_int_equal(f->level, 1);
	assert_true(in(f, UART_LSR) & UART_LSR_DR);
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	for (int i = 0; i < 3; i++)
		assert_int_equal(in(f, UART_RBR), 'A' + i);
	/* Below the trigger level: reported as a character timeout, still pending. */
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_TOI);
	assert_int_equal(f->level, 1);
	for (int i = 3; i < 15; i++)
		assert_int_equal(in(f, UART_RBR), 'A' + i);
	assert_int_equal(f->rx_space_calls, 0); /* not empty yet */
	assert_int_equal(in(f, UART_RBR), 'A' + 15);
	assert_int_equal(f->level, 0);
	assert_false(in(f, UART_LSR) & UART_LSR_DR);
	assert_int_equal(f->rx_space_calls, 1); /* drained: the owner may push the rest */
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);

	assert_int_equal(uart8250_receive(&f->u, buf + 16, 4), 4);
	assert_int_equal(f->level, 1);
	for (int i = 16; i < 20; i++)
		assert_int_equal(in(f, UART_RBR), 'A' + i);
	assert_int_equal(f->rx_space_calls, 1); /* everything fitted: no call */
	assert_false(in(f, UART_LSR) & UART_LSR_OE);

	/* FIFO off: one byte of holding register. */
	out(f, UART_FCR, 0);
	assert_int_equal(uart8250_receive(&f->u, buf, 3), 1);
	assert_int_equal(in(f, UART_IIR), UART_IIR_RDI);
	assert_int_equal(in(f, UART_RBR), 'A');
	assert_int_equal(f->rx_space_calls, 2);

	/* FIFO reset discards and makes room. */
	out(f, UART_FCR, UART_FCR_ENABLE);
	assert_int_equal(uart8250_receive(&f->u, buf, 20), 16);
	out(f, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLR_RX);
	assert_false(in(f, UART_LSR) & UART_LSR_DR);
	assert_int_equal(f->level, 0);
	assert_int_equal(f->rx_space_calls, 3);
}

static void test_iir_priority(void **state)
{
	struct fixture *f = *state;

	out(f, UART_FCR, UART_FCR_ENABLE);
	/* Loopback gives us an overrun and modem-status changes to order against each other. */
	out(f, UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	for (int i = 0; i < UART8250_FIFO_SIZE + 1; i++)
		out(f, UART_THR, (uint8_t)i);
	out(f, UART_IER, 0x0f);

	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RLSI);
	assert_int_equal(in(f, UART_LSR),
			 UART_LSR_OE | UART_LSR_DR | UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	for (int i = 0; i < UART8250_FIFO_SIZE; i++)
		assert_int_equal(in(f, UART_RBR), i); /* the 17th byte was the one lost */
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_MSI);
	assert_int_equal(in(f, UART_MSR) & UART_MSR_DELTAS, UART_MSR_DCTS | UART_MSR_DDSR);
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	/* In loopback the IRQ output is forced off, whatever was pending. */
	assert_int_equal(f->irq_changes, 0);
	assert_int_equal(f->out_len, 0);
}

static void test_loopback(void **state)
{
	struct fixture *f = *state;
	uint8_t in_byte = 'z';

	out(f, UART_FCR, UART_FCR_ENABLE);
	out(f, UART_IER, UART_IER_RDI);
	out(f, UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	out(f, UART_THR, 0x42);
	assert_int_equal(f->out_len, 0);				 /* looped, not sent */
	assert_int_equal(in(f, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI); /* trigger level 1 */
	assert_int_equal(f->level, 0);
	assert_int_equal(in(f, UART_RBR), 0x42);

	/* The host side is disconnected meanwhile. */
	assert_int_equal(uart8250_receive(&f->u, &in_byte, 1), 0);

	/* MCR outputs appear on MSR inputs. */
	in(f, UART_MSR);
	out(f, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	assert_int_equal(in(f, UART_MSR), UART_MSR_DSR | UART_MSR_DDSR | UART_MSR_DDCD);
	out(f, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_OUT1);
	assert_int_equal(in(f, UART_MSR),
			 UART_MSR_CTS | UART_MSR_RI | UART_MSR_DCTS | UART_MSR_DDSR);
	out(f, UART_MCR, UART_MCR_LOOP);
	assert_int_equal(in(f, UART_MSR), UART_MSR_TERI | UART_MSR_DCTS); /* RI trailing edge */

	/* Leaving loopback reconnects the host, who is told there is room. */
	assert_int_equal(f->rx_space_calls, 0);
	out(f, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(f->rx_space_calls, 1);
	assert_int_equal(uart8250_receive(&f->u, &in_byte, 1), 1);
	assert_int_equal(f->level, 1);
	assert_int_equal(in(f, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
}

/* Two vCPUs printing and the event loop feeding input at the same time. */
#define PER_THREAD 20000

struct writer {
	struct fixture *f;
	int id;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		uint8_t b = (uint8_t)(((i % 128) << 1) | w->id);

		assert_int_equal(bus_access(&w->f->pio, BASE + UART_THR, &b, 1, true), 0);
	}
	return NULL;
}

static void *reader_thread(void *arg)
{
	struct fixture *f = arg;
	uint8_t b = 'k';
	int got = 0;

	while (got < 1000) {
		got += (int)uart8250_receive(&f->u, &b, 1);
		if (in(f, UART_LSR) & UART_LSR_DR)
			in(f, UART_RBR);
	}
	return NULL;
}

static void test_concurrent_output_keeps_order(void **state)
{
	struct fixture *f = *state;
	struct writer w[2] = {{f, 0}, {f, 1}};
	pthread_t t[3];
	int next[2] = {0, 0};

	out(f, UART_FCR, UART_FCR_ENABLE);
	out(f, UART_MCR, UART_MCR_OUT2);
	out(f, UART_IER, UART_IER_RDI | UART_IER_THRI);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
	assert_int_equal(pthread_create(&t[2], NULL, reader_thread, f), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);

	/* Every byte exactly once, each writer's bytes in its own order. */
	assert_int_equal(f->out_len, 2 * PER_THREAD);
	for (size_t i = 0; i < f->out_len; i++) {
		int id = f->out[i] & 1;

		assert_int_equal(f->out[i] >> 1, next[id] % 128);
		next[id]++;
	}
	assert_int_equal(next[0], PER_THREAD);
	assert_int_equal(next[1], PER_THREAD);
	assert_int_equal(f->u.txq_len, 0);
}

static void test_output_callback_may_feed_input(void **state)
{
	struct fixture *f = *state;

	f->echo = true;
	out(f, UART_FCR, UART_FCR_ENABLE);
	out(f, UART_THR, 'e');
	assert_int_equal(in(f, UART_RBR), 'e');
}

static void test_state_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct uart8250_state st, bad;
	uint8_t b[3] = {1, 2, 3};

	out(f, UART_FCR, UART_FCR_ENABLE | 0x40);
	out(f, UART_LCR, UART_LCR_DLAB);
	out(f, UART_DLL, 3);
	out(f, UART_LCR, 0x03);
	out(f, UART_IER, UART_IER_RDI);
	out(f, UART_MCR, UART_MCR_OUT2);
	out(f, UART_SCR, 0x77);
	assert_int_equal(uart8250_receive(&f->u, b, 3), 3);
	in(f, UART_RBR);
	uart8250_get_state(&f->u, &st);
	assert_int_equal(st.rx_count, 2);
	assert_int_equal(st.rx_head, 1);

	/* A fresh UART on another bus, as on the standby. */
	struct fixture *g = NULL;
	assert_int_equal(setup((void **)&g), 0);
	assert_int_equal(g->level, 0);
	assert_int_equal(uart8250_set_state(&g->u, &st), 0);
	assert_int_equal(g->level, 1); /* the pending RX interrupt is driven at once */
	assert_int_equal(in(g, UART_RBR), 2);
	assert_int_equal(in(g, UART_RBR), 3);
	assert_int_equal(in(g, UART_SCR), 0x77);
	assert_int_equal(in(g, UART_LCR), 0x03);
	assert_int_equal(g->level, 0);

	bad = st;
	bad.rx_count = UART8250_FIFO_SIZE + 1;
	assert_int_equal(uart8250_set_state(&g->u, &bad), -EINVAL);
	bad = st;
	bad.rx_head = UART8250_FIFO_SIZE;
	assert_int_equal(uart8250_set_state(&g->u, &bad), -EINVAL);
	bad = st;
	bad.fcr = 0; /* FIFO off holds one byte at most */
	assert_int_equal(uart8250_set_state(&g->u, &bad), -EINVAL);
	teardown((void **)&g);
}

/* State tree: a whole tree with the UART as node "uart", as snapshot and replication carry it. */
#define TREE_SIZE 8192

static void *save_tree(struct fixture *f)
{
	void *t = malloc(TREE_SIZE);

	assert_non_null(t);
	assert_int_equal(state_tree_begin(t, TREE_SIZE), 0);
	assert_int_equal(fdt_begin_node(t, "uart"), 0);
	assert_int_equal(uart8250_save(&f->u, t), 0);
	assert_int_equal(fdt_end_node(t), 0);
	assert_int_equal(state_tree_end(t), 0);
	assert_int_equal(fdt_check_full(t, TREE_SIZE), 0);
	return t;
}

static int load_tree(struct fixture *f, const void *t)
{
	int node = state_find_node(t, 0, "uart");

	assert_true(node >= 0);
	return uart8250_load(&f->u, t, node);
}

/*
 * The guest-visible registers in a fixed order of reads, side effects
 * included (LSR clears errors, MSR deltas, IIR acknowledges THRE), ending
 * with the receive FIFO drained: two UARTs in the same state give the same
 * sequence.  Returns how many values were read.
 */
static size_t read_all(struct fixture *f, uint8_t *v)
{
	size_t n = 0;
	uint8_t lcr = in(f, UART_LCR);

	v[n++] = lcr;
	v[n++] = in(f, UART_MCR);
	v[n++] = in(f, UART_SCR);
	v[n++] = in(f, UART_IER);
	out(f, UART_LCR, lcr | UART_LCR_DLAB);
	v[n++] = in(f, UART_DLL);
	v[n++] = in(f, UART_DLM);
	out(f, UART_LCR, lcr);
	v[n++] = in(f, UART_IIR);
	v[n++] = in(f, UART_LSR);
	v[n++] = in(f, UART_IIR);
	v[n++] = in(f, UART_MSR);
	v[n++] = in(f, UART_MSR);
	while (in(f, UART_LSR) & UART_LSR_DR)
		v[n++] = in(f, UART_RBR);
	v[n++] = in(f, UART_IIR);
	v[n++] = in(f, UART_IIR);
	v[n++] = (uint8_t)f->level;
	return n;
}

/*
 * A distinctive state: FIFO on at trigger 8, odd divisor and line
 * settings, an overrun from loopback, MSR deltas, a wrapped receive ring,
 * every interrupt enabled with THRE pending and the line high.
 */
static void distinctive_state(struct fixture *f)
{
	const uint8_t more[3] = {0xa0, 0xa1, 0xa2};

	out(f, UART_FCR, UART_FCR_ENABLE | 0x80);
	out(f, UART_LCR, UART_LCR_DLAB);
	out(f, UART_DLL, 0x01);
	out(f, UART_DLM, 0x02);
	out(f, UART_LCR, 0x1b);
	out(f, UART_SCR, 0x5a);
	out(f, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	for (int i = 0; i <= UART8250_FIFO_SIZE; i++)
		out(f, UART_THR, (uint8_t)i); /* the 17th overruns */
	out(f, UART_MCR, UART_MCR_OUT2 | UART_MCR_RTS | UART_MCR_DTR);
	for (int i = 0; i < 5; i++)
		assert_int_equal(in(f, UART_RBR), i);
	assert_int_equal(uart8250_receive(&f->u, more, 3), 3);
	out(f, UART_IER, UART_IER_RDI | UART_IER_THRI | UART_IER_RLSI | UART_IER_MSI);
	assert_int_equal(f->level, 1);
}

static void test_save_load_round_trip(void **state)
{
	struct fixture *f = *state, *g = NULL;
	uint8_t a[64], b[64];
	size_t na, nb;
	void *t;

	distinctive_state(f);
	t = save_tree(f);

	assert_int_equal(setup((void **)&g), 0);
	assert_int_equal(load_tree(g, t), 0);
	/* The line is driven at load, before the guest touches anything. */
	assert_int_equal(g->level, 1);
	assert_int_equal(g->irq_changes, 1);

	na = read_all(f, a);
	nb = read_all(g, b);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na);

	/* What those reads were: the state survived register by register. */
	assert_int_equal(b[0], 0x1b);
	assert_int_equal(b[1], UART_MCR_OUT2 | UART_MCR_RTS | UART_MCR_DTR);
	assert_int_equal(b[2], 0x5a);
	assert_int_equal(b[3], 0x0f);
	assert_int_equal(b[4], 0x01);
	assert_int_equal(b[5], 0x02);
	assert_int_equal(b[6], UART_IIR_FIFO | UART_IIR_RLSI);
	assert_int_equal(b[7], UART_LSR_OE | UART_LSR_DR | UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(b[8], UART_IIR_FIFO | UART_IIR_RDI); /* 14 bytes >= trigger 8 */
	assert_int_equal(b[9], UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS | UART_MSR_DCTS |
				   UART_MSR_DDCD);
	assert_int_equal(b[10], UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	/* The pending bytes in order, across the ring's wrap. */
	for (int i = 0; i < 11; i++)
		assert_int_equal(b[11 + i], 5 + i);
	assert_int_equal(b[22], 0xa0);
	assert_int_equal(b[23], 0xa1);
	assert_int_equal(b[24], 0xa2);
	assert_int_equal(b[25], UART_IIR_FIFO | UART_IIR_THRI); /* THRE was pending */
	assert_int_equal(b[26], UART_IIR_FIFO | UART_IIR_NO_INT);
	assert_int_equal(b[27], 0);
	assert_int_equal(nb, 28);

	/* And it carries on: output, THRE re-armed, input. */
	out(g, UART_THR, 'x');
	assert_int_equal(g->out_len, 1);
	assert_int_equal(g->out[0], 'x');
	assert_int_equal(g->level, 1);
	assert_int_equal(in(g, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	assert_int_equal(g->level, 0);
	free(t);
	teardown((void **)&g);
}

/* Power-on state survives too, and the line is driven low explicitly. */
static void test_save_load_reset_state(void **state)
{
	struct fixture *f = *state, *g = NULL;
	struct uart8250_state a, b;
	void *t = save_tree(f);

	assert_int_equal(setup((void **)&g), 0);
	assert_int_equal(load_tree(g, t), 0);
	assert_int_equal(g->irq_changes, 1);
	assert_int_equal(g->level, 0);
	uart8250_get_state(&f->u, &a);
	uart8250_get_state(&g->u, &b);
	assert_memory_equal(&a, &b, sizeof(a));
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
	assert_int_equal(fdt_setprop_u32(t, state_find_node(t, 0, "uart"), name, v), 0);
}

static void put_raw(void *t, const char *name, int len)
{
	uint8_t junk[32];

	memset(junk, 0x11, sizeof(junk));
	assert_int_equal(fdt_setprop(t, state_find_node(t, 0, "uart"), name, junk, len), 0);
}

static void drop(void *t, const char *name)
{
	assert_int_equal(fdt_delprop(t, state_find_node(t, 0, "uart"), name), 0);
}

/* The load must fail and leave g exactly as it was, line untouched. */
static void expect_rejected(struct fixture *g, void *t)
{
	struct uart8250_state before, after;
	int changes = g->irq_changes;

	assert_int_equal(fdt_check_full(t, TREE_SIZE), 0);
	uart8250_get_state(&g->u, &before);
	assert_int_equal(load_tree(g, t), -EINVAL);
	uart8250_get_state(&g->u, &after);
	assert_memory_equal(&before, &after, sizeof(before));
	assert_int_equal(g->irq_changes, changes);
	free(t);
}

static void test_load_rejects_bad_trees(void **state)
{
	struct fixture *f = *state, *g = NULL;
	static const char *const props[] = {
	    "dll", "dlm", "ier",	  "fcr",      "lcr",	 "mcr",	     "lsr",
	    "msr", "scr", "thr-ipending", "rx-count", "rx-fifo", "irq-level"};
	void *good, *t;

	distinctive_state(f);
	good = save_tree(f);
	assert_int_equal(setup((void **)&g), 0);

	/* Every property is required and has exactly its size. */
	for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
		t = tree_copy(good);
		drop(t, props[i]);
		expect_rejected(g, t);
		t = tree_copy(good);
		put_raw(t, props[i], strcmp(props[i], "rx-fifo") ? 1 : 13);
		expect_rejected(g, t);
	}
	/* A register value wider than a byte. */
	t = tree_copy(good);
	put(t, "scr", 0x100);
	expect_rejected(g, t);
	/* FIFO count beyond the 16550A's FIFO (the bytes are there too). */
	t = tree_copy(good);
	put(t, "rx-count", UART8250_FIFO_SIZE + 1);
	put_raw(t, "rx-fifo", UART8250_FIFO_SIZE + 1);
	expect_rejected(g, t);
	/* Two bytes waiting with the FIFO off: the receiver holds one. */
	t = tree_copy(good);
	put(t, "fcr", 0);
	put(t, "rx-count", 2);
	put_raw(t, "rx-fifo", 2);
	expect_rejected(g, t);
	/* Bits the model never keeps. */
	t = tree_copy(good);
	put(t, "ier", 0x1f);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "mcr", 0x28);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "lsr", UART_LSR_OE | UART_LSR_DR);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "fcr", UART_FCR_ENABLE | UART_FCR_CLR_RX);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "fcr", 0x80); /* a trigger level with the FIFO off */
	put(t, "rx-count", 0);
	put_raw(t, "rx-fifo", 0);
	expect_rejected(g, t);
	/* MSR status bits that do not follow MCR (no loopback: the idle cable). */
	t = tree_copy(good);
	put(t, "msr", UART_MSR_DCD);
	expect_rejected(g, t);
	/* THRE pending with its interrupt disabled; a flag that is not 0/1. */
	t = tree_copy(good);
	put(t, "ier", UART_IER_RDI);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "thr-ipending", 2);
	expect_rejected(g, t);
	/* The IRQ level must agree with the registers. */
	t = tree_copy(good);
	put(t, "irq-level", 0);
	expect_rejected(g, t);
	t = tree_copy(good);
	put(t, "irq-level", 2);
	expect_rejected(g, t);

	/* The unmodified tree still loads. */
	assert_int_equal(load_tree(g, good), 0);
	assert_int_equal(g->level, 1);
	free(good);
	teardown((void **)&g);
}

static void test_save_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t small[128];

	/* A THR byte not yet handed to output (only while a vCPU is in the handler). */
	f->u.txq_len = 1;
	assert_int_equal(uart8250_save(&f->u, small), -EBUSY);
	f->u.txq_len = 0;
	/* No room in the tree. */
	assert_int_equal(state_tree_begin(small, sizeof(small)), 0);
	assert_int_equal(fdt_begin_node(small, "uart"), 0);
	assert_int_equal(uart8250_save(&f->u, small), -ENOSPC);
}

static void test_init_errors(void **state)
{
	struct fixture *f = *state;
	struct uart8250 other;
	struct uart8250_ops no_output = {.rx_space = rec_rx_space};
	struct irq_line none = {0};

	assert_int_equal(uart8250_init(&other, &f->pio, BASE, none, &ops, f), -EEXIST);
	assert_int_equal(uart8250_init(&other, &f->pio, 0x2f8, none, &no_output, f), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_linux_autoconfig_finds_16550a, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_linux_startup_thre_tests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_polled_output, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_thre_interrupt_and_out2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_fifo_interrupts_and_space, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_iir_priority, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_output_keeps_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_output_callback_may_feed_input, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_state_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load_reset_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_rejects_bad_trees, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_init_errors, setup, teardown),
	};
	return cmocka_run_group_tests_name("uart8250", tests, NULL, NULL);
}
