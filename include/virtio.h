/* SPDX-License-Identifier: MIT */
/*
 * Virtio 1.x devices over modern virtio-pci: the contract between the
 * transport (devices/virtio_pci.c) and the device models (blk, net,
 * console, rng).
 *
 * The transport owns the PCI function, the capabilities (common, notify,
 * ISR, device config in one memory BAR; MSI-X table and PBA in a second),
 * feature negotiation, device status, queue set-up (checked with
 * virtq_enable), MSI-X vectors (irqfd through msi.h) and notifications
 * (one ioeventfd per queue on the event loop).  It offers VIRTIO_F_VERSION_1,
 * VIRTIO_RING_F_INDIRECT_DESC and VIRTIO_RING_F_EVENT_IDX besides the
 * device's own features and refuses FEATURES_OK for a driver without
 * VERSION_1.
 *
 * A device model fills a struct virtio_dev_info, implements the ops and
 * calls virtio_pci_init() then virtio_pci_register().  Threads: the
 * queue_notify op runs on the event-loop thread; config ops and
 * activate/reset run on the vCPU thread that wrote the register; a device
 * may complete requests on its own worker threads and call
 * virtio_queue_interrupt() from there.  A driver that breaks the rules (a
 * malformed chain, a queue address outside RAM) gets
 * virtio_set_needs_reset(): DEVICE_NEEDS_RESET and a config interrupt,
 * never a VMM crash.
 */
#ifndef VMM_VIRTIO_H
#define VMM_VIRTIO_H

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest_mem.h"
#include "pci.h"
#include "virtqueue.h"

#define VIRTIO_MAX_QUEUES	  8
#define VIRTIO_PCI_VENDOR_ID	  0x1af4
#define VIRTIO_PCI_DEVICE_ID_BASE 0x1040 /* + virtio device ID: modern-only devices */
#define VIRTIO_MSI_NO_VECTOR	  0xffff

struct event_loop;
struct msi_router;
struct virtio_dev;

/* What a device needs from the VM. */
struct virtio_env {
	struct guest_mem *mem;
	struct pci_host *pci;
	struct event_loop *loop;
	struct msi_router *msi; /* interrupts; NULL in unit tests (see signal_msi) */
	int vm_fd;		/* KVM_IOEVENTFD; -1 in unit tests: notify writes go through MMIO */
	/* Unit tests without KVM: called instead of irqfd for an unmasked vector. */
	void (*signal_msi)(void *opaque, uint64_t addr, uint32_t data);
	void *signal_opaque;
};

struct virtio_dev_info {
	const char *name;     /* "virtio-blk0": PCI device name, messages */
	uint16_t device_id;   /* VIRTIO_ID_BLOCK, VIRTIO_ID_NET, ... */
	uint64_t features;    /* device-specific feature bits offered */
	unsigned nr_queues;   /* <= VIRTIO_MAX_QUEUES */
	uint16_t queue_size;  /* maximum (and default) size of every queue */
	uint32_t config_size; /* bytes of device-specific config */
};

struct virtio_device_ops {
	/* The driver notified queue q (event-loop thread). */
	void (*queue_notify)(struct virtio_dev *vdev, unsigned q);
	/*
	 * The driver set DRIVER_OK; vdev->driver_features holds the negotiated
	 * features and the enabled queues are in vdev->vqs.  0 or -errno
	 * (the transport then sets DEVICE_NEEDS_RESET).
	 */
	int (*activate)(struct virtio_dev *vdev);
	/* Device reset (driver wrote status 0, or VM reset): stop and forget in-flight work. */
	void (*reset)(struct virtio_dev *vdev);
	/* Device config space; offset + len already checked against config_size. */
	void (*config_read)(struct virtio_dev *vdev, uint32_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(struct virtio_dev *vdev, uint32_t offset, const uint8_t *data,
			     uint32_t len);
};

/* Transport state that a snapshot must carry (saved by virtio_pci_save). */
struct virtio_transport_state {
	uint8_t status;
	uint8_t isr;
	uint8_t config_generation;
	uint32_t device_feature_select;
	uint32_t driver_feature_select;
	uint64_t driver_features;
	uint16_t queue_select;
	uint16_t msix_config;
	uint16_t queue_vector[VIRTIO_MAX_QUEUES];
	struct virtq vqs[VIRTIO_MAX_QUEUES];
};

struct virtio_dev {
	struct virtio_dev_info info;
	const struct virtio_device_ops *ops;
	void *opaque; /* the device model's */
	struct virtio_env env;
	struct pci_device pci;
	pthread_mutex_t lock; /* guards the transport state */
	struct virtio_transport_state t;
	/* Transport-private wiring (MSI-X table, vectors, ioeventfds) is the transport's. */
	struct virtio_pci_private *priv;
};

/* Convenience views of negotiated state. */
static inline bool virtio_has_feature(const struct virtio_dev *vdev, unsigned bit)
{
	return (vdev->t.driver_features >> bit) & 1;
}

static inline struct virtq *virtio_queue(struct virtio_dev *vdev, unsigned q)
{
	return &vdev->t.vqs[q];
}

/* Set up the PCI function, BARs and capabilities.  0 or -errno. */
int virtio_pci_init(struct virtio_dev *vdev, const struct virtio_dev_info *info,
		    const struct virtio_device_ops *ops, void *opaque,
		    const struct virtio_env *env);

/* Put the function on the PCI bus (slot -1: next free).  0 or -errno. */
int virtio_pci_register(struct virtio_dev *vdev, int slot);

/* Release eventfds, irqfds and routes. */
void virtio_pci_destroy(struct virtio_dev *vdev);

/*
 * Tell the driver queue q has new used entries: raises q's MSI-X vector if
 * virtq_should_notify() says the driver wants it.  Any thread; the caller
 * must not hold locks the vCPU path takes.
 */
void virtio_queue_interrupt(struct virtio_dev *vdev, unsigned q);

/* Device config changed: bump config_generation and raise the config vector. */
void virtio_config_interrupt(struct virtio_dev *vdev);

/* The driver broke the rules: DEVICE_NEEDS_RESET, config interrupt, queues stop. */
void virtio_set_needs_reset(struct virtio_dev *vdev);

/* Save/load the transport (config space, MSI-X table, transport state) as properties of the open
 * node. */
int virtio_pci_save(struct virtio_dev *vdev, void *fdt);
int virtio_pci_load(struct virtio_dev *vdev, const void *fdt, int node);

#endif
