// SPDX-License-Identifier: MIT
/*
 * virtio-console through the PCI transport, without KVM: the test plays
 * the driver; output and rx_space land in the fixture.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libfdt.h>
#include <linux/virtio_console.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"
#include "virtio_console.h"
#include "virtio_driver.h"

#define RAM	(1ULL << 20)
#define QS	8
#define BUF	0x20000ULL
#define MSI_ADR 0xfee00000ULL
#define F(b)	(1ULL << (b))
#define F_V1	F(VIRTIO_F_VERSION_1)
#define W	VIRTQ_DESC_F_WRITE
#define RX	VIRTIO_CONSOLE_RXQ
#define TX	VIRTIO_CONSOLE_TXQ

static const uint64_t ring[2][3] = {
    {0x10000, 0x11000, 0x12000}, /* receiveq0: desc, avail, used */
    {0x14000, 0x15000, 0x16000}, /* transmitq0 */
};

struct fx {
	struct vdrv d;
	struct virtio_console *con;
	uint8_t out[4096];
	size_t out_len;
	unsigned rx_space_calls;
	/* rx_space pushes this much of pending (as a host with buffered input does). */
	const uint8_t *pending;
	size_t pending_len;
	unsigned next_desc[2];
	uint16_t used_seen[2];
};

static void on_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct fx *f = opaque;

	assert_true(f->out_len + len <= sizeof(f->out));
	memcpy(f->out + f->out_len, buf, len);
	f->out_len += len;
}

static void on_rx_space(void *opaque)
{
	struct fx *f = opaque;
	size_t n;

	f->rx_space_calls++;
	if (f->pending_len) {
		n = virtio_console_receive(f->con, f->pending, f->pending_len);
		f->pending += n;
		f->pending_len -= n;
	}
}

static const struct virtio_console_ops ops = {.output = on_output, .rx_space = on_rx_space};

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct virtio_env env;

	assert_non_null(f);
	vd_init(&f->d, RAM);
	env = vd_env(&f->d);
	assert_int_equal(virtio_console_create(&f->con, &env, &ops, f), 0);
	vd_probe(&f->d, virtio_console_vdev(f->con)->pci.slot);
	return f;
}

static void fx_free(struct fx *f)
{
	virtio_console_destroy(f->con);
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

/* Queues and vectors (config 0, receiveq 1, transmitq 2), without DRIVER_OK. */
static void negotiate(struct fx *f, uint64_t features)
{
	struct vdrv *d = &f->d;

	assert_true(vd_negotiate(d, F_V1 | features) & VIRTIO_CONFIG_S_FEATURES_OK);
	vd_msix_enable(d, true, false);
	for (unsigned v = 0; v < 3; v++)
		vd_msix_entry(d, v, MSI_ADR, 0x70 + v, false);
	vd_common_write(d, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	for (unsigned q = 0; q < 2; q++) {
		vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, q + 1);
		assert_int_equal(vd_queue(d, q, QS, ring[q][0], ring[q][1], ring[q][2]), 1);
	}
}

static void bring_up(struct fx *f, uint64_t features)
{
	negotiate(f, features);
	vd_driver_ok(&f->d);
}

/* A chain of n buffers of the given lengths at BUF + 0x1000*q + 0x100*k..., offered. */
static uint16_t post(struct fx *f, unsigned q, const uint32_t *len, const uint16_t *flags,
		     unsigned n, uint64_t *addr)
{
	uint16_t head;

	if (f->next_desc[q] + n > QS)
		f->next_desc[q] = 0;
	head = (uint16_t)f->next_desc[q];
	for (unsigned i = 0; i < n; i++) {
		uint64_t a = BUF + 0x4000ULL * q + 0x100ULL * (head + i);

		if (addr)
			addr[i] = a;
		vd_desc(&f->d, ring[q][0], head + i, a, len[i],
			flags[i] | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0), (uint16_t)(head + i + 1));
	}
	f->next_desc[q] += n;
	vd_offer(&f->d, ring[q][1], QS, head);
	return head;
}

static uint16_t post_rx(struct fx *f, uint32_t len, uint64_t *addr)
{
	uint16_t flags = W;

	return post(f, RX, &len, &flags, 1, addr);
}

