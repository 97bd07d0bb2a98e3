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
 * Completions all go through one function (blk_complete in virtio_blk.c).
 * Reset and quiesce wait for in-flight requests: once they return, the
 * device writes nothing into guest RAM (but see held completions below:
 * virtio_blk_release_completions() writes into guest RAM when called).
 *
 * Replication (all opt-in; with none of it enabled the device behaves as
 * described above):
 *  - a write journal (virtio_blk_set_journal) sees every write-type
 *    request done on the image, so each epoch can carry its disk writes;
 *  - held completions (virtio_blk_hold_completions) keep the completions
 *    of write-type requests from the guest until their epoch is
 *    acknowledged (output commit), and travel in the saved state;
 *  - the standby applies journal entries to its own replica of the image
 *    (virtio_blk_replica_apply, virtio_blk_replica_flush).
 */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <linux/virtio_blk.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

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
 * serial, active, broken, held completions) as properties of the open
 * node.  Requests in flight cannot be saved: quiesce first; -EBUSY
 * otherwise.  Held completions are "blk-held-count" (u32) and "blk-held"
 * (count * VIRTIO_BLK_HELD_BYTES bytes, one record per completion in the
 * order they were produced: epoch u64, status GPA u64, used length u32,
 * head u16, status u8, one zero byte; big-endian).  Both are always
 * written ("blk-held" empty when none).
 *
 * Load: validates everything before changing anything; the disk must be
 * the same shape (capacity, read-only, serial) or -EINVAL.  Held
 * completions: a tree without "blk-held-count" has none; otherwise
 * -EINVAL unless count <= VIRTIO_BLK_QUEUE_SIZE, "blk-held" is exactly
 * count records, no held completion on an inactive device, and every
 * record has head < VIRTIO_BLK_QUEUE_SIZE, a status byte GPA in guest RAM
 * (guest_mem_ptr), used length 1 (held requests write no data) and status
 * OK, IOERR or UNSUPP.  Loaded ones replace the device's held list, with
 * their epoch tags, held whatever virtio_blk_hold_completions() says.  It
 * waits for requests in flight (none on a paused VM) and keeps the device
 * quiesced or not as it was; unless quiesced, chains the driver posted are
 * then served without a new notification.
 *
 * A standby that takes over loads the last committed state, then calls
 * virtio_blk_release_completions(blk, UINT64_MAX): the held completions
 * in it are for writes of committed epochs, already applied to its
 * replica, so the guest gets them now.
 */
int virtio_blk_save(struct virtio_blk *blk, void *fdt);
int virtio_blk_load(struct virtio_blk *blk, const void *fdt, int node);

/* ---- replication ---- */

#define VIRTIO_BLK_HELD_BYTES 24 /* one saved held completion */

struct virtio_blk_journal_ops {
	/*
	 * A write-type request was done on the image: called on a worker
	 * thread after the I/O succeeded and before its completion.  type is
	 * VIRTIO_BLK_T_OUT, _DISCARD or _WRITE_ZEROES; offset and len in
	 * bytes (multiples of 512, within the disk, len > 0).  For OUT,
	 * iov/iovcnt are the data: guest buffers, valid only during the call
	 * (copy them); NULL/0 otherwise.  A DISCARD or WRITE_ZEROES request
	 * with several segments gives one call per non-empty segment that was
	 * done, in order (a discard the backend could not do, -EOPNOTSUPP,
	 * left the data and is not journaled).  Requests that failed are not
	 * journaled: the guest gets IOERR and may not rely on the range's
	 * content.  Reads, GET_ID and FLUSH give no entry: a flush adds no
	 * data, the standby makes its replica durable at commit
	 * (virtio_blk_replica_flush).
	 *
	 * While a journal is set, write-type requests of the device's workers
	 * are serialized (I/O and journal call under one lock), so the order
	 * of the calls is the order the writes reached the image even for
	 * overlapping ranges.  The callback runs under that lock: it must not
	 * call virtio_blk_set_journal() and should be quick (copy and go).
	 */
	void (*journal)(void *opaque, unsigned disk_index, uint32_t type, uint64_t offset,
			uint64_t len, const struct iovec *iov, int iovcnt);
};

