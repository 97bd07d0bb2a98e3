// SPDX-License-Identifier: MIT
/*
 * PCI host: mechanism-1 config access, absent devices, BAR sizing/placement/moves, masks, caps,
 * host save/load through the state tree.
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
#include "pci.h"
#include "state.h"

#define BDF(slot) (0x80000000u | (unsigned)(slot) << 11)

struct bar_event {
	int bar;
	uint64_t addr;
	bool mapped;
};

struct fixture {
	struct bus pio, mmio;
	struct pci_host host;
	struct pci_device dev;
	/* what the test device saw */
	uint64_t last_offset;
	int bar_hits[PCI_NR_BARS];
	struct bar_event events[32];
	int nr_events;
	uint32_t cw_offset, cw_len, cw_old;
	int cw_calls, cr_calls;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || bus_init(&f->pio, "pio") || bus_init(&f->mmio, "mmio") ||
	    pci_host_init(&f->host, &f->pio, &f->mmio))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pci_host_destroy(&f->host);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	free(f);
	return 0;
}

static void outl(struct fixture *f, uint16_t port, uint32_t v)
{
	uint8_t d[4];

	pci_set32(d, 0, v);
	assert_int_equal(bus_access(&f->pio, port, d, 4, true), 0);
}

static uint32_t inl(struct fixture *f, uint16_t port)
{
	uint8_t d[4];

	assert_int_equal(bus_access(&f->pio, port, d, 4, false), 0);
	return pci_get32(d, 0);
}

/* A config read the way Linux's pci_conf1_read does it. */
static uint32_t cfg_read(struct fixture *f, int slot, unsigned off, unsigned len)
{
	uint8_t d[4] = {0};

	outl(f, PORT_PCI_CONFIG_ADDR, BDF(slot) | (off & 0xfc));
	assert_int_equal(bus_access(&f->pio, PORT_PCI_CONFIG_DATA + (off & 3), d, len, false), 0);
	return len == 1 ? d[0] : len == 2 ? pci_get16(d, 0) : pci_get32(d, 0);
}

static void cfg_write(struct fixture *f, int slot, unsigned off, unsigned len, uint32_t v)
{
	uint8_t d[4];

	pci_set32(d, 0, v);
	outl(f, PORT_PCI_CONFIG_ADDR, BDF(slot) | (off & 0xfc));
	assert_int_equal(bus_access(&f->pio, PORT_PCI_CONFIG_DATA + (off & 3), d, len, true), 0);
}

/* Each BAR's opaque points at this so the handler knows who it is. */
struct bar_ctx {
	struct fixture *f;
	int bar;
};

static int tagged_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct bar_ctx *c = opaque;

	c->f->bar_hits[c->bar]++;
	c->f->last_offset = offset;
	if (!is_write)
		memset(data, 0x40 + c->bar, len);
	return 0;
}

static void on_bar_update(struct pci_device *dev, int bar, uint64_t addr, bool mapped)
{
	struct fixture *f = dev->opaque;

	assert_true(f->nr_events < 32);
	f->events[f->nr_events++] = (struct bar_event){bar, addr, mapped};
}

static void on_config_write(struct pci_device *dev, uint32_t offset, uint32_t len, uint32_t old)
{
	struct fixture *f = dev->opaque;

	f->cw_calls++;
	f->cw_offset = offset;
	f->cw_len = len;
	f->cw_old = old;
}

static void on_config_read(struct pci_device *dev, uint32_t offset, uint32_t len)
{
	struct fixture *f = dev->opaque;

	(void)len;
	f->cr_calls++;
	if (offset == 0x44) /* a computed register */
		pci_set32(dev->config, 0x44, 0x1234abcd);
}

static struct bar_ctx ctx[PCI_NR_BARS];

/* A virtio-like device: MEM32 4 KiB at BAR0, I/O 32 at BAR1, MEM64 16 KiB at BAR2/3. */
static void make_device(struct fixture *f)
{
	struct pci_device *d = &f->dev;

	pci_device_init(d, "test", 0x1af4, 0x1041, 0x020000);
	d->opaque = f;
	d->bar_update = on_bar_update;
	d->config_write = on_config_write;
	d->config_read = on_config_read;
	pci_set8(d->config, PCI_REVISION_ID, 1);
	pci_set8(d->config, PCI_INTERRUPT_PIN, 1);
	for (int i = 0; i < PCI_NR_BARS; i++)
		ctx[i] = (struct bar_ctx){f, i};
	assert_int_equal(pci_set_bar(d, 0, PCI_BAR_MEM32, 0x1000, false, tagged_io, &ctx[0]), 0);
	assert_int_equal(pci_set_bar(d, 1, PCI_BAR_IO, 32, false, tagged_io, &ctx[1]), 0);
	assert_int_equal(pci_set_bar(d, 2, PCI_BAR_MEM64, 0x4000, true, tagged_io, &ctx[2]), 0);
}