static uint32_t next_used(struct fx *f, unsigned q, uint16_t head)
{
	uint32_t id, len;

	assert_true((uint16_t)(vd_used_idx(&f->d, ring[q][2]) - f->used_seen[q]) >= 1);
	vd_used_elem(&f->d, ring[q][2], QS, f->used_seen[q]++, &id, &len);
	assert_int_equal(id, head);
	return len;
}

static uint8_t dev_status(struct fx *f)
{
	return (uint8_t)vd_common_read(&f->d, VIRTIO_PCI_COMMON_STATUS, 1);
}

/* ---- tests ---- */

static void test_identity_config(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;
	uint64_t feat = 0;

	assert_int_equal(vd_cfg_read(d, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_CONSOLE);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_NUMQ, 2), 2);
	for (unsigned sel = 0; sel < 2; sel++) {
		vd_common_write(d, VIRTIO_PCI_COMMON_DFSELECT, 4, sel);
		feat |= vd_common_read(d, VIRTIO_PCI_COMMON_DF, 4) << (32 * sel);
	}
	assert_true(feat & F(VIRTIO_CONSOLE_F_SIZE));
	assert_true(feat & F(VIRTIO_CONSOLE_F_EMERG_WRITE));
	assert_false(feat & F(VIRTIO_CONSOLE_F_MULTIPORT));
	assert_int_equal(d->device_len, VIRTIO_CONSOLE_CONFIG_SIZE);
	assert_int_equal(vd_read(d, d->device + 0, 2), 80);
	assert_int_equal(vd_read(d, d->device + 2, 2), 25);
	assert_int_equal(vd_read(d, d->device + 4, 4), 1);
	assert_int_equal(vd_read(d, d->device + 8, 4), 0);
}

static void test_transmit(void **state)
{
	struct fx *f = *state;
	uint32_t len[3] = {6, 0, 6};
	uint16_t flags[3] = {0, 0, 0}, head;
	uint64_t a[3];

	bring_up(f, 0);
	head = post(f, TX, len, flags, 3, a);
	guest_mem_write(&f->d.mem, a[0], "hello ", 6);
	guest_mem_write(&f->d.mem, a[2], "world\n", 6);
	/* A second chain in the same notification. */
	uint32_t len2 = 3;
	uint16_t head2 = post(f, TX, &len2, flags, 1, a);
	guest_mem_write(&f->d.mem, a[0], "bye", 3);
	f->d.nr_msi = 0;
	vd_notify(&f->d, TX);
	assert_int_equal(f->out_len, 15);
	assert_memory_equal(f->out, "hello world\nbye", 15);
	assert_int_equal(next_used(f, TX, head), 0);
	assert_int_equal(next_used(f, TX, head2), 0);
	assert_int_equal(f->d.nr_msi, 1);
	assert_int_equal(f->d.msi[0].data, 0x72);
	/* Writable buffers in a transmit chain are left alone. */
	uint32_t len3[2] = {2, 8};
	uint16_t flags3[2] = {0, W};
	head = post(f, TX, len3, flags3, 2, a);
	guest_mem_write(&f->d.mem, a[0], "ok", 2);
	guest_mem_write(&f->d.mem, a[1], "XXXXXXXX", 8);
	vd_notify(&f->d, TX);
	assert_int_equal(next_used(f, TX, head), 0);
	assert_memory_equal(f->out + 15, "ok", 2);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, a[1], 8), "XXXXXXXX", 8);
}

static void test_receive(void **state)
{
	struct fx *f = *state;
	const uint8_t *msg = (const uint8_t *)"abcdefghijklmnop";
	uint64_t a0, a1, a2;
	uint16_t h0, h1, h2;

	bring_up(f, 0);
	h0 = post_rx(f, 4, &a0);
	h1 = post_rx(f, 8, &a1);
	f->d.nr_msi = 0;
	assert_int_equal(virtio_console_receive(f->con, msg, 16), 12);
	assert_int_equal(next_used(f, RX, h0), 4);
	assert_int_equal(next_used(f, RX, h1), 8);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, a0, 4), "abcd", 4);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, a1, 8), "efghijkl", 8);
	assert_int_equal(f->d.nr_msi, 1);
	assert_int_equal(f->d.msi[0].data, 0x71);
	/* Nothing posted now: nothing taken. */
	assert_int_equal(virtio_console_receive(f->con, msg + 12, 4), 0);
	/* The driver posts a buffer: the host hears about it and pushes the rest. */
	f->rx_space_calls = 0;
	f->pending = msg + 12;
	f->pending_len = 4;
	h2 = post_rx(f, 64, &a2);
	vd_notify(&f->d, RX);
	assert_int_equal(f->rx_space_calls, 1);
	assert_int_equal(f->pending_len, 0);
	assert_int_equal(next_used(f, RX, h2), 4);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, a2, 4), "mnop", 4);
	/* Everything fitted: the next posting is not announced. */
	post_rx(f, 64, NULL);
	vd_notify(&f->d, RX);
	assert_int_equal(f->rx_space_calls, 1);
}

