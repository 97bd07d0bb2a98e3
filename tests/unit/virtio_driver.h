/* SPDX-License-Identifier: MIT */
/*
 * A tiny virtio-pci driver for unit tests (no KVM): a PCI host on its own
 * buses, guest RAM, the capability walk the way Linux's virtio_pci_modern
 * does it, register accessors, ring helpers and an MSI recorder to pass as
 * env.signal_msi.  Header-only (static inline functions) so each test binary gets
 * its own copy; include after cmocka.h.
 */
#ifndef TEST_VIRTIO_DRIVER_H
#define TEST_VIRTIO_DRIVER_H

#include <linux/virtio_pci.h>
#include <string.h>

#include "bus.h"
#include "guest_mem.h"
#include "layout.h"
#include "pci.h"
#include "virtio.h"

#define VD_BDF(slot) (0x80000000u | (unsigned)(slot) << 11)
#define VD_MAX_MSI   64

struct vd_msi {
	uint64_t addr;
	uint32_t data;
};

struct vdrv {
	struct bus pio, mmio;
	struct pci_host host;
	struct guest_mem mem;
	int slot;
	/* From the capabilities: guest-physical addresses of each structure. */
	uint64_t common, notify, isr, device;
	uint32_t common_len, notify_len, isr_len, device_len, notify_mult;
	int msix_cap, pci_cfg_cap;
	uint64_t msix_table, msix_pba;
	unsigned msix_size;
	/* Messages the transport sent (env.signal_msi). */
	struct vd_msi msi[VD_MAX_MSI];
	unsigned nr_msi;
};

static inline void vd_record_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct vdrv *d = opaque;

	if (d->nr_msi < VD_MAX_MSI)
		d->msi[d->nr_msi] = (struct vd_msi){addr, data};
	d->nr_msi++;
}

static inline void vd_init(struct vdrv *d, uint64_t ram)
{
	memset(d, 0, sizeof(*d));
	assert_int_equal(bus_init(&d->pio, "pio"), 0);
	assert_int_equal(bus_init(&d->mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&d->host, &d->pio, &d->mmio), 0);
	assert_int_equal(guest_mem_init(&d->mem, ram), 0);
}

static inline void vd_fini(struct vdrv *d)
{
	pci_host_destroy(&d->host);
	bus_destroy(&d->pio);
	bus_destroy(&d->mmio);
	guest_mem_destroy(&d->mem);
}

static inline struct virtio_env vd_env(struct vdrv *d)
{
	return (struct virtio_env){.mem = &d->mem,
				   .pci = &d->host,
				   .loop = NULL,
				   .msi = NULL,
				   .vm_fd = -1,
				   .signal_msi = vd_record_msi,
				   .signal_opaque = d};
}

/* ---- config space through 0xcf8/0xcfc, as pci_conf1_read does ---- */

static inline uint32_t vd_cfg_read(struct vdrv *d, unsigned off, unsigned len)
{
	uint8_t a[4], v[4] = {0};

	pci_set32(a, 0, VD_BDF(d->slot) | (off & 0xfc));
	assert_int_equal(bus_access(&d->pio, PORT_PCI_CONFIG_ADDR, a, 4, true), 0);
	assert_int_equal(bus_access(&d->pio, PORT_PCI_CONFIG_DATA + (off & 3), v, len, false), 0);
	return len == 1 ? v[0] : len == 2 ? pci_get16(v, 0) : pci_get32(v, 0);
}

static inline void vd_cfg_write(struct vdrv *d, unsigned off, unsigned len, uint32_t val)
{
	uint8_t a[4], v[4];

	pci_set32(a, 0, VD_BDF(d->slot) | (off & 0xfc));
	pci_set32(v, 0, val);
	assert_int_equal(bus_access(&d->pio, PORT_PCI_CONFIG_ADDR, a, 4, true), 0);
	assert_int_equal(bus_access(&d->pio, PORT_PCI_CONFIG_DATA + (off & 3), v, len, true), 0);
}

/* ---- MMIO ---- */

