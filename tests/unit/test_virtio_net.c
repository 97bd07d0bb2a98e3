// SPDX-License-Identifier: MIT
/*
 * virtio-net without the PCI transport: a socketpair stands in for the tap,
 * the test plays the driver (descriptors, avail ring) and calls the ops.
 * The last case runs the device on a real tap (root; needs /dev/net/tun).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <libfdt.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus.h"
#include "event_loop.h"
#include "pci.h"
#include "state.h"
#include "tap.h"
#include "virtio_net.h"

#define MEM   (1ULL << 20)
#define QSIZE 16
#define HDR   12
#define BUFS  0x20000ULL

static const uint64_t ring_gpa[2][3] = {
    {0x10000, 0x11000, 0x12000}, /* receiveq0: desc, avail, used */
    {0x14000, 0x15000, 0x16000}, /* transmitq0 */
};

#define F(b)	      (1ULL << (b))
#define ALL_OFFLOADS  (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO)
#define BASE_FEATURES (F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS))

struct seg {
	uint32_t len;
	bool write;
};

struct fixture {
	struct guest_mem mem;
	struct event_loop loop;
	int peer;
	struct virtio_net *n;
	struct virtio_dev *vdev;
	uint16_t avail_idx[2], next_desc[2];
	uint64_t next_buf;
	uint64_t last_bufs[8]; /* buffer addresses of the last posted chain */
	uint64_t buf_of_head[2][QSIZE];
	unsigned irqs[2]; /* interrupts per queue, seen through env.signal_msi */
};

static void count_irq(void *opaque, uint64_t addr, uint32_t data)
{
	struct fixture *f = opaque;

	(void)addr;
	if (data < 2)
		f->irqs[data]++;
}

static const uint8_t test_mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

