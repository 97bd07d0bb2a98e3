// SPDX-License-Identifier: MIT
/*
 * The modern virtio-pci transport without KVM: capability layout as Linux
 * reads it, feature negotiation, status and reset, queue set-up good and
 * bad, MSI-X table, masking and pending bits, config generation, ISR,
 * notifications, the PCI-configuration window, hostile accesses, save/load;
 * and, with /dev/kvm (skipped otherwise), a queue interrupt reaching the
 * LAPIC through MSI-X, the GSI route and the irqfd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "msi.h"
#include "state.h"
#include "virtio.h"
#include "virtio_driver.h"

#define RAM	   (1ULL << 20)
#define QSIZE_MAX  16
#define NQ	   2
#define DEV_FEAT   (1ULL << 1 | 1ULL << 5)
#define CFG_SIZE   8
#define DESC	   0x10000ULL
#define AVAIL	   0x11000ULL
#define USED	   0x12000ULL
#define DESC1	   0x20000ULL
#define AVAIL1	   0x21000ULL
#define USED1	   0x22000ULL
#define MSI_ADDR   0xfee00000ULL
#define F_VERSION1 (1ULL << VIRTIO_F_VERSION_1)

struct fake {
	struct vdrv d;
	struct virtio_dev vdev;
	unsigned notified[NQ];
	unsigned resets, activates;
	int activate_ret;
	uint8_t cfg[CFG_SIZE];
	uint32_t last_cfg_off, last_cfg_len;
};

static void fake_notify(struct virtio_dev *vdev, unsigned q)
{
	struct fake *f = vdev->opaque;

	assert_true(q < NQ);
	f->notified[q]++;
}

static int fake_activate(struct virtio_dev *vdev)
{
	struct fake *f = vdev->opaque;

	f->activates++;
	return f->activate_ret;
}

static void fake_reset(struct virtio_dev *vdev)
{
	struct fake *f = vdev->opaque;

	f->resets++;
}

static void fake_cfg_read(struct virtio_dev *vdev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct fake *f = vdev->opaque;

	assert_true(off + len <= CFG_SIZE);
	f->last_cfg_off = off;
	f->last_cfg_len = len;
	memcpy(data, f->cfg + off, len);
}

static void fake_cfg_write(struct virtio_dev *vdev, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct fake *f = vdev->opaque;

	assert_true(off + len <= CFG_SIZE);
	memcpy(f->cfg + off, data, len);
}

static const struct virtio_device_ops fake_ops = {
    .queue_notify = fake_notify,
    .activate = fake_activate,
    .reset = fake_reset,
    .config_read = fake_cfg_read,
    .config_write = fake_cfg_write,
};

static const struct virtio_dev_info fake_info = {
    .name = "virtio-fake",
    .device_id = VIRTIO_ID_BLOCK,
    .features = DEV_FEAT,
    .nr_queues = NQ,
    .queue_size = QSIZE_MAX,
    .config_size = CFG_SIZE,
};

static struct fake *fake_new(void)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct virtio_env env;

	assert_non_null(f);
	vd_init(&f->d, RAM);
	env = vd_env(&f->d);
	for (unsigned i = 0; i < CFG_SIZE; i++)
		f->cfg[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(virtio_pci_init(&f->vdev, &fake_info, &fake_ops, f, &env), 0);
	assert_int_equal(virtio_pci_register(&f->vdev, -1), 0);
	vd_probe(&f->d, f->vdev.pci.slot);
	return f;
}

static void fake_free(struct fake *f)
{
	virtio_pci_destroy(&f->vdev);
	vd_fini(&f->d);
	free(f);
}

static int setup(void **state)
{
	*state = fake_new();
	return 0;
}

static int teardown(void **state)
{
	fake_free(*state);
	return 0;
}

/* Negotiate, set up both queues, DRIVER_OK. */
static void bring_up(struct fake *f)
{
	assert_true(vd_negotiate(&f->d, F_VERSION1) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(vd_queue(&f->d, 0, 8, DESC, AVAIL, USED), 1);
	assert_int_equal(vd_queue(&f->d, 1, 8, DESC1, AVAIL1, USED1), 1);
	vd_driver_ok(&f->d);
}

static uint8_t status(struct fake *f)
{
	return (uint8_t)vd_common_read(&f->d, VIRTIO_PCI_COMMON_STATUS, 1);
}

static void test_ids(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;

	assert_int_equal(vd_cfg_read(d, PCI_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(vd_cfg_read(d, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_BLOCK);
	assert_int_equal(vd_cfg_read(d, PCI_REVISION_ID, 1), 1);
	assert_int_equal(vd_cfg_read(d, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	assert_true(vd_cfg_read(d, PCI_SUBSYSTEM_ID, 2) >= 0x40);
	assert_int_equal(vd_cfg_read(d, PCI_HEADER_TYPE, 1), 0);
	assert_int_equal(vd_cfg_read(d, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
}

/* What virtio_pci_modern_probe and vp_modern_map_capability check. */
static void test_capability_layout(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	uint32_t lo;

	assert_true(d->common && d->notify && d->isr && d->device);
	assert_true(d->common_len >= sizeof(struct virtio_pci_common_cfg));
	assert_int_equal(d->notify_mult, 4);
	assert_true(d->notify_len >= NQ * d->notify_mult);
	assert_true(d->isr_len >= 1);
	assert_int_equal(d->device_len, CFG_SIZE);
	assert_true(d->pci_cfg_cap > 0);
	/* All four structures in one 64-bit memory BAR at 0xc0000000 and up. */
	lo = vd_cfg_read(d, PCI_BASE_ADDRESS_0 + 4 * 4, 4);
	assert_int_equal(lo & PCI_BASE_ADDRESS_SPACE, PCI_BASE_ADDRESS_SPACE_MEMORY);
	assert_int_equal(lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK, PCI_BASE_ADDRESS_MEM_TYPE_64);
	uint64_t bar = vd_bar_addr(d, 4);
	assert_true(bar >= LAYOUT_PCI_MMIO_BASE);
	assert_true(d->common >= bar && d->common + d->common_len <= bar + 0x4000);
	assert_true(d->notify >= bar && d->notify + d->notify_len <= bar + 0x4000);
	assert_true(d->isr >= bar && d->isr + d->isr_len <= bar + 0x4000);
	assert_true(d->device >= bar && d->device + d->device_len <= bar + 0x4000);
	/* BAR sizing: all-ones, read back the mask. */
	vd_cfg_write(d, PCI_BASE_ADDRESS_0 + 16, 4, 0xffffffff);
	assert_int_equal(vd_cfg_read(d, PCI_BASE_ADDRESS_0 + 16, 4) & ~0xfu, ~0x3fffu);
	vd_cfg_write(d, PCI_BASE_ADDRESS_0 + 16, 4, lo);
	assert_int_equal(vd_bar_addr(d, 4), bar);
	/* MSI-X: one vector per queue plus config, table and PBA in a memory BAR. */
	assert_true(d->msix_cap > 0);
	assert_int_equal(d->msix_size, NQ + 1);
	assert_true(d->msix_table >= LAYOUT_PCI_MMIO_BASE);
	assert_true(d->msix_pba >= d->msix_table + 16 * d->msix_size);
	/* Each queue has its own notify address inside the notify structure. */
	for (unsigned q = 0; q < NQ; q++) {
		vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		uint32_t off = (uint32_t)vd_common_read(d, VIRTIO_PCI_COMMON_Q_NOFF, 2);
		assert_int_equal(off, q);
		assert_true((uint64_t)off * d->notify_mult + 2 <= d->notify_len);
	}
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
}

static void test_features(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	uint64_t offered;

	vd_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	offered = vd_common_read(d, VIRTIO_PCI_COMMON_DF, 4);
	vd_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	offered |= vd_common_read(d, VIRTIO_PCI_COMMON_DF, 4) << 32;
	assert_int_equal(offered, DEV_FEAT | F_VERSION1 | 1ULL << VIRTIO_RING_F_INDIRECT_DESC |
				      1ULL << VIRTIO_RING_F_EVENT_IDX);
	vd_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 4, 2);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_DF, 4), 0);

	/* Accepted: a subset with VERSION_1. */
	uint64_t want = F_VERSION1 | 1ULL << 5 | 1ULL << VIRTIO_RING_F_EVENT_IDX;
	assert_true(vd_negotiate(d, want) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(f->vdev.t.driver_features, want);
	assert_true(virtio_has_feature(&f->vdev, VIRTIO_RING_F_EVENT_IDX));
	/* Fixed once accepted. */
	vd_common_write(d, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_GF, 4, 0);
	assert_int_equal(f->vdev.t.driver_features, want);

	/* Refused: a feature not offered, or no VERSION_1.  The bit stays clear. */
	assert_false(vd_negotiate(d, F_VERSION1 | 1ULL << 2) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_false(vd_negotiate(d, 1ULL << 1) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_false(vd_negotiate(d, F_VERSION1 | 1ULL << 40) & VIRTIO_CONFIG_S_FEATURES_OK);
	/* DRIVER_OK without FEATURES_OK: the device needs a reset and is not activated. */
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_DRIVER_OK);
	assert_true(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(f->activates, 0);
	/* And a reset clears it all. */
	assert_true(vd_negotiate(d, F_VERSION1) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_false(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_status_and_reset(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	unsigned resets;

	bring_up(f);
	assert_int_equal(f->activates, 1);
	assert_int_equal(status(f), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2), 2);
	/* Writing DRIVER_OK again does not activate twice. */
	vd_driver_ok(d);
	assert_int_equal(f->activates, 1);

	resets = f->resets;
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(f->resets, resets + 1);
	assert_int_equal(status(f), 0);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	for (unsigned q = 0; q < NQ; q++) {
		vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
		assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE_MAX);
		assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2),
				 VIRTIO_MSI_NO_VECTOR);
		assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0);
	}
	vd_common_write(d, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_GF, 4), 0);

	/* Activation failure: DEVICE_NEEDS_RESET. */
	f->activate_ret = -EIO;
	bring_up(f);
	assert_true(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_queue_setup(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	struct virtq *vq = virtio_queue(&f->vdev, 1);

	assert_true(vd_negotiate(d, F_VERSION1 | 1ULL << VIRTIO_RING_F_INDIRECT_DESC) &
		    VIRTIO_CONFIG_S_FEATURES_OK);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	/* Sizes: a power of 2 up to the maximum; anything else is ignored. */
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, 6);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE_MAX);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, 32);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE_MAX);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, 0);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2), QSIZE_MAX);
	/* A 64-bit address in one access works too. */
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_DESCLO, 8, DESC1);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_DESCLO, 8), DESC1);
	assert_int_equal(vd_queue(d, 1, 4, DESC1, AVAIL1, USED1), 1);
	assert_true(vq->ready);
	assert_int_equal(vq->size, 4);
	assert_int_equal(vq->desc_gpa, DESC1);
	assert_int_equal(vq->avail_gpa, AVAIL1);
	assert_int_equal(vq->used_gpa, USED1);
	assert_true(vq->indirect);
	assert_false(vq->event_idx);
	/* Once enabled, the queue's set-up is fixed; a 0 does not disable it. */
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SIZE, 2, 8);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x30000);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 0);
	assert_int_equal(vq->size, 4);
	assert_int_equal(vq->desc_gpa, DESC1);
	assert_true(vq->ready);
	/* Queue indices past the end read as absent and ignore writes. */
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, NQ);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0xffff);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x1234);
	assert_false(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_queue_setup_bad(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	static const struct {
		uint64_t desc, avail, used;
	} bad[] = {
	    {RAM, AVAIL, USED},			 /* descriptors past the end of RAM */
	    {RAM - 64, AVAIL, USED},		 /* straddling the end */
	    {DESC, 0xfffffffffffffff0ULL, USED}, /* wraps */
	    {DESC, AVAIL, LAYOUT_PCI_MMIO_BASE}, /* MMIO is not RAM */
	    {DESC + 8, AVAIL, USED},		 /* misaligned */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(vd_negotiate(d, F_VERSION1) & VIRTIO_CONFIG_S_FEATURES_OK);
		vd_msix_enable(d, true, false);
		vd_msix_entry(d, 0, MSI_ADDR, 0x40 + (uint32_t)i, false);
		vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, 0);
		d->nr_msi = 0;
		assert_int_equal(vd_queue(d, 0, 8, bad[i].desc, bad[i].avail, bad[i].used), 0);
		assert_true(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
		/* The driver hears about it through the config vector. */
		assert_int_equal(d->nr_msi, 1);
		assert_int_equal(d->msi[0].data, 0x40 + i);
		/* DRIVER_OK now does not activate a broken device. */
		vd_driver_ok(d);
		assert_int_equal(f->activates, 0);
	}
}

static void test_vectors(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;

	vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, NQ);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_MSIX, 2), NQ);
	vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, NQ + 1); /* beyond the table */
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 0x7fff);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
}