static void test_host_bridge_all_widths(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cfg_read(f, 0, PCI_VENDOR_ID, 4),
			 PCI_HOST_DEVICE_ID << 16 | PCI_HOST_VENDOR_ID);
	assert_int_equal(cfg_read(f, 0, PCI_VENDOR_ID, 2), PCI_HOST_VENDOR_ID);
	assert_int_equal(cfg_read(f, 0, PCI_DEVICE_ID, 2), PCI_HOST_DEVICE_ID);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(cfg_read(f, 0, i, 1),
				 ((PCI_HOST_DEVICE_ID << 16 | PCI_HOST_VENDOR_ID) >> (8 * i)) &
				     0xff);
	/* Class 06/00/00: what Linux's type-1 sanity check looks for. */
	assert_int_equal(cfg_read(f, 0, PCI_CLASS_DEVICE, 2), 0x0600);
	assert_int_equal(cfg_read(f, 0, PCI_CLASS_REVISION, 4) >> 8, PCI_HOST_CLASS);
	assert_int_equal(cfg_read(f, 0, PCI_HEADER_TYPE, 1), PCI_HEADER_TYPE_NORMAL);
	assert_int_equal(cfg_read(f, 0, PCI_BASE_ADDRESS_0, 4), 0);

	/* The address latch reads back; non-dword accesses to 0xcf8 leave it alone. */
	outl(f, PORT_PCI_CONFIG_ADDR, 0x80000000);
	assert_int_equal(inl(f, PORT_PCI_CONFIG_ADDR), 0x80000000);
	uint8_t b = 0x01;
	assert_int_equal(bus_access(&f->pio, PORT_PCI_CONFIG_ADDR + 3, &b, 1, true), 0);
	assert_int_equal(inl(f, PORT_PCI_CONFIG_ADDR), 0x80000000);
	outl(f, PORT_PCI_CONFIG_ADDR, 0xffffffff);
	assert_int_equal(inl(f, PORT_PCI_CONFIG_ADDR), 0x80fffffc);
}

static void test_absent_reads_all_ones(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cfg_read(f, 5, 0, 4), 0xffffffff);
	assert_int_equal(cfg_read(f, 5, 2, 2), 0xffff);
	assert_int_equal(cfg_read(f, 5, 3, 1), 0xff);
	cfg_write(f, 5, PCI_COMMAND, 2, 0x7); /* dropped, no crash */
	/* Bus 1, and function 1 of a present device, are empty too. */
	outl(f, PORT_PCI_CONFIG_ADDR, 0x80010000);
	assert_int_equal(inl(f, PORT_PCI_CONFIG_DATA), 0xffffffff);
	outl(f, PORT_PCI_CONFIG_ADDR, BDF(0) | 1 << 8);
	assert_int_equal(inl(f, PORT_PCI_CONFIG_DATA), 0xffffffff);
	/* Enable bit clear: no configuration cycle at all. */
	outl(f, PORT_PCI_CONFIG_ADDR, 0);
	assert_int_equal(inl(f, PORT_PCI_CONFIG_DATA), 0xffffffff);
	/* A word at 0xcff would cross the dword: the bus refuses it. */
	uint8_t d[2];
	outl(f, PORT_PCI_CONFIG_ADDR, BDF(0));
	assert_int_equal(bus_access(&f->pio, PORT_PCI_CONFIG_DATA + 3, d, 2, false), -ENODEV);
}

