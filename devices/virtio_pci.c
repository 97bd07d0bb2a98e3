// SPDX-License-Identifier: MIT
/*
 * Modern virtio-pci (virtio 1.2, 4.1): capabilities, common configuration,
 * feature negotiation, status, queue set-up, ISR, notifications through
 * ioeventfds, MSI-X through msix.c, and save/load.
 *
 * Locks, outermost first: the PCI host lock (config-space hooks), cfg_lock
 * (one guest register access at a time, held while the device's ops run),
 * vdev->lock (transport state; held only briefly, never while calling ops).
 * Device models call virtio_queue_interrupt() and friends, which take only
 * vdev->lock, so a device's reset may wait for its own worker threads.
 */
#include "virtio.h"
#include "event_loop.h"
#include "log.h"
#include "msi.h"
#include "msix.h"
#include "state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <linux/virtio_pci.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* BAR 1: MSI-X table and PBA; BAR 4 (64-bit): the virtio structures, a page each. */
#define MSIX_BAR	1
#define MSIX_BAR_SIZE	0x1000
#define MSIX_TABLE_OFF	0x000
#define MSIX_PBA_OFF	0x800
#define VIRTIO_BAR	4
#define VIRTIO_BAR_SIZE 0x4000
#define COMMON_OFF	0x0000
#define COMMON_LEN	0x3c /* through queue_reset (1.2) */
#define ISR_OFF		0x1000
#define ISR_LEN		1
#define DEVICE_OFF	0x2000
#define DEVICE_MAX	0x1000
#define NOTIFY_OFF	0x3000
#define NOTIFY_MULT	4

#define VIRTIO_CAP_LEN	16 /* struct virtio_pci_cap */
#define NOTIFY_CAP_LEN	20 /* + notify_off_multiplier */
#define PCI_CFG_CAP_LEN 20 /* + pci_cfg_data */
#define PCI_CFG_DATA	16 /* offset of pci_cfg_data in that capability */

#define ISR_QUEUE 0x1 /* VIRTIO_PCI_ISR_CONFIG is 0x2 */

#define TRANSPORT_FEATURES                                                                         \
	(1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_RING_F_INDIRECT_DESC |                        \
	 1ULL << VIRTIO_RING_F_EVENT_IDX)

struct notify_ctx {
	struct virtio_dev *vdev;
	unsigned q;
};

struct virtio_pci_private {
	pthread_mutex_t cfg_lock;
	struct msix msix;
	uint64_t offered;
	int notify_fd[VIRTIO_MAX_QUEUES]; /* -1 without KVM */
	bool notify_on_loop[VIRTIO_MAX_QUEUES];
	struct notify_ctx notify_ctx[VIRTIO_MAX_QUEUES];
	uint64_t notify_addr; /* where the ioeventfds are (BAR address), 0 if none */
	int pci_cfg_cap;
	bool loading;	   /* pci_device_set_config replays config writes: no window side effects */
	unsigned warnings; /* a looping hostile driver must not flood the log */
};

#define MAX_WARNINGS 8

/* pr_warn for what a driver did wrong, pr_debug once it has been said often enough. */
#define driver_warn(vdev, fmt, ...)                                                                \
	log_msg((vdev)->priv->warnings++ < MAX_WARNINGS ? LOG_WARN : LOG_DEBUG, "%s: " fmt,        \
		(vdev)->info.name, __VA_ARGS__)

static bool is_pow2(uint32_t x)
{
	return x && !(x & (x - 1));
}

static uint32_t class_of(uint16_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET:
		return 0x020000; /* network, ethernet */
	case VIRTIO_ID_BLOCK:
		return 0x018000; /* mass storage, other */
	case VIRTIO_ID_CONSOLE:
		return 0x078000; /* communication, other */
	default:
		return 0x00ff00; /* unclassified */
	}
}

/* ---- interrupts (vdev->lock held) ---- */

static void raise_config_locked(struct virtio_dev *vdev)
{
	vdev->t.isr |= VIRTIO_PCI_ISR_CONFIG;
	msix_notify(&vdev->priv->msix, vdev->t.msix_config);
}