static void test_receive_dirty_marks(void **state)
{
	struct fx *f = *state;
	uint64_t a;

	bring_up(f, 0);
	post_rx(f, 16, &a);
	memset(f->d.mem.dirty, 0, (RAM / GUEST_PAGE_SIZE + 63) / 64 * 8);
	assert_int_equal(virtio_console_receive(f->con, (const uint8_t *)"x", 1), 1);
	uint64_t page = a / GUEST_PAGE_SIZE, used = ring[RX][2] / GUEST_PAGE_SIZE;

	assert_true(f->d.mem.dirty[page / 64] & (1ULL << (page % 64)));
	assert_true(f->d.mem.dirty[used / 64] & (1ULL << (used % 64)));
}

static void test_receive_none_posted(void **state)
{
	struct fx *f = *state;
	const uint8_t *msg = (const uint8_t *)"hi";

	/* Before the driver is there at all. */
	assert_int_equal(virtio_console_receive(f->con, msg, 2), 0);
	/* Queues set up with a buffer posted before DRIVER_OK: activation announces it. */
	negotiate(f, 0);
	uint64_t a;
	uint16_t h = post_rx(f, 8, &a);

	f->pending = msg;
	f->pending_len = 2;
	f->rx_space_calls = 0;
	vd_driver_ok(&f->d);
	assert_int_equal(f->rx_space_calls, 1);
	assert_int_equal(f->pending_len, 0);
	assert_int_equal(next_used(f, RX, h), 2);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, a, 2), "hi", 2);
	/* Up, nothing posted: 0, and rx_space when something is. */
	assert_int_equal(virtio_console_receive(f->con, msg, 2), 0);
	assert_int_equal(f->rx_space_calls, 1);
	post_rx(f, 8, NULL);
	vd_notify(&f->d, RX);
	assert_int_equal(f->rx_space_calls, 2);
}

static void test_emergency_write(void **state)
{
	struct fx *f = *state;

	bring_up(f, F(VIRTIO_CONSOLE_F_EMERG_WRITE));
	vd_write(&f->d, f->d.device + 8, 4, 'E');
	vd_write(&f->d, f->d.device + 8, 4, '!');
	/* Writes elsewhere in config do nothing. */
	vd_write(&f->d, f->d.device + 0, 2, 'Z');
	assert_int_equal(f->out_len, 2);
	assert_memory_equal(f->out, "E!", 2);
	assert_int_equal(vd_read(&f->d, f->d.device + 0, 2), 80);
}

