// SPDX-License-Identifier: MIT
/*
 * Fuzz i8042_load with hostile state trees: either a raw blob (first byte
 * odd) that must pass fdt_check_full first, as every receiver of a tree
 * does, or (first byte even) the saved state of a controller the input
 * drove, with a few properties then overwritten by input values (or their
 * length changed), so the value checks are reached from real states.  Then
 * the rest of the input drives the ports.  Invariants: a rejected tree
 * leaves the fresh controller untouched and its lines alone; an accepted
 * one drives both lines to the saved levels; whatever state follows saves,
 * loads into another fresh controller and saves again to the identical tree.
 */
#include <errno.h>
#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "i8042.h"
#include "layout.h"
#include "state.h"

#define TREE_SIZE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct machine {
	struct bus pio;
	struct i8042 k;
	int level[13], irq_calls;
};

static void on_reset(void *opaque)
{
	(void)opaque; /* the VM would stop; the controller carries on */
}

static void on_irq(void *opaque, unsigned gsi, int level)
{
	struct machine *m = opaque;

	m->level[gsi] = level;
	m->irq_calls++;
}

static void machine_init(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	if (bus_init(&m->pio, "pio") || i8042_init(&m->k, &m->pio, (struct irq_line){on_irq, m, 1},
						   (struct irq_line){on_irq, m, 12}, on_reset, m))
		abort();
}

static void machine_destroy(struct machine *m)
{
	i8042_destroy(&m->k);
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

/* Up to max port accesses (0x60, 0x61, 0x64), two bytes each. */
static void drive(struct machine *m, const uint8_t **p, size_t *left, size_t max)
{
	static const uint16_t ports[3] = {PORT_I8042_DATA, PORT_I8042_PORTB, PORT_I8042_CMD};
	uint8_t op[2];

	while (max-- && take(p, left, op, 2) == 2) {
		uint8_t v = op[1];

		bus_access(&m->pio, ports[(op[0] & 0x7f) % 3], &v, 1, op[0] & 0x80);
	}
}

static void save(struct machine *m, void *t)
{
	if (state_tree_begin(t, TREE_SIZE) || fdt_begin_node(t, "i8042") || i8042_save(&m->k, t) ||
	    fdt_end_node(t) || state_tree_end(t) || fdt_check_full(t, TREE_SIZE))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint64_t t1[TREE_SIZE / 8], t2[TREE_SIZE / 8], t3[TREE_SIZE / 8];
	struct machine *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct i8042_state before, after;
	const uint8_t *p = data;
	size_t left = size;
	int node, ret;
	uint32_t kbd, aux;
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
		static const char *const props[] = {"ram",     "outport",	"outbuf",
						    "status",  "pending-cmd",	"portb",
						    "refresh", "kbd-irq-level", "aux-irq-level"};
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
			int at = state_find_node(t1, 0, "i8042");
			const char *name = props[o[0] % (sizeof(props) / sizeof(props[0]))];

			if (o[0] & 0x80) /* a property of another length */
				fdt_setprop(t1, at, name, junk, o[1] % sizeof(junk));
			else /* mostly a byte, sometimes wider */
				fdt_setprop_u32(t1, at, name,
						o[1] & 1 ? (uint32_t)o[2] << 8 | o[1] : o[2]);
		}
	}
	node = state_find_node(t1, 0, "i8042");
	if (node < 0)
		goto run;
	i8042_get_state(&a->k, &before);
	ret = i8042_load(&a->k, t1, node);
	if (ret) {
		if (ret != -EINVAL || a->irq_calls)
			abort();
		i8042_get_state(&a->k, &after);
		if (memcmp(&before, &after, sizeof(before)))
			abort();
	} else {
		if (state_get_u32(t1, node, "kbd-irq-level", &kbd) ||
		    state_get_u32(t1, node, "aux-irq-level", &aux) || a->irq_calls != 2 ||
		    (uint32_t)a->level[1] != kbd || (uint32_t)a->level[12] != aux)
			abort();
	}

run:
	/* The guest carries on from whatever state the controller is in. */
	drive(a, &p, &left, SIZE_MAX);

	/* Save, load into a fresh controller, save again: the same tree. */
	save(a, t2);
	machine_init(b);
	if (i8042_load(&b->k, t2, state_find_node(t2, 0, "i8042")))
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