static void test_registration_assigns_bars(void **state)
{
	struct fixture *f = *state;
	uint32_t lo, hi;
	uint8_t d[4];

	make_device(f);
	assert_int_equal(pci_register_device(&f->host, &f->dev, -1), 0);
	assert_int_equal(f->dev.slot, 1);
	assert_int_equal(cfg_read(f, 1, PCI_VENDOR_ID, 4), 0x10411af4);
	assert_int_equal(cfg_read(f, 1, PCI_CLASS_REVISION, 4), 0x02000001);

	/* Firmware-style: addresses in the windows, naturally aligned, decoding on. */
	assert_int_equal(cfg_read(f, 1, PCI_COMMAND, 2) & (PCI_COMMAND_IO | PCI_COMMAND_MEMORY),
			 PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	lo = cfg_read(f, 1, PCI_BASE_ADDRESS_0, 4);
	assert_int_equal(lo & 0xf, 0);
	assert_true(lo >= LAYOUT_PCI_MMIO_BASE && lo < LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE);
	lo = cfg_read(f, 1, PCI_BASE_ADDRESS_1, 4);
	assert_int_equal(lo & 3, PCI_BASE_ADDRESS_SPACE_IO);
	assert_true((lo & ~3u) >= PCI_IO_WINDOW_BASE && (lo & ~3u) % 32 == 0);
	lo = cfg_read(f, 1, PCI_BASE_ADDRESS_2, 4);
	hi = cfg_read(f, 1, PCI_BASE_ADDRESS_3, 4);
	assert_int_equal(lo & 0xf, PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
	assert_int_equal(hi, 0);
	assert_int_equal((lo & ~0xfu) % 0x4000, 0);

	/* All three mapped, hooks told, accesses reach the right BAR with BAR offsets. */
	assert_int_equal(f->nr_events, 3);
	for (int i = 0; i < 3; i++)
		assert_true(f->events[i].mapped);
	assert_int_equal(bus_access(&f->mmio, f->dev.bars[2].addr + 0x3ffc, d, 4, false), 0);
	assert_int_equal(f->bar_hits[2], 1);
	assert_int_equal(f->last_offset, 0x3ffc);
	assert_int_equal(d[0], 0x42);
	assert_int_equal(bus_access(&f->pio, f->dev.bars[1].addr + 4, d, 2, true), 0);
	assert_int_equal(f->bar_hits[1], 1);
	assert_int_equal(f->last_offset, 4);
	assert_int_equal(f->dev.bars[0].addr, cfg_read(f, 1, PCI_BASE_ADDRESS_0, 4));

	/* A second device does not overlap the first. */
	static struct pci_device second;
	struct pci_device *d2 = &second;

	pci_device_init(d2, "second", 0x1af4, 0x1042, 0x010000);
	assert_int_equal(pci_set_bar(d2, 0, PCI_BAR_MEM32, 0x1000, false, tagged_io, &ctx[5]), 0);
	assert_int_equal(pci_register_device(&f->host, d2, -1), 0);
	assert_int_equal(d2->slot, 2);
	assert_true(d2->bars[0].addr >= f->dev.bars[2].addr + 0x4000 ||
		    d2->bars[0].addr + 0x1000 <= f->dev.bars[0].addr);
}

static void test_registration_errors(void **state)
{
	struct fixture *f = *state;
	struct pci_device a, b, none, big;

	pci_device_init(&a, "a", 0x1af4, 1, 0);
	pci_device_init(&b, "b", 0x1af4, 2, 0);
	pci_device_init(&none, "none", 0xffff, 3, 0);
	assert_int_equal(pci_register_device(&f->host, &a, 0), -EBUSY); /* the host bridge */
	assert_int_equal(pci_register_device(&f->host, &a, 32), -EINVAL);
	assert_int_equal(pci_register_device(&f->host, &none, -1), -EINVAL);
	assert_int_equal(pci_register_device(&f->host, &a, 7), 0);
	assert_int_equal(pci_register_device(&f->host, &a, 8), -EINVAL); /* already registered */
	assert_int_equal(pci_register_device(&f->host, &b, 7), -EBUSY);
	assert_int_equal(cfg_read(f, 7, PCI_DEVICE_ID, 2), 1);

	/* Bad BAR declarations. */
	assert_int_equal(pci_set_bar(&b, 0, PCI_BAR_MEM32, 0x1800, false, tagged_io, NULL),
			 -EINVAL);
	assert_int_equal(pci_set_bar(&b, 0, PCI_BAR_IO, 512, false, tagged_io, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&b, 0, PCI_BAR_MEM32, 8, false, tagged_io, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&b, 5, PCI_BAR_MEM64, 0x1000, false, tagged_io, NULL),
			 -EINVAL);
	assert_int_equal(pci_set_bar(&b, 6, PCI_BAR_MEM32, 0x1000, false, tagged_io, NULL),
			 -EINVAL);
	assert_int_equal(pci_set_bar(&b, 0, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&b, 1, PCI_BAR_MEM64, 0x1000, false, tagged_io, NULL), 0);
	assert_int_equal(pci_set_bar(&b, 2, PCI_BAR_IO, 16, false, tagged_io, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&b, 0, PCI_BAR_MEM64, 0x1000, false, tagged_io, NULL),
			 -EINVAL);

	/* The window is finite: 1 GiB BARs run out, nothing is half-assigned. */
	pci_device_init(&big, "big", 0x1af4, 4, 0);
	assert_int_equal(pci_set_bar(&big, 0, PCI_BAR_MEM32, 1ULL << 30, false, tagged_io, NULL),
			 0);
	assert_int_equal(pci_register_device(&f->host, &big, -1), -ENOSPC);
	assert_int_equal(pci_get32(big.config, PCI_BASE_ADDRESS_0), 0);
	assert_null(big.host);
}

static void test_bar_sizing(void **state)
{
	struct fixture *f = *state;
	uint32_t orig0, orig1, orig2, cmd;

	make_device(f);
	assert_int_equal(pci_register_device(&f->host, &f->dev, 3), 0);
	orig0 = cfg_read(f, 3, PCI_BASE_ADDRESS_0, 4);
	orig1 = cfg_read(f, 3, PCI_BASE_ADDRESS_1, 4);
	orig2 = cfg_read(f, 3, PCI_BASE_ADDRESS_2, 4);

	/* Linux's __pci_read_base: decoding off, write ~0, read the mask, restore. */
	cmd = cfg_read(f, 3, PCI_COMMAND, 2);
	f->nr_events = 0;
	cfg_write(f, 3, PCI_COMMAND, 2, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
	cfg_write(f, 3, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 3, PCI_BASE_ADDRESS_0, 4), 0xfffff000);
	cfg_write(f, 3, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 3, PCI_BASE_ADDRESS_1, 4), 0xffffffe1);
	cfg_write(f, 3, PCI_BASE_ADDRESS_2, 4, 0xffffffff);
	cfg_write(f, 3, PCI_BASE_ADDRESS_3, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 3, PCI_BASE_ADDRESS_2, 4), 0xffffc00c);
	assert_int_equal(cfg_read(f, 3, PCI_BASE_ADDRESS_3, 4), 0xffffffff);
	/* Unused BARs and the ROM BAR size to zero. */
	cfg_write(f, 3, PCI_BASE_ADDRESS_4, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 3, PCI_BASE_ADDRESS_4, 4), 0);
	cfg_write(f, 3, PCI_ROM_ADDRESS, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 3, PCI_ROM_ADDRESS, 4), 0);
	assert_int_equal(f->nr_events, 3); /* only the unmaps from the command write */

	cfg_write(f, 3, PCI_BASE_ADDRESS_0, 4, orig0);
	cfg_write(f, 3, PCI_BASE_ADDRESS_1, 4, orig1);
	cfg_write(f, 3, PCI_BASE_ADDRESS_2, 4, orig2);
	cfg_write(f, 3, PCI_BASE_ADDRESS_3, 4, 0);
	cfg_write(f, 3, PCI_COMMAND, 2, cmd);
	assert_int_equal(f->nr_events, 6);
	for (int i = 3; i < 6; i++)
		assert_true(f->events[i].mapped);
	assert_int_equal(f->dev.bars[0].addr, orig0);
}

