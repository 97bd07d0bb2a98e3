/* SPDX-License-Identifier: MIT */
/*
 * PCI: a host bridge on configuration mechanism 1 (0xcf8 address, 0xcfc-0xcff
 * data), bus 0 only, function 0 only, 256-byte configuration spaces.  Slot 0
 * is the host bridge, class 060000 (what Linux's type-1 probe looks for),
 * ID 8086:0d57 (Cloud Hypervisor's virtual host bridge, so not a chipset that
 * Linux applies host-bridge quirks to).  Absent devices read all-ones.
 * Register names and bits are those of <linux/pci_regs.h>.
 *
 * A device is a struct pci_device its owner fills before registration:
 * pci_device_init() for the header, pci_set_bar() per BAR, pci_add_capability()
 * per capability, then wmask[] bits for capability fields the guest may write.
 * Guest writes change only bits set in wmask[] and clear w1cmask[] bits they
 * write as 1, so read-only fields (IDs, class, capability contents) stay put;
 * BAR sizing falls out of the BAR masks (write all-ones, read the size mask).
 *
 * pci_register_device() plays firmware: it gives every BAR an address
 * (naturally aligned, memory BARs of both widths in the 32-bit window of
 * include/layout.h, I/O BARs in PCI_IO_WINDOW) and enables I/O and memory
 * decoding.  Linux keeps such assignments (they are inside the root bridge's
 * _CRS).  From then on a BAR is mapped on the I/O or MMIO bus, with the
 * device's handler and offsets relative to the BAR, exactly while its
 * decoding bit is set in the command register and its address is non-zero
 * and fits; guest reprogramming moves it.
 *
 * Locking: one mutex per host guards the address latch and every registered
 * device's config[]/wmask[]/bars[].  The hooks run with it held: they may read
 * and change their own config[] and take their own device's lock, but must not
 * call back into this module.  A device therefore never calls pci_* functions
 * while holding its own lock; values it needs outside the hooks (MSI-X
 * enable, bus master) it caches from config_write.  BAR accesses do not take
 * the host lock.
 */
#ifndef VMM_PCI_H
#define VMM_PCI_H

#include <linux/pci_regs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

#define PCI_CONFIG_SIZE 256
#define PCI_NR_BARS	6
#define PCI_NR_SLOTS	32
#define PCI_CAP_FIRST	0x40 /* capabilities live in [0x40, 0x100) */

/* I/O BARs are placed here (inside the root bridge's _CRS I/O range). */
#define PCI_IO_WINDOW_BASE 0xc000
#define PCI_IO_WINDOW_SIZE 0x4000

#define PCI_HOST_VENDOR_ID 0x8086
#define PCI_HOST_DEVICE_ID 0x0d57
#define PCI_HOST_CLASS	   0x060000 /* bridge, host, prog-if 0 */

enum pci_bar_type {
	PCI_BAR_UNUSED = 0,
	PCI_BAR_IO,	  /* size 4..256 bytes */
	PCI_BAR_MEM32,	  /* size 16 bytes..1 GiB */
	PCI_BAR_MEM64,	  /* same sizes; takes this BAR and the next */
	PCI_BAR_MEM64_HI, /* the upper half of the BAR before (set by pci_set_bar) */
};

struct pci_bar {
	enum pci_bar_type type;
	uint64_t size; /* power of two */
	bool prefetchable;
	bus_handler_fn handler; /* accesses within the BAR, offset from its start */
	void *opaque;
	/* Set by the host, under its lock. */
	bool mapped;
	uint64_t addr; /* where it is mapped, if mapped */
};

struct pci_host;

struct pci_device {
	const char *name; /* for the bus ranges and messages; must outlive the device */
	uint8_t config[PCI_CONFIG_SIZE];
	uint8_t wmask[PCI_CONFIG_SIZE];	  /* bits a guest write may change */
	uint8_t w1cmask[PCI_CONFIG_SIZE]; /* bits a guest clears by writing 1 */
	struct pci_bar bars[PCI_NR_BARS];

	/*
	 * Optional hooks, all with the host lock held (see above).
	 * bar_update: BAR bar was mapped at addr (mapped) or removed from addr
	 *   (!mapped); e.g. to move ioeventfds.  Called after the bus changed.
	 * config_write: the guest wrote len bytes at offset; config[] already
	 *   holds the result, old the previous value of those bytes.
	 * config_read: the guest is about to read len bytes at offset; refresh
	 *   config[] if they are computed (virtio's PCI-configuration window).
	 */
	void (*bar_update)(struct pci_device *dev, int bar, uint64_t addr, bool mapped);
	void (*config_write)(struct pci_device *dev, uint32_t offset, uint32_t len, uint32_t old);
	void (*config_read)(struct pci_device *dev, uint32_t offset, uint32_t len);
	void *opaque; /* the owner's, for the hooks */

	/* Set at registration. */
	struct pci_host *host;
	int slot;
	uint16_t cap_next; /* where the next capability goes */
};

