// SPDX-License-Identifier: MIT
/*
 * virtio-rng through the transport, without KVM: a driver sets up the
 * queue, offers chains of writable buffers and notifies; the device fills
 * them, completes them and interrupts.  Malformed chains make it need a
 * reset.  Save/load round trip.
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

#include "state.h"
#include "virtio_rng.h"
#include "virtio_driver.h"

#define RAM	(1ULL << 20)
#define QS	8
#define DESC	0x10000ULL
#define AVAIL	0x11000ULL
#define USED	0x12000ULL
#define BUF	0x20000ULL
#define MSI_ADR 0xfee00000ULL
#define F_V1	(1ULL << VIRTIO_F_VERSION_1)

struct fx {
	struct vdrv d;
	struct virtio_rng *rng;
};

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct virtio_env env;

	assert_non_null(f);
	vd_init(&f->d, RAM);
	env = vd_env(&f->d);
	assert_int_equal(virtio_rng_create(&f->rng, &env, -1), 0);
	vd_probe(&f->d, f->rng->vdev.pci.slot);
	return f;
}

static void fx_free(struct fx *f)
{
	virtio_rng_destroy(f->rng);
	vd_fini(&f->d);
	free(f);
}

static int setup(void **state)
{
	*state = fx_new();
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

static void bring_up(struct fx *f, uint64_t features)
{
	struct vdrv *d = &f->d;

	assert_true(vd_negotiate(d, F_V1 | features) & VIRTIO_CONFIG_S_FEATURES_OK);
	vd_msix_enable(d, true, false);
	vd_msix_entry(d, 1, MSI_ADR, 0x51, false);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	assert_int_equal(vd_queue(d, 0, QS, DESC, AVAIL, USED), 1);
	vd_driver_ok(d);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_identity(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;

	assert_int_equal(vd_cfg_read(d, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_RNG);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_NUMQ, 2), 1);
	assert_int_equal(d->device, 0); /* no device-specific configuration */
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
}

