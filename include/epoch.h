/* SPDX-License-Identifier: MIT */
/*
 * One replication epoch: everything the standby needs to move its copy of
 * the guest from checkpoint N-1 to checkpoint N.  On the wire (stream.h):
 *
 *   EPOCH(n)  MEMORY (the pages dirtied in the epoch)  DISK (its disk
 *   writes)  STATE (the state tree at the pause)  EPOCH_END(n)
 *
 * The standby reads an epoch whole into a struct epoch (staging) and
 * applies it only once EPOCH_END arrived and every hash matched; a partial
 * or damaged epoch leaves its guest image at checkpoint N-1.
 *
 * DISK payload: entries of {u32 disk, u32 type (VIRTIO_BLK_T_OUT,
 * _DISCARD, _WRITE_ZEROES), u64 offset, u64 length} (little-endian), each
 * followed by length bytes of data for OUT.
 */
#ifndef VMM_EPOCH_H
#define VMM_EPOCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "stream.h"

struct epoch {
	uint64_t seq;
	struct page_list pages; /* copied at the pause */
	uint8_t *disk;		/* encoded DISK payload */
	size_t disk_len, disk_cap;
	unsigned disk_entries;
	void *state; /* STATE tree (malloc'd) */
	size_t state_len;
};

/* Append one disk write (OUT: data in iov; others: iovcnt 0).  0 or -ENOMEM. */
int epoch_disk_add(struct epoch *e, unsigned disk, uint32_t type, uint64_t offset, uint64_t len,
		   const struct iovec *iov, int iovcnt);

/*
 * Walk a DISK payload: every entry is checked first (types, lengths, data
 * present, disk < nr_disks); only if all are sound is apply() called for
 * each, in order.  0, -EINVAL (nothing applied), or apply's first error.
 */
int epoch_disk_foreach(const uint8_t *disk, size_t len, unsigned nr_disks,
		       int (*apply)(void *opaque, unsigned disk, uint32_t type, uint64_t offset,
				    const void *data, uint64_t len),
		       void *opaque);

/* Send e: EPOCH, MEMORY, DISK, STATE, EPOCH_END.  0 or -errno. */
int epoch_send(int fd, const struct epoch *e, struct stream_stats *st);

/*
 * After an EPOCH section announcing seq was read: read the rest into e
 * (cleared first) up to EPOCH_END, which must name the same seq.  RAM is
 * not touched.  0, -EINVAL (damaged or out of order), -EPIPE, -errno.
 */
int epoch_recv(int fd, uint64_t seq, uint64_t ram_pages, struct epoch *e, struct stream_stats *st);

/* Read the u64 payload of an EPOCH, EPOCH_END or HEARTBEAT section (hash checked). */
int epoch_read_u64(int fd, uint64_t len, uint64_t *v, struct stream_stats *st);

/* Forget the contents (keep the buffers). */
void epoch_clear(struct epoch *e);
void epoch_free(struct epoch *e);

#endif
