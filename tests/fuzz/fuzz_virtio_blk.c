// SPDX-License-Identifier: MIT
/*
 * Fuzz virtio-blk against a hostile driver: the input chooses the ring
 * features, the queue size and how many chains are published, and becomes
 * the guest's rings, descriptors, request headers, discard segments and
 * data.  The disk is a 64 KiB memfd, read-write or read-only.  The device
 * must never touch memory outside guest RAM, hang or crash, and never
 * complete more chains than it took.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio_blk.h"

#define MEM	 (1ULL << 20)
#define IMAGE	 0x10000ULL /* the input covers the first 64 KiB of RAM */
#define DISK	 0x10000
#define HEADER	 8
#define DESC	 0x000ULL
#define AVAIL	 0x100ULL
#define USED	 0x200ULL
#define QMAX_LOG 4 /* up to 16 entries keep the rings below 0x300 */

/* header[0] bits */
#define H_INDIRECT 1
#define H_EVENT	   2
#define H_RO	   4
#define H_RAW	   8 /* leave descriptor addresses and lengths as they are */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtio_blk *make_disk(struct guest_mem *mem, bool ro, int *memfd)
{
	struct virtio_env env = {.mem = mem, .vm_fd = -1};
	struct blk_backend *be;
	struct virtio_blk *b;
	char path[64];

	*memfd = memfd_create(ro ? "fuzz-disk-ro" : "fuzz-disk", MFD_CLOEXEC);
	if (*memfd < 0 || ftruncate(*memfd, DISK))
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", *memfd);
	if (blk_backend_open_file(&be, path, ro) ||
	    virtio_blk_create_backend(&b, &env, be, "fuzz", ro))
		abort();
	return b;
}

/* Most inputs get addresses in or near RAM and modest lengths, so chains get walked. */
static void tame_descriptors(uint8_t *ram, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *d = ram + DESC + 16 * i;
		uint64_t addr;
		uint32_t len;

		memcpy(&addr, d, 8);
		memcpy(&len, d + 8, 4);
		addr %= MEM + 0x1000;
		len %= 0x4000;
		memcpy(d, &addr, 8);
		memcpy(d + 8, &len, 4);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static struct virtio_blk *disks[2];
	static int memfds[2];
	uint8_t h[HEADER];
	struct virtio_blk *b;
	struct virtio_dev *vdev;
	struct virtq *vq;
	uint16_t nr;

	if (!disks[0]) {
		if (guest_mem_init(&mem, MEM))
			abort();
		disks[0] = make_disk(&mem, false, &memfds[0]);
		disks[1] = make_disk(&mem, true, &memfds[1]);
	}
	if (size < HEADER)
		return 0;
	memcpy(h, data, HEADER);
	data += HEADER;
	size -= HEADER;
	b = disks[!!(h[0] & H_RO)];
	vdev = virtio_blk_vdev(b);
	vq = virtio_queue(vdev, 0);

	/* What a transport does on reset; then a fresh disk and a fresh guest. */
	vdev->ops->reset(vdev);
	virtq_reset(vq);
	vdev->t.status = 0;
	if (ftruncate(memfds[0], 0) || ftruncate(memfds[0], DISK))
		abort();
	memset(mem.host_base, 0, IMAGE);
	memcpy(mem.host_base, data, size < IMAGE ? size : IMAGE);

	vq->size = (uint16_t)(1u << (h[1] % (QMAX_LOG + 1)));
	vq->desc_gpa = DESC;
	vq->avail_gpa = AVAIL;
	vq->used_gpa = USED;
	vq->indirect = h[0] & H_INDIRECT;
	vq->event_idx = h[0] & H_EVENT;
	if (virtq_enable(vq, &mem))
		abort();
	if (!(h[0] & H_RAW))
		tame_descriptors(mem.host_base, vq->size);
	/* How many chains the driver published (at most a ring's worth plus some junk). */
	nr = (uint16_t)(h[2] | h[3] << 8);
	memcpy(mem.host_base + AVAIL + 2, &nr, 2);
	vdev->t.status = VIRTIO_CONFIG_S_DRIVER_OK;
	if (vdev->ops->activate(vdev))
		abort();
	vdev->ops->queue_notify(vdev, 0);
	virtio_blk_drain(b);

	/*
	 * Every completion is for a chain it took (the guest's copy of the used
	 * ring may have been overwritten by reads, so look at the device's).
	 */
	if ((uint16_t)(vq->last_avail_idx - vq->used_idx) > vq->size)
		abort();
	return 0;
}