static void make_dev(struct fixture *f, bool vnet_hdr, unsigned offloads)
{
	struct virtio_env env = {.mem = &f->mem,
				 .loop = &f->loop,
				 .vm_fd = -1,
				 .signal_msi = count_irq,
				 .signal_opaque = f};
	struct tap_info tap = {
	    .name = "test0", .vnet_hdr = vnet_hdr, .offloads = offloads, .mtu = 1500};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	f->peer = sv[1];
	assert_int_equal(virtio_net_create_fd(&f->n, &env, sv[0], &tap, test_mac, 0), 0);
	f->vdev = virtio_net_vdev(f->n);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(guest_mem_init(&f->mem, MEM), 0);
	assert_int_equal(event_loop_init(&f->loop), 0);
	f->next_buf = BUFS;
	make_dev(f, true, ALL_OFFLOADS);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_net_destroy(f->n);
	if (f->peer >= 0)
		close(f->peer);
	event_loop_destroy(&f->loop);
	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

/* What the transport does at DRIVER_OK: enable the queues, record features, activate. */
static void start(struct fixture *f, uint64_t features, bool event_idx)
{
	unsigned q;

	for (q = 0; q < 2; q++) {
		struct virtq *vq = &f->vdev->t.vqs[q];

		virtq_reset(vq);
		vq->size = QSIZE;
		vq->desc_gpa = ring_gpa[q][0];
		vq->avail_gpa = ring_gpa[q][1];
		vq->used_gpa = ring_gpa[q][2];
		vq->event_idx = event_idx;
		assert_int_equal(virtq_enable(vq, &f->mem), 0);
	}
	f->vdev->t.driver_features = features;
	assert_int_equal(f->vdev->ops->activate(f->vdev), 0);
}

/* Post one chain of fresh buffers on queue q (data for readable ones); returns its head. */
static uint16_t post(struct fixture *f, unsigned q, const struct seg *segs, unsigned nsegs,
		     const uint8_t *data)
{
	uint16_t head = f->next_desc[q] % QSIZE, slot;
	unsigned i;

	for (i = 0; i < nsegs; i++) {
		uint16_t d = (f->next_desc[q] + i) % QSIZE, next = (d + 1) % QSIZE;
		uint16_t flags = (segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				 (i + 1 < nsegs ? VIRTQ_DESC_F_NEXT : 0);
		uint8_t desc[16];

		memcpy(desc, &f->next_buf, 8);
		memcpy(desc + 8, &segs[i].len, 4);
		memcpy(desc + 12, &flags, 2);
		memcpy(desc + 14, &next, 2);
		assert_int_equal(guest_mem_write(&f->mem, ring_gpa[q][0] + 16ULL * d, desc, 16), 0);
		if (data && !segs[i].write) {
			assert_int_equal(guest_mem_write(&f->mem, f->next_buf, data, segs[i].len),
					 0);
			data += segs[i].len;
		}
		if (i < 8)
			f->last_bufs[i] = f->next_buf;
		if (i == 0)
			f->buf_of_head[q][head] = f->next_buf;
		f->next_buf += (segs[i].len + 63) & ~63ULL;
	}
	f->next_desc[q] += nsegs;
	slot = f->avail_idx[q] % QSIZE;
	guest_mem_write(&f->mem, ring_gpa[q][1] + 4 + 2ULL * slot, &head, 2);
	f->avail_idx[q]++;
	guest_mem_write(&f->mem, ring_gpa[q][1] + 2, &f->avail_idx[q], 2);
	return head;
}

static uint16_t used_idx(struct fixture *f, unsigned q)
{
	uint16_t v;

	guest_mem_read(&f->mem, ring_gpa[q][2] + 2, &v, 2);
	return v;
}

static void used_elem(struct fixture *f, unsigned q, unsigned i, uint32_t *id, uint32_t *len)
{
	guest_mem_read(&f->mem, ring_gpa[q][2] + 4 + 8ULL * (i % QSIZE), id, 4);
	guest_mem_read(&f->mem, ring_gpa[q][2] + 8 + 8ULL * (i % QSIZE), len, 4);
}

static bool page_dirty(struct fixture *f, uint64_t gpa)
{
	uint64_t p = gpa / GUEST_PAGE_SIZE;

	return f->mem.dirty[p / 64] & (1ULL << (p % 64));
}

static void clear_dirty(struct fixture *f)
{
	memset(f->mem.dirty, 0, (MEM / GUEST_PAGE_SIZE + 63) / 64 * 8);
}

static ssize_t peer_recv(struct fixture *f, void *buf, size_t len)
{
	return recv(f->peer, buf, len, MSG_DONTWAIT);
}

/* A frame with a recognisable body: dst, src, ethertype 0x88b5, then a counting pattern. */
static void make_frame(uint8_t *p, size_t len, uint8_t seed)
{
	size_t i;

	memset(p, 0xff, 6);
	memcpy(p + 6, test_mac, 6);
	p[12] = 0x88;
	p[13] = 0xb5;
	for (i = 14; i < len; i++)
		p[i] = (uint8_t)(seed + i);
}

/* A TX chain: header then frame, cut into pieces of the given sizes. */
static uint16_t post_tx(struct fixture *f, const struct virtio_net_hdr_v1 *hdr,
			const uint8_t *frame, size_t frame_len, const uint32_t *cuts,
			unsigned ncuts)
{
	uint8_t buf[4096];
	struct seg segs[8];
	unsigned i;

	memcpy(buf, hdr, HDR);
	memcpy(buf + HDR, frame, frame_len);
	for (i = 0; i < ncuts; i++)
		segs[i] = (struct seg){cuts[i], false};
	return post(f, 1, segs, ncuts, buf);
}

/* ---- features and config ---- */

static void test_features_follow_tap(void **state)
{
	struct fixture *f = *state;
	struct virtio_net *plain;
	struct virtio_env env = {.mem = &f->mem, .vm_fd = -1};
	struct tap_info tap = {.name = "x", .vnet_hdr = false};
	uint64_t all = f->vdev->info.features;
	int sv[2];

	assert_true(all & F(VIRTIO_NET_F_MAC));
	assert_true(all & F(VIRTIO_NET_F_STATUS));
	assert_true(all & F(VIRTIO_NET_F_MRG_RXBUF));
	assert_true(all & F(VIRTIO_NET_F_CSUM));
	assert_true(all & F(VIRTIO_NET_F_GUEST_CSUM));
	assert_true(all & F(VIRTIO_NET_F_GUEST_TSO4));
	assert_true(all & F(VIRTIO_NET_F_GUEST_TSO6));
	assert_true(all & F(VIRTIO_NET_F_GUEST_ECN));
	assert_true(all & F(VIRTIO_NET_F_GUEST_UFO));
	assert_true(all & F(VIRTIO_NET_F_HOST_TSO4));
	assert_true(all & F(VIRTIO_NET_F_HOST_UFO));
	assert_false(all & F(VIRTIO_NET_F_CTRL_VQ));
	assert_false(all & F(VIRTIO_NET_F_MQ));
	assert_int_equal(f->vdev->info.device_id, VIRTIO_ID_NET);
	assert_int_equal(f->vdev->info.nr_queues, 2);

	/* No vnet header: no offloads at all. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(virtio_net_create_fd(&plain, &env, sv[0], &tap, test_mac, 1), 0);
	assert_int_equal(virtio_net_vdev(plain)->info.features,
			 F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_MRG_RXBUF));
	virtio_net_destroy(plain);
	close(sv[1]);

	/* Checksum offload only: no guest TSO offered. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	tap.vnet_hdr = true;
	tap.offloads = TUN_F_CSUM;
	assert_int_equal(virtio_net_create_fd(&plain, &env, sv[0], &tap, test_mac, 1), 0);
	all = virtio_net_vdev(plain)->info.features;
	assert_true(all & F(VIRTIO_NET_F_GUEST_CSUM));
	assert_false(all & (F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_UFO)));
	assert_false(all & F(VIRTIO_NET_F_HOST_UFO));
	virtio_net_destroy(plain);
	close(sv[1]);
}

static void test_config(void **state)
{
	struct fixture *f = *state;
	uint8_t cfg[10], mac[6];

	f->vdev->ops->config_read(f->vdev, 0, cfg, 10);
	assert_memory_equal(cfg, test_mac, 6);
	assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
	assert_int_equal(cfg[8] | cfg[9] << 8, 1);
	f->vdev->ops->config_read(f->vdev, 6, cfg, 2);
	assert_int_equal(cfg[0], VIRTIO_NET_S_LINK_UP);
	/* The MAC is read-only with VERSION_1. */
	f->vdev->ops->config_write(f->vdev, 0, (const uint8_t *)"\1\2\3\4\5\6", 6);
	virtio_net_get_mac(f->n, mac);
	assert_memory_equal(mac, test_mac, 6);
}

/* ---- transmit ---- */

static void test_tx_single(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 hdr = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					.csum_start = 34,
					.csum_offset = 16,
					.num_buffers = 7};
	uint8_t frame[200], got[512];
	/* The header split over two buffers, the frame over two more. */
	const uint32_t cuts[] = {5, 7 + 50, 100, 50};
	struct virtio_net_stats st;
	uint32_t id, len;
	uint16_t head;

	start(f, BASE_FEATURES | F(VIRTIO_NET_F_CSUM), false);
	make_frame(frame, sizeof(frame), 1);
	head = post_tx(f, &hdr, frame, sizeof(frame), cuts, 4);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);

	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + sizeof(frame));
	hdr.num_buffers = 0; /* the device sends its own copy, num_buffers cleared */
	assert_memory_equal(got, &hdr, HDR);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	assert_int_equal(used_idx(f, 1), 1);
	used_elem(f, 1, 0, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 0);
	virtio_net_get_stats(f->n, &st);
	assert_int_equal(st.tx_packets, 1);
	assert_int_equal(st.tx_bytes, sizeof(frame));
	assert_int_equal(st.tx_errors, 0);
	assert_int_equal(f->irqs[1], 1);
	assert_int_equal(f->irqs[0], 0);
}

static void test_tx_many_per_notify(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 hdr = {0};
	uint8_t frame[100], got[512];
	uint32_t cuts[1];
	unsigned i;

	start(f, BASE_FEATURES, true);
	for (i = 0; i < 5; i++) {
		make_frame(frame, 60 + i, (uint8_t)i);
		cuts[0] = HDR + 60 + i;
		post_tx(f, &hdr, frame, 60 + i, cuts, 1);
	}
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	for (i = 0; i < 5; i++) {
		make_frame(frame, 60 + i, (uint8_t)i);
		assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 60 + i);
		assert_memory_equal(got + HDR, frame, 60 + i);
	}
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(used_idx(f, 1), 5);
	assert_int_equal(f->irqs[1], 1); /* one interrupt for the batch */
	/* Event index: the device asked to be kicked at the next new entry. */
	uint16_t avail_event;
	guest_mem_read(&f->mem, ring_gpa[1][2] + 4 + 8 * QSIZE, &avail_event, 2);
	assert_int_equal(avail_event, 5);
}

