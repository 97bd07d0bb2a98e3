// SPDX-License-Identifier: MIT
/*
 * virtio_rng: drives a virtio-rng device from ring 3 with the kit's polling
 * driver.  Reads `bytes=` (default 4096) of entropy in requests of up to
 * 1 KiB, some as two-buffer chains, several in flight at once; checks every
 * request came back and the bytes are neither all zero nor all equal nor
 * one block repeated.  Prints `virtio_rng: ok bytes=<n>` (status 0), or
 * `virtio_rng: FAIL <reason>` (status 1), e.g. when there is no device.
 *
 * move_bar=1 first moves the BAR holding the virtio structures by 1 MiB
 * and checks that a doorbell at the old address does nothing (a stale
 * ioeventfd would still fire there) while the new one works:
 * `virtio_rng: BAR<n> moved 0x<old> -> 0x<new>, old doorbell dead`.
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

/* The BAR the notify structure lives in (the VMM keeps all four structures in one). */
static int notify_bar(unsigned slot)
{
	for (unsigned pos = pci_next_cap(slot, PCI_CAP_ID_VENDOR, 0); pos;
	     pos = pci_next_cap(slot, PCI_CAP_ID_VENDOR, pos))
		if (pci_read8(slot, pos + 3) == 2)
			return pci_read8(slot, pos + 4);
	return -1;
}

/* Move the BAR, set the device up, and ring the old and new doorbells. */
static int move_bar(struct virtio_device *dev)
{
	int bar = notify_bar(dev->slot);
	uint64_t from, to, deadline;
	volatile uint16_t *old_bell;
	uint8_t *buf = virtio_alloc(64, 64);
	struct virtio_buf b = {buf, 64};
	uint32_t len;

	if (bar < 0 || !buf) {
		printf("virtio_rng: FAIL no notify BAR or no RAM\n");
		return -1;
	}
	from = pci_bar_addr(dev->slot, (unsigned)bar);
	to = from + (1 << 20);
	/* The low dword holds the whole address (below 4 GiB); flag bits are read-only. */
	pci_write32(dev->slot, 0x10 + 4 * (unsigned)bar, (uint32_t)to);
	if (pci_bar_addr(dev->slot, (unsigned)bar) != to) {
		printf("virtio_rng: FAIL BAR%d did not move to 0x%lx\n", bar, to);
		return -1;
	}
	old_bell = (volatile uint16_t *)(uintptr_t)((uintptr_t)dev->notify);
	if (virtio_find(VIRTIO_ID_RNG, dev) || virtio_init(dev, 0) ||
	    virtio_queue_setup(dev, 0, 16) || virtio_driver_ok(dev)) {
		printf("virtio_rng: FAIL set-up after the move: %s\n", virtio_error());
		return -1;
	}
	old_bell = (volatile uint16_t *)((volatile uint8_t *)old_bell +
					 ((volatile uint8_t *)dev->q[0].notify - dev->notify));
	if (virtio_publish(dev, 0, &b, 0, 1) < 0)
		return -1;
	*old_bell = 0;
	deadline = rdtsc() + 100 * tsc_khz();
	while (rdtsc() < deadline)
		if (virtio_poll_used(dev, 0, &len) >= 0) {
			printf("virtio_rng: FAIL the old doorbell at %p still works\n",
			       (void *)old_bell);
			return -1;
		}
	virtio_notify(dev, 0);
	if (virtio_wait_used(dev, 0, &len) < 0 || len != 64) {
		printf("virtio_rng: FAIL the new doorbell: %s\n", virtio_error());
		return -1;
	}
	printf("virtio_rng: BAR%d moved 0x%lx -> 0x%lx, old doorbell dead\n", bar, from, to);
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
	if (cmdline_get_u64("move_bar", 0) && move_bar(&dev))
		return KIT_EXIT_FAIL;
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