static void test_decoding_and_moves(void **state)
{
	struct fixture *f = *state;
	uint64_t old0;
	uint8_t d[4];
	uint32_t cmd;

	make_device(f);
	assert_int_equal(pci_register_device(&f->host, &f->dev, -1), 0);
	old0 = f->dev.bars[0].addr;
	cmd = cfg_read(f, 1, PCI_COMMAND, 2);

	/* Memory decoding off: memory BARs vanish from the bus, the I/O BAR stays. */
	f->nr_events = 0;
	cfg_write(f, 1, PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MEMORY);
	assert_int_equal(bus_access(&f->mmio, old0, d, 4, false), -ENODEV);
	assert_int_equal(bus_access(&f->pio, f->dev.bars[1].addr, d, 1, false), 0);
	assert_int_equal(f->nr_events, 2);
	assert_false(f->events[0].mapped);
	cfg_write(f, 1, PCI_COMMAND, 2, cmd);
	assert_int_equal(bus_access(&f->mmio, old0, d, 4, false), 0);

	/* Moving BAR0 while decoding: old address gone, new one live, hook told both. */
	f->nr_events = 0;
	cfg_write(f, 1, PCI_BASE_ADDRESS_0, 4, 0xd0000000);
	assert_int_equal(f->nr_events, 2);
	assert_int_equal(f->events[0].addr, old0);
	assert_false(f->events[0].mapped);
	assert_int_equal(f->events[1].addr, 0xd0000000);
	assert_true(f->events[1].mapped);
	assert_int_equal(bus_access(&f->mmio, old0, d, 4, false), -ENODEV);
	assert_int_equal(bus_access(&f->mmio, 0xd0000010, d, 4, false), 0);
	assert_int_equal(f->last_offset, 0x10);

	/* The 64-bit BAR goes above 4 GiB through its upper half. */
	cfg_write(f, 1, PCI_BASE_ADDRESS_3, 4, 0x1);
	assert_int_equal(f->dev.bars[2].addr >> 32, 1);
	assert_int_equal(bus_access(&f->mmio, f->dev.bars[2].addr + 8, d, 4, false), 0);
	assert_int_equal(f->bar_hits[2], 1);

	/* The I/O BAR moves on the port bus; beyond 64 KiB it cannot decode. */
	cfg_write(f, 1, PCI_BASE_ADDRESS_1, 4, 0xe000);
	assert_int_equal(bus_access(&f->pio, 0xe01f, d, 1, false), 0);
	cfg_write(f, 1, PCI_BASE_ADDRESS_1, 4, 0x10000);
	assert_false(f->dev.bars[1].mapped);
	assert_int_equal(bus_access(&f->pio, 0xe01f, d, 1, false), -ENODEV);

	/* Address 0 is unassigned: never decoded. */
	cfg_write(f, 1, PCI_BASE_ADDRESS_0, 4, 0);
	assert_false(f->dev.bars[0].mapped);

	/* Parking a BAR on top of the config ports fails quietly: not decoded. */
	cfg_write(f, 1, PCI_BASE_ADDRESS_1, 4, 0xcc0);
	assert_true(f->dev.bars[1].mapped);
	cfg_write(f, 1, PCI_BASE_ADDRESS_1, 4, 0xce0); /* 0xce0-0xcff covers 0xcf8 */
	assert_false(f->dev.bars[1].mapped);
	assert_int_equal(cfg_read(f, 0, PCI_VENDOR_ID, 2), PCI_HOST_VENDOR_ID);
}