/* Put one used entry on queue q's ring so an interrupt is due. */
static void complete_one(struct fake *f, unsigned q)
{
	struct virtq *vq = virtio_queue(&f->vdev, q);

	assert_int_equal(virtq_push(vq, &f->d.mem, 0, 0), 0);
	virtio_queue_interrupt(&f->vdev, q);
}

static void test_msix(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	uint64_t e1 = d->msix_table + 16;

	bring_up(f);
	/* Entries start masked with zero contents. */
	assert_int_equal(vd_read(d, e1 + 12, 4), PCI_MSIX_ENTRY_CTRL_MASKBIT);
	vd_msix_entry(d, 1, MSI_ADDR | 0x1000, 0x4041, true);
	assert_int_equal(vd_read(d, e1, 4), MSI_ADDR | 0x1000);
	assert_int_equal(vd_read(d, e1 + 4, 4), 0);
	assert_int_equal(vd_read(d, e1 + 8, 4), 0x4041);
	assert_int_equal(vd_read(d, e1, 8), MSI_ADDR | 0x1000);
	/* Reserved control bits read 0; the PBA is read-only. */
	vd_write(d, e1 + 12, 4, 0xfffffffe | PCI_MSIX_ENTRY_CTRL_MASKBIT);
	assert_int_equal(vd_read(d, e1 + 12, 4), PCI_MSIX_ENTRY_CTRL_MASKBIT);
	vd_write(d, d->msix_pba, 4, 0xff);
	assert_int_equal(vd_read(d, d->msix_pba, 4), 0);

	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);

	/* MSI-X disabled: nothing is sent, nothing pends. */
	complete_one(f, 0);
	assert_int_equal(d->nr_msi, 0);
	assert_int_equal(vd_read(d, d->msix_pba, 4), 0);

	/* Enabled but the vector is masked: pending bit, delivered on unmask. */
	vd_msix_enable(d, true, false);
	complete_one(f, 0);
	assert_int_equal(d->nr_msi, 0);
	assert_int_equal(vd_read(d, d->msix_pba, 4), 1u << 1);
	vd_write(d, e1 + 12, 4, 0);
	assert_int_equal(d->nr_msi, 1);
	assert_int_equal(d->msi[0].addr, MSI_ADDR | 0x1000);
	assert_int_equal(d->msi[0].data, 0x4041);
	assert_int_equal(vd_read(d, d->msix_pba, 4), 0);

	/* Unmasked: straight through. */
	complete_one(f, 0);
	assert_int_equal(d->nr_msi, 2);

	/* Function mask: pends, delivered when the mask is cleared. */
	vd_msix_enable(d, true, true);
	complete_one(f, 0);
	assert_int_equal(d->nr_msi, 2);
	assert_int_equal(vd_read(d, d->msix_pba, 4), 1u << 1);
	vd_msix_enable(d, true, false);
	assert_int_equal(d->nr_msi, 3);
	assert_int_equal(vd_read(d, d->msix_pba, 4), 0);

	/* The driver can suppress interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT). */
	uint16_t flags = 1;
	guest_mem_write(&d->mem, AVAIL, &flags, 2);
	complete_one(f, 0);
	assert_int_equal(d->nr_msi, 3);
	flags = 0;
	guest_mem_write(&d->mem, AVAIL, &flags, 2);

	/* A queue without a vector raises nothing; the ISR still records it. */
	(void)vd_read(d, d->isr, 1);
	complete_one(f, 1);
	assert_int_equal(d->nr_msi, 3);
	assert_int_equal(vd_read(d, d->isr, 1), 1);
	assert_int_equal(vd_read(d, d->isr, 1), 0); /* read-to-clear */

	/* Wrong-width table accesses are ignored. */
	vd_write(d, e1 + 8, 2, 0xffff);
	vd_write(d, e1 + 9, 1, 0xff);
	assert_int_equal(vd_read(d, e1 + 8, 4), 0x4041);
	assert_int_equal(vd_read(d, e1 + 8, 2), 0);
}