static inline uint64_t vd_read(struct vdrv *d, uint64_t addr, unsigned len)
{
	uint8_t v[8] = {0};
	uint64_t r = 0;

	assert_int_equal(bus_access(&d->mmio, addr, v, len, false), 0);
	for (unsigned i = 0; i < len; i++)
		r |= (uint64_t)v[i] << (8 * i);
	return r;
}

static inline void vd_write(struct vdrv *d, uint64_t addr, unsigned len, uint64_t val)
{
	uint8_t v[8];

	for (unsigned i = 0; i < 8; i++)
		v[i] = (uint8_t)(val >> (8 * i));
	assert_int_equal(bus_access(&d->mmio, addr, v, len, true), 0);
}

#define vd_common_read(d, off, len)	  vd_read(d, (d)->common + (off), len)
#define vd_common_write(d, off, len, val) vd_write(d, (d)->common + (off), len, val)

/* The address a BAR decodes at, as Linux computes it from the registers. */
static inline uint64_t vd_bar_addr(struct vdrv *d, int bar)
{
	uint32_t lo = vd_cfg_read(d, PCI_BASE_ADDRESS_0 + 4 * bar, 4);
	uint64_t a = lo & PCI_BASE_ADDRESS_MEM_MASK;

	if ((lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64)
		a |= (uint64_t)vd_cfg_read(d, PCI_BASE_ADDRESS_0 + 4 * (bar + 1), 4) << 32;
	return a;
}

/* Walk the capability list like virtio_pci_find_capability(); fills the addresses. */
static inline void vd_probe(struct vdrv *d, int slot)
{
	unsigned pos, n = 0;

	d->slot = slot;
	d->msix_cap = d->pci_cfg_cap = -1;
	assert_true(vd_cfg_read(d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (pos = vd_cfg_read(d, PCI_CAPABILITY_LIST, 1); pos; pos = vd_cfg_read(d, pos + 1, 1)) {
		unsigned id = vd_cfg_read(d, pos, 1);

		assert_true(pos >= 0x40 && pos <= 0xfc && ++n < 48);
		if (id == PCI_CAP_ID_MSIX) {
			uint32_t t = vd_cfg_read(d, pos + PCI_MSIX_TABLE, 4);
			uint32_t p = vd_cfg_read(d, pos + PCI_MSIX_PBA, 4);

			d->msix_cap = (int)pos;
			d->msix_size = (vd_cfg_read(d, pos + PCI_MSIX_FLAGS, 2) & 0x7ff) + 1;
			d->msix_table = vd_bar_addr(d, t & 7) + (t & ~7u);
			d->msix_pba = vd_bar_addr(d, p & 7) + (p & ~7u);
			continue;
		}
		if (id != PCI_CAP_ID_VNDR)
			continue;
		uint8_t type = (uint8_t)vd_cfg_read(d, pos + VIRTIO_PCI_CAP_CFG_TYPE, 1);
		uint8_t bar = (uint8_t)vd_cfg_read(d, pos + VIRTIO_PCI_CAP_BAR, 1);
		uint32_t off = vd_cfg_read(d, pos + VIRTIO_PCI_CAP_OFFSET, 4);
		uint32_t len = vd_cfg_read(d, pos + VIRTIO_PCI_CAP_LENGTH, 4);

		if (type == VIRTIO_PCI_CAP_PCI_CFG) {
			d->pci_cfg_cap = (int)pos;
			continue;
		}
		assert_true(bar < 6);
		uint64_t a = vd_bar_addr(d, bar) + off;

		switch (type) {
		case VIRTIO_PCI_CAP_COMMON_CFG:
			d->common = a, d->common_len = len;
			break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			d->notify = a, d->notify_len = len;
			d->notify_mult = vd_cfg_read(d, pos + VIRTIO_PCI_NOTIFY_CAP_MULT, 4);
			break;
		case VIRTIO_PCI_CAP_ISR_CFG:
			d->isr = a, d->isr_len = len;
			break;
		case VIRTIO_PCI_CAP_DEVICE_CFG:
			d->device = a, d->device_len = len;
			break;
		}
	}
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the status read back. */
static inline uint8_t vd_negotiate(struct vdrv *d, uint64_t features)
{
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1,
			VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	for (unsigned sel = 0; sel < 2; sel++) {
		vd_common_write(d, VIRTIO_PCI_COMMON_GFSELECT, 4, sel);
		vd_common_write(d, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(features >> (32 * sel)));
	}
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1,
			VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			    VIRTIO_CONFIG_S_FEATURES_OK);
	return (uint8_t)vd_common_read(d, VIRTIO_PCI_COMMON_STATUS, 1);
}

static inline void vd_driver_ok(struct vdrv *d)
{
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1,
			VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* Program queue q with the rings at desc/avail/used and enable it; returns queue_enable. */
static inline unsigned vd_queue(struct vdrv *d, unsigned q, unsigned size, uint64_t desc,
				uint64_t avail, uint64_t used)
{
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)desc);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_DESCHI, 4, (uint32_t)(desc >> 32));
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)avail);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_AVAILHI, 4, (uint32_t)(avail >> 32));
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)used);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_USEDHI, 4, (uint32_t)(used >> 32));
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	return (unsigned)vd_common_read(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2);
}

