// SPDX-License-Identifier: MIT
/*
 * virtio_net: a ring-3 echo station on virtio-net (the kit's polling
 * driver, MAC feature only, no offloads).  It posts receive buffers and
 * answers every frame of EtherType 0x88b5 (IEEE local experimental) with
 * a frame to its sender whose payload is the received payload with every
 * byte inverted, so the host can tell the guest really read it.  Frames
 * that arrive together are answered together: all replies are published,
 * then one notification.  Other frames (IPv6 router solicitations the host
 * stack may send) are counted and ignored.
 *
 * frames=N (default 32) echoes, then `virtio_net: ok frames=<n> bytes=<n>
 * fnv=0x<16 hex> batches=<n> ignored=<n>` (FNV-1a 64 over the received
 * payloads) and status 0; `virtio_net: FAIL <reason>` and status 1.  The
 * first line is `virtio_net: mac=<mac> status=<link>`.  timeout_ms= bounds
 * the wait for each frame (default 20000).
 */
#include "kit.h"

#define NET_F_MAC    5
#define NET_F_STATUS 16
#define RXQ	     0
#define TXQ	     1
#define HDR_LEN	     12 /* struct virtio_net_hdr_v1 */
#define FRAME_MAX    1514
#define BUF_LEN	     (HDR_LEN + FRAME_MAX)
#define RX_BUFS	     32
#define TX_BUFS	     32
#define ETHERTYPE    0x88b5
#define ETH_HLEN     14

struct net_cfg {
	uint8_t mac[6];
	uint16_t status;
};

static uint8_t *rx_of[VIRTIO_KIT_QUEUE_MAX];
static uint8_t mac[6];
static uint64_t fnv = 0xcbf29ce484222325ULL, bytes, batches, ignored;

static int post_rx(struct virtio_device *dev, uint8_t *buf)
{
	struct virtio_buf b = {buf, BUF_LEN};
	int head = virtio_publish(dev, RXQ, &b, 0, 1);

	if (head < 0)
		return -1;
	rx_of[head] = buf;
	return 0;
}

/* Build the reply to frame (len bytes, header stripped) in out; returns its length or 0. */
static uint32_t make_reply(const uint8_t *frame, uint32_t len, uint8_t *out)
{
	if (len < ETH_HLEN || ((frame[12] << 8) | frame[13]) != ETHERTYPE) {
		ignored++;
		return 0;
	}
	memset(out, 0, HDR_LEN);
	memcpy(out + HDR_LEN, frame + 6, 6); /* to the sender */
	memcpy(out + HDR_LEN + 6, mac, 6);
	out[HDR_LEN + 12] = ETHERTYPE >> 8;
	out[HDR_LEN + 13] = ETHERTYPE & 0xff;
	for (uint32_t i = ETH_HLEN; i < len; i++) {
		fnv = (fnv ^ frame[i]) * 0x100000001b3ULL;
		out[HDR_LEN + i] = (uint8_t)~frame[i];
	}
	bytes += len - ETH_HLEN;
	return HDR_LEN + len;
}

int main(const char *cmdline)
{
	struct virtio_device dev;
	volatile struct net_cfg *cfg;
	uint64_t want = cmdline_get_u64("frames", 32), done = 0;
	uint64_t timeout_ms = cmdline_get_u64("timeout_ms", 20000);
	uint8_t *rx, *tx;
	uint32_t len;
	int head;

	(void)cmdline;
	if (virtio_find(VIRTIO_ID_NET, &dev)) {
		printf("virtio_net: FAIL no virtio-net device (%s)\n", virtio_error());
		return KIT_EXIT_FAIL;
	}
	if (virtio_init(&dev, 1ULL << NET_F_MAC | 1ULL << NET_F_STATUS) ||
	    virtio_queue_setup(&dev, RXQ, 0) || virtio_queue_setup(&dev, TXQ, 0) ||
	    virtio_driver_ok(&dev)) {
		printf("virtio_net: FAIL set-up: %s (status 0x%x)\n", virtio_error(),
		       virtio_status(&dev));
		return KIT_EXIT_FAIL;
	}
	cfg = virtio_device_cfg(&dev);
	if (!cfg || !(dev.features & (1ULL << NET_F_MAC))) {
		printf("virtio_net: FAIL no config or no MAC feature\n");
		return KIT_EXIT_FAIL;
	}
	for (int i = 0; i < 6; i++)
		mac[i] = cfg->mac[i];
	printf("virtio_net: mac=%02x:%02x:%02x:%02x:%02x:%02x status=%u\n", mac[0], mac[1], mac[2],
	       mac[3], mac[4], mac[5], cfg->status);
	rx = virtio_alloc(RX_BUFS * BUF_LEN, 64);
	tx = virtio_alloc(TX_BUFS * BUF_LEN, 64);
	if (!rx || !tx) {
		printf("virtio_net: FAIL no free RAM for buffers\n");
		return KIT_EXIT_FAIL;
	}
	for (int i = 0; i < RX_BUFS; i++)
		if (post_rx(&dev, rx + i * BUF_LEN))
			return KIT_EXIT_FAIL;
	virtio_notify(&dev, RXQ);
	while (done < want) {
		uint64_t deadline = rdtsc() + timeout_ms * tsc_khz();
		unsigned replies = 0;

		while ((head = virtio_poll_used(&dev, RXQ, &len)) < 0) {
			if (rdtsc() > deadline) {
				printf("virtio_net: FAIL only %lu of %lu frames in time\n", done,
				       want);
				return KIT_EXIT_FAIL;
			}
			cpu_relax();
		}
		/* Take everything that has arrived, answer it all with one notify. */
		do {
			uint8_t *buf = rx_of[head];

			if (len < HDR_LEN || len > BUF_LEN) {
				printf("virtio_net: FAIL used length %u\n", len);
				return KIT_EXIT_FAIL;
			}
			uint32_t n =
			    make_reply(buf + HDR_LEN, len - HDR_LEN, tx + replies * BUF_LEN);
			if (n) {
				struct virtio_buf b = {tx + replies * BUF_LEN, n};

				if (virtio_publish(&dev, TXQ, &b, 1, 0) < 0) {
					printf("virtio_net: FAIL transmit queue full\n");
					return KIT_EXIT_FAIL;
				}
				replies++;
				done++;
			}
			if (post_rx(&dev, buf))
				return KIT_EXIT_FAIL;
		} while (replies < TX_BUFS && done < want &&
			 (head = virtio_poll_used(&dev, RXQ, &len)) >= 0);
		virtio_notify(&dev, RXQ);
		if (!replies)
			continue;
		virtio_notify(&dev, TXQ);
		batches++;
		while (replies--)
			if (virtio_wait_used(&dev, TXQ, &len) < 0) {
				printf("virtio_net: FAIL transmit: %s\n", virtio_error());
				return KIT_EXIT_FAIL;
			}
	}
	printf("virtio_net: ok frames=%lu bytes=%lu fnv=0x%016lx batches=%lu ignored=%lu\n", done,
	       bytes, fnv, batches, ignored);
	return KIT_EXIT_OK;
}
