/* SPDX-License-Identifier: MIT */
/*
 * MSI-X for one PCI function (PCI Local Bus 3.0, 6.8.2): the capability,
 * the vector table and the pending-bit array in a memory BAR, and delivery.
 *
 * A vector the device uses (msix_use_vector) gets an MSI route and an
 * eventfd bound to it with KVM_IRQFD, so raising it is one eventfd write
 * from any thread.  Without a router (unit tests) delivery calls the
 * signal callback with the message instead.  A vector that is masked (its
 * own mask bit or the function mask) when raised sets its pending bit and
 * is delivered when unmasked; with MSI-X disabled nothing is delivered (the
 * function has no INTx).
 *
 * Locking is the owner's: every function runs under the owner's device lock.
 */
#ifndef VMM_MSIX_H
#define VMM_MSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "msi.h"
#include "pci.h"

#define MSIX_MAX_VECTORS 64 /* one PBA qword */
#define MSIX_ENTRY_SIZE	 16
#define MSIX_CAP_LEN	 12

struct msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl; /* the table entry as the guest sees it */
	int efd;			       /* eventfd bound to gsi, or -1 */
	int gsi;			       /* MSI route, or -1 */
	bool route_stale;		       /* entry changed while masked: update on unmask */
};

struct msix {
	unsigned nr;		     /* vectors */
	int cap;		     /* capability offset in config space */
	uint32_t table_off, pba_off; /* in the BAR */
	bool enabled, fmask;	     /* cached from the capability's message control */
	uint64_t pba;
	struct msix_vector v[MSIX_MAX_VECTORS];
	struct msi_router *router; /* NULL: deliver through signal */
	void (*signal)(void *opaque, uint64_t addr, uint32_t data);
	void *signal_opaque;
};

/*
 * Add the capability to dev (before registration) for nr vectors whose
 * table and PBA live at table_off and pba_off of BAR bar.  All vectors
 * start masked.  0 or -errno.
 */
int msix_init(struct msix *m, struct pci_device *dev, unsigned nr, int bar, uint32_t table_off,
	      uint32_t pba_off, struct msi_router *router,
	      void (*signal)(void *opaque, uint64_t addr, uint32_t data), void *signal_opaque);

/* Unbind irqfds, remove routes, close eventfds. */
void msix_destroy(struct msix *m);

/*
 * A guest access at offset of the BAR holding the table and PBA.  Dword
 * and qword accesses, naturally aligned, are honoured; anything else reads
 * 0 and writes nothing.
 */
void msix_bar_access(struct msix *m, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* The guest wrote config space (config holds the result): re-read enable and function mask. */
void msix_config_changed(struct msix *m, const uint8_t *config);

/* The device will raise vector v: give it a route and irqfd if it has none.  0 or -errno. */
int msix_use_vector(struct msix *m, unsigned v);

/* Raise vector v now, or mark it pending if masked; v >= nr is ignored. */
void msix_notify(struct msix *m, unsigned v);

/* Snapshot: the table (nr * 16 bytes, guest layout) and the PBA. */
void msix_get_table(const struct msix *m, uint8_t *table);
/* Restore: reserved control bits must be 0 and pending bits within nr; -EINVAL otherwise. */
int msix_set_table(struct msix *m, const uint8_t *table, uint64_t pba);

#endif