static void test_writable_masks(void **state)
{
	struct fixture *f = *state;

	make_device(f);
	assert_int_equal(pci_register_device(&f->host, &f->dev, -1), 0);

	/* Read-only: IDs, class, header type, interrupt pin. */
	cfg_write(f, 1, PCI_VENDOR_ID, 4, 0xdeadbeef);
	assert_int_equal(cfg_read(f, 1, PCI_VENDOR_ID, 4), 0x10411af4);
	cfg_write(f, 1, PCI_CLASS_REVISION, 4, 0);
	assert_int_equal(cfg_read(f, 1, PCI_CLASS_REVISION, 4), 0x02000001);
	cfg_write(f, 1, PCI_HEADER_TYPE, 1, 0x80);
	assert_int_equal(cfg_read(f, 1, PCI_HEADER_TYPE, 1), 0);
	cfg_write(f, 1, PCI_INTERRUPT_LINE, 2, 0xffff);
	assert_int_equal(cfg_read(f, 1, PCI_INTERRUPT_LINE, 2), 0x01ff); /* line rw, pin ro */
	cfg_write(f, 0, PCI_VENDOR_ID, 2, 0);
	assert_int_equal(cfg_read(f, 0, PCI_VENDOR_ID, 2), PCI_HOST_VENDOR_ID);

	/* Command: only the defined bits stick. */
	cfg_write(f, 1, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(cfg_read(f, 1, PCI_COMMAND, 2),
			 PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
			     PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);

	/* Status error bits are write-1-to-clear; the capability bit is read-only. */
	pci_set16(f->dev.config, PCI_STATUS,
		  PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_CAP_LIST);
	cfg_write(f, 1, PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_CAP_LIST);
	assert_int_equal(cfg_read(f, 1, PCI_STATUS, 2),
			 PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_CAP_LIST);
	/* A command write does not clear status: the dword write carries zeros there. */
	cfg_write(f, 1, PCI_COMMAND, 4, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
	assert_int_equal(cfg_read(f, 1, PCI_STATUS, 2),
			 PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_CAP_LIST);

	/* The hook sees every write, with the old value; reads may be computed. */
	f->cw_calls = 0;
	cfg_write(f, 1, PCI_LATENCY_TIMER, 1, 0x40);
	assert_int_equal(f->cw_calls, 1);
	assert_int_equal(f->cw_offset, PCI_LATENCY_TIMER);
	assert_int_equal(f->cw_len, 1);
	assert_int_equal(f->cw_old, 0);
	assert_int_equal(cfg_read(f, 1, PCI_LATENCY_TIMER, 1), 0x40);
	assert_int_equal(cfg_read(f, 1, 0x44, 4), 0x1234abcd);
	assert_true(f->cr_calls > 0);
}

static void test_capability_chain(void **state)
{
	struct fixture *f = *state;
	struct pci_device *d = &f->dev;
	int msix, vendor, pm, off;
	unsigned ids[3], n = 0;

	make_device(f);
	assert_int_equal(pci_add_capability(d, PCI_CAP_ID_VNDR, 1), -EINVAL);
	msix = pci_add_capability(d, PCI_CAP_ID_MSIX, 12);
	vendor = pci_add_capability(d, PCI_CAP_ID_VNDR, 14); /* not a dword multiple */
	pm = pci_add_capability(d, PCI_CAP_ID_PM, 8);
	assert_int_equal(msix, 0x40);
	assert_int_equal(vendor, 0x4c);
	assert_int_equal(pm, 0x5c); /* 0x4c + 14 rounded up */
	/* The device makes MSI-X enable and function mask writable. */
	pci_set16(d->wmask, msix + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	pci_set16(d->config, msix + PCI_MSIX_FLAGS, 3); /* table size 4 */
	pci_set8(d->config, vendor + 2, 14);
	assert_int_equal(pci_register_device(&f->host, d, -1), 0);

	/* Walk it the way a guest does. */
	assert_true(cfg_read(f, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	off = (int)cfg_read(f, 1, PCI_CAPABILITY_LIST, 1);
	while (off && n < 3) {
		ids[n++] = cfg_read(f, 1, (unsigned)off, 1);
		off = (int)cfg_read(f, 1, (unsigned)off + 1, 1);
	}
	assert_int_equal(n, 3);
	assert_int_equal(off, 0);
	assert_int_equal(ids[0], PCI_CAP_ID_MSIX);
	assert_int_equal(ids[1], PCI_CAP_ID_VNDR);
	assert_int_equal(ids[2], PCI_CAP_ID_PM);

	/* The guest can flip MSI-X enable but not the table size or the chain. */
	f->cw_calls = 0;
	cfg_write(f, 1, (unsigned)msix, 4, 0xffffffff);
	assert_int_equal(cfg_read(f, 1, (unsigned)msix, 4),
			 (uint32_t)(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL | 3) << 16 |
			     (uint32_t)vendor << 8 | PCI_CAP_ID_MSIX);
	assert_int_equal(f->cw_calls, 1);
	assert_int_equal(f->cw_offset, (unsigned)msix);
	assert_int_equal(f->cw_old, 3u << 16 | (uint32_t)vendor << 8 | PCI_CAP_ID_MSIX);
	cfg_write(f, 1, PCI_CAPABILITY_LIST, 1, 0);
	assert_int_equal(cfg_read(f, 1, PCI_CAPABILITY_LIST, 1), msix);
	assert_int_equal(cfg_read(f, 1, (unsigned)vendor + 2, 1), 14);

	/* Full: nothing fits past 0x100, and registered devices take no more. */
	assert_int_equal(pci_add_capability(d, PCI_CAP_ID_VNDR, 8), -EINVAL);
	struct pci_device e;
	pci_device_init(&e, "e", 0x1af4, 9, 0);
	assert_int_equal(pci_add_capability(&e, PCI_CAP_ID_VNDR, 0xc0), 0x40);
	assert_int_equal(pci_add_capability(&e, PCI_CAP_ID_VNDR, 2), -ENOSPC);
}

static void test_config_snapshot_restore(void **state)
{
	struct fixture *f = *state;
	uint8_t saved[PCI_CONFIG_SIZE];
	struct pci_host_state hs;
	uint8_t d[4];

	make_device(f);
	assert_int_equal(pci_register_device(&f->host, &f->dev, -1), 0);
	cfg_write(f, 1, PCI_BASE_ADDRESS_0, 4, 0xd0000000);
	cfg_write(f, 1, PCI_INTERRUPT_LINE, 1, 11);
	pci_device_get_config(&f->dev, saved);
	outl(f, PORT_PCI_CONFIG_ADDR, BDF(1) | PCI_COMMAND);
	pci_host_get_state(&f->host, &hs);

	/* The guest changes things; loading the snapshot brings the mapping back. */
	cfg_write(f, 1, PCI_COMMAND, 2, 0);
	cfg_write(f, 1, PCI_BASE_ADDRESS_0, 4, 0xc8000000);
	outl(f, PORT_PCI_CONFIG_ADDR, 0);
	assert_int_equal(bus_access(&f->mmio, 0xd0000000, d, 4, false), -ENODEV);
	f->cw_calls = 0;
	pci_device_set_config(&f->dev, saved);
	pci_host_set_state(&f->host, &hs);
	assert_int_equal(inl(f, PORT_PCI_CONFIG_ADDR), BDF(1) | PCI_COMMAND);
	assert_int_equal(f->cw_calls, PCI_CONFIG_SIZE / 4);
	assert_int_equal(bus_access(&f->mmio, 0xd0000000, d, 4, false), 0);
	assert_int_equal(cfg_read(f, 1, PCI_INTERRUPT_LINE, 1), 11);
}

/* State tree: a whole tree with the host as node "pci". */
#define TREE_SIZE 4096

static void *save_tree(struct fixture *f)
{
	void *t = malloc(TREE_SIZE);

	assert_non_null(t);
	assert_int_equal(state_tree_begin(t, TREE_SIZE), 0);
	assert_int_equal(fdt_begin_node(t, "pci"), 0);
	assert_int_equal(pci_host_save(&f->host, t), 0);
	assert_int_equal(fdt_end_node(t), 0);
	assert_int_equal(state_tree_end(t), 0);
	assert_int_equal(fdt_check_full(t, TREE_SIZE), 0);
	return t;
}

static int load_tree(struct fixture *f, const void *t)
{
	int node = state_find_node(t, 0, "pci");

	assert_true(node >= 0);
	return pci_host_load(&f->host, t, node);
}

/* A machine like the VM's: the bridge plus the test device at slot 1. */
static struct fixture *second_machine(bool with_device, int slot)
{
	struct fixture *g = NULL;

	assert_int_equal(setup((void **)&g), 0);
	if (with_device) {
		make_device(g);
		assert_int_equal(pci_register_device(&g->host, &g->dev, slot), 0);
	}
	return g;
}

/* The guest programs the bridge's writable fields and leaves the latch pointing somewhere. */
static void distinctive_state(struct fixture *f)
{
	make_device(f);
	assert_int_equal(pci_register_device(&f->host, &f->dev, -1), 0);
	cfg_write(f, 0, PCI_COMMAND, 2,
		  PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR | 0xf800);
	cfg_write(f, 0, PCI_CACHE_LINE_SIZE, 1, 0x10);
	cfg_write(f, 0, PCI_LATENCY_TIMER, 1, 0x40);
	cfg_write(f, 0, PCI_INTERRUPT_LINE, 1, 0x0b);
	cfg_write(f, 0, PCI_BASE_ADDRESS_0, 4, 0xffffffff); /* read-only on the bridge */
	outl(f, PORT_PCI_CONFIG_ADDR, BDF(1) | PCI_INTERRUPT_LINE);
}

static void test_host_save_load_round_trip(void **state)
{
	struct fixture *f = *state, *g;
	uint8_t dev_before[PCI_CONFIG_SIZE], dev_after[PCI_CONFIG_SIZE];
	uint8_t d[4];
	void *t;

	distinctive_state(f);
	t = save_tree(f);
	g = second_machine(true, -1);
	pci_device_get_config(&g->dev, dev_before);
	g->cw_calls = 0;
	assert_int_equal(load_tree(g, t), 0);

	/* The latch first: a guest between its 0xcf8 and 0xcfc accesses carries on. */
	assert_int_equal(inl(g, PORT_PCI_CONFIG_ADDR), BDF(1) | PCI_INTERRUPT_LINE);
	assert_int_equal(inl(g, PORT_PCI_CONFIG_DATA), inl(f, PORT_PCI_CONFIG_DATA));
	/* The bridge reads the same everywhere. */
	for (unsigned off = 0; off < PCI_CONFIG_SIZE; off += 4)
		assert_int_equal(cfg_read(g, 0, off, 4), cfg_read(f, 0, off, 4));
	assert_int_equal(cfg_read(g, 0, PCI_COMMAND, 2),
			 PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR);
	assert_int_equal(cfg_read(g, 0, PCI_CACHE_LINE_SIZE, 1), 0x10);
	assert_int_equal(cfg_read(g, 0, PCI_LATENCY_TIMER, 1), 0x40);
	assert_int_equal(cfg_read(g, 0, PCI_INTERRUPT_LINE, 1), 0x0b);
	assert_int_equal(cfg_read(g, 0, PCI_VENDOR_ID, 4),
			 PCI_HOST_DEVICE_ID << 16 | PCI_HOST_VENDOR_ID);
	/* The function's config space is its model's to load: untouched, still decoding. */
	pci_device_get_config(&g->dev, dev_after);
	assert_memory_equal(dev_before, dev_after, PCI_CONFIG_SIZE);
	assert_int_equal(g->cw_calls, 0);
	assert_int_equal(bus_access(&g->mmio, LAYOUT_PCI_MMIO_BASE, d, 4, false), 0);
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

static void put_raw(void *t, const char *name, const void *data, int len)
{
	assert_int_equal(fdt_setprop(t, state_find_node(t, 0, "pci"), name, data, len), 0);
}

/* A copy of the tree with byte off of the bridge's config space XORed with x. */
static void *bridge_poked(const void *good, unsigned off, uint8_t x)
{
	void *t = tree_copy(good);
	uint8_t cfg[PCI_CONFIG_SIZE];
	int len;
	const void *p = fdt_getprop(t, state_find_node(t, 0, "pci"), "bridge-config", &len);

	assert_non_null(p);
	assert_int_equal(len, PCI_CONFIG_SIZE);
	memcpy(cfg, p, sizeof(cfg));
	cfg[off] ^= x;
	put_raw(t, "bridge-config", cfg, sizeof(cfg));
	return t;
}

static void expect_rejected(struct fixture *g, void *t)
{
	struct pci_host_state hs_before, hs_after;
	uint8_t before[PCI_CONFIG_SIZE], after[PCI_CONFIG_SIZE];

	assert_int_equal(fdt_check_full(t, TREE_SIZE), 0);
	pci_host_get_state(&g->host, &hs_before);
	pci_device_get_config(&g->host.bridge, before);
	assert_int_equal(load_tree(g, t), -EINVAL);
	pci_host_get_state(&g->host, &hs_after);
	pci_device_get_config(&g->host.bridge, after);
	assert_int_equal(hs_before.config_address, hs_after.config_address);
	assert_memory_equal(before, after, PCI_CONFIG_SIZE);
	free(t);
}

static void test_host_load_rejects_bad_trees(void **state)
{
	struct fixture *f = *state, *g, *h;
	static const char *const props[] = {"config-address", "bridge-config", "slot-ids"};
	uint8_t junk[8] = {0};
	void *good, *t;

	distinctive_state(f);
	good = save_tree(f);
	g = second_machine(true, -1);
	outl(g, PORT_PCI_CONFIG_ADDR, BDF(3) | 0x10); /* so a partial load would show */

	for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
		t = tree_copy(good);
		assert_int_equal(fdt_delprop(t, state_find_node(t, 0, "pci"), props[i]), 0);
		expect_rejected(g, t);
		t = tree_copy(good);
		put_raw(t, props[i], junk, sizeof(junk));
		expect_rejected(g, t);
	}
	/* Latch bits the hardware does not keep: byte offset, bits 24-30. */
	t = tree_copy(good);
	assert_int_equal(
	    fdt_setprop_u32(t, state_find_node(t, 0, "pci"), "config-address", 0x80000001), 0);
	expect_rejected(g, t);
	t = tree_copy(good);
	assert_int_equal(
	    fdt_setprop_u32(t, state_find_node(t, 0, "pci"), "config-address", 0x81000000), 0);
	expect_rejected(g, t);
	/* Read-only bridge fields: vendor ID, class, a BAR, the capability pointer. */
	expect_rejected(g, bridge_poked(good, PCI_VENDOR_ID, 0x01));
	expect_rejected(g, bridge_poked(good, PCI_CLASS_DEVICE + 1, 0x80));
	expect_rejected(g, bridge_poked(good, PCI_BASE_ADDRESS_0 + 3, 0xd0));
	expect_rejected(g, bridge_poked(good, PCI_CAPABILITY_LIST, 0x40));
	expect_rejected(g, bridge_poked(good, PCI_COMMAND + 1, 0x80)); /* reserved command bit */
	/* A writable one is fine. */
	t = bridge_poked(good, PCI_LATENCY_TIMER, 0xff);
	assert_int_equal(load_tree(g, t), 0);
	assert_int_equal(cfg_read(g, 0, PCI_LATENCY_TIMER, 1), 0x40 ^ 0xff);
	free(t);
	outl(g, PORT_PCI_CONFIG_ADDR, BDF(3) | 0x10);
	teardown((void **)&g);

	/* Slots populated differently: no device, or the device in another slot. */
	h = second_machine(false, -1);
	expect_rejected(h, tree_copy(good));
	teardown((void **)&h);
	h = second_machine(true, 2);
	expect_rejected(h, tree_copy(good));
	teardown((void **)&h);
	free(good);
}

static void test_host_save_no_room(void **state)
{
	struct fixture *f = *state;
	uint8_t small[256];

	assert_int_equal(state_tree_begin(small, sizeof(small)), 0);
	assert_int_equal(fdt_begin_node(small, "pci"), 0);
	assert_int_equal(pci_host_save(&f->host, small), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_host_bridge_all_widths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_absent_reads_all_ones, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_registration_assigns_bars, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_registration_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decoding_and_moves, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writable_masks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_capability_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_snapshot_restore, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_save_load_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_load_rejects_bad_trees, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_save_no_room, setup, teardown),
	};
	return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
