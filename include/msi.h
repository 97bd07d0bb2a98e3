/* SPDX-License-Identifier: MIT */
/*
 * MSI routing: the VM's GSI routing table in KVM, and irqfds on it.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so the router keeps all of
 * it: the routes KVM installs with KVM_CREATE_IRQCHIP (GSI 0-15 to the PIC
 * pin and the IOAPIC pin of the same number, GSI 16-23 to the IOAPIC) plus
 * one MSI route per vector that devices add, at GSIs from MSI_GSI_BASE up.
 * Every change rewrites the table in KVM (a slow ioctl: call it when a
 * guest programs a vector, not per interrupt).  An interrupt is then an
 * eventfd write on any thread: the eventfd is bound to the GSI with
 * KVM_IRQFD.
 *
 * With vm_fd < 0 the router keeps the table without KVM (unit tests).
 * All functions are thread-safe (one mutex per router).
 */
#ifndef VMM_MSI_H
#define VMM_MSI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define MSI_IRQCHIP_GSIS 24  /* GSIs 0-23: the irqchip's own pins */
#define MSI_GSI_BASE	 24  /* first GSI given to an MSI route */
#define MSI_MAX_ROUTES	 256 /* MSI routes per VM (14 devices x 9 vectors fit) */

struct msi_route {
	bool used;
	uint64_t addr;
	uint32_t data;
};

struct msi_router {
	int vm_fd;
	pthread_mutex_t lock;
	struct msi_route routes[MSI_MAX_ROUTES]; /* routes[i] is GSI MSI_GSI_BASE + i */
	unsigned nr_updates;			 /* table writes to KVM (for tests) */
};

/*
 * Start with the default irqchip routes and install them in KVM (needs the
 * in-kernel irqchip, i.e. after KVM_CREATE_IRQCHIP).  vm_fd < 0: no KVM.
 * 0 or -errno (-ENOTSUP if KVM lacks GSI routing).
 */
int msi_router_init(struct msi_router *r, int vm_fd);
void msi_router_destroy(struct msi_router *r);

/* Add an MSI route for message (addr, data); its GSI in *gsi.  0, -ENOSPC or -errno. */
int msi_route_add(struct msi_router *r, uint64_t addr, uint32_t data, uint32_t *gsi);

/* Point route gsi at a new message.  0, -ENOENT (not an MSI route of ours) or -errno. */
int msi_route_update(struct msi_router *r, uint32_t gsi, uint64_t addr, uint32_t data);

/* Drop route gsi (its irqfd must be unbound first).  0 or -ENOENT. */
int msi_route_remove(struct msi_router *r, uint32_t gsi);

/* KVM_IRQFD: eventfd efd raises gsi (assign) or no longer does (!assign).  0 or -errno. */
int msi_irqfd(struct msi_router *r, int efd, uint32_t gsi, bool assign);

/*
 * Fill entries (room for max) with the table as KVM gets it; returns the
 * number of entries.  Exposed for tests; each entry is a struct
 * kvm_irq_routing_entry.
 */
unsigned msi_router_table(struct msi_router *r, void *entries, unsigned max);

#endif