/*
 * Route write-type requests through ops (NULL: journal off).  disk_index
 * is the index the device was created with.  Any thread; a write in
 * flight during the switch may or may not be journaled, so switch with
 * the device quiesced (virtio_blk_quiesce) for an exact boundary.
 */
void virtio_blk_set_journal(struct virtio_blk *blk, const struct virtio_blk_journal_ops *ops,
			    void *opaque);

/*
 * Held completions (output commit).  With hold on, a completion of an
 * OUT, DISCARD, WRITE_ZEROES or FLUSH request (whatever its status) is
 * recorded instead of reaching the guest: {epoch tag, head, used length,
 * status, guest-physical address of the status byte}, no host pointer, so
 * the record stays valid in a state loaded on another machine.  Its I/O is
 * done: virtio_blk_quiesce() and virtio_blk_save() do not wait for held
 * completions, and the journal entry has been made.
 *
 * IN, GET_ID, unsupported types and chains without a readable header
 * complete at once even with hold on: they change nothing outside the
 * VM, and virtio requests are unordered, so a READ completing before an
 * earlier, held WRITE is allowed (a driver that needs the write first
 * waits for its completion).  A read sees the image, i.e. the data of
 * writes done but still held: a guest that issues a read overlapping a
 * write still in its hands gets undefined data by the spec anyway.
 *
 * The list holds at most VIRTIO_BLK_QUEUE_SIZE completions (the most
 * distinct heads a ring can have outstanding); a driver that overflows it
 * reuses heads and gets DEVICE_NEEDS_RESET.  A device reset drops held
 * completions (the driver forgot the requests); so does a release on a
 * device that is inactive or needs reset.  Turning hold off releases
 * nothing: call virtio_blk_release_completions() for those already held.
 *
 * Any thread.  Release writes the status byte with guest_mem_write() at
 * the recorded GPA (dirty-marked), pushes the used element (virtq_push)
 * in the order the completions were produced, and interrupts once per
 * batch.  It changes guest RAM and the held list together, so it must not
 * run between the capture of an epoch's dirty pages and that epoch's
 * virtio_blk_save() (call it before the pause or after the capture).
 */
void virtio_blk_hold_completions(struct virtio_blk *blk, bool hold);
/* Completions produced from now on belong to epoch (tag); 0 at creation. */
void virtio_blk_set_epoch(struct virtio_blk *blk, uint64_t epoch);
/* Complete every held completion with tag <= upto_epoch; UINT64_MAX: all. */
void virtio_blk_release_completions(struct virtio_blk *blk, uint64_t upto_epoch);
/* How many completions are held (tests, metrics). */
unsigned virtio_blk_held_count(struct virtio_blk *blk);

/*
 * On the standby's replica (a device whose guest never runs), from the
 * replication thread: apply one journal entry.  OUT writes len bytes of
 * data at offset; DISCARD and WRITE_ZEROES make the range read back as
 * zeroes (DISCARD punches a hole where it can, as the primary's file did;
 * WRITE_ZEROES zeroes), data unused.  offset and len must be multiples of
 * 512 with [offset, offset + len) on the disk, else -EINVAL; never writes
 * past the image.  -EROFS on a read-only disk, -EINVAL for another type;
 * otherwise 0 or -errno from the backend.
 */
int virtio_blk_replica_apply(struct virtio_blk *blk, uint32_t type, uint64_t offset,
			     const void *data, uint64_t len);
/* Make the replica durable (fdatasync): at each commit.  0 or -errno. */
int virtio_blk_replica_flush(struct virtio_blk *blk);

#endif