static void set_needs_reset_locked(struct virtio_dev *vdev)
{
	if (vdev->t.status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	driver_warn(vdev, "%s", "driver error, device needs reset");
	vdev->t.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	raise_config_locked(vdev);
}

/* A vector the driver names: NO_VECTOR if there is no such vector or no route for it. */
static uint16_t check_vector(struct virtio_dev *vdev, uint16_t v)
{
	struct msix *m = &vdev->priv->msix;
	int ret;

	if (v >= m->nr)
		return VIRTIO_MSI_NO_VECTOR;
	ret = msix_use_vector(m, v);
	if (ret) {
		pr_warn("%s: MSI-X vector %u: %s", vdev->info.name, v, strerror(-ret));
		return VIRTIO_MSI_NO_VECTOR;
	}
	return v;
}

static bool live(const struct virtio_dev *vdev)
{
	uint8_t s = vdev->t.status;

	return (s & VIRTIO_CONFIG_S_DRIVER_OK) && !(s & VIRTIO_CONFIG_S_NEEDS_RESET);
}

void virtio_queue_interrupt(struct virtio_dev *vdev, unsigned q)
{
	struct virtq *vq;

	if (q >= vdev->info.nr_queues)
		return;
	vq = &vdev->t.vqs[q];
	if (!vdev->priv) {
		/* A device model driven without the transport (its unit tests). */
		if (vq->ready && virtq_should_notify(vq, vdev->env.mem)) {
			vdev->t.isr |= ISR_QUEUE;
			if (vdev->env.signal_msi)
				vdev->env.signal_msi(vdev->env.signal_opaque, 0, q);
		}
		return;
	}
	pthread_mutex_lock(&vdev->lock);
	if (live(vdev) && vq->ready && virtq_should_notify(vq, vdev->env.mem)) {
		vdev->t.isr |= ISR_QUEUE;
		msix_notify(&vdev->priv->msix, vdev->t.queue_vector[q]);
	}
	pthread_mutex_unlock(&vdev->lock);
}

void virtio_config_interrupt(struct virtio_dev *vdev)
{
	if (!vdev->priv) {
		vdev->t.config_generation++;
		vdev->t.isr |= VIRTIO_PCI_ISR_CONFIG;
		return;
	}
	pthread_mutex_lock(&vdev->lock);
	vdev->t.config_generation++;
	if (vdev->t.status & VIRTIO_CONFIG_S_DRIVER_OK)
		raise_config_locked(vdev);
	pthread_mutex_unlock(&vdev->lock);
}

void virtio_set_needs_reset(struct virtio_dev *vdev)
{
	if (!vdev->priv) {
		vdev->t.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
		return;
	}
	pthread_mutex_lock(&vdev->lock);
	set_needs_reset_locked(vdev);
	pthread_mutex_unlock(&vdev->lock);
}

/* ---- common configuration (cfg_lock held) ---- */

static void device_reset(struct virtio_dev *vdev)
{
	struct virtio_transport_state *t = &vdev->t;

	/* No more notifications or interrupts, then the device stops its work, then we clear. */
	pthread_mutex_lock(&vdev->lock);
	t->status = 0;
	pthread_mutex_unlock(&vdev->lock);
	if (vdev->ops->reset)
		vdev->ops->reset(vdev);
	pthread_mutex_lock(&vdev->lock);
	t->isr = 0;
	t->device_feature_select = t->driver_feature_select = 0;
	t->driver_features = 0;
	t->queue_select = 0;
	t->msix_config = VIRTIO_MSI_NO_VECTOR;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		virtq_reset(&t->vqs[q]);
		t->vqs[q].size = q < vdev->info.nr_queues ? vdev->info.queue_size : 0;
		t->queue_vector[q] = VIRTIO_MSI_NO_VECTOR;
	}
	pthread_mutex_unlock(&vdev->lock);
}

static bool features_acceptable(const struct virtio_dev *vdev, uint64_t f)
{
	return !(f & ~vdev->priv->offered) && (f & (1ULL << VIRTIO_F_VERSION_1));
}

static void sync_ring_features(struct virtio_dev *vdev, struct virtq *vq)
{
	vq->event_idx = virtio_has_feature(vdev, VIRTIO_RING_F_EVENT_IDX);
	vq->indirect = virtio_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC);
}

