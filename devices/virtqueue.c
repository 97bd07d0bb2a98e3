// SPDX-License-Identifier: MIT
/* Split-ring virtqueue walker: every guest address checked, every write dirty-marked. */
#include "virtqueue.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} __attribute__((packed));

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
} __attribute__((packed));

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* Ring sizes from the spec (2.7): avail = flags, idx, ring[n], used_event; used likewise. */
static uint64_t avail_bytes(uint16_t n)
{
	return 4 + 2ULL * n + 2;
}

static uint64_t used_bytes(uint16_t n)
{
	return 4 + 8ULL * n + 2;
}

void virtq_reset(struct virtq *vq)
{
	memset(vq, 0, sizeof(*vq));
}

int virtq_enable(struct virtq *vq, const struct guest_mem *mem)
{
	uint16_t n = vq->size;

	if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return -EINVAL;
	/* Alignment from the spec: descriptors 16, avail 2, used 4. */
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return -EINVAL;
	if (!guest_mem_ptr(mem, vq->desc_gpa, 16ULL * n) ||
	    !guest_mem_ptr(mem, vq->avail_gpa, avail_bytes(n)) ||
	    !guest_mem_ptr(mem, vq->used_gpa, used_bytes(n)))
		return -EINVAL;
	vq->last_avail_idx = 0;
	vq->used_idx = 0;
	vq->signalled_used_valid = false;
	vq->ready = true;
	return 0;
}

/* The rings were checked at enable time, so these pointers are in RAM. */
static volatile uint16_t *avail_field(const struct virtq *vq, const struct guest_mem *mem,
				      uint64_t byte)
{
	return guest_mem_ptr(mem, vq->avail_gpa + byte, 2);
}

