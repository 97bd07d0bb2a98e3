/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, section 2.7): the one walker every device
 * uses.  Everything the guest put in the rings is untrusted: ring addresses
 * are checked when the queue is enabled, and every descriptor's address and
 * length is checked against guest RAM as the chain is walked; loops, chains
 * longer than the queue, nested indirect tables and writable-before-readable
 * buffers are errors.  An error means the driver is broken or hostile: the
 * device should mark itself NEEDS_RESET and stop using the queue.
 *
 * Writes into the used ring go through guest_mem_write(), so they are
 * dirty-marked.  A queue is used from one thread at a time (its device's).
 */
#ifndef VMM_VIRTQUEUE_H
#define VMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_mem.h"

#define VIRTQ_MAX_SIZE	32768
#define VIRTQ_MAX_CHAIN 1024 /* buffers in one chain, direct or indirect */

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

/* Guest-visible state of one queue: what a snapshot must carry. */
struct virtq {
	uint16_t size; /* entries, a power of 2 */
	bool ready;
	bool event_idx; /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;	/* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;
	uint16_t last_avail_idx; /* next avail entry the device will take */
	uint16_t used_idx;	 /* next used entry the device will fill */
	uint16_t signalled_used; /* used_idx when the guest was last interrupted */
	bool signalled_used_valid;
};

/* One buffer of a chain, already checked: host points at len bytes of guest RAM. */
struct virtq_buf {
	uint64_t gpa;
	uint32_t len;
	bool device_writes; /* VIRTQ_DESC_F_WRITE: the device fills it */
	uint8_t *host;
};

struct virtq_chain {
	uint16_t head;	 /* descriptor index to hand back in virtq_push() */
	unsigned nr_out; /* driver-to-device buffers come first ... */
	unsigned nr_in;	 /* ... then device-to-driver buffers */
	uint64_t out_len, in_len;
	struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

/*
 * Check and enable a queue whose size and ring addresses the driver set.
 * -EINVAL if the size is not a power of 2 up to VIRTQ_MAX_SIZE or a ring
 * is not wholly in RAM or misaligned.
 */
int virtq_enable(struct virtq *vq, const struct guest_mem *mem);

/* Back to the reset state (not ready, indices 0). */
void virtq_reset(struct virtq *vq);

/*
 * Take the next available chain.  1 and *chain filled; 0 if the ring is
 * empty; -EINVAL/-EFAULT if the ring or chain is malformed (nothing consumed).
 */
int virtq_pop(struct virtq *vq, const struct guest_mem *mem, struct virtq_chain *chain);

/*
 * Put a chain back with the number of bytes the device wrote into its
 * writable buffers.  Callers that wrote into chain buffers through
 * buf->host must have dirty-marked them (virtq_chain_mark_written() does).
 * 0 or -EFAULT.
 */
int virtq_push(struct virtq *vq, struct guest_mem *mem, uint16_t head, uint32_t written);

/* Dirty-mark the first `written` bytes of the chain's writable buffers. */
void virtq_chain_mark_written(const struct virtq_chain *chain, struct guest_mem *mem,
			      uint32_t written);

/*
 * Does the driver want an interrupt for the used entries pushed since the
 * last one (event index or VIRTQ_AVAIL_F_NO_INTERRUPT)?  Call after pushing
 * a batch; when it says yes, raise the interrupt.
 */
bool virtq_should_notify(struct virtq *vq, const struct guest_mem *mem);

/*
 * With event index: tell the driver to notify us once it adds entry
 * last_avail_idx (i.e. after we drained the ring).  No-op otherwise.
 */
void virtq_update_avail_event(struct virtq *vq, struct guest_mem *mem);

/* Copy up to len bytes out of the chain's readable buffers, from byte offset. Returns bytes copied.
 */
uint64_t virtq_chain_read(const struct virtq_chain *chain, uint64_t offset, void *dst,
			  uint64_t len);

/*
 * Copy len bytes into the chain's writable buffers at byte offset, dirty-
 * marking them.  Returns bytes copied (less if the buffers are too short).
 */
uint64_t virtq_chain_write(const struct virtq_chain *chain, struct guest_mem *mem, uint64_t offset,
			   const void *src, uint64_t len);

#endif
