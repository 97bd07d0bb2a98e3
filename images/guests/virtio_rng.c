// SPDX-License-Identifier: MIT
/*
 * virtio_rng: drives a virtio-rng device from ring 3 with the kit's polling
 * driver.  Reads `bytes=` (default 4096) of entropy in requests of up to
 * 1 KiB, some as two-buffer chains, several in flight at once; checks every
 * request came back and the bytes are neither all zero nor all equal nor
 * one block repeated.  Prints `virtio_rng: ok bytes=<n>` (status 0), or
 * `virtio_rng: FAIL <reason>` (status 1), e.g. when there is no device.
 */
#include "kit.h"

#define REQ	  1024
#define INFLIGHT  4
#define MAX_BYTES (1 << 20)

static int check(const uint8_t *p, uint64_t n)
{
	uint64_t i, zeros = 0, same = 0;

	for (i = 0; i < n; i++) {
		zeros += p[i] == 0;
		same += p[i] == p[0];
	}
	if (zeros == n) {
		printf("virtio_rng: FAIL all %lu bytes are zero\n", n);
		return -1;
	}
	if (same == n) {
		printf("virtio_rng: FAIL all %lu bytes are 0x%02x\n", n, p[0]);
		return -1;
	}
	if (n >= 2 * REQ && !memcmp(p, p + REQ, REQ)) {
		printf("virtio_rng: FAIL the first two blocks are identical\n");
		return -1;
	}
	return 0;
}

int main(const char *cmdline)
{
	struct virtio_device dev;
	struct virtio_buf bufs[2];
	uint64_t want = cmdline_get_u64("bytes", 4096), got = 0, asked;
	uint8_t *out, *slots;
	uint32_t len;
	int head, inflight, rounds = 0;
	int slot_of[VIRTIO_KIT_QUEUE_MAX];

	(void)cmdline;
	if (want == 0 || want > MAX_BYTES) {
		printf("virtio_rng: FAIL bytes= must be 1..%u\n", MAX_BYTES);
		return KIT_EXIT_USAGE;
	}
	if (virtio_find(VIRTIO_ID_RNG, &dev)) {
		printf("virtio_rng: FAIL no virtio-rng device (%s)\n", virtio_error());
		return KIT_EXIT_FAIL;
	}
	printf("virtio_rng: device at 00:%02x.0\n", dev.slot);
	if (virtio_init(&dev, 0) || virtio_queue_setup(&dev, 0, 16) || virtio_driver_ok(&dev)) {
		printf("virtio_rng: FAIL set-up: %s (status 0x%x)\n", virtio_error(),
		       virtio_status(&dev));
		return KIT_EXIT_FAIL;
	}
	out = virtio_alloc(want, PAGE_SIZE);
	slots = virtio_alloc(INFLIGHT * REQ, PAGE_SIZE);
	if (!out || !slots) {
		printf("virtio_rng: FAIL no free RAM for %lu bytes\n", want);
		return KIT_EXIT_USAGE;
	}
	/* The device may return fewer bytes than asked; keep asking until we have enough. */
	while (got < want) {
		if (++rounds > 1000) {
			printf("virtio_rng: FAIL only %lu of %lu bytes after %d rounds\n", got,
			       want, rounds - 1);
			return KIT_EXIT_FAIL;
		}
		inflight = 0;
		asked = 0;
		for (int s = 0; s < INFLIGHT && got + asked < want; s++) {
			uint32_t n =
			    want - got - asked < REQ ? (uint32_t)(want - got - asked) : REQ;
			uint8_t *slot = slots + s * REQ;
			unsigned nb = 1;

			bufs[0] = (struct virtio_buf){slot, n};
			/* Every other request as a chain of two writable buffers. */
			if ((s & 1) && n >= 2) {
				bufs[0].len = n / 2;
				bufs[1] = (struct virtio_buf){slot + n / 2, n - n / 2};
				nb = 2;
			}
			memset(slot, 0, REQ);
			head = virtio_submit(&dev, 0, bufs, 0, nb);
			if (head < 0) {
				printf("virtio_rng: FAIL submit: %s\n", virtio_error());
				return KIT_EXIT_FAIL;
			}
			slot_of[head] = s;
			asked += n;
			inflight++;
		}
		while (inflight--) {
			head = virtio_wait_used(&dev, 0, &len);
			if (head < 0) {
				printf("virtio_rng: FAIL %s (status 0x%x)\n", virtio_error(),
				       virtio_status(&dev));
				return KIT_EXIT_FAIL;
			}
			if (len > REQ || got + len > want) {
				printf("virtio_rng: FAIL device wrote %u bytes into a smaller "
				       "request\n",
				       len);
				return KIT_EXIT_FAIL;
			}
			memcpy(out + got, slots + slot_of[head] * REQ, len);
			got += len;
		}
	}
	if (check(out, got))
		return KIT_EXIT_FAIL;
	printf("virtio_rng: ok bytes=%lu\n", got);
	return KIT_EXIT_OK;
}