static void test_config_generation(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	uint8_t gen;

	bring_up(f);
	vd_msix_enable(d, true, false);
	vd_msix_entry(d, 0, MSI_ADDR, 0x30, false);
	vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	gen = (uint8_t)vd_common_read(d, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	virtio_config_interrupt(&f->vdev);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_CFGGENERATION, 1), (uint8_t)(gen + 1));
	assert_int_equal(d->nr_msi, 1);
	assert_int_equal(d->msi[0].data, 0x30);
	assert_int_equal(vd_read(d, d->isr, 1), VIRTIO_PCI_ISR_CONFIG);

	/* Device config goes to the model, with offset and width; beyond its size reads 0. */
	assert_int_equal(vd_read(d, d->device + 4, 4), 0xa7a6a5a4);
	assert_int_equal(f->last_cfg_off, 4);
	assert_int_equal(f->last_cfg_len, 4);
	vd_write(d, d->device + 1, 1, 0x55);
	assert_int_equal(f->cfg[1], 0x55);
	assert_int_equal(vd_read(d, d->device + 6, 4), 0);
	assert_int_equal(vd_read(d, d->device + CFG_SIZE, 1), 0);
}

static void test_notify(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;

	/* Before DRIVER_OK notifications are dropped. */
	assert_true(vd_negotiate(d, F_VERSION1) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(vd_queue(d, 1, 8, DESC1, AVAIL1, USED1), 1);
	vd_notify(d, 1);
	assert_int_equal(f->notified[1], 0);
	vd_driver_ok(d);
	vd_notify(d, 1);
	assert_int_equal(f->notified[1], 1);
	/* Queue 0 is not enabled: nothing. */
	vd_notify(d, 0);
	assert_int_equal(f->notified[0], 0);
	/* Other widths at the queue's address count; other offsets do not. */
	vd_write(d, d->notify + 4, 4, 1);
	assert_int_equal(f->notified[1], 2);
	vd_write(d, d->notify + 5, 1, 1);
	vd_write(d, d->notify + 4 * NQ, 2, 1);
	vd_write(d, d->notify + 0xffc, 4, 1);
	assert_int_equal(f->notified[1], 2);
	assert_int_equal(vd_read(d, d->notify + 4, 2), 0);
	/* A device that needs a reset hears nothing more. */
	virtio_set_needs_reset(&f->vdev);
	vd_notify(d, 1);
	assert_int_equal(f->notified[1], 2);
}

/* Every width at every offset of the virtio BAR: no crash, and ignored where not a field. */
static void test_hostile_accesses(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	uint64_t bar = vd_bar_addr(d, 4);
	static const unsigned widths[] = {1, 2, 4, 8};

	bring_up(f);
	for (uint64_t off = 0; off < 0x4000; off++) {
		if (off == VIRTIO_PCI_COMMON_STATUS)
			continue; /* a whole byte there is a real reset; see below */
		for (unsigned w = 0; w < 4; w++) {
			if (off + widths[w] > 0x4000)
				continue;
			(void)vd_read(d, bar + off, widths[w]);
		}
	}
	/* Wrong widths on fields change nothing. */
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 4, 0);
	assert_true(status(f) & VIRTIO_CONFIG_S_DRIVER_OK);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 4, 1);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT + 1, 1, 1);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SELECT, 2), 1);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_DF, 2), 0);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_DF + 1, 1), 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_DESCHI, 8, 0); /* 8 bytes at a high half */
	vd_common_write(d, 0x3e, 2, 0xffff);		      /* past the structure */
	vd_common_write(d, 0x800, 4, 0xffffffff);
	assert_true(status(f) & VIRTIO_CONFIG_S_DRIVER_OK);
	assert_false(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* Random writes everywhere but the status byte. */
	srand(7);
	for (int i = 0; i < 20000; i++) {
		uint64_t off = (uint64_t)rand() % 0x4000;
		unsigned w = widths[rand() % 4];

		if (off + w > 0x4000 || (off == VIRTIO_PCI_COMMON_STATUS && w == 1))
			continue;
		vd_write(d, bar + off, w, ((uint64_t)rand() << 32) | (uint64_t)rand());
	}
	/* The device is still sane and resets. */
	vd_common_write(d, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(status(f), 0);
}

static void test_pci_cfg_window(void **state)
{
	struct fake *f = *state;
	struct vdrv *d = &f->d;
	unsigned cap = (unsigned)d->pci_cfg_cap;

	/* Read num_queues through config space. */
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_BAR, 1, 4);
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_NUMQ);
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_LENGTH, 4, 2);
	assert_int_equal(vd_cfg_read(d, cap + 16, 2), NQ);
	/* Write status through it. */
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_COMMON_STATUS);
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_LENGTH, 4, 1);
	vd_cfg_write(d, cap + 16, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	assert_int_equal(status(f), VIRTIO_CONFIG_S_ACKNOWLEDGE);
	/* Nonsense windows read 0 and write nothing. */
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_LENGTH, 4, 3);
	assert_int_equal(vd_cfg_read(d, cap + 16, 4), 0);
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_LENGTH, 4, 4);
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_OFFSET, 4, 0xfffffffc);
	assert_int_equal(vd_cfg_read(d, cap + 16, 4), 0);
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_BAR, 1, 1);
	vd_cfg_write(d, cap + VIRTIO_PCI_CAP_OFFSET, 4, 0);
	assert_int_equal(vd_cfg_read(d, cap + 16, 4), 0);
	vd_cfg_write(d, cap + 16, 4, 0);
	assert_int_equal(status(f), VIRTIO_CONFIG_S_ACKNOWLEDGE);
}