static void test_tx_strips_header_without_vnet_hdr(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 hdr = {0};
	uint8_t frame[80], got[256];
	const uint32_t cuts[] = {HDR + 80};

	virtio_net_destroy(f->n);
	close(f->peer);
	make_dev(f, false, 0);
	start(f, BASE_FEATURES, false);
	make_frame(frame, sizeof(frame), 3);
	post_tx(f, &hdr, frame, sizeof(frame), cuts, 1);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), sizeof(frame));
	assert_memory_equal(got, frame, sizeof(frame));
}

static void test_tx_bad_chains_dropped(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 ok = {0}, h;
	uint8_t frame[100], got[256];
	const uint32_t whole[] = {HDR + 100};
	const struct seg with_write[] = {{HDR + 100, false}, {64, true}};
	const struct seg short_hdr[] = {{8, false}};
	struct virtio_net_stats st;

	/* No CSUM, no TSO negotiated. */
	start(f, BASE_FEATURES, false);
	make_frame(frame, sizeof(frame), 0);
	post(f, 1, with_write, 2, NULL);
	post(f, 1, short_hdr, 1, NULL);
	h = ok;
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM; /* not negotiated */
	post_tx(f, &h, frame, sizeof(frame), whole, 1);
	h = ok;
	h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4; /* not negotiated */
	h.gso_size = 1448;
	post_tx(f, &h, frame, sizeof(frame), whole, 1);
	h = ok;
	h.gso_type = 0x42; /* no such type */
	post_tx(f, &h, frame, sizeof(frame), whole, 1);
	h = ok;
	h.flags = VIRTIO_NET_HDR_F_DATA_VALID; /* drivers must not set it */
	post_tx(f, &h, frame, sizeof(frame), whole, 1);
	{
		const uint32_t runt[] = {HDR + 10}; /* shorter than an Ethernet header */
		post_tx(f, &ok, frame, 10, runt, 1);
	}
	post_tx(f, &ok, frame, sizeof(frame), whole, 1); /* and a good one after all that */
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);

	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 100);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(used_idx(f, 1), 8); /* all returned */
	virtio_net_get_stats(f->n, &st);
	assert_int_equal(st.tx_errors, 7);
	assert_int_equal(st.tx_packets, 1);
}

static void test_tx_gso_when_negotiated(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				      .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
				      .hdr_len = 54,
				      .gso_size = 1448,
				      .csum_start = 34,
				      .csum_offset = 16};
	uint8_t frame[3000], got[4096];
	const uint32_t cuts[] = {HDR, 1000, 2000};
	struct virtio_net_stats st;

	start(f,
	      BASE_FEATURES | F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) |
		  F(VIRTIO_NET_F_HOST_ECN),
	      false);
	make_frame(frame, sizeof(frame), 9);
	post_tx(f, &h, frame, sizeof(frame), cuts, 3);
	/* GSO without NEEDS_CSUM is malformed. */
	h.flags = 0;
	post_tx(f, &h, frame, sizeof(frame), cuts, 3);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + sizeof(frame));
	assert_int_equal(got[1], VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	virtio_net_get_stats(f->n, &st);
	assert_int_equal(st.tx_errors, 1);
}

static void test_tx_malformed_ring_stops(void **state)
{
	struct fixture *f = *state;
	uint8_t desc[16] = {0}, got[256], frame[100];
	uint64_t addr = MEM - 8; /* runs off the end of RAM */
	uint32_t len = 64;
	uint16_t head = 0, idx = 1;
	struct virtio_net_hdr_v1 ok = {0};
	const uint32_t whole[] = {HDR + 100};

	start(f, BASE_FEATURES, false);
	memcpy(desc, &addr, 8);
	memcpy(desc + 8, &len, 4);
	guest_mem_write(&f->mem, ring_gpa[1][0], desc, 16);
	guest_mem_write(&f->mem, ring_gpa[1][1] + 4, &head, 2);
	guest_mem_write(&f->mem, ring_gpa[1][1] + 2, &idx, 2);
	f->avail_idx[1] = 1;
	f->next_desc[1] = 1;
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	assert_int_equal(used_idx(f, 1), 0);
	assert_true(f->vdev->t.status & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* Broken until reset: a good chain posted later is not sent. */
	make_frame(frame, sizeof(frame), 0);
	post_tx(f, &ok, frame, sizeof(frame), whole, 1);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	/* Reset and start again: works. */
	f->vdev->ops->reset(f->vdev);
	f->vdev->t.status = 0;
	f->avail_idx[1] = f->next_desc[1] = 0;
	start(f, BASE_FEATURES, false);
	post_tx(f, &ok, frame, sizeof(frame), whole, 1);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 100);
}

static void test_tx_ignored_before_activate_and_after_reset(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 ok = {0};
	uint8_t frame[100], got[256];
	const uint32_t whole[] = {HDR + 100};

	start(f, BASE_FEATURES, false);
	f->vdev->ops->reset(f->vdev);
	make_frame(frame, sizeof(frame), 0);
	post_tx(f, &ok, frame, sizeof(frame), whole, 1);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(used_idx(f, 1), 0);
}

/* ---- receive ---- */

static void test_rx_one_buffer(void **state)
{
	struct fixture *f = *state;
	const struct seg segs[] = {{1000, true}, {1000, true}};
	struct virtio_net_hdr_v1 hdr = {.flags = VIRTIO_NET_HDR_F_DATA_VALID, .num_buffers = 99};
	uint8_t pkt[HDR + 1500], got[HDR + 1500];
	struct virtio_net_stats st;
	uint32_t id, len;
	uint16_t head, nb;

	start(f, BASE_FEATURES | F(VIRTIO_NET_F_GUEST_CSUM), false);
	head = post(f, 0, segs, 2, NULL);
	memcpy(pkt, &hdr, HDR);
	make_frame(pkt + HDR, 1500, 5);
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	clear_dirty(f);
	virtio_net_rx(f->n);

	assert_int_equal(used_idx(f, 0), 1);
	used_elem(f, 0, 0, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, HDR + 1500);
	guest_mem_read(&f->mem, f->last_bufs[0], got, 1000);
	guest_mem_read(&f->mem, f->last_bufs[1], got + 1000, HDR + 1500 - 1000);
	assert_int_equal(got[0], VIRTIO_NET_HDR_F_DATA_VALID);
	memcpy(&nb, got + 10, 2);
	assert_int_equal(nb, 1);
	assert_memory_equal(got + HDR, pkt + HDR, 1500);
	assert_true(page_dirty(f, f->last_bufs[0]));
	assert_true(page_dirty(f, f->last_bufs[1] + 500));
	assert_true(page_dirty(f, ring_gpa[0][2]));
	virtio_net_get_stats(f->n, &st);
	assert_int_equal(st.rx_packets, 1);
	assert_int_equal(st.rx_bytes, 1500);
	assert_true(virtio_net_rx_polling(f->n));
	assert_int_equal(f->irqs[0], 1);
}