static uint16_t load16(volatile uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static int add_buf(struct virtq_chain *chain, const struct guest_mem *mem,
		   const struct vring_desc *d)
{
	unsigned n = chain->nr_out + chain->nr_in;
	struct virtq_buf *b;
	bool writes = d->flags & VIRTQ_DESC_F_WRITE;

	if (n >= VIRTQ_MAX_CHAIN)
		return -EINVAL;
	/* All readable buffers precede all writable ones (spec 2.7.4.2). */
	if (!writes && chain->nr_in)
		return -EINVAL;
	b = &chain->bufs[n];
	b->gpa = d->addr;
	b->len = d->len;
	b->device_writes = writes;
	/* A zero-length buffer carries nothing but must still be a sane address. */
	b->host = guest_mem_ptr(mem, d->addr, d->len ? d->len : 1);
	if (!b->host)
		return -EFAULT;
	if (writes) {
		chain->nr_in++;
		chain->in_len += d->len;
	} else {
		chain->nr_out++;
		chain->out_len += d->len;
	}
	return 0;
}

static int walk_indirect(struct virtq_chain *chain, const struct guest_mem *mem,
			 const struct vring_desc *outer)
{
	const struct vring_desc *table;
	uint32_t count, i, steps;
	struct vring_desc d;
	int ret;

	if (outer->len == 0 || outer->len % sizeof(struct vring_desc))
		return -EINVAL;
	count = outer->len / sizeof(struct vring_desc);
	if (count > VIRTQ_MAX_CHAIN)
		return -EINVAL;
	table = guest_mem_ptr(mem, outer->addr, outer->len);
	if (!table)
		return -EFAULT;
	i = 0;
	for (steps = 0;; steps++) {
		/* More steps than entries means the next pointers loop. */
		if (steps >= count || i >= count)
			return -EINVAL;
		memcpy(&d, &table[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return -EINVAL; /* no indirect inside indirect */
		ret = add_buf(chain, mem, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

int virtq_pop(struct virtq *vq, const struct guest_mem *mem, struct virtq_chain *chain)
{
	const struct vring_desc *descs;
	uint16_t avail_idx, head, i;
	struct vring_desc d;
	unsigned steps;
	int ret;

	if (!vq->ready)
		return 0;
	avail_idx = load16(avail_field(vq, mem, 2));
	if (avail_idx == vq->last_avail_idx)
		return 0;
	/* The driver cannot be more than a ring ahead of us. */
	if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->size)
		return -EINVAL;
	/* Read the ring entry and descriptors only after seeing idx. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	head = *avail_field(vq, mem, 4 + 2ULL * (vq->last_avail_idx % vq->size));
	if (head >= vq->size)
		return -EINVAL;
	descs = guest_mem_ptr(mem, vq->desc_gpa, 16ULL * vq->size);
	memset(chain, 0, offsetof(struct virtq_chain, bufs));
	chain->head = head;
	i = head;
	for (steps = 0;; steps++) {
		if (steps >= vq->size)
			return -EINVAL; /* a loop in the next pointers */
		memcpy(&d, &descs[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* Indirect only when negotiated, alone, and not combined with NEXT. */
			if (!vq->indirect || (d.flags & VIRTQ_DESC_F_NEXT) || steps)
				return -EINVAL;
			ret = walk_indirect(chain, mem, &d);
			if (ret)
				return ret;
			break;
		}
		ret = add_buf(chain, mem, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= vq->size)
			return -EINVAL;
		i = d.next;
	}
	vq->last_avail_idx++;
	return 1;
}

int virtq_push(struct virtq *vq, struct guest_mem *mem, uint16_t head, uint32_t written)
{
	struct vring_used_elem e = {.id = head, .len = written};
	uint64_t slot = vq->used_gpa + 4 + 8ULL * (vq->used_idx % vq->size);
	uint16_t new_idx = vq->used_idx + 1;
	int ret;

	ret = guest_mem_write(mem, slot, &e, sizeof(e));
	if (ret)
		return ret;
	/* The element must be visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ret = guest_mem_write(mem, vq->used_gpa + 2, &new_idx, sizeof(new_idx));
	if (ret)
		return ret;
	vq->used_idx = new_idx;
	return 0;
}

void virtq_chain_mark_written(const struct virtq_chain *chain, struct guest_mem *mem,
			      uint32_t written)
{
	unsigned i;

	for (i = chain->nr_out; i < chain->nr_out + chain->nr_in && written; i++) {
		uint32_t n = chain->bufs[i].len < written ? chain->bufs[i].len : written;

		guest_mem_mark_dirty(mem, chain->bufs[i].gpa, n);
		written -= n;
	}
}

bool virtq_should_notify(struct virtq *vq, const struct guest_mem *mem)
{
	uint16_t old, new_idx, event;
	bool valid;

	/* Order our used-ring writes before reading the driver's suppression state. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(load16(avail_field(vq, mem, 0)) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	old = vq->signalled_used;
	valid = vq->signalled_used_valid;
	new_idx = vq->used_idx;
	vq->signalled_used = new_idx;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	event = load16(avail_field(vq, mem, 4 + 2ULL * vq->size));
	/* Spec 2.7.10: notify if event lies in (old, new]. */
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

void virtq_update_avail_event(struct virtq *vq, struct guest_mem *mem)
{
	uint16_t v = vq->last_avail_idx;

	if (!vq->event_idx || !vq->ready)
		return;
	guest_mem_write(mem, vq->used_gpa + 4 + 8ULL * vq->size, &v, sizeof(v));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

uint64_t virtq_chain_read(const struct virtq_chain *chain, uint64_t offset, void *dst, uint64_t len)
{
	uint64_t done = 0;
	unsigned i;

	for (i = 0; i < chain->nr_out && done < len; i++) {
		const struct virtq_buf *b = &chain->bufs[i];
		uint64_t n;

		if (offset >= b->len) {
			offset -= b->len;
			continue;
		}
		n = b->len - offset;
		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)dst + done, b->host + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

uint64_t virtq_chain_write(const struct virtq_chain *chain, struct guest_mem *mem, uint64_t offset,
			   const void *src, uint64_t len)
{
	uint64_t done = 0;
	unsigned i;

	for (i = chain->nr_out; i < chain->nr_out + chain->nr_in && done < len; i++) {
		const struct virtq_buf *b = &chain->bufs[i];
		uint64_t n;

		if (offset >= b->len) {
			offset -= b->len;
			continue;
		}
		n = b->len - offset;
		if (n > len - done)
			n = len - done;
		memcpy(b->host + offset, (const uint8_t *)src + done, n);
		guest_mem_mark_dirty(mem, b->gpa + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}