/* ---- save/load ---- */

static void *save(struct fake *f)
{
	void *fdt = malloc(65536);

	assert_int_equal(state_tree_begin(fdt, 65536), 0);
	assert_int_equal(fdt_begin_node(fdt, "dev"), 0);
	assert_int_equal(virtio_pci_save(&f->vdev, fdt), 0);
	assert_int_equal(fdt_end_node(fdt), 0);
	assert_int_equal(state_tree_end(fdt), 0);
	assert_int_equal(fdt_check_full(fdt, 65536), 0);
	return fdt;
}

static int node_of(const void *fdt)
{
	int node = state_find_node(fdt, 0, "dev");

	assert_true(node >= 0);
	return node;
}

static void assert_same(struct fake *a, struct fake *b)
{
	struct virtio_transport_state *s = &a->vdev.t, *t = &b->vdev.t;
	uint8_t ca[PCI_CONFIG_SIZE], cb[PCI_CONFIG_SIZE];

	assert_int_equal(s->status, t->status);
	assert_int_equal(s->isr, t->isr);
	assert_int_equal(s->config_generation, t->config_generation);
	assert_int_equal(s->device_feature_select, t->device_feature_select);
	assert_int_equal(s->driver_feature_select, t->driver_feature_select);
	assert_int_equal(s->driver_features, t->driver_features);
	assert_int_equal(s->queue_select, t->queue_select);
	assert_int_equal(s->msix_config, t->msix_config);
	for (unsigned q = 0; q < NQ; q++) {
		struct virtq *x = &s->vqs[q], *y = &t->vqs[q];

		assert_int_equal(s->queue_vector[q], t->queue_vector[q]);
		assert_int_equal(x->size, y->size);
		assert_int_equal(x->ready, y->ready);
		assert_int_equal(x->event_idx, y->event_idx);
		assert_int_equal(x->indirect, y->indirect);
		assert_int_equal(x->desc_gpa, y->desc_gpa);
		assert_int_equal(x->avail_gpa, y->avail_gpa);
		assert_int_equal(x->used_gpa, y->used_gpa);
		assert_int_equal(x->last_avail_idx, y->last_avail_idx);
		assert_int_equal(x->used_idx, y->used_idx);
		assert_int_equal(x->signalled_used, y->signalled_used);
		assert_int_equal(x->signalled_used_valid, y->signalled_used_valid);
	}
	pci_device_get_config(&a->vdev.pci, ca);
	pci_device_get_config(&b->vdev.pci, cb);
	assert_memory_equal(ca, cb, PCI_CONFIG_SIZE);
	for (unsigned v = 0; v <= NQ; v++)
		for (unsigned w = 0; w < 16; w += 4)
			assert_int_equal(vd_read(&a->d, a->d.msix_table + 16 * v + w, 4),
					 vd_read(&b->d, b->d.msix_table + 16 * v + w, 4));
	assert_int_equal(vd_read(&a->d, a->d.msix_pba, 8), vd_read(&b->d, b->d.msix_pba, 8));
}