static void test_rx_mergeable(void **state)
{
	struct fixture *f = *state;
	const struct seg one[] = {{600, true}};
	uint8_t pkt[HDR + 1400] = {0}, got[HDR + 1400];
	uint16_t heads[4], nb;
	uint32_t id, len;
	unsigned i;

	start(f, BASE_FEATURES | F(VIRTIO_NET_F_MRG_RXBUF), false);
	uint64_t bufs[4];
	for (i = 0; i < 4; i++) {
		heads[i] = post(f, 0, one, 1, NULL);
		bufs[i] = f->last_bufs[0];
	}
	make_frame(pkt + HDR, 1400, 7);
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	virtio_net_rx(f->n);

	/* 1412 bytes over three 600-byte buffers, published together. */
	assert_int_equal(used_idx(f, 0), 3);
	for (i = 0; i < 3; i++) {
		used_elem(f, 0, i, &id, &len);
		assert_int_equal(id, heads[i]);
		assert_int_equal(len, i < 2 ? 600 : HDR + 1400 - 1200);
		guest_mem_read(&f->mem, bufs[i], got + 600 * i, len);
	}
	memcpy(&nb, got + 10, 2);
	assert_int_equal(nb, 3);
	assert_memory_equal(got + HDR, pkt + HDR, 1400);

	/* A small frame takes the next buffer alone (the rest went back to the ring). */
	make_frame(pkt + HDR, 60, 8);
	assert_int_equal(send(f->peer, pkt, HDR + 60, 0), HDR + 60);
	for (i = 0; i < 3; i++)
		post(f, 0, one, 1, NULL);
	virtio_net_rx(f->n);
	assert_int_equal(used_idx(f, 0), 4);
	used_elem(f, 0, 3, &id, &len);
	assert_int_equal(id, heads[3]);
	assert_int_equal(len, HDR + 60);
	guest_mem_read(&f->mem, bufs[3] + 10, &nb, 2);
	assert_int_equal(nb, 1);
}

static void test_rx_mergeable_batch(void **state)
{
	struct fixture *f = *state;
	const struct seg one[] = {{600, true}};
	const unsigned sizes[] = {100, 1400, 700}, bufs_used[] = {1, 3, 2};
	const uint32_t lens[] = {HDR + 100, 600, 600, HDR + 1400 - 1200, 600, HDR + 700 - 600};
	uint8_t pkt[HDR + 1400] = {0};
	uint64_t bufs[8];
	uint16_t heads[8], nb;
	uint32_t id, len;
	unsigned i, u = 0;

	start(f, BASE_FEATURES | F(VIRTIO_NET_F_MRG_RXBUF), true);
	for (i = 0; i < 8; i++) {
		heads[i] = post(f, 0, one, 1, NULL);
		bufs[i] = f->last_bufs[0];
	}
	for (i = 0; i < 3; i++) {
		make_frame(pkt + HDR, sizes[i], (uint8_t)i);
		assert_int_equal(send(f->peer, pkt, HDR + sizes[i], 0), HDR + sizes[i]);
	}
	virtio_net_rx(f->n); /* all three in one call */
	assert_int_equal(used_idx(f, 0), 6);
	for (i = 0; i < 6; i++) {
		used_elem(f, 0, i, &id, &len);
		assert_int_equal(id, heads[i]);
		assert_int_equal(len, lens[i]);
	}
	for (i = 0; i < 3; i++) {
		guest_mem_read(&f->mem, bufs[u] + 10, &nb, 2);
		assert_int_equal(nb, bufs_used[i]);
		u += bufs_used[i];
	}
	/* The two chains held for a fourth frame went back to the ring. */
	assert_int_equal(f->vdev->t.vqs[0].last_avail_idx, 6);
}

static void test_rx_no_buffers_stops_polling(void **state)
{
	struct fixture *f = *state;
	const struct seg one[] = {{2048, true}};
	uint8_t pkt[HDR + 100] = {0};
	struct epoll_event ev;
	uint16_t avail_event;

	start(f, BASE_FEATURES | F(VIRTIO_NET_F_MRG_RXBUF), true);
	make_frame(pkt + HDR, 100, 1);
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	/* The tap is on the loop and readable. */
	assert_int_equal(epoll_wait(f->loop.epfd, &ev, 1, 0), 1);
	virtio_net_rx(f->n);
	assert_false(virtio_net_rx_polling(f->n));
	assert_int_equal(used_idx(f, 0), 0);
	/* Off the loop: no wake-ups although the frame is still waiting. */
	assert_int_equal(epoll_wait(f->loop.epfd, &ev, 1, 0), 0);
	/* The device asked for a kick at the next buffer. */
	guest_mem_read(&f->mem, ring_gpa[0][2] + 4 + 8 * QSIZE, &avail_event, 2);
	assert_int_equal(avail_event, 0);

	post(f, 0, one, 1, NULL);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_RXQ);
	assert_true(virtio_net_rx_polling(f->n));
	assert_int_equal(used_idx(f, 0), 1); /* the waiting frame arrived, nothing lost */
	assert_int_equal(epoll_wait(f->loop.epfd, &ev, 1, 0), 0);
}

static void test_rx_mergeable_waits_for_room(void **state)
{
	struct fixture *f = *state;
	const struct seg small[] = {{500, true}};
	uint8_t pkt[HDR + 100] = {0};

	/* Room for the largest frame (1530 bytes) before reading any. */
	start(f, BASE_FEATURES | F(VIRTIO_NET_F_MRG_RXBUF), false);
	post(f, 0, small, 1, NULL);
	post(f, 0, small, 1, NULL);
	make_frame(pkt + HDR, 100, 1);
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	virtio_net_rx(f->n);
	assert_int_equal(used_idx(f, 0), 0);
	assert_false(virtio_net_rx_polling(f->n));
	post(f, 0, small, 1, NULL);
	post(f, 0, small, 1, NULL);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_RXQ);
	assert_int_equal(used_idx(f, 0), 1);
}