static inline void vd_notify(struct vdrv *d, unsigned q)
{
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	uint32_t off = (uint32_t)vd_common_read(d, VIRTIO_PCI_COMMON_Q_NOFF, 2);

	vd_write(d, d->notify + (uint64_t)off * d->notify_mult, 2, q);
}

/* ---- rings in guest RAM ---- */

static inline void vd_desc(struct vdrv *d, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
			   uint16_t flags, uint16_t next)
{
	uint8_t e[16];

	memcpy(e, &addr, 8);
	memcpy(e + 8, &len, 4);
	memcpy(e + 12, &flags, 2);
	memcpy(e + 14, &next, 2);
	assert_int_equal(guest_mem_write(&d->mem, table + 16ULL * i, e, 16), 0);
}

/* Put head in the avail ring of a size-entry queue and publish it. */
static inline void vd_offer(struct vdrv *d, uint64_t avail, unsigned size, uint16_t head)
{
	uint16_t idx;

	assert_int_equal(guest_mem_read(&d->mem, avail + 2, &idx, 2), 0);
	assert_int_equal(guest_mem_write(&d->mem, avail + 4 + 2ULL * (idx % size), &head, 2), 0);
	idx++;
	assert_int_equal(guest_mem_write(&d->mem, avail + 2, &idx, 2), 0);
}

static inline uint16_t vd_used_idx(struct vdrv *d, uint64_t used)
{
	uint16_t idx;

	assert_int_equal(guest_mem_read(&d->mem, used + 2, &idx, 2), 0);
	return idx;
}

/* Used element n: id and len. */
static inline void vd_used_elem(struct vdrv *d, uint64_t used, unsigned size, unsigned n,
				uint32_t *id, uint32_t *len)
{
	assert_int_equal(guest_mem_read(&d->mem, used + 4 + 8ULL * (n % size), id, 4), 0);
	assert_int_equal(guest_mem_read(&d->mem, used + 8 + 8ULL * (n % size), len, 4), 0);
}

/* Program MSI-X entry v and unmask it (mask=false) or leave it masked. */
static inline void vd_msix_entry(struct vdrv *d, unsigned v, uint64_t addr, uint32_t data,
				 bool mask)
{
	uint64_t e = d->msix_table + 16ULL * v;

	vd_write(d, e, 4, (uint32_t)addr);
	vd_write(d, e + 4, 4, (uint32_t)(addr >> 32));
	vd_write(d, e + 8, 4, data);
	vd_write(d, e + 12, 4, mask ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
}

static inline void vd_msix_enable(struct vdrv *d, bool enable, bool fmask)
{
	uint16_t f = (uint16_t)vd_cfg_read(d, (unsigned)d->msix_cap + PCI_MSIX_FLAGS, 2);

	f &= (uint16_t) ~(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	f |= (enable ? PCI_MSIX_FLAGS_ENABLE : 0) | (fmask ? PCI_MSIX_FLAGS_MASKALL : 0);
	vd_cfg_write(d, (unsigned)d->msix_cap + PCI_MSIX_FLAGS, 2, f);
}

#endif
