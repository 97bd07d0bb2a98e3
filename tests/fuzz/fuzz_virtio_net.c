// SPDX-License-Identifier: MIT
/*
 * Fuzz virtio-net against a hostile driver: the input chooses the
 * negotiated features and queue sizes and becomes the guest's rings,
 * descriptors, transmit headers and frames; then frames of input-chosen
 * sizes arrive on the "tap" (a socketpair) for the receive queue.  The
 * device must never touch memory outside guest RAM, loop forever or crash.
 */
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio_net.h"

#define MEM	 (1ULL << 20)
#define IMAGE	 0x40000ULL /* the input covers the first 256 KiB of RAM */
#define QMAX_LOG 4	    /* queues of up to 16 entries keep the rings in the first KiB */
#define HEADER	 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint64_t rings[2][3] = {
    {0x000, 0x100, 0x140}, /* receiveq0: desc, avail, used */
    {0x200, 0x300, 0x340}, /* transmitq0 */
};

static void drain(int fd)
{
	uint8_t buf[2048];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static struct virtio_net *n;
	static struct virtio_dev *vdev;
	static int dev_fd, peer;
	static uint8_t frame[9000];
	uint8_t h[HEADER];
	uint64_t features;
	unsigned q, i;

	if (!n) {
		struct virtio_env env = {.mem = &mem, .vm_fd = -1};
		struct tap_info tap = {.name = "fuzz",
				       .vnet_hdr = true,
				       .offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 |
						   TUN_F_TSO_ECN | TUN_F_UFO,
				       .mtu = 1500};
		static const uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, 1};
		int sv[2];

		if (guest_mem_init(&mem, MEM) ||
		    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv))
			abort();
		dev_fd = sv[0];
		peer = sv[1];
		if (virtio_net_create_fd(&n, &env, dev_fd, &tap, mac, 0))
			abort();
		vdev = virtio_net_vdev(n);
	}
	if (size < HEADER)
		return 0;
	memcpy(h, data, HEADER);
	data += HEADER;
	size -= HEADER;
	memset(mem.host_base, 0, IMAGE);
	memcpy(mem.host_base, data, size < IMAGE ? size : IMAGE);

	/* What a transport does on reset and then DRIVER_OK. */
	vdev->ops->reset(vdev);
	vdev->t.status = 0;
	memcpy(&features, h, 8);
	features = (features & vdev->info.features) | 1ULL << VIRTIO_F_VERSION_1;
	for (q = 0; q < 2; q++) {
		struct virtq *vq = &vdev->t.vqs[q];

		virtq_reset(vq);
		vq->size = (uint16_t)(1u << (h[8 + q] % (QMAX_LOG + 1)));
		vq->desc_gpa = rings[q][0];
		vq->avail_gpa = rings[q][1];
		vq->used_gpa = rings[q][2];
		vq->event_idx = h[10] & 1;
		vq->indirect = h[10] & 2;
		if (virtq_enable(vq, &mem))
			abort();
	}
	vdev->t.driver_features = features;
	if (vdev->ops->activate(vdev))
		return 0;

	vdev->ops->queue_notify(vdev, VIRTIO_NET_TXQ);
	drain(peer);

	/* Frames for the guest: up to 8, sizes from the header, a recognisable body. */
	for (i = 0; i < (h[11] & 7); i++) {
		size_t len =
		    12 + ((size_t)(h[12 + (i & 3)] * 37u + i * 101u) % (sizeof(frame) - 12));

		memset(frame, 0, 12);
		memset(frame + 12, 0xa5 ^ (int)i, len - 12);
		if (send(peer, frame, len, MSG_DONTWAIT) < 0)
			break;
	}
	virtio_net_rx(n);
	vdev->ops->queue_notify(vdev, VIRTIO_NET_RXQ);
	vdev->ops->queue_notify(vdev, VIRTIO_NET_TXQ);
	if (h[10] & 4)
		virtio_net_announce(n);
	drain(dev_fd);
	drain(peer);
	return 0;
}