static void test_rx_too_big_dropped(void **state)
{
	struct fixture *f = *state;
	const struct seg small[] = {{HDR + 100, true}};
	uint8_t pkt[HDR + 600] = {0};
	struct virtio_net_stats st;
	uint32_t id, len;

	start(f, BASE_FEATURES, false);
	post(f, 0, small, 1, NULL);
	make_frame(pkt + HDR, 600, 1);
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	make_frame(pkt + HDR, 90, 2);
	assert_int_equal(send(f->peer, pkt, HDR + 90, 0), HDR + 90);
	virtio_net_rx(f->n);
	/* The big one is dropped, the buffer kept for the small one. */
	assert_int_equal(used_idx(f, 0), 1);
	used_elem(f, 0, 0, &id, &len);
	assert_int_equal(len, HDR + 90);
	virtio_net_get_stats(f->n, &st);
	assert_int_equal(st.rx_dropped, 1);
	assert_int_equal(st.rx_packets, 1);
}

static void test_rx_without_vnet_hdr(void **state)
{
	struct fixture *f = *state;
	const struct seg segs[] = {{5, true}, {2000, true}}; /* header split across buffers */
	uint8_t frame[300], got[HDR + 300];
	static const uint8_t zero[10];
	uint32_t id, len;
	uint16_t nb;

	virtio_net_destroy(f->n);
	close(f->peer);
	make_dev(f, false, 0);
	start(f, BASE_FEATURES, false);
	post(f, 0, segs, 2, NULL);
	/* Garbage where the header goes: the device must write all of it. */
	memset(guest_mem_ptr(&f->mem, f->last_bufs[0], 5), 0xee, 5);
	memset(guest_mem_ptr(&f->mem, f->last_bufs[1], 7), 0xee, 7);
	make_frame(frame, sizeof(frame), 4);
	assert_int_equal(send(f->peer, frame, sizeof(frame), 0), sizeof(frame));
	virtio_net_rx(f->n);
	used_elem(f, 0, 0, &id, &len);
	assert_int_equal(len, HDR + 300);
	guest_mem_read(&f->mem, f->last_bufs[0], got, 5);
	guest_mem_read(&f->mem, f->last_bufs[1], got + 5, HDR + 300 - 5);
	assert_memory_equal(got, zero, 10);
	memcpy(&nb, got + 10, 2);
	assert_int_equal(nb, 1);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
}

static void test_rx_waits_for_activate(void **state)
{
	struct fixture *f = *state;
	const struct seg one[] = {{2048, true}};
	uint8_t pkt[HDR + 100] = {0};

	make_frame(pkt + HDR, 100, 1);
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	virtio_net_rx(f->n); /* not active yet: stop polling, keep the frame */
	assert_false(virtio_net_rx_polling(f->n));
	start(f, BASE_FEATURES, false);
	post(f, 0, one, 1, NULL);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_RXQ);
	assert_int_equal(used_idx(f, 0), 1);
	assert_true(virtio_net_rx_polling(f->n));
}

static void test_rx_hostile_chains(void **state)
{
	struct fixture *f = *state;
	const struct seg readable[] = {{64, false}, {2000, true}};
	const struct seg tiny[] = {{8, true}};
	uint8_t pkt[HDR + 100] = {0};

	start(f, BASE_FEATURES, false);
	post(f, 0, readable, 2, NULL);
	make_frame(pkt + HDR, 100, 1);
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	virtio_net_rx(f->n);
	assert_int_equal(used_idx(f, 0), 0);
	assert_false(virtio_net_rx_polling(f->n));
	assert_true(f->vdev->t.status & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* Broken until reset even when notified again. */
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_RXQ);
	assert_int_equal(used_idx(f, 0), 0);

	f->vdev->ops->reset(f->vdev);
	f->vdev->t.status = 0;
	f->avail_idx[0] = f->next_desc[0] = 0;
	start(f, BASE_FEATURES | F(VIRTIO_NET_F_MRG_RXBUF), false);
	post(f, 0, tiny, 1, NULL); /* smaller than the header */
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_RXQ);
	assert_int_equal(used_idx(f, 0), 0);
	assert_false(virtio_net_rx_polling(f->n));
}

static void test_reset_drops_offloads_and_features(void **state)
{
	struct fixture *f = *state;
	uint8_t fdt[4096];
	uint64_t features;
	int node;

	start(f, BASE_FEATURES | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4), false);
	f->vdev->ops->reset(f->vdev);
	assert_int_equal(state_tree_begin(fdt, 4096), 0);
	assert_int_equal(fdt_begin_node(fdt, "net0"), 0);
	assert_int_equal(virtio_net_save(f->n, fdt), 0);
	assert_int_equal(fdt_end_node(fdt), 0);
	assert_int_equal(state_tree_end(fdt), 0);
	node = state_find_node(fdt, 0, "net0");
	assert_true(node >= 0);
	assert_int_equal(state_get_u64(fdt, node, "features", &features), 0);
	assert_int_equal(features, 0);
}

/* ---- announce ---- */

static void test_announce(void **state)
{
	struct fixture *f = *state;
	uint8_t got[256];
	static const uint8_t zero_hdr[HDR];

	assert_int_equal(virtio_net_announce(f->n), 0);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 60);
	assert_memory_equal(got, zero_hdr, HDR);
	assert_memory_equal(got + HDR, "\xff\xff\xff\xff\xff\xff", 6);
	assert_memory_equal(got + HDR + 6, test_mac, 6);
	assert_int_equal(got[HDR + 12] << 8 | got[HDR + 13], 0x8035); /* RARP */
	assert_int_equal(got[HDR + 21], 3);			      /* reverse request */
	assert_memory_equal(got + HDR + 22, test_mac, 6);
	assert_memory_equal(got + HDR + 32, test_mac, 6);
}

/* ---- state ---- */

static size_t save(struct virtio_net *n, void *fdt, size_t size)
{
	assert_int_equal(state_tree_begin(fdt, size), 0);
	assert_int_equal(fdt_begin_node(fdt, "net0"), 0);
	assert_int_equal(virtio_net_save(n, fdt), 0);
	assert_int_equal(fdt_end_node(fdt), 0);
	assert_int_equal(state_tree_end(fdt), 0);
	assert_int_equal(fdt_check_full(fdt, size), 0);
	return fdt_totalsize(fdt);
}

