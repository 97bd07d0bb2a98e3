// SPDX-License-Identifier: MIT
/*
 * counter: "counter: N" for N = 0, 1, 2, ... every interval_ms (default 10),
 * forever or until count= lines.  Migration and failover tests check the
 * sequence for gaps and repeats, so a number is never skipped: a stall
 * longer than an interval delays the next line instead.
 *
 * net=1 also sends each number as an Ethernet broadcast on the first
 * virtio-net device (EtherType 0x88b5, IEEE local experimental): 8 bytes
 * "counter:", N as 8 bytes big-endian, padded to the 46-byte minimum.  So
 * a client on the network sees the same sequence, through the same output
 * commit as the console.  Each frame is complete (used) before the next.
 */
#include "kit.h"

#define NET_F_MAC 5
#define RXQ	  0
#define TXQ	  1
#define HDR_LEN	  12 /* struct virtio_net_hdr_v1, all zero: no offloads */
#define FRAME_LEN (14 + 46)
#define ETHERTYPE 0x88b5

struct net_sender {
	struct virtio_device dev;
	uint8_t mac[6];
	uint8_t *buf; /* header + frame */
};

static int net_open(struct net_sender *s)
{
	volatile uint8_t *cfg;

	if (virtio_find(VIRTIO_ID_NET, &s->dev) || virtio_init(&s->dev, 1ULL << NET_F_MAC) ||
	    virtio_queue_setup(&s->dev, RXQ, 0) || virtio_queue_setup(&s->dev, TXQ, 0) ||
	    virtio_driver_ok(&s->dev))
		return -1;
	cfg = virtio_device_cfg(&s->dev);
	s->buf = virtio_alloc(HDR_LEN + FRAME_LEN, 64);
	if (!cfg || !s->buf)
		return -1;
	for (int i = 0; i < 6; i++)
		s->mac[i] = cfg[i];
	return 0;
}

static int net_send(struct net_sender *s, uint64_t n)
{
	uint8_t *f = s->buf + HDR_LEN;
	struct virtio_buf b = {s->buf, HDR_LEN + FRAME_LEN};
	uint32_t len;

	memset(s->buf, 0, HDR_LEN + FRAME_LEN);
	memset(f, 0xff, 6);
	memcpy(f + 6, s->mac, 6);
	f[12] = ETHERTYPE >> 8;
	f[13] = ETHERTYPE & 0xff;
	memcpy(f + 14, "counter:", 8);
	for (int i = 0; i < 8; i++)
		f[22 + i] = (uint8_t)(n >> (56 - 8 * i));
	if (virtio_submit(&s->dev, TXQ, &b, 1, 0) < 0)
		return -1;
	return virtio_wait_used(&s->dev, TXQ, &len) < 0 ? -1 : 0;
}

int main(const char *cmdline)
{
	uint64_t interval_ms = cmdline_get_u64("interval_ms", 10);
	uint64_t count = cmdline_get_u64("count", 0);
	bool net = cmdline_get_u64("net", 0) != 0;
	struct net_sender sender;
	struct tsc_period period;
	uint64_t n;

	(void)cmdline;
	if (net && net_open(&sender)) {
		printf("counter: FAIL no usable virtio-net device: %s\n", virtio_error());
		return KIT_EXIT_FAIL;
	}
	printf("counter: start interval_ms=%lu count=%lu tsc_khz=%lu (%s)%s\n", interval_ms, count,
	       tsc_khz(), tsc_khz_source(), net ? " net" : "");
	tsc_period_start(&period, interval_ms * tsc_khz());
	for (n = 0; !count || n < count; n++) {
		printf("counter: %lu\n", n);
		if (net && net_send(&sender, n)) {
			printf("counter: FAIL frame %lu: %s\n", n, virtio_error());
			return KIT_EXIT_FAIL;
		}
		if (!count || n + 1 < count)
			tsc_period_wait(&period);
	}
	return KIT_EXIT_OK;
}