static void test_set_size(void **state)
{
	struct fx *f = *state;
	uint8_t gen;

	bring_up(f, F(VIRTIO_CONSOLE_F_SIZE));
	gen = (uint8_t)vd_common_read(&f->d, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
	f->d.nr_msi = 0;
	virtio_console_set_size(f->con, 132, 43);
	assert_int_equal(vd_read(&f->d, f->d.device + 0, 2), 132);
	assert_int_equal(vd_read(&f->d, f->d.device + 2, 2), 43);
	assert_int_not_equal(vd_common_read(&f->d, VIRTIO_PCI_COMMON_CFGGENERATION, 1), gen);
	assert_int_equal(f->d.nr_msi, 1);
	assert_int_equal(f->d.msi[0].data, 0x70);
	/* The same size again is no change. */
	virtio_console_set_size(f->con, 132, 43);
	assert_int_equal(f->d.nr_msi, 1);
}

static void test_malformed(void **state)
{
	struct fx *f = *state;
	uint32_t len = 4;
	uint16_t flags = 0;

	/* A receive chain with a device-readable buffer. */
	bring_up(f, 0);
	post(f, RX, &len, &flags, 1, NULL);
	assert_int_equal(virtio_console_receive(f->con, (const uint8_t *)"abc", 3), 0);
	assert_true(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(vd_used_idx(&f->d, ring[RX][2]), 0);

	/* A transmit descriptor outside RAM. */
	memset(guest_mem_ptr(&f->d.mem, 0x10000, 0x8000), 0, 0x8000);
	f->next_desc[RX] = f->next_desc[TX] = 0;
	f->used_seen[RX] = f->used_seen[TX] = 0;
	bring_up(f, 0);
	assert_false(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	vd_desc(&f->d, ring[TX][0], 0, RAM - 2, 4, 0, 0);
	vd_offer(&f->d, ring[TX][1], QS, 0);
	vd_notify(&f->d, TX);
	assert_true(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(f->out_len, 0);
	/* Broken until reset: nothing more is received. */
	post_rx(f, 8, NULL);
	assert_int_equal(virtio_console_receive(f->con, (const uint8_t *)"abc", 3), 0);
}

static size_t save(struct virtio_console *con, void *fdt, size_t size)
{
	assert_int_equal(state_tree_begin(fdt, size), 0);
	assert_int_equal(fdt_begin_node(fdt, "hvc"), 0);
	assert_int_equal(virtio_console_save(con, fdt), 0);
	assert_int_equal(fdt_end_node(fdt), 0);
	assert_int_equal(state_tree_end(fdt), 0);
	assert_int_equal(fdt_check_full(fdt, size), 0);
	return fdt_totalsize(fdt);
}

static void test_save_load(void **state)
{
	struct fx *f = *state, *g;
	void *a = malloc(65536), *b = malloc(65536);
	uint32_t len = 2;
	uint16_t flags = 0;
	uint64_t addr;
	size_t la, lb;
	int node;

	bring_up(f, F(VIRTIO_CONSOLE_F_SIZE) | F(VIRTIO_RING_F_EVENT_IDX));
	post(f, TX, &len, &flags, 1, &addr);
	guest_mem_write(&f->d.mem, addr, "A\n", 2);
	vd_notify(&f->d, TX);
	post_rx(f, 8, NULL);
	assert_int_equal(virtio_console_receive(f->con, (const uint8_t *)"in", 2), 2);
	virtio_console_set_size(f->con, 100, 40);
	la = save(f->con, a, 65536);

	g = fx_new();
	memcpy(g->d.mem.host_base, f->d.mem.host_base, RAM);
	node = state_find_node(a, 0, "hvc");
	assert_true(node >= 0);
	assert_int_equal(virtio_console_load(g->con, a, node), 0);
	lb = save(g->con, b, 65536);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	assert_int_equal(vd_read(&g->d, g->d.device + 0, 2), 100);
	assert_int_equal(vd_read(&g->d, g->d.device + 2, 2), 40);
	/* It carries on: receive into a buffer posted after the move, transmit. */
	g->next_desc[RX] = f->next_desc[RX];
	g->next_desc[TX] = f->next_desc[TX];
	g->used_seen[RX] = g->used_seen[TX] = 1;
	uint16_t h = post_rx(g, 8, &addr);

	assert_int_equal(virtio_console_receive(g->con, (const uint8_t *)"xyz", 3), 3);
	assert_int_equal(next_used(g, RX, h), 3);
	h = post(g, TX, &len, &flags, 1, &addr);
	guest_mem_write(&g->d.mem, addr, "B\n", 2);
	vd_notify(&g->d, TX);
	assert_int_equal(next_used(g, TX, h), 0);
	assert_memory_equal(g->out, "B\n", 2);

	/* Bad values. */
	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "hvc");
	assert_int_equal(fdt_setprop_u32(b, node, "console-cols", 0x10000), 0);
	assert_int_equal(virtio_console_load(g->con, b, node), -EINVAL);
	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "hvc");
	assert_int_equal(fdt_setprop_u32(b, node, "console-active", 2), 0);
	assert_int_equal(virtio_console_load(g->con, b, node), -EINVAL);
	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "hvc");
	assert_int_equal(fdt_delprop(b, node, "console-rows"), 0);
	assert_int_equal(virtio_console_load(g->con, b, node), -EINVAL);
	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "hvc");
	assert_int_equal(fdt_setprop_u32(b, node, "virtio-device-id", VIRTIO_ID_BLOCK), 0);
	assert_int_equal(virtio_console_load(g->con, b, node), -EINVAL);
	fx_free(g);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_identity_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_receive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_receive_dirty_marks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_receive_none_posted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_emergency_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