static void test_save_load_round_trip(void **state)
{
	struct fixture *f = *state;
	uint64_t features = F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) |
			    F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_CSUM) |
			    F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4);
	struct virtio_env env = {.mem = &f->mem, .loop = &f->loop, .vm_fd = -1};
	struct tap_info tap = {.name = "test1", .vnet_hdr = true, .offloads = ALL_OFFLOADS};
	const uint8_t other_mac[6] = {0x52, 0x54, 0, 1, 2, 3};
	uint8_t a[4096], b[4096], mac[6];
	struct virtio_net *fresh;
	size_t la, lb;
	int sv[2];

	start(f, features | F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_EVENT_IDX), false);
	la = save(f->n, a, sizeof(a));

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(virtio_net_create_fd(&fresh, &env, sv[0], &tap, other_mac, 1), 0);
	virtio_net_rx(fresh); /* inactive: off the loop */
	assert_false(virtio_net_rx_polling(fresh));
	assert_int_equal(virtio_net_load(fresh, a, state_find_node(a, 0, "net0")), 0);
	assert_true(virtio_net_rx_polling(fresh)); /* receiving again without a notify */
	virtio_net_get_mac(fresh, mac);
	assert_memory_equal(mac, test_mac, 6);
	lb = save(fresh, b, sizeof(b));
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	virtio_net_destroy(fresh);
	close(sv[1]);
}

/* Build a tree with the given values (any may be left out with a NULL name). */
static int load_tree(struct virtio_net *n, const char *skip, uint32_t status, uint64_t features,
		     uint32_t active)
{
	uint8_t t[4096];

	assert_int_equal(state_tree_begin(t, sizeof(t)), 0);
	assert_int_equal(fdt_begin_node(t, "net0"), 0);
	if (strcmp(skip, "mac"))
		assert_int_equal(state_put_bytes(t, "mac", test_mac, 6), 0);
	if (strcmp(skip, "status"))
		assert_int_equal(state_put_u32(t, "status", status), 0);
	if (strcmp(skip, "features"))
		assert_int_equal(state_put_u64(t, "features", features), 0);
	if (strcmp(skip, "active"))
		assert_int_equal(state_put_u32(t, "active", active), 0);
	assert_int_equal(fdt_end_node(t), 0);
	assert_int_equal(state_tree_end(t), 0);
	return virtio_net_load(n, t, state_find_node(t, 0, "net0"));
}

static void test_load_rejects_bad_state(void **state)
{
	struct fixture *f = *state;
	struct virtio_net *plain;
	struct virtio_env env = {.mem = &f->mem, .vm_fd = -1};
	struct tap_info tap = {.name = "x", .vnet_hdr = false};
	uint64_t ok = F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_MRG_RXBUF);
	uint8_t t[4096];
	int sv[2];

	assert_int_equal(load_tree(f->n, "", 1, ok, 1), 0);
	assert_int_equal(load_tree(f->n, "mac", 1, ok, 1), -EINVAL);
	assert_int_equal(load_tree(f->n, "status", 1, ok, 1), -EINVAL);
	assert_int_equal(load_tree(f->n, "features", 1, ok, 1), -EINVAL);
	assert_int_equal(load_tree(f->n, "active", 1, ok, 1), -EINVAL);
	assert_int_equal(load_tree(f->n, "", 0x80, ok, 1), -EINVAL); /* unknown status bit */
	assert_int_equal(load_tree(f->n, "", 1, ok, 2), -EINVAL);    /* active is a bool */
	assert_int_equal(load_tree(f->n, "", 1, ok, 0), -EINVAL);    /* features without driver */
	assert_int_equal(load_tree(f->n, "", 1, F(VIRTIO_NET_F_CTRL_VQ), 1), -ENOTSUP);
	/* A property of the wrong size. */
	assert_int_equal(state_tree_begin(t, sizeof(t)), 0);
	assert_int_equal(fdt_begin_node(t, "net0"), 0);
	assert_int_equal(state_put_bytes(t, "mac", test_mac, 5), 0);
	assert_int_equal(state_put_u32(t, "status", 1), 0);
	assert_int_equal(state_put_u64(t, "features", 0), 0);
	assert_int_equal(state_put_u32(t, "active", 0), 0);
	assert_int_equal(fdt_end_node(t), 0);
	assert_int_equal(state_tree_end(t), 0);
	assert_int_equal(virtio_net_load(f->n, t, state_find_node(t, 0, "net0")), -EINVAL);

	/* A tap without offloads cannot take over a guest that negotiated them. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(virtio_net_create_fd(&plain, &env, sv[0], &tap, test_mac, 1), 0);
	assert_int_equal(load_tree(plain, "", 1, ok | F(VIRTIO_NET_F_GUEST_TSO4), 1), -ENOTSUP);
	assert_int_equal(load_tree(plain, "", 1, ok, 1), 0);
	virtio_net_destroy(plain);
	close(sv[1]);
}

/* ---- through the real transport's registers ---- */

struct pci_rig {
	struct bus pio, mmio;
	struct pci_host host;
	uint64_t bar; /* the virtio structures (BAR 4) */
};

static void mmio_w(struct pci_rig *r, uint64_t off, uint64_t v, uint32_t len)
{
	uint8_t b[8];

	memcpy(b, &v, 8);
	assert_int_equal(bus_access(&r->mmio, r->bar + off, b, len, true), 0);
}

static uint64_t mmio_r(struct pci_rig *r, uint64_t off, uint32_t len)
{
	uint64_t v = 0;

	assert_int_equal(bus_access(&r->mmio, r->bar + off, (uint8_t *)&v, len, false), 0);
	return v;
}

/* virtio 1.2 4.1.4.3: struct virtio_pci_common_cfg; device config and notify as the transport lays
 * them out. */
#define CC_DFSEL  0x00
#define CC_DF	  0x04
#define CC_GFSEL  0x08
#define CC_GF	  0x0c
#define CC_STATUS 0x14
#define CC_QSEL	  0x16
#define CC_QSIZE  0x18
#define CC_QEN	  0x1c
#define CC_QDESC  0x20
#define CC_QAVAIL 0x28
#define CC_QUSED  0x30
#define DEV_CFG	  0x2000
#define NOTIFY	  0x3000

