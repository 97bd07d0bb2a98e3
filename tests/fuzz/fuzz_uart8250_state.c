// SPDX-License-Identifier: MIT
/*
 * Fuzz uart8250_load with hostile state trees: either a raw blob (first
 * byte odd) that must pass fdt_check_full first, as every receiver of a
 * tree does, or (first byte even) the saved state of a UART the input
 * drove, with a few properties then overwritten by input values (or their
 * length changed), so the value checks are reached from real states.  Then
 * the rest of the input drives the registers.  Invariants: a rejected tree leaves the
 * fresh UART untouched and its line alone; an accepted one drives the line
 * to the saved level; whatever state follows saves, loads into another
 * fresh UART and saves again to the identical tree.
 */
#include <errno.h>
#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "layout.h"
#include "state.h"
#include "uart8250.h"

#define TREE_SIZE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct machine {
	struct bus pio;
	struct uart8250 u;
	int level, irq_calls;
};

static void sink(void *opaque, const uint8_t *buf, size_t len)
{
	(void)opaque;
	(void)buf;
	(void)len;
}

static void on_irq(void *opaque, unsigned gsi, int level)
{
	struct machine *m = opaque;

	(void)gsi;
	m->level = level;
	m->irq_calls++;
}

static const struct uart8250_ops ops = {.output = sink};

static void machine_init(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	if (bus_init(&m->pio, "pio") ||
	    uart8250_init(&m->u, &m->pio, PORT_COM1, (struct irq_line){on_irq, m, 4}, &ops, m))
		abort();
}

static void machine_destroy(struct machine *m)
{
	uart8250_destroy(&m->u);
	bus_destroy(&m->pio);
}

static size_t take(const uint8_t **p, size_t *left, void *out, size_t n)
{
	n = n < *left ? n : *left;
	memset(out, 0, n);
	memcpy(out, *p, n);
	*p += n;
	*left -= n;
	return n;
}

/* Up to max register accesses and host input, two bytes each. */
static void drive(struct machine *m, const uint8_t **p, size_t *left, size_t max)
{
	uint8_t op[2];

	while (max-- && take(p, left, op, 2) == 2) {
		uint8_t v = op[1];

		if (op[0] & 0x80) {
			uint8_t rx[4] = {v, v, v, v};

			uart8250_receive(&m->u, rx, (op[0] & 3) + 1);
		} else {
			bus_access(&m->pio, PORT_COM1 + (op[0] & 7), &v, 1, op[0] & 0x40);
		}
	}
}

static void save(struct machine *m, void *t)
{
	if (state_tree_begin(t, TREE_SIZE) || fdt_begin_node(t, "uart") ||
	    uart8250_save(&m->u, t) || fdt_end_node(t) || state_tree_end(t) ||
	    fdt_check_full(t, TREE_SIZE))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint64_t t1[TREE_SIZE / 8], t2[TREE_SIZE / 8], t3[TREE_SIZE / 8];
	struct machine *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct uart8250_state before, after;
	const uint8_t *p = data;
	size_t left = size;
	int node, ret;
	uint32_t saved_level = 0;
	uint8_t mode = 0;

	if (!a || !b)
		abort();
	machine_init(a);
	take(&p, &left, &mode, 1);
	if (mode & 1) {
		/* The rest of the input is a raw tree. */
		size_t n = left < TREE_SIZE ? left : TREE_SIZE;

		memset(t1, 0, sizeof(t1));
		take(&p, &left, t1, n);
		if (n < sizeof(struct fdt_header) || fdt_totalsize(t1) > n ||
		    state_tree_check(t1, fdt_totalsize(t1)))
			goto run;
	} else {
		static const char *const props[] = {
		    "dll", "dlm", "ier",	  "fcr",      "lcr",	 "mcr",	     "lsr",
		    "msr", "scr", "thr-ipending", "rx-count", "rx-fifo", "irq-level"};
		uint8_t n = 0, o[3], junk[32] = {0};

		machine_init(b);
		take(&p, &left, &n, 1);
		drive(b, &p, &left, n);
		save(b, t2);
		machine_destroy(b);
		if (fdt_open_into(t2, t1, TREE_SIZE))
			abort();
		take(&p, &left, &n, 1);
		for (n %= 4; n && take(&p, &left, o, 3) == 3; n--) {
			int at = state_find_node(t1, 0, "uart");
			const char *name = props[o[0] % (sizeof(props) / sizeof(props[0]))];

			if (o[0] & 0x80) /* a property of another length */
				fdt_setprop(t1, at, name, junk, o[1] % sizeof(junk));
			else /* mostly a byte, sometimes wider */
				fdt_setprop_u32(t1, at, name,
						o[1] & 1 ? (uint32_t)o[2] << 8 | o[1] : o[2]);
		}
	}
	node = state_find_node(t1, 0, "uart");
	if (node < 0)
		goto run;
	uart8250_get_state(&a->u, &before);
	ret = uart8250_load(&a->u, t1, node);
	if (ret) {
		if (ret != -EINVAL || a->irq_calls)
			abort();
		uart8250_get_state(&a->u, &after);
		if (memcmp(&before, &after, sizeof(before)))
			abort();
	} else {
		if (state_get_u32(t1, node, "irq-level", &saved_level) || a->irq_calls != 1 ||
		    (uint32_t)a->level != saved_level)
			abort();
	}

run:
	/* The guest carries on from whatever state the UART is in. */
	drive(a, &p, &left, SIZE_MAX);

	/* Save, load into a fresh UART, save again: the same tree. */
	save(a, t2);
	machine_init(b);
	if (uart8250_load(&b->u, t2, state_find_node(t2, 0, "uart")))
		abort();
	save(b, t3);
	if (fdt_totalsize(t2) != fdt_totalsize(t3) || memcmp(t2, t3, fdt_totalsize(t2)))
		abort();
	machine_destroy(b);
	machine_destroy(a);
	free(a);
	free(b);
	return 0;
}