static void status_write(struct virtio_dev *vdev, uint8_t v)
{
	struct virtio_transport_state *t = &vdev->t;
	bool activate = false;
	uint8_t old, s;
	int ret;

	if (v == 0) {
		device_reset(vdev);
		return;
	}
	/* Only the driver's bits; DEVICE_NEEDS_RESET is the device's to set. */
	v &= VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK |
	     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_FAILED;
	pthread_mutex_lock(&vdev->lock);
	old = t->status;
	/* A driver never clears a bit except by reset, so bits only accumulate. */
	s = old | v;
	if ((s & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !features_acceptable(vdev, t->driver_features))
		s &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
	if ((s & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
		if (!(s & VIRTIO_CONFIG_S_FEATURES_OK)) {
			t->status = s;
			set_needs_reset_locked(vdev);
			pthread_mutex_unlock(&vdev->lock);
			return;
		}
		for (unsigned q = 0; q < vdev->info.nr_queues; q++)
			sync_ring_features(vdev, &t->vqs[q]);
		activate = !(s & VIRTIO_CONFIG_S_NEEDS_RESET);
	}
	t->status = s;
	pthread_mutex_unlock(&vdev->lock);
	if (activate && vdev->ops->activate) {
		ret = vdev->ops->activate(vdev);
		if (ret) {
			pr_warn("%s: activation failed: %s", vdev->info.name, strerror(-ret));
			virtio_set_needs_reset(vdev);
		}
	}
}

static void queue_enable(struct virtio_dev *vdev, struct virtq *vq)
{
	sync_ring_features(vdev, vq);
	if (virtq_enable(vq, vdev->env.mem)) {
		driver_warn(vdev, "queue %u rejected (size %u desc %#llx avail %#llx used %#llx)",
			    (unsigned)(vq - vdev->t.vqs), vq->size,
			    (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
			    (unsigned long long)vq->used_gpa);
		vq->ready = false;
		set_needs_reset_locked(vdev);
	}
}

static void set_half(uint64_t *v, bool high, uint32_t x)
{
	if (high)
		*v = (*v & 0xffffffffULL) | (uint64_t)x << 32;
	else
		*v = (*v & ~0xffffffffULL) | x;
}

static uint32_t get_half(uint64_t v, bool high)
{
	return high ? (uint32_t)(v >> 32) : (uint32_t)v;
}

/* Width of the field at off, 0 if no field starts there. */
static unsigned field_width(uint32_t off)
{
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
	case VIRTIO_PCI_COMMON_DF:
	case VIRTIO_PCI_COMMON_GFSELECT:
	case VIRTIO_PCI_COMMON_GF:
	case VIRTIO_PCI_COMMON_Q_DESCLO:
	case VIRTIO_PCI_COMMON_Q_DESCHI:
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
	case VIRTIO_PCI_COMMON_Q_AVAILHI:
	case VIRTIO_PCI_COMMON_Q_USEDLO:
	case VIRTIO_PCI_COMMON_Q_USEDHI:
		return 4;
	case VIRTIO_PCI_COMMON_STATUS:
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		return 1;
	case VIRTIO_PCI_COMMON_MSIX:
	case VIRTIO_PCI_COMMON_NUMQ:
	case VIRTIO_PCI_COMMON_Q_SELECT:
	case VIRTIO_PCI_COMMON_Q_SIZE:
	case VIRTIO_PCI_COMMON_Q_MSIX:
	case VIRTIO_PCI_COMMON_Q_ENABLE:
	case VIRTIO_PCI_COMMON_Q_NOFF:
	case VIRTIO_PCI_COMMON_Q_NDATA:
	case VIRTIO_PCI_COMMON_Q_RESET:
		return 2;
	default:
		return 0;
	}
}

static uint64_t *queue_addr(struct virtq *vq, uint32_t off)
{
	if (off < VIRTIO_PCI_COMMON_Q_AVAILLO)
		return &vq->desc_gpa;
	if (off < VIRTIO_PCI_COMMON_Q_USEDLO)
		return &vq->avail_gpa;
	return &vq->used_gpa;
}

static uint32_t common_read_field(struct virtio_dev *vdev, uint32_t off)
{
	struct virtio_transport_state *t = &vdev->t;
	bool qok = t->queue_select < vdev->info.nr_queues;
	struct virtq *vq = qok ? &t->vqs[t->queue_select] : NULL;
	uint64_t f;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		return t->device_feature_select;
	case VIRTIO_PCI_COMMON_DF:
		f = vdev->priv->offered;
		return t->device_feature_select < 2 ? get_half(f, t->device_feature_select) : 0;
	case VIRTIO_PCI_COMMON_GFSELECT:
		return t->driver_feature_select;
	case VIRTIO_PCI_COMMON_GF:
		f = t->driver_features;
		return t->driver_feature_select < 2 ? get_half(f, t->driver_feature_select) : 0;
	case VIRTIO_PCI_COMMON_MSIX:
		return t->msix_config;
	case VIRTIO_PCI_COMMON_NUMQ:
		return vdev->info.nr_queues;
	case VIRTIO_PCI_COMMON_STATUS:
		return t->status;
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		return t->config_generation;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		return t->queue_select;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		return vq ? vq->size : 0;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		return vq ? t->queue_vector[t->queue_select] : VIRTIO_MSI_NO_VECTOR;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		return vq ? vq->ready : 0;
	case VIRTIO_PCI_COMMON_Q_NOFF:
	case VIRTIO_PCI_COMMON_Q_NDATA:
		return vq ? t->queue_select : 0;
	case VIRTIO_PCI_COMMON_Q_DESCLO:
	case VIRTIO_PCI_COMMON_Q_DESCHI:
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
	case VIRTIO_PCI_COMMON_Q_AVAILHI:
	case VIRTIO_PCI_COMMON_Q_USEDLO:
	case VIRTIO_PCI_COMMON_Q_USEDHI:
		return vq ? get_half(*queue_addr(vq, off), off & 4) : 0;
	default:
		return 0; /* queue_reset: VIRTIO_F_RING_RESET is not offered */
	}
}

/* A write to one field; status writes return to the caller to run unlocked. */
static void common_write_field(struct virtio_dev *vdev, uint32_t off, uint32_t v)
{
	struct virtio_transport_state *t = &vdev->t;
	bool qok = t->queue_select < vdev->info.nr_queues;
	struct virtq *vq = qok ? &t->vqs[t->queue_select] : NULL;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		t->device_feature_select = v;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		t->driver_feature_select = v;
		break;
	case VIRTIO_PCI_COMMON_GF:
		/* Features are fixed once accepted. */
		if (t->driver_feature_select < 2 && !(t->status & VIRTIO_CONFIG_S_FEATURES_OK))
			set_half(&t->driver_features, t->driver_feature_select, v);
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		t->msix_config = check_vector(vdev, (uint16_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		t->queue_select = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		if (vq && !vq->ready && is_pow2(v) && v <= vdev->info.queue_size)
			vq->size = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (vq)
			t->queue_vector[t->queue_select] = check_vector(vdev, (uint16_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* Only 1 means anything; disabling a queue needs VIRTIO_F_RING_RESET. */
		if (vq && v == 1 && !vq->ready)
			queue_enable(vdev, vq);
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO:
	case VIRTIO_PCI_COMMON_Q_DESCHI:
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
	case VIRTIO_PCI_COMMON_Q_AVAILHI:
	case VIRTIO_PCI_COMMON_Q_USEDLO:
	case VIRTIO_PCI_COMMON_Q_USEDHI:
		if (vq && !vq->ready)
			set_half(queue_addr(vq, off), off & 4, v);
		break;
	default:
		break; /* read-only */
	}
}

static void common_access(struct virtio_dev *vdev, uint32_t off, uint8_t *data, uint32_t len,
			  bool is_write)
{
	unsigned w = field_width(off);
	bool pair = len == 8 && w == 4 && !(off & 4) && off >= VIRTIO_PCI_COMMON_Q_DESCLO;

	/* Natural width only; a 64-bit queue address may also go in one access. */
	if (w != len && !pair) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write && off == VIRTIO_PCI_COMMON_STATUS) {
		status_write(vdev, data[0]);
		return;
	}
	pthread_mutex_lock(&vdev->lock);
	for (uint32_t i = 0; i < len; i += w) {
		if (is_write) {
			uint32_t v = w == 4   ? pci_get32(data, i)
				     : w == 2 ? pci_get16(data, i)
					      : data[i];

			common_write_field(vdev, off + i, v);
		} else {
			uint32_t v = common_read_field(vdev, off + i);

			if (w == 4)
				pci_set32(data, i, v);
			else if (w == 2)
				pci_set16(data, i, (uint16_t)v);
			else
				data[i] = (uint8_t)v;
		}
	}
	pthread_mutex_unlock(&vdev->lock);
}

/* ---- notifications ---- */

static bool queue_live(struct virtio_dev *vdev, unsigned q)
{
	bool ok;

	pthread_mutex_lock(&vdev->lock);
	ok = live(vdev) && vdev->t.vqs[q].ready;
	pthread_mutex_unlock(&vdev->lock);
	return ok;
}

static void on_notify(struct virtio_dev *vdev, unsigned q)
{
	if (queue_live(vdev, q) && vdev->ops->queue_notify)
		vdev->ops->queue_notify(vdev, q);
}

static void on_notify_event(void *opaque, uint32_t events)
{
	struct notify_ctx *c = opaque;
	uint64_t v;

	(void)events;
	if (read(c->vdev->priv->notify_fd[c->q], &v, sizeof(v)) == sizeof(v))
		on_notify(c->vdev, c->q);
}

static void kick(struct virtio_pci_private *p, unsigned q)
{
	uint64_t one = 1;

	if (write(p->notify_fd[q], &one, sizeof(one)) < 0) {
		/* counter saturated: the loop is woken anyway */
	}
}

static void notify_access(struct virtio_dev *vdev, uint32_t off, uint8_t *data, uint32_t len,
			  bool is_write)
{
	unsigned q = off / NOTIFY_MULT;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (off % NOTIFY_MULT || q >= vdev->info.nr_queues)
		return;
	/* Without KVM (tests) at once; with it, on the loop thread like the ioeventfd path. */
	if (vdev->priv->notify_fd[q] >= 0)
		kick(vdev->priv, q);
	else
		on_notify(vdev, q);
}

static int set_ioeventfd(struct virtio_dev *vdev, unsigned q, uint64_t base, bool assign)
{
	struct kvm_ioeventfd io = {
	    .addr = base + NOTIFY_OFF + (uint64_t)q * NOTIFY_MULT,
	    .len = 2, /* what drivers write; other widths come through notify_access */
	    .fd = vdev->priv->notify_fd[q],
	    .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	if (ioctl(vdev->env.vm_fd, KVM_IOEVENTFD, &io) < 0)
		return -errno;
	return 0;
}

/* Host lock held: the virtio BAR moved, so do the ioeventfds. */
static void on_bar_update(struct pci_device *dev, int bar, uint64_t addr, bool mapped)
{
	struct virtio_dev *vdev = dev->opaque;
	struct virtio_pci_private *p = vdev->priv;
	int ret;

	if (bar != VIRTIO_BAR || vdev->env.vm_fd < 0)
		return;
	pthread_mutex_lock(&vdev->lock);
	for (unsigned q = 0; q < vdev->info.nr_queues; q++) {
		if (!mapped && p->notify_addr) {
			set_ioeventfd(vdev, q, p->notify_addr, false);
		} else if (mapped) {
			ret = set_ioeventfd(vdev, q, addr, true);
			if (ret)
				pr_warn("%s: ioeventfd for queue %u: %s (notifications exit)",
					vdev->info.name, q, strerror(-ret));
		}
	}
	p->notify_addr = mapped ? addr : 0;
	pthread_mutex_unlock(&vdev->lock);
}

/* ---- the BARs ---- */

static int virtio_bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_dev *vdev = opaque;
	struct virtio_pci_private *p = vdev->priv;
	uint32_t off = (uint32_t)offset;

	if (offset >= NOTIFY_OFF) {
		notify_access(vdev, off - NOTIFY_OFF, data, len, is_write);
	} else if (offset >= DEVICE_OFF) {
		off -= DEVICE_OFF;
		pthread_mutex_lock(&p->cfg_lock);
		if (off + len <= vdev->info.config_size && is_write && vdev->ops->config_write)
			vdev->ops->config_write(vdev, off, data, len);
		else if (off + len <= vdev->info.config_size && !is_write && vdev->ops->config_read)
			vdev->ops->config_read(vdev, off, data, len);
		else if (!is_write)
			memset(data, 0, len);
		pthread_mutex_unlock(&p->cfg_lock);
	} else if (offset >= ISR_OFF) {
		if (is_write)
			return 0;
		memset(data, 0, len);
		if (off == ISR_OFF && len == 1) {
			/* Reading acknowledges (read-to-clear). */
			pthread_mutex_lock(&vdev->lock);
			data[0] = vdev->t.isr;
			vdev->t.isr = 0;
			pthread_mutex_unlock(&vdev->lock);
		}
	} else if (off < COMMON_LEN) {
		pthread_mutex_lock(&p->cfg_lock);
		common_access(vdev, off, data, len, is_write);
		pthread_mutex_unlock(&p->cfg_lock);
	} else if (!is_write) {
		memset(data, 0, len);
	}
	return 0;
}

static int msix_bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_dev *vdev = opaque;

	pthread_mutex_lock(&vdev->lock);
	msix_bar_access(&vdev->priv->msix, offset, data, len, is_write);
	pthread_mutex_unlock(&vdev->lock);
	return 0;
}

/* ---- config space: MSI-X control and the VIRTIO_PCI_CAP_PCI_CFG window ---- */

static bool overlaps(uint32_t a, uint32_t alen, uint32_t b, uint32_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Host lock held.  The window reaches BAR bytes through the same handler as MMIO does. */
static void pci_cfg_window(struct virtio_dev *vdev, bool is_write)
{
	uint8_t *cfg = vdev->pci.config;
	unsigned cap = (unsigned)vdev->priv->pci_cfg_cap;
	uint32_t off = pci_get32(cfg, cap + VIRTIO_PCI_CAP_OFFSET);
	uint32_t len = pci_get32(cfg, cap + VIRTIO_PCI_CAP_LENGTH);
	uint8_t buf[4] = {0};

	if (cfg[cap + VIRTIO_PCI_CAP_BAR] != VIRTIO_BAR || (len != 1 && len != 2 && len != 4) ||
	    off % len || off >= VIRTIO_BAR_SIZE) {
		if (!is_write)
			memset(cfg + cap + PCI_CFG_DATA, 0, 4);
		return;
	}
	if (is_write) {
		memcpy(buf, cfg + cap + PCI_CFG_DATA, len);
		virtio_bar_io(vdev, off, buf, len, true);
	} else {
		virtio_bar_io(vdev, off, buf, len, false);
		memcpy(cfg + cap + PCI_CFG_DATA, buf, 4);
	}
}

static void on_config_write(struct pci_device *dev, uint32_t offset, uint32_t len, uint32_t old)
{
	struct virtio_dev *vdev = dev->opaque;
	struct virtio_pci_private *p = vdev->priv;

	(void)old;
	if (overlaps(offset, len, (uint32_t)p->msix.cap + PCI_MSIX_FLAGS, 2)) {
		pthread_mutex_lock(&vdev->lock);
		msix_config_changed(&p->msix, dev->config);
		pthread_mutex_unlock(&vdev->lock);
	}
	if (!p->loading && overlaps(offset, len, (uint32_t)p->pci_cfg_cap + PCI_CFG_DATA, 4))
		pci_cfg_window(vdev, true);
}

static void on_config_read(struct pci_device *dev, uint32_t offset, uint32_t len)
{
	struct virtio_dev *vdev = dev->opaque;

	if (overlaps(offset, len, (uint32_t)vdev->priv->pci_cfg_cap + PCI_CFG_DATA, 4))
		pci_cfg_window(vdev, false);
}

/* ---- set-up ---- */

static int add_virtio_cap(struct pci_device *dev, uint8_t type, uint8_t cap_len, uint32_t off,
			  uint32_t len)
{
	int cap = pci_add_capability(dev, PCI_CAP_ID_VNDR, cap_len);

	if (cap < 0)
		return cap;
	dev->config[cap + VIRTIO_PCI_CAP_LEN] = cap_len;
	dev->config[cap + VIRTIO_PCI_CAP_CFG_TYPE] = type;
	dev->config[cap + VIRTIO_PCI_CAP_BAR] = VIRTIO_BAR;
	pci_set32(dev->config, cap + VIRTIO_PCI_CAP_OFFSET, off);
	pci_set32(dev->config, cap + VIRTIO_PCI_CAP_LENGTH, len);
	return cap;
}

static int add_capabilities(struct virtio_dev *vdev)
{
	struct pci_device *dev = &vdev->pci;
	int cap;

	if ((cap = add_virtio_cap(dev, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_CAP_LEN, COMMON_OFF,
				  COMMON_LEN)) < 0)
		return cap;
	if ((cap = add_virtio_cap(dev, VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_CAP_LEN, NOTIFY_OFF,
				  vdev->info.nr_queues * NOTIFY_MULT)) < 0)
		return cap;
	pci_set32(dev->config, cap + VIRTIO_PCI_NOTIFY_CAP_MULT, NOTIFY_MULT);
	if ((cap = add_virtio_cap(dev, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_CAP_LEN, ISR_OFF, ISR_LEN)) <
	    0)
		return cap;
	/* No device-specific configuration, no capability for it (Linux then skips it). */
	if (vdev->info.config_size &&
	    (cap = add_virtio_cap(dev, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_CAP_LEN, DEVICE_OFF,
				  vdev->info.config_size)) < 0)
		return cap;
	/* The spec wants the PCI-configuration access window even if Linux never uses it. */
	if ((cap = add_virtio_cap(dev, VIRTIO_PCI_CAP_PCI_CFG, PCI_CFG_CAP_LEN, 0, 0)) < 0)
		return cap;
	vdev->priv->pci_cfg_cap = cap;
	dev->wmask[cap + VIRTIO_PCI_CAP_BAR] = 0xff;
	pci_set32(dev->wmask, cap + VIRTIO_PCI_CAP_OFFSET, 0xffffffff);
	pci_set32(dev->wmask, cap + VIRTIO_PCI_CAP_LENGTH, 0xffffffff);
	pci_set32(dev->wmask, cap + PCI_CFG_DATA, 0xffffffff);
	return 0;
}

static int setup_notify(struct virtio_dev *vdev)
{
	struct virtio_pci_private *p = vdev->priv;
	int ret;

	if (vdev->env.vm_fd < 0)
		return 0;
	if (!vdev->env.loop)
		return -EINVAL;
	for (unsigned q = 0; q < vdev->info.nr_queues; q++) {
		p->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (p->notify_fd[q] < 0)
			return -errno;
		p->notify_ctx[q] = (struct notify_ctx){vdev, q};
		ret = event_loop_add(vdev->env.loop, p->notify_fd[q], EPOLLIN, on_notify_event,
				     &p->notify_ctx[q]);
		if (ret)
			return ret;
		p->notify_on_loop[q] = true;
	}
	return 0;
}

static void release(struct virtio_dev *vdev)
{
	struct virtio_pci_private *p = vdev->priv;

	if (!p)
		return;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (p->notify_fd[q] < 0)
			continue;
		if (p->notify_addr && q < vdev->info.nr_queues)
			set_ioeventfd(vdev, q, p->notify_addr, false);
		if (p->notify_on_loop[q])
			event_loop_remove(vdev->env.loop, p->notify_fd[q]);
		close(p->notify_fd[q]);
	}
	msix_destroy(&p->msix);
	pthread_mutex_destroy(&p->cfg_lock);
	free(p);
	vdev->priv = NULL;
	pthread_mutex_destroy(&vdev->lock);
}

int virtio_pci_init(struct virtio_dev *vdev, const struct virtio_dev_info *info_in,
		    const struct virtio_device_ops *ops, void *opaque,
		    const struct virtio_env *env_in)
{
	/* Callers may pass pointers into vdev itself. */
	struct virtio_dev_info info = *info_in;
	struct virtio_env env = *env_in;
	struct virtio_pci_private *p;
	struct pci_device *dev;
	unsigned nr_vectors = info.nr_queues + 1;
	uint16_t pci_id;
	int ret;

	if (!ops || !env.mem || info.nr_queues == 0 || info.nr_queues > VIRTIO_MAX_QUEUES ||
	    !is_pow2(info.queue_size) || info.queue_size > VIRTQ_MAX_SIZE ||
	    info.config_size > DEVICE_MAX || info.device_id > 0x3f)
		return -EINVAL;
	memset(vdev, 0, sizeof(*vdev));
	vdev->info = info;
	if (!vdev->info.name)
		vdev->info.name = "virtio";
	vdev->ops = ops;
	vdev->opaque = opaque;
	vdev->env = env;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		p->notify_fd[q] = -1;
	ret = pthread_mutex_init(&vdev->lock, NULL);
	if (ret) {
		free(p);
		return -ret;
	}
	ret = pthread_mutex_init(&p->cfg_lock, NULL);
	if (ret) {
		pthread_mutex_destroy(&vdev->lock);
		free(p);
		return -ret;
	}
	vdev->priv = p;
	p->offered = info.features | TRANSPORT_FEATURES;

	dev = &vdev->pci;
	pci_id = (uint16_t)(VIRTIO_PCI_DEVICE_ID_BASE + info.device_id);
	pci_device_init(dev, vdev->info.name, VIRTIO_PCI_VENDOR_ID, pci_id,
			class_of(info.device_id));
	pci_set8(dev->config, PCI_REVISION_ID, 1); /* modern only */
	pci_set16(dev->config, PCI_SUBSYSTEM_VENDOR_ID, VIRTIO_PCI_VENDOR_ID);
	pci_set16(dev->config, PCI_SUBSYSTEM_ID, pci_id);
	dev->opaque = vdev;
	dev->bar_update = on_bar_update;
	dev->config_write = on_config_write;
	dev->config_read = on_config_read;
	ret = pci_set_bar(dev, MSIX_BAR, PCI_BAR_MEM32, MSIX_BAR_SIZE, false, msix_bar_io, vdev);
	if (!ret)
		ret = pci_set_bar(dev, VIRTIO_BAR, PCI_BAR_MEM64, VIRTIO_BAR_SIZE, false,
				  virtio_bar_io, vdev);
	if (!ret)
		ret = add_capabilities(vdev);
	if (!ret)
		ret = msix_init(&p->msix, dev, nr_vectors, MSIX_BAR, MSIX_TABLE_OFF, MSIX_PBA_OFF,
				env.msi, env.signal_msi, env.signal_opaque);
	if (!ret)
		ret = setup_notify(vdev);
	if (ret) {
		release(vdev);
		return ret;
	}
	vdev->t.msix_config = VIRTIO_MSI_NO_VECTOR;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		vdev->t.queue_vector[q] = VIRTIO_MSI_NO_VECTOR;
		vdev->t.vqs[q].size = q < info.nr_queues ? info.queue_size : 0;
	}
	return 0;
}

int virtio_pci_register(struct virtio_dev *vdev, int slot)
{
	if (!vdev->priv || !vdev->env.pci)
		return -EINVAL;
	return pci_register_device(vdev->env.pci, &vdev->pci, slot);
}

void virtio_pci_destroy(struct virtio_dev *vdev)
{
	release(vdev);
}

/* ---- save/load ---- */

#define QUEUE_BLOB 36
#define QF_READY   1
#define QF_EVENT   2
#define QF_INDIR   4
#define QF_SIGVAL  8

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void queue_encode(const struct virtq *vq, uint16_t vector, uint8_t *b)
{
	put_be(b, vq->size, 2);
	put_be(b + 2,
	       (vq->ready ? QF_READY : 0) | (vq->event_idx ? QF_EVENT : 0) |
		   (vq->indirect ? QF_INDIR : 0) | (vq->signalled_used_valid ? QF_SIGVAL : 0),
	       2);
	put_be(b + 4, vq->desc_gpa, 8);
	put_be(b + 12, vq->avail_gpa, 8);
	put_be(b + 20, vq->used_gpa, 8);
	put_be(b + 28, vq->last_avail_idx, 2);
	put_be(b + 30, vq->used_idx, 2);
	put_be(b + 32, vq->signalled_used, 2);
	put_be(b + 34, vector, 2);
}

static int queue_decode(const uint8_t *b, struct virtq *vq, uint16_t *vector)
{
	unsigned flags = (unsigned)get_be(b + 2, 2);

	if (flags & ~(QF_READY | QF_EVENT | QF_INDIR | QF_SIGVAL))
		return -EINVAL;
	virtq_reset(vq);
	vq->size = (uint16_t)get_be(b, 2);
	vq->ready = flags & QF_READY;
	vq->event_idx = flags & QF_EVENT;
	vq->indirect = flags & QF_INDIR;
	vq->signalled_used_valid = flags & QF_SIGVAL;
	vq->desc_gpa = get_be(b + 4, 8);
	vq->avail_gpa = get_be(b + 12, 8);
	vq->used_gpa = get_be(b + 20, 8);
	vq->last_avail_idx = (uint16_t)get_be(b + 28, 2);
	vq->used_idx = (uint16_t)get_be(b + 30, 2);
	vq->signalled_used = (uint16_t)get_be(b + 32, 2);
	*vector = (uint16_t)get_be(b + 34, 2);
	return 0;
}

int virtio_pci_save(struct virtio_dev *vdev, void *fdt)
{
	struct virtio_pci_private *p = vdev->priv;
	uint8_t config[PCI_CONFIG_SIZE], table[MSIX_MAX_VECTORS * MSIX_ENTRY_SIZE];
	uint8_t queues[VIRTIO_MAX_QUEUES][QUEUE_BLOB];
	struct virtio_transport_state t;
	uint64_t pba;
	char name[24];
	int ret;

	if (!p)
		return -EINVAL;
	pci_device_get_config(&vdev->pci, config);
	pthread_mutex_lock(&vdev->lock);
	t = vdev->t;
	msix_get_table(&p->msix, table);
	pba = p->msix.pba;
	pthread_mutex_unlock(&vdev->lock);
	for (unsigned q = 0; q < vdev->info.nr_queues; q++)
		queue_encode(&t.vqs[q], t.queue_vector[q], queues[q]);

	if ((ret = state_put_u32(fdt, "virtio-device-id", vdev->info.device_id)) ||
	    (ret = state_put_u32(fdt, "virtio-queues", vdev->info.nr_queues)) ||
	    (ret = state_put_bytes(fdt, "pci-config", config, sizeof(config))) ||
	    (ret = state_put_bytes(fdt, "msix-table", table, p->msix.nr * MSIX_ENTRY_SIZE)) ||
	    (ret = state_put_u64(fdt, "msix-pba", pba)) ||
	    (ret = state_put_u32(fdt, "virtio-status", t.status)) ||
	    (ret = state_put_u32(fdt, "virtio-isr", t.isr)) ||
	    (ret = state_put_u32(fdt, "virtio-generation", t.config_generation)) ||
	    (ret = state_put_u32(fdt, "virtio-dfselect", t.device_feature_select)) ||
	    (ret = state_put_u32(fdt, "virtio-gfselect", t.driver_feature_select)) ||
	    (ret = state_put_u64(fdt, "virtio-features", t.driver_features)) ||
	    (ret = state_put_u32(fdt, "virtio-queue-select", t.queue_select)) ||
	    (ret = state_put_u32(fdt, "virtio-msix-config", t.msix_config)))
		return ret;
	for (unsigned q = 0; q < vdev->info.nr_queues; q++) {
		snprintf(name, sizeof(name), "virtio-queue%u", q);
		ret = state_put_bytes(fdt, name, queues[q], QUEUE_BLOB);
		if (ret)
			return ret;
	}
	return 0;
}

static bool vector_ok(const struct virtio_dev *vdev, uint32_t v)
{
	return v == VIRTIO_MSI_NO_VECTOR || v < vdev->priv->msix.nr;
}

/* Only what the guest may change may differ from the freshly built config space. */
static int check_config(struct virtio_dev *vdev, const uint8_t *saved)
{
	uint8_t cur[PCI_CONFIG_SIZE];

	pci_device_get_config(&vdev->pci, cur);
	for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++)
		if ((saved[i] ^ cur[i]) & ~(vdev->pci.wmask[i] | vdev->pci.w1cmask[i]))
			return -EINVAL;
	return 0;
}