static void test_fill(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;
	uint8_t buf[4096];
	uint32_t id, len;

	bring_up(f, 0);
	/* Chain 0: one 64-byte buffer.  Chain 1: 1000 + 3000 bytes. */
	vd_desc(d, DESC, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	vd_desc(d, DESC, 1, BUF + 0x1000, 1000, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	vd_desc(d, DESC, 2, BUF + 0x2000, 3000, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(d, AVAIL, QS, 0);
	vd_offer(d, AVAIL, QS, 1);
	vd_notify(d, 0);

	assert_int_equal(vd_used_idx(d, USED), 2);
	vd_used_elem(d, USED, QS, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 64);
	vd_used_elem(d, USED, QS, 1, &id, &len);
	assert_int_equal(id, 1);
	assert_int_equal(len, 4000);
	guest_mem_read(&d->mem, BUF, buf, 64);
	assert_false(all_zero(buf, 64));
	guest_mem_read(&d->mem, BUF + 0x1000, buf, 1000);
	assert_false(all_zero(buf, 1000));
	guest_mem_read(&d->mem, BUF + 0x2000, buf, 3000);
	assert_false(all_zero(buf + 2000, 1000));
	/* Nothing past the buffers. */
	guest_mem_read(&d->mem, BUF + 0x2000 + 3000, buf, 64);
	assert_true(all_zero(buf, 64));
	/* One interrupt for the batch, on the queue's vector. */
	assert_int_equal(d->nr_msi, 1);
	assert_int_equal(d->msi[0].addr, MSI_ADR);
	assert_int_equal(d->msi[0].data, 0x51);
	assert_int_equal(f->rng->requests, 2);
	assert_int_equal(f->rng->bytes, 4064);
}

/* Readable buffers are left alone; only the writable part is filled and counted. */
static void test_readable_skipped(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;
	uint8_t buf[128], pattern[128];
	uint32_t id, len;

	bring_up(f, 0);
	memset(pattern, 0x5a, sizeof(pattern));
	guest_mem_write(&d->mem, BUF, pattern, sizeof(pattern));
	vd_desc(d, DESC, 3, BUF, 128, VIRTQ_DESC_F_NEXT, 4);
	vd_desc(d, DESC, 4, BUF + 0x1000, 16, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(d, AVAIL, QS, 3);
	vd_notify(d, 0);
	vd_used_elem(d, USED, QS, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 16);
	guest_mem_read(&d->mem, BUF, buf, sizeof(buf));
	assert_memory_equal(buf, pattern, sizeof(buf));
}

/* With event index the device asks to be notified at the next entry once it drained the ring. */
static void test_event_idx(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;
	uint16_t avail_event;

	bring_up(f, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	for (unsigned i = 0; i < 3; i++) {
		vd_desc(d, DESC, i, BUF + 0x100 * i, 32, VIRTQ_DESC_F_WRITE, 0);
		vd_offer(d, AVAIL, QS, (uint16_t)i);
	}
	vd_notify(d, 0);
	assert_int_equal(vd_used_idx(d, USED), 3);
	guest_mem_read(&d->mem, USED + 4 + 8 * QS, &avail_event, 2);
	assert_int_equal(avail_event, 3);
	/* The first batch always interrupts. */
	assert_int_equal(d->nr_msi, 1);
}

static void test_bad_chain(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;

	bring_up(f, 0);
	vd_msix_entry(d, 0, MSI_ADR, 0x50, false);
	vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	/* A buffer that runs past the end of RAM. */
	vd_desc(d, DESC, 0, RAM - 16, 32, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(d, AVAIL, QS, 0);
	vd_notify(d, 0);
	assert_true(vd_common_read(d, VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(vd_used_idx(d, USED), 0);
	assert_int_equal(d->nr_msi, 1);
	assert_int_equal(d->msi[0].data, 0x50);
	/* It stays stopped, even for a good chain, until reset. */
	vd_desc(d, DESC, 1, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(d, AVAIL, QS, 1);
	vd_notify(d, 0);
	assert_int_equal(vd_used_idx(d, USED), 0);

	/* After a reset and a fresh ring it works again. */
	memset(d->mem.host_base + AVAIL, 0, 0x2000);
	bring_up(f, 0);
	vd_desc(d, DESC, 0, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(d, AVAIL, QS, 0);
	vd_notify(d, 0);
	assert_int_equal(vd_used_idx(d, USED), 1);
}

static void test_not_before_driver_ok(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;

	assert_true(vd_negotiate(d, F_V1) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_int_equal(vd_queue(d, 0, QS, DESC, AVAIL, USED), 1);
	vd_desc(d, DESC, 0, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(d, AVAIL, QS, 0);
	vd_notify(d, 0);
	assert_int_equal(vd_used_idx(d, USED), 0);
	vd_driver_ok(d);
	vd_notify(d, 0);
	assert_int_equal(vd_used_idx(d, USED), 1);
}

static void test_save_load(void **state)
{
	struct fx *f = *state, *g;
	struct vdrv *d = &f->d;
	void *fdt = malloc(65536);
	int node;

	bring_up(f, 1ULL << VIRTIO_RING_F_EVENT_IDX);
	vd_desc(d, DESC, 0, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(d, AVAIL, QS, 0);
	vd_notify(d, 0);
	assert_int_equal(state_tree_begin(fdt, 65536), 0);
	assert_int_equal(fdt_begin_node(fdt, "rng"), 0);
	assert_int_equal(virtio_rng_save(f->rng, fdt), 0);
	assert_int_equal(fdt_end_node(fdt), 0);
	assert_int_equal(state_tree_end(fdt), 0);
	assert_int_equal(fdt_check_full(fdt, 65536), 0);
	node = state_find_node(fdt, 0, "rng");
	assert_true(node >= 0);

	/* A fresh device on a fresh machine whose RAM came along (as migration does). */
	g = fx_new();
	memcpy(g->d.mem.host_base, d->mem.host_base, RAM);
	assert_int_equal(virtio_rng_load(g->rng, fdt, node), 0);
	assert_true(g->rng->active);
	assert_memory_equal(&g->rng->vdev.t.vqs[0], &f->rng->vdev.t.vqs[0], sizeof(struct virtq));
	assert_int_equal(g->rng->vdev.t.status, f->rng->vdev.t.status);
	assert_int_equal(g->rng->vdev.t.driver_features, f->rng->vdev.t.driver_features);
	assert_int_equal(g->rng->vdev.t.queue_vector[0], 1);
	/* It carries on where the first left off. */
	vd_desc(&g->d, DESC, 1, BUF + 0x100, 48, VIRTQ_DESC_F_WRITE, 0);
	vd_offer(&g->d, AVAIL, QS, 1);
	uint16_t used_event = 1; /* interrupt once used entry 1 is there */
	guest_mem_write(&g->d.mem, AVAIL + 4 + 2 * QS, &used_event, 2);
	vd_notify(&g->d, 0);
	assert_int_equal(vd_used_idx(&g->d, USED), 2);
	assert_int_equal(g->d.nr_msi, 1);
	assert_int_equal(g->d.msi[0].data, 0x51);

	/* A tree from another device model is refused. */
	assert_int_equal(fdt_open_into(fdt, fdt, 65536), 0);
	node = state_find_node(fdt, 0, "rng");
	assert_int_equal(fdt_setprop_u32(fdt, node, "virtio-device-id", VIRTIO_ID_NET), 0);
	assert_int_equal(virtio_rng_load(g->rng, fdt, node), -EINVAL);
	fx_free(g);
	free(fdt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fill, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readable_skipped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_before_driver_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