static void test_through_transport(void **state)
{
	struct fixture *f = *state;
	struct pci_rig *r = calloc(1, sizeof(*r));
	struct virtio_net_hdr_v1 hdr = {0};
	const struct seg one[] = {{2048, true}};
	const uint32_t whole[] = {HDR + 100};
	uint8_t frame[100], got[256], pkt[HDR + 100] = {0};
	uint64_t df;
	unsigned q;

	assert_non_null(r);
	assert_int_equal(bus_init(&r->pio, "pio"), 0);
	assert_int_equal(bus_init(&r->mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&r->host, &r->pio, &r->mmio), 0);
	f->vdev->env.pci = &r->host;
	assert_int_equal(virtio_net_attach_pci(f->n, -1), 0);
	assert_true(f->vdev->pci.bars[4].mapped);
	r->bar = f->vdev->pci.bars[4].addr;

	/* Driver side of initialisation (virtio 1.2 3.1.1). */
	mmio_w(r, CC_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
	mmio_w(r, CC_DFSEL, 0, 4);
	df = mmio_r(r, CC_DF, 4);
	mmio_w(r, CC_DFSEL, 1, 4);
	df |= mmio_r(r, CC_DF, 4) << 32;
	assert_true(df & F(VIRTIO_F_VERSION_1));
	assert_true(df & F(VIRTIO_NET_F_MAC));
	assert_true(df & F(VIRTIO_NET_F_MRG_RXBUF));
	mmio_w(r, CC_GFSEL, 0, 4);
	mmio_w(r, CC_GF, F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_MRG_RXBUF), 4);
	mmio_w(r, CC_GFSEL, 1, 4);
	mmio_w(r, CC_GF, 1, 4); /* VERSION_1 */
	mmio_w(r, CC_STATUS,
	       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
	       1);
	assert_true(mmio_r(r, CC_STATUS, 1) & VIRTIO_CONFIG_S_FEATURES_OK);
	for (q = 0; q < 2; q++) {
		mmio_w(r, CC_QSEL, q, 2);
		assert_int_equal(mmio_r(r, CC_QSIZE, 2), VIRTIO_NET_QUEUE_SIZE);
		mmio_w(r, CC_QSIZE, QSIZE, 2);
		mmio_w(r, CC_QDESC, ring_gpa[q][0], 8);
		mmio_w(r, CC_QAVAIL, ring_gpa[q][1], 8);
		mmio_w(r, CC_QUSED, ring_gpa[q][2], 8);
		mmio_w(r, CC_QEN, 1, 2);
	}
	mmio_w(r, CC_STATUS,
	       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
		   VIRTIO_CONFIG_S_DRIVER_OK,
	       1);
	for (q = 0; q < 6; q++)
		assert_int_equal(mmio_r(r, DEV_CFG + q, 1), test_mac[q]);
	assert_int_equal(mmio_r(r, DEV_CFG + 6, 2), VIRTIO_NET_S_LINK_UP);

	/* Transmit through a notify write. */
	make_frame(frame, sizeof(frame), 2);
	post_tx(f, &hdr, frame, sizeof(frame), whole, 1);
	mmio_w(r, NOTIFY + 4 * VIRTIO_NET_TXQ, VIRTIO_NET_TXQ, 2);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 100);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	assert_int_equal(used_idx(f, 1), 1);

	/* Receive: a frame waits until buffers come with a notify. */
	memcpy(pkt + HDR, frame, sizeof(frame));
	assert_int_equal(send(f->peer, pkt, sizeof(pkt), 0), sizeof(pkt));
	virtio_net_rx(f->n);
	assert_false(virtio_net_rx_polling(f->n));
	post(f, 0, one, 1, NULL);
	mmio_w(r, NOTIFY + 4 * VIRTIO_NET_RXQ, VIRTIO_NET_RXQ, 2);
	assert_int_equal(used_idx(f, 0), 1);

	/* The saved state carries the transport: queues and status come back after a reset. */
	static uint8_t tree[65536];
	assert_int_equal(state_tree_begin(tree, sizeof(tree)), 0);
	assert_int_equal(fdt_begin_node(tree, "net0"), 0);
	assert_int_equal(virtio_net_save(f->n, tree), 0);
	assert_int_equal(fdt_end_node(tree), 0);
	assert_int_equal(state_tree_end(tree), 0);

	/* Reset by the driver: nothing moves until it starts again. */
	mmio_w(r, CC_STATUS, 0, 1);
	assert_int_equal(mmio_r(r, CC_STATUS, 1), 0);
	post_tx(f, &hdr, frame, sizeof(frame), whole, 1);
	mmio_w(r, NOTIFY + 4 * VIRTIO_NET_TXQ, VIRTIO_NET_TXQ, 2);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);

	/* Loading the saved state brings back DRIVER_OK and both queues: the chain goes out. */
	assert_int_equal(virtio_net_load(f->n, tree, state_find_node(tree, 0, "net0")), 0);
	assert_true(mmio_r(r, CC_STATUS, 1) & VIRTIO_CONFIG_S_DRIVER_OK);
	mmio_w(r, CC_QSEL, VIRTIO_NET_TXQ, 2);
	assert_int_equal(mmio_r(r, CC_QEN, 2), 1);
	assert_int_equal(mmio_r(r, CC_QDESC, 8), ring_gpa[VIRTIO_NET_TXQ][0]);
	mmio_w(r, NOTIFY + 4 * VIRTIO_NET_TXQ, VIRTIO_NET_TXQ, 2);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 100);
	assert_memory_equal(got + HDR, frame, sizeof(frame));

	virtio_net_destroy(f->n);
	f->n = NULL;
	pci_host_destroy(&r->host);
	bus_destroy(&r->pio);
	bus_destroy(&r->mmio);
	free(r);
}

/* ---- a real tap (root) ---- */