static int load_queue(struct virtio_dev *vdev, const uint8_t *b, struct virtq *vq, uint16_t *vector)
{
	struct virtq check;

	if (queue_decode(b, vq, vector) || !vector_ok(vdev, *vector) || !is_pow2(vq->size) ||
	    vq->size > vdev->info.queue_size)
		return -EINVAL;
	if (vq->ready) {
		check = *vq;
		if (virtq_enable(&check, vdev->env.mem))
			return -EINVAL;
		/* The driver cannot be more than a ring ahead of the device. */
		if ((uint16_t)(vq->last_avail_idx - vq->used_idx) > vq->size)
			return -EINVAL;
	}
	return 0;
}

int virtio_pci_load(struct virtio_dev *vdev, const void *fdt, int node)
{
	struct virtio_pci_private *p = vdev->priv;
	uint8_t config[PCI_CONFIG_SIZE], table[MSIX_MAX_VECTORS * MSIX_ENTRY_SIZE];
	uint8_t blob[QUEUE_BLOB];
	struct virtio_transport_state t;
	uint32_t id, nq, status, isr, gen, qsel, mcfg;
	uint64_t pba;
	uint8_t allowed;
	char name[24];
	int ret;

	if (!p)
		return -EINVAL;
	memset(&t, 0, sizeof(t));
	if (state_get_u32(fdt, node, "virtio-device-id", &id) ||
	    state_get_u32(fdt, node, "virtio-queues", &nq) || id != vdev->info.device_id ||
	    nq != vdev->info.nr_queues)
		return -EINVAL;
	if (state_get_bytes(fdt, node, "pci-config", config, sizeof(config)) ||
	    state_get_bytes(fdt, node, "msix-table", table, p->msix.nr * MSIX_ENTRY_SIZE) ||
	    state_get_u64(fdt, node, "msix-pba", &pba) ||
	    state_get_u32(fdt, node, "virtio-status", &status) ||
	    state_get_u32(fdt, node, "virtio-isr", &isr) ||
	    state_get_u32(fdt, node, "virtio-generation", &gen) ||
	    state_get_u32(fdt, node, "virtio-dfselect", &t.device_feature_select) ||
	    state_get_u32(fdt, node, "virtio-gfselect", &t.driver_feature_select) ||
	    state_get_u64(fdt, node, "virtio-features", &t.driver_features) ||
	    state_get_u32(fdt, node, "virtio-queue-select", &qsel) ||
	    state_get_u32(fdt, node, "virtio-msix-config", &mcfg))
		return -EINVAL;
	allowed = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK |
		  VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_NEEDS_RESET |
		  VIRTIO_CONFIG_S_FAILED;
	if (status & ~(uint32_t)allowed || isr & ~3u || gen > 0xff || qsel > 0xffff ||
	    !vector_ok(vdev, mcfg) || check_config(vdev, config))
		return -EINVAL;
	if ((status & VIRTIO_CONFIG_S_FEATURES_OK) && !features_acceptable(vdev, t.driver_features))
		return -EINVAL;
	t.status = (uint8_t)status;
	t.isr = (uint8_t)isr;
	t.config_generation = (uint8_t)gen;
	t.queue_select = (uint16_t)qsel;
	t.msix_config = (uint16_t)mcfg;
	ret = 0;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES && !ret; q++) {
		t.queue_vector[q] = VIRTIO_MSI_NO_VECTOR;
		if (q >= nq)
			continue;
		snprintf(name, sizeof(name), "virtio-queue%u", q);
		ret = state_get_bytes(fdt, node, name, blob, sizeof(blob));
		if (!ret)
			ret = load_queue(vdev, blob, &t.vqs[q], &t.queue_vector[q]);
	}
	if (ret)
		return -EINVAL;

	pthread_mutex_lock(&p->cfg_lock);
	pthread_mutex_lock(&vdev->lock);
	ret = msix_set_table(&p->msix, table, pba);
	if (!ret) {
		vdev->t = t;
		/* Routes and irqfds for every vector in use, as if the driver had just named them.
		 */
		vdev->t.msix_config = check_vector(vdev, t.msix_config);
		for (unsigned q = 0; q < nq; q++)
			vdev->t.queue_vector[q] = check_vector(vdev, t.queue_vector[q]);
	}
	pthread_mutex_unlock(&vdev->lock);
	pthread_mutex_unlock(&p->cfg_lock);
	if (ret)
		return ret;
	p->loading = true;
	pci_device_set_config(&vdev->pci, config);
	p->loading = false;
	/* Registered or not, MSI-X enable and mask follow the loaded control word. */
	pci_device_get_config(&vdev->pci, config);
	pthread_mutex_lock(&vdev->lock);
	msix_config_changed(&p->msix, config);
	pthread_mutex_unlock(&vdev->lock);
	/* A notification in flight when the state was saved is lost: have every live queue look. */
	if (live(vdev))
		for (unsigned q = 0; q < nq; q++)
			if (p->notify_fd[q] >= 0 && vdev->t.vqs[q].ready)
				kick(p, q);
	return 0;
}