/* Guest-visible host state (each device's config[] is saved with the device). */
struct pci_host_state {
	uint32_t config_address; /* the 0xcf8 latch */
};

struct pci_host {
	pthread_mutex_t lock;
	uint32_t config_address; /* guarded by lock */
	struct bus *pio, *mmio;
	struct pci_device *slots[PCI_NR_SLOTS];
	struct pci_device bridge;    /* 00.0 */
	uint64_t mmio_next, io_next; /* allocation cursors for BARs */
};

/* Little-endian accessors for config[], wmask[] and w1cmask[]. */
static inline uint8_t pci_get8(const uint8_t *cfg, unsigned off)
{
	return cfg[off];
}
static inline uint16_t pci_get16(const uint8_t *cfg, unsigned off)
{
	return (uint16_t)(cfg[off] | cfg[off + 1] << 8);
}
static inline uint32_t pci_get32(const uint8_t *cfg, unsigned off)
{
	return (uint32_t)pci_get16(cfg, off) | (uint32_t)pci_get16(cfg, off + 2) << 16;
}
static inline void pci_set8(uint8_t *cfg, unsigned off, uint8_t v)
{
	cfg[off] = v;
}
static inline void pci_set16(uint8_t *cfg, unsigned off, uint16_t v)
{
	cfg[off] = (uint8_t)v;
	cfg[off + 1] = (uint8_t)(v >> 8);
}
static inline void pci_set32(uint8_t *cfg, unsigned off, uint32_t v)
{
	pci_set16(cfg, off, (uint16_t)v);
	pci_set16(cfg, off + 2, (uint16_t)(v >> 16));
}

/*
 * Claim 0xcf8-0xcff on pio and put the host bridge at slot 0.  BARs of
 * devices registered later go on pio (I/O) and mmio (memory).  0 or -errno.
 */
int pci_host_init(struct pci_host *h, struct bus *pio, struct bus *mmio);

/* Release the lock.  Does not unregister ranges (bus_destroy does); no handler may run. */
void pci_host_destroy(struct pci_host *h);

/*
 * Start a type-0 header: zeroes dev, sets vendor/device, the 24-bit class
 * code (class << 16 | subclass << 8 | prog-if), and the default masks:
 * command (I/O, memory, bus master, parity, SERR, INTx disable), cache line
 * size, latency timer and interrupt line writable; status error bits
 * write-1-to-clear.  Revision, subsystem IDs and interrupt pin are the
 * owner's to set in config[].
 */
void pci_device_init(struct pci_device *dev, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code);

/*
 * Declare BAR bar (0-5) before registration.  A 64-bit BAR also takes bar+1.
 * -EINVAL for a bad index, size (not a power of two, out of the type's range),
 * type, an overlap with another BAR or a missing handler.
 */
int pci_set_bar(struct pci_device *dev, int bar, enum pci_bar_type type, uint64_t size,
		bool prefetchable, bus_handler_fn handler, void *opaque);

/*
 * Append a capability of len bytes (>= 2, including the ID/next header) to
 * the list, dword-aligned, before registration.  Returns its offset in
 * config[] (contents zero and read-only until the caller sets wmask[]),
 * -EINVAL for len < 2, or -ENOSPC when it does not fit below 0x100.
 */
int pci_add_capability(struct pci_device *dev, uint8_t cap_id, uint8_t len);

/*
 * Put dev at slot (1..31, or -1 for the lowest free one), assign its BARs
 * and enable decoding, mapping them.  -EINVAL (bad slot, no vendor ID),
 * -EBUSY (slot taken), -ENOSPC (no free slot or window space), or a bus error.
 */
int pci_register_device(struct pci_host *h, struct pci_device *dev, int slot);

/* Snapshot support: copy a registered device's config space out / in. */
void pci_device_get_config(struct pci_device *dev, uint8_t config[PCI_CONFIG_SIZE]);

/*
 * Replace a registered device's config space (from a snapshot of the same
 * device model) and remap its BARs to match; hooks see the new mappings.
 */
void pci_device_set_config(struct pci_device *dev, const uint8_t config[PCI_CONFIG_SIZE]);

void pci_host_get_state(struct pci_host *h, struct pci_host_state *st);
void pci_host_set_state(struct pci_host *h, const struct pci_host_state *st);

/*
 * State tree (include/state.h): the caller has opened the host's node.
 * Save adds the 0xcf8 address latch, the host bridge's (00.0) config space
 * (its command, status, cache-line, latency and interrupt-line bits are
 * guest-writable) and the vendor/device ID found in every slot.  The other
 * functions' config spaces, BARs included, are saved by their own device
 * models (virtio_pci_save), which restore them with pci_device_set_config;
 * the host does not save them twice.
 *
 * Load returns -EINVAL, applying nothing, for latch bits the hardware does
 * not keep, a bridge config space differing from this one's outside its
 * writable bits, or slots populated differently from this host (the VM on
 * the loading side must have been built with the same devices).
 */
int pci_host_save(struct pci_host *h, void *fdt);
int pci_host_load(struct pci_host *h, const void *fdt, int node);

#endif