static int packet_socket(const char *ifname)
{
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	assert_true(s >= 0);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

/* An IPv4/TCP frame of len bytes (len >= 54) from test_mac, IP id 0x1234, checksummed headers. */
static void make_tcp_frame(uint8_t *p, size_t len)
{
	uint32_t sum = 0;
	size_t i;

	memset(p, 0, len);
	memset(p, 0x02, 6);
	memcpy(p + 6, test_mac, 6);
	p[12] = 0x08;
	p[14] = 0x45;
	p[16] = (uint8_t)((len - 14) >> 8);
	p[17] = (uint8_t)(len - 14);
	p[18] = 0x12, p[19] = 0x34;
	p[20] = 0x40;	       /* DF */
	p[22] = 64, p[23] = 6; /* TTL, TCP */
	memcpy(p + 26, "\x0a\x00\x00\x02\x0a\x00\x00\x01", 8);
	for (i = 14; i < 34; i += 2)
		sum += p[i] << 8 | p[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	p[24] = (uint8_t)(~sum >> 8), p[25] = (uint8_t)~sum;
	p[34] = 0x04, p[35] = 0xd2; /* ports 1234 -> 5678 */
	p[36] = 0x16, p[37] = 0x2e;
	p[46] = 0x50, p[47] = 0x18; /* 20-byte header, ACK|PSH */
	p[48] = 0xff, p[49] = 0xff;
	for (i = 54; i < len; i++)
		p[i] = (uint8_t)i;
}

/* Wait on s for a frame from test_mac with ethertype `type` (and IP id 0x1234 for IPv4). */
static ssize_t recv_frame(int s, uint8_t *buf, size_t len, uint16_t type)
{
	struct pollfd p = {.fd = s, .events = POLLIN};
	ssize_t r;

	while (poll(&p, 1, 2000) == 1) {
		r = recv(s, buf, len, MSG_DONTWAIT);
		if (r < 20 || memcmp(buf + 6, test_mac, 6) || (buf[12] << 8 | buf[13]) != type)
			continue;
		if (type != 0x0800 || (buf[18] == 0x12 && buf[19] == 0x34))
			return r;
	}
	return -1;
}

static void test_real_tap(void **state)
{
	struct fixture *f = *state;
	struct bus pio, mmio;
	struct pci_host host;
	struct virtio_env env = {.mem = &f->mem, .pci = &host, .loop = &f->loop, .vm_fd = -1};
	struct net_option opt = {0};
	/* With guest TSO negotiated, mergeable buffers must hold 64 KiB before a read. */
	const struct seg one[] = {{9000, true}};
	struct virtio_net_hdr_v1 hdr = {0};
	struct virtio_net_hdr_v1 tso = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					.gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
					.hdr_len = 54,
					.gso_size = 1448,
					.csum_start = 34,
					.csum_offset = 16};
	uint8_t frame[3000], got[9000], mac[6], mac2[6];
	const uint32_t whole[] = {HDR + 200}, big[] = {HDR + 54, 1000, 1946};
	struct virtio_net_stats st;
	char path[96];
	int ps, tries;
	uint32_t id, len;
	unsigned i;
	bool found = false;
	FILE *quiet;

	if (access("/dev/net/tun", F_OK)) {
		print_error("test_real_tap needs /dev/net/tun (modprobe tun)\n");
		fail();
	}
	if (geteuid()) {
		print_message("test_real_tap: skipped, needs root to create a tap\n");
		skip();
	}
	assert_int_equal(bus_init(&pio, "pio"), 0);
	assert_int_equal(bus_init(&mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&host, &pio, &mmio), 0);
	virtio_net_destroy(f->n);
	close(f->peer);
	f->peer = -1;
	snprintf(opt.tap, sizeof(opt.tap), "vmmnt%d", (int)getpid() % 100000);

	/* Created, brought up, on PCI; the generated MAC is stable for the same tap and index. */
	assert_int_equal(virtio_net_create(&f->n, &env, &opt, 3), 0);
	virtio_net_get_mac(f->n, mac);
	virtio_net_destroy(f->n);
	assert_int_equal(virtio_net_create(&f->n, &env, &opt, 3), 0);
	virtio_net_get_mac(f->n, mac2);
	assert_memory_equal(mac, mac2, 6);
	assert_memory_equal(mac, "\x52\x54\x00", 3);
	virtio_net_destroy(f->n);
	opt.mac_set = true;
	memcpy(opt.mac, test_mac, 6);
	assert_int_equal(virtio_net_create(&f->n, &env, &opt, 3), 0);
	f->vdev = virtio_net_vdev(f->n);
	virtio_net_get_mac(f->n, mac);
	assert_memory_equal(mac, test_mac, 6);
	assert_true(f->vdev->info.features & F(VIRTIO_NET_F_GUEST_TSO4));
	assert_true(f->vdev->info.features & F(VIRTIO_NET_F_HOST_TSO4));
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", opt.tap);
	quiet = fopen(path, "w");
	if (quiet) {
		fputs("1", quiet);
		fclose(quiet);
	}
	ps = packet_socket(opt.tap);
	/* The transport's part of DRIVER_OK, by hand. */
	f->vdev->t.status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	start(f, f->vdev->info.features | F(VIRTIO_F_VERSION_1), false);

	/* Guest to host: the frame appears on the interface. */
	make_frame(frame, 200, 11);
	post_tx(f, &hdr, frame, 200, whole, 1);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	assert_int_equal(recv_frame(ps, got, sizeof(got), 0x88b5), 200);
	assert_memory_equal(got, frame, 200);

	/* A TSO frame with a partial checksum: the kernel takes the header as is. */
	make_tcp_frame(frame, sizeof(frame));
	post_tx(f, &tso, frame, sizeof(frame), big, 3);
	f->vdev->ops->queue_notify(f->vdev, VIRTIO_NET_TXQ);
	virtio_net_get_stats(f->n, &st);
	assert_int_equal(st.tx_dropped, 0);
	assert_int_equal(st.tx_errors, 0);
	assert_int_equal(st.tx_packets, 2);
	assert_true(recv_frame(ps, got, sizeof(got), 0x0800) >= 54);
	assert_memory_equal(got + 34, frame + 34, 4); /* the TCP ports */

	/* Host to guest: a frame sent on the interface lands in a guest buffer. */
	for (i = 0; i < 8; i++)
		post(f, 0, one, 1, NULL);
	make_frame(frame, 200, 12);
	memcpy(frame + 6, "\x02\x00\x00\x00\x00\x01", 6);
	assert_int_equal(send(ps, frame, 200, 0), 200);
	/* Chatter (IPv6 router solicitations) may come first: look at every used buffer. */
	for (tries = 0; tries < 20 && !found; tries++) {
		struct pollfd p = {.fd = f->loop.epfd, .events = POLLIN};

		poll(&p, 1, 100);
		virtio_net_rx(f->n);
		for (i = 0; i < used_idx(f, 0) && !found; i++) {
			used_elem(f, 0, i, &id, &len);
			assert_true(id < QSIZE);
			guest_mem_read(&f->mem, f->buf_of_head[0][id], got, len);
			found = len == HDR + 200 && !memcmp(got + HDR, frame, 200);
		}
	}
	assert_true(found);

	/* The announcement leaves through the tap. */
	assert_int_equal(virtio_net_announce(f->n), 0);
	assert_int_equal(recv_frame(ps, got, sizeof(got), 0x8035), 60);
	close(ps);
	virtio_net_destroy(f->n);
	f->n = NULL;
	pci_host_destroy(&host);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_features_follow_tap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tx_single, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tx_many_per_notify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tx_strips_header_without_vnet_hdr, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_tx_bad_chains_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tx_gso_when_negotiated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tx_malformed_ring_stops, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tx_ignored_before_activate_and_after_reset, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_rx_one_buffer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_mergeable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_mergeable_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_no_buffers_stops_polling, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_mergeable_waits_for_room, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_too_big_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_without_vnet_hdr, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_waits_for_activate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_hostile_chains, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_drops_offloads_and_features, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_announce, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_rejects_bad_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_through_transport, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_real_tap, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
