/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.2 section 5.2) on a raw image: one request queue of
 * VIRTIO_BLK_QUEUE_SIZE entries.  Offered: SEG_MAX, BLK_SIZE (512), FLUSH,
 * and DISCARD + WRITE_ZEROES for writable disks or RO for read-only ones.
 *
 * Requests: IN, OUT, FLUSH (fdatasync), GET_ID (the serial, 20 bytes
 * NUL-padded), DISCARD (punch a hole), WRITE_ZEROES (punch a hole with
 * UNMAP, else zero the range); any other type is VIRTIO_BLK_S_UNSUPP.
 * Every request is checked: a 16-byte header in the readable part, the
 * status byte as the last byte of the writable part, data lengths
 * multiples of 512, sector ranges within capacity (without overflow).  A
 * bad request completes with VIRTIO_BLK_S_IOERR; a chain without any
 * writable byte (nowhere to put a status) or a malformed ring marks the
 * device NEEDS_RESET and stops the queue until reset.  A read-only disk
 * answers OUT, DISCARD and WRITE_ZEROES with IOERR.
 *
 * The used length is the number of bytes written: the data read (IN) or
 * the ID (GET_ID), plus 1 for the status byte.  Guest RAM written by reads
 * is dirty-marked.
 *
 * Threads: queue_notify (event-loop thread) only wakes the device's
 * VIRTIO_BLK_WORKERS worker threads; each pops a chain, does the I/O with
 * preadv/pwritev straight on the checked guest buffers and completes it.
 * Completions all go through one function (blk_complete in virtio_blk.c),
 * the hook replication will route through the epoch's output buffer.
 * Reset and quiesce wait for in-flight requests: once they return, the
 * device writes nothing into guest RAM.
 */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <linux/virtio_blk.h>
#include <stdint.h>

#include "blk_backend.h"
#include "options.h"
#include "virtio.h"

#define VIRTIO_BLK_QUEUE_SIZE	   256
#define VIRTIO_BLK_SEG_MAX	   (VIRTIO_BLK_QUEUE_SIZE - 2) /* data buffers, even without indirect */
#define VIRTIO_BLK_WORKERS	   2
#define VIRTIO_BLK_MAX_DWZ_SECTORS (1u << 20) /* per discard/write-zeroes segment: 512 MiB */
#define VIRTIO_BLK_MAX_DWZ_SEG	   16
#define VIRTIO_BLK_DISCARD_ALIGN   8  /* sectors: 4 KiB, the granularity hole punching works in */
#define VIRTIO_BLK_CONFIG_SIZE	   60 /* through write_zeroes_may_unmap and padding */

struct virtio_blk;

struct virtio_blk_stats {
	uint64_t reads, writes, flushes, discards, write_zeroes, get_ids;
	uint64_t read_bytes, write_bytes;
	uint64_t errors;      /* completed with IOERR */
	uint64_t unsupported; /* completed with UNSUPP */
};

/*
 * Open opt->path (read-only if opt->readonly), build "virtio-blk<index>"
 * with serial opt->serial (or "vmm-disk<index>" if empty) and put it on
 * env->pci at the next free slot.  0 or -errno; a missing, unreadable or
 * odd-sized image gets a clear message (pr_err).
 */
int virtio_blk_create(struct virtio_blk **out, const struct virtio_env *env,
		      const struct disk_option *opt, unsigned index);

/*
 * The device model on any backend (tests, fuzzing).  Takes ownership of be
 * (closed on failure too).  No PCI yet: vdev's info, ops, opaque and env
 * are filled as virtio_pci_init() would, so the ops can be driven directly.
 * 0 or -errno.
 */
int virtio_blk_create_backend(struct virtio_blk **out, const struct virtio_env *env,
			      struct blk_backend *be, const char *serial, unsigned index);

/* Give a device from virtio_blk_create_backend its PCI function (slot -1: next free). */
int virtio_blk_attach_pci(struct virtio_blk *blk, int slot);

/* Wait for in-flight requests, stop the workers, release the transport and the backend. */
void virtio_blk_destroy(struct virtio_blk *blk);

struct virtio_dev *virtio_blk_vdev(struct virtio_blk *blk);
void virtio_blk_get_stats(struct virtio_blk *blk, struct virtio_blk_stats *stats);

/*
 * Stop taking requests and wait until none is in flight (the VM is paused
 * for a snapshot or an epoch).  Chains still in the ring stay there: they
 * are guest state and are served after virtio_blk_resume() or on the
 * loading side.  Any thread but the device's own workers.
 */
void virtio_blk_quiesce(struct virtio_blk *blk);
void virtio_blk_resume(struct virtio_blk *blk);

/*
 * Wait until the device is idle: nothing in flight and the ring found
 * empty (or the device inactive, broken or quiesced).  For tests and the
 * fuzzer, which notify and then look at the used ring.
 */
void virtio_blk_drain(struct virtio_blk *blk);

/*
 * Save: the transport (if on PCI) and the device (capacity, read-only,
 * serial, active, broken) as properties of the open node.  Requests in
 * flight cannot be saved: quiesce first; -EBUSY otherwise.
 * Load: validates everything; the disk must be the same shape (capacity,
 * read-only, serial) or -EINVAL.  It waits for requests in flight (none on
 * a paused VM) and keeps the device quiesced or not as it was; unless
 * quiesced, chains the driver posted are then served without a new
 * notification.
 */
int virtio_blk_save(struct virtio_blk *blk, void *fdt);
int virtio_blk_load(struct virtio_blk *blk, const void *fdt, int node);

#endif