static void test_save_load(void **state)
{
	struct fake *f = *state, *g;
	struct vdrv *d = &f->d;
	void *fdt;

	assert_true(vd_negotiate(d, F_VERSION1 | 1ULL << VIRTIO_RING_F_EVENT_IDX | 1ULL << 1) &
		    VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(vd_queue(d, 0, 8, DESC, AVAIL, USED), 1);
	assert_int_equal(vd_queue(d, 1, 4, DESC1, AVAIL1, USED1), 1);
	vd_driver_ok(d);
	vd_msix_enable(d, true, false);
	vd_msix_entry(d, 0, MSI_ADDR, 0x31, false);
	vd_msix_entry(d, 1, MSI_ADDR | 0x2000, 0x32, true);
	vd_msix_entry(d, 2, MSI_ADDR | 0x3000, 0x33, false);
	vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	vd_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	/* Some traffic: indices move, vector 1 (masked) pends. */
	complete_one(f, 0);
	complete_one(f, 0);
	complete_one(f, 1);
	virtio_config_interrupt(&f->vdev);
	virtio_queue(&f->vdev, 0)->last_avail_idx = 3; /* the device took 3, completed 2 */
	virtio_queue(&f->vdev, 1)->last_avail_idx = 1;
	assert_int_equal(vd_read(d, d->msix_pba, 4), 1u << 1);

	fdt = save(f);
	g = fake_new();
	assert_int_equal(virtio_pci_load(&g->vdev, fdt, node_of(fdt)), 0);
	assert_same(f, g);
	/* The loaded device works: unmasking vector 1 delivers what was pending. */
	g->d.nr_msi = 0;
	vd_write(&g->d, g->d.msix_table + 16 + 12, 4, 0);
	assert_int_equal(g->d.nr_msi, 1);
	assert_int_equal(g->d.msi[0].data, 0x32);
	vd_notify(&g->d, 1);
	assert_int_equal(g->notified[1], 1);
	fake_free(g);
	free(fdt);
}

/* Build a tree from f's state with one property replaced. */
static void *save_patched(struct fake *f, const char *name, const void *val, int len)
{
	void *fdt = save(f);
	int node = node_of(fdt);

	assert_int_equal(fdt_open_into(fdt, fdt, 65536), 0);
	assert_int_equal(fdt_setprop(fdt, node, name, val, len), 0);
	return fdt;
}

static void expect_rejected(struct fake *f, const char *name, const void *val, int len)
{
	void *fdt = save_patched(f, name, val, len);
	struct fake *g = fake_new();

	assert_int_equal(virtio_pci_load(&g->vdev, fdt, node_of(fdt)), -EINVAL);
	/* A rejected tree leaves the device as it was. */
	assert_int_equal(g->vdev.t.status, 0);
	fake_free(g);
	free(fdt);
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
	p[3] = (uint8_t)v;
}

static void test_load_validation(void **state)
{
	struct fake *f = *state;
	uint8_t u32[4], q[36], cfg[PCI_CONFIG_SIZE], table[16 * (NQ + 1)];
	const uint8_t *p;
	void *fdt;
	int len;

	bring_up(f);
	fdt = save(f);
	be32(u32, VIRTIO_ID_NET);
	expect_rejected(f, "virtio-device-id", u32, 4);
	be32(u32, 3);
	expect_rejected(f, "virtio-queues", u32, 4);
	be32(u32, 0x100 | VIRTIO_CONFIG_S_DRIVER_OK);
	expect_rejected(f, "virtio-status", u32, 4);
	be32(u32, NQ + 1);
	expect_rejected(f, "virtio-msix-config", u32, 4);
	expect_rejected(f, "virtio-isr", "\0\0\0\x10", 4);
	expect_rejected(f, "virtio-features", "\0\0\0\x01\0\0\0\x04", 8); /* not offered */
	expect_rejected(f, "virtio-status", "\0\0\0", 3);		  /* wrong size */

	/* A queue whose rings leave RAM, a bad size, a bad vector, unknown flags. */
	p = fdt_getprop(fdt, node_of(fdt), "virtio-queue0", &len);
	assert_int_equal(len, 36);
	memcpy(q, p, 36);
	q[4] = 0x7f; /* desc_gpa high byte */
	expect_rejected(f, "virtio-queue0", q, 36);
	memcpy(q, p, 36);
	q[1] = 12;
	expect_rejected(f, "virtio-queue0", q, 36);
	memcpy(q, p, 36);
	q[1] = 32;
	expect_rejected(f, "virtio-queue0", q, 36);
	memcpy(q, p, 36);
	q[34] = 0, q[35] = 9;
	expect_rejected(f, "virtio-queue0", q, 36);
	memcpy(q, p, 36);
	q[3] |= 0x80;
	expect_rejected(f, "virtio-queue0", q, 36);
	memcpy(q, p, 36);
	q[31] = 9; /* used_idx more than a ring away from last_avail_idx */
	expect_rejected(f, "virtio-queue0", q, 36);

	/* Read-only config space (IDs, capabilities, BAR types) must match. */
	p = fdt_getprop(fdt, node_of(fdt), "pci-config", &len);
	memcpy(cfg, p, sizeof(cfg));
	cfg[PCI_DEVICE_ID] ^= 1;
	expect_rejected(f, "pci-config", cfg, sizeof(cfg));
	memcpy(cfg, p, sizeof(cfg));
	cfg[PCI_CAPABILITY_LIST] = 0x80;
	expect_rejected(f, "pci-config", cfg, sizeof(cfg));
	memcpy(cfg, p, sizeof(cfg));
	cfg[PCI_BASE_ADDRESS_4] = 0; /* 64-bit type bits */
	expect_rejected(f, "pci-config", cfg, sizeof(cfg));

	/* MSI-X: reserved control bits, pending bits beyond the table. */
	p = fdt_getprop(fdt, node_of(fdt), "msix-table", &len);
	assert_int_equal(len, (int)sizeof(table));
	memcpy(table, p, sizeof(table));
	table[12] = 0x3;
	expect_rejected(f, "msix-table", table, sizeof(table));
	expect_rejected(f, "msix-pba", "\0\0\0\0\0\0\0\x10", 8);
	free(fdt);
}

/* ---- on real KVM: a queue interrupt reaches the LAPIC through MSI-X, the route and irqfd ---- */

#define APIC_SVR    0xf0
#define APIC_SVR_ON 0x100
#define APIC_IRR    0x200
#define TEST_VECTOR 0x41

static bool irr_set(int vcpu, unsigned vector)
{
	struct kvm_lapic_state l;
	uint32_t w;

	assert_int_equal(ioctl(vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(&w, l.regs + APIC_IRR + 0x10 * (vector / 32), 4);
	return w >> (vector % 32) & 1;
}

static void test_kvm_msix(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct kvm_lapic_state l;
	struct msi_router r;
	struct virtio_env env;
	struct vdrv *d;
	int kvm, vm, vcpu, i;
	uint32_t svr;

	(void)state;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		free(f);
		skip();
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);
	assert_int_equal(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	assert_true(vcpu >= 0);
	/* Software-enable the LAPIC so fixed interrupts are accepted into IRR. */
	assert_int_equal(ioctl(vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(&svr, l.regs + APIC_SVR, 4);
	svr |= APIC_SVR_ON | 0xff;
	memcpy(l.regs + APIC_SVR, &svr, 4);
	assert_int_equal(ioctl(vcpu, KVM_SET_LAPIC, &l), 0);
	assert_int_equal(msi_router_init(&r, vm), 0);

	d = &f->d;
	vd_init(d, RAM);
	env = vd_env(d);
	env.msi = &r;
	assert_int_equal(virtio_pci_init(&f->vdev, &fake_info, &fake_ops, f, &env), 0);
	assert_int_equal(virtio_pci_register(&f->vdev, -1), 0);
	vd_probe(d, f->vdev.pci.slot);
	bring_up(f);
	vd_msix_enable(d, true, false);
	vd_msix_entry(d, 1, MSI_ADDR, TEST_VECTOR, true); /* dest APIC 0, fixed, edge */
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	/* Masked: nothing reaches the LAPIC, the PBA holds it. */
	complete_one(f, 0);
	usleep(20000);
	assert_false(irr_set(vcpu, TEST_VECTOR));
	assert_int_equal(vd_read(d, d->msix_pba, 4), 1u << 1);
	assert_int_equal(d->nr_msi, 0); /* KVM, not the test callback, delivers */
	/* Unmask: the pending interrupt goes out through the irqfd. */
	vd_write(d, d->msix_table + 16 + 12, 4, 0);
	for (i = 0; i < 100 && !irr_set(vcpu, TEST_VECTOR); i++)
		usleep(1000);
	assert_true(irr_set(vcpu, TEST_VECTOR));
	assert_int_equal(vd_read(d, d->msix_pba, 4), 0);

	virtio_pci_destroy(&f->vdev);
	vd_fini(d);
	free(f);
	msi_router_destroy(&r);
	close(vcpu);
	close(vm);
	close(kvm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_capability_layout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_features, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_and_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_setup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_setup_bad, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vectors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_generation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pci_cfg_window, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_validation, setup, teardown),
	    cmocka_unit_test(test_kvm_msix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
