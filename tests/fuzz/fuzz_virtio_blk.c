// SPDX-License-Identifier: MIT
/*
 * Fuzz virtio-blk against a hostile driver: the input chooses the ring
 * features, the queue size and how many chains are published, and becomes
 * the guest's rings, descriptors, request headers, discard segments and
 * data.  The disk is a 64 KiB memfd, read-write or read-only.  The device
 * must never touch memory outside guest RAM, hang or crash, and never
 * complete more chains than it took.
 *
 * With H_HOLD the replication paths run too: a journal that reads every
 * byte it is given, held completions under input-chosen epochs, a save and
 * load of the held list, partial and full releases; then one journal-like
 * entry from the input applied with virtio_blk_replica_apply, which must
 * never grow the image.
 */
#include <fcntl.h>
#include <libfdt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"
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
#define H_RAW	   8  /* leave descriptor addresses and lengths as they are */
#define H_HOLD	   16 /* journal + held completions; h[4]: epoch split; h[5..7]: replica entry */

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

/* Every byte the journal is given is read (ASan checks them); the lengths must add up. */
static void fuzz_journal(void *opaque, unsigned disk, uint32_t type, uint64_t offset, uint64_t len,
			 const struct iovec *iov, int iovcnt)
{
	volatile uint8_t sum = 0;
	uint64_t total = 0;

	(void)opaque, (void)disk;
	if (!len || offset % 512 || len % 512 || offset > DISK || len > DISK - offset)
		abort();
	if (type != VIRTIO_BLK_T_OUT) {
		if (iov || iovcnt)
			abort();
		return;
	}
	for (int i = 0; i < iovcnt; i++) {
		for (size_t j = 0; j < iov[i].iov_len; j++)
			sum += ((const uint8_t *)iov[i].iov_base)[j];
		total += iov[i].iov_len;
	}
	if (total != len)
		abort();
}

static const struct virtio_blk_journal_ops fuzz_journal_ops = {.journal = fuzz_journal};

/* Save the held list and load it back: it must survive unchanged in number. */
static void round_trip(struct virtio_blk *b)
{
	static uint8_t fdt[1 << 16];
	unsigned before = virtio_blk_held_count(b);
	int node;

	if (state_tree_begin(fdt, sizeof(fdt)) || fdt_begin_node(fdt, "blk") ||
	    virtio_blk_save(b, fdt) || fdt_end_node(fdt) || state_tree_end(fdt) ||
	    fdt_check_full(fdt, sizeof(fdt)))
		abort();
	node = state_find_node(fdt, 0, "blk");
	if (node < 0 || virtio_blk_load(b, fdt, node) || virtio_blk_held_count(b) != before)
		abort();
}

static void replica_entry(struct virtio_blk *b, int memfd, const uint8_t *h, const uint8_t *data)
{
	static const uint32_t types[] = {VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_DISCARD,
					 VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_FLUSH};
	uint64_t off = (uint64_t)(h[5] | (h[6] & 0x3f) << 8) * 8; /* up to 128 KiB, any 8 bytes */
	uint64_t len = (uint64_t)h[7] * 512 + (h[6] & 0x40 ? 1 : 0);
	struct stat st;

	if (len > IMAGE)
		len = IMAGE;
	virtio_blk_replica_apply(b, types[h[6] >> 6 & 3], off, data, len);
	if (fstat(memfd, &st) || st.st_size != DISK)
		abort();
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
	if (virtio_blk_held_count(b))
		abort(); /* reset drops held completions */
	virtio_blk_hold_completions(b, h[0] & H_HOLD);
	virtio_blk_set_journal(b, h[0] & H_HOLD ? &fuzz_journal_ops : NULL, NULL);
	virtio_blk_set_epoch(b, 1);
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
	if (h[0] & H_HOLD) {
		/* A second epoch half way (a wrong guess only moves the split). */
		virtio_blk_drain(b);
		virtio_blk_set_epoch(b, 2 + h[4]);
		vdev->ops->queue_notify(vdev, 0);
	}
	virtio_blk_drain(b);
	if (h[0] & H_HOLD) {
		if (virtio_blk_held_count(b) > VIRTIO_BLK_QUEUE_SIZE)
			abort();
		virtio_blk_quiesce(b);
		round_trip(b);
		virtio_blk_resume(b);
		virtio_blk_release_completions(b, 1 + h[4] % 4);
		virtio_blk_release_completions(b, UINT64_MAX);
		virtio_blk_drain(b);
		/* A release may have been the ring's last word (a malformed push): then none. */
		virtio_blk_release_completions(b, UINT64_MAX);
		if (virtio_blk_held_count(b))
			abort();
		replica_entry(b, memfds[!!(h[0] & H_RO)], h, mem.host_base);
	}

	/*
	 * Every completion is for a chain it took (the guest's copy of the used
	 * ring may have been overwritten by reads, so look at the device's).
	 */
	if ((uint16_t)(vq->last_avail_idx - vq->used_idx) > vq->size)
		abort();
	return 0;
}
