// SPDX-License-Identifier: MIT
/*
 * virtio-blk: worker threads pop chains, check them, and move data with
 * positioned vectored I/O straight between the image and guest buffers.
 *
 * Locks: blk->lock guards the device flags, the held completions and the
 * avail side of the queue (pops); blk->push_lock orders the used side
 * (pushes and the interrupt decision that reads them) and is taken before
 * blk->lock.  blk->jlock guards the journal and, while one is set, keeps
 * each write-type request's I/O and journal calls together; it is never
 * held while taking the other two.  Transport calls are made without
 * blk->lock.
 */
#include "virtio_blk.h"

#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfdt.h>

#include "log.h"
#include "state.h"

#define REQ_QUEUE 0
#define HDR_LEN	  16 /* struct virtio_blk_outhdr */
#define DWZ_LEN	  16 /* struct virtio_blk_discard_write_zeroes */
#define NO_STATUS (-1)
#define BIT(n)	  (1ULL << (n))

_Static_assert(offsetof(struct virtio_blk_config, max_secure_erase_sectors) ==
		   VIRTIO_BLK_CONFIG_SIZE,
	       "config layout");
_Static_assert(sizeof(struct virtio_blk_stats) % sizeof(uint64_t) == 0, "stats are u64s");

/* A completion kept from the guest until its epoch is acknowledged. */
struct blk_held {
	uint64_t epoch;
	uint64_t status_gpa; /* the chain's last writable byte */
	uint32_t used_len;
	uint16_t head;
	uint8_t status;
};

struct blk_worker {
	struct virtio_blk *blk;
	pthread_t thread;
	struct iovec iov[VIRTQ_MAX_CHAIN];
	struct virtq_chain chain;
};

struct virtio_blk {
	struct virtio_dev vdev;
	struct guest_mem *mem; /* vdev.env.mem, readable while virtio_pci_init rewrites vdev */
	struct blk_backend *be;
	char name[24];
	uint8_t serial[VIRTIO_BLK_ID_BYTES]; /* NUL-padded, not terminated */
	uint64_t capacity;		     /* sectors */
	uint64_t offered;
	unsigned index;
	bool on_pci;

	pthread_mutex_t lock;
	pthread_cond_t work; /* workers: something to pop, or stop */
	pthread_cond_t idle; /* in-flight fell to 0, or a worker went to sleep */
	bool active;	     /* DRIVER_OK and not reset */
	bool broken;	     /* the driver broke the rules: nothing more until reset */
	bool quiesced;
	bool stop;
	bool pending;	   /* a notification (or equivalent) no worker has acted on */
	unsigned inflight; /* popped, not yet completed */
	unsigned busy;	   /* workers not asleep */
	struct virtio_blk_stats stats;

	/* Output commit (under lock). */
	bool hold;
	uint64_t epoch;
	unsigned nr_held;
	struct blk_held held[VIRTIO_BLK_QUEUE_SIZE];

	pthread_mutex_t push_lock;
	unsigned nr_workers;
	struct blk_worker *workers[VIRTIO_BLK_WORKERS];

	pthread_mutex_t jlock;
	const struct virtio_blk_journal_ops *jops; /* written under jlock, read atomically */
	void *jopaque;
};

static bool can_pop(const struct virtio_blk *b)
{
	return b->active && !b->broken && !b->quiesced && !b->stop;
}

/* ---- completion ---- */

/* Statistics are relaxed atomics: workers count without taking the lock. */
static void count(uint64_t *counter, uint64_t *bytes, uint64_t n)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
	if (bytes)
		__atomic_fetch_add(bytes, n, __ATOMIC_RELAXED);
}

/* Guest-physical address of the status byte: the last byte of the writable part. */
static uint64_t status_gpa(const struct virtq_chain *c)
{
	uint64_t off = c->in_len - 1;

	for (unsigned i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
		if (off < c->bufs[i].len)
			return c->bufs[i].gpa + off;
		off -= c->bufs[i].len;
	}
	return 0; /* not reached: in_len is the sum of the writable lengths */
}

/*
 * The one place a request leaves the device: status byte, used ring,
 * interrupt.  With hold on, a holdable (write-type) request is recorded
 * with the current epoch instead, for virtio_blk_release_completions().
 * After a reset began nothing is written or held: the driver has
 * forgotten the request.
 */
static void blk_complete(struct virtio_blk *b, const struct virtq_chain *c, uint8_t status,
			 uint32_t written, bool holdable)
{
	struct guest_mem *mem = b->mem;
	struct virtq *vq = virtio_queue(&b->vdev, REQ_QUEUE);
	bool pushed = false, broken = false, overflow = false;

	pthread_mutex_lock(&b->push_lock);
	pthread_mutex_lock(&b->lock);
	if (b->active && !b->broken) {
		if (holdable && b->hold) {
			/* More than a ring's worth outstanding: the driver reuses heads. */
			if (b->nr_held < VIRTIO_BLK_QUEUE_SIZE)
				b->held[b->nr_held++] =
				    (struct blk_held){.epoch = b->epoch,
						      .status_gpa = status_gpa(c),
						      .used_len = written,
						      .head = c->head,
						      .status = status};
			else
				overflow = broken = b->broken = true;
		} else {
			virtq_chain_write(c, mem, c->in_len - 1, &status, 1);
			if (virtq_push(vq, mem, c->head, written))
				broken = b->broken = true;
			else
				pushed = true;
		}
		if (status == VIRTIO_BLK_S_IOERR)
			count(&b->stats.errors, NULL, 0);
		else if (status == VIRTIO_BLK_S_UNSUPP)
			count(&b->stats.unsupported, NULL, 0);
	}
	pthread_mutex_unlock(&b->lock);
	if (pushed)
		virtio_queue_interrupt(&b->vdev, REQ_QUEUE);
	pthread_mutex_unlock(&b->push_lock);
	if (overflow)
		pr_warn("%s: more held completions than queue entries: device needs reset",
			b->name);
	if (broken)
		virtio_set_needs_reset(&b->vdev);
}

/* ---- journal ---- */

/*
 * Before a write-type request's I/O: the journal, with jlock held until
 * journal_end(), or NULL (off, no lock).
 */
static const struct virtio_blk_journal_ops *journal_begin(struct virtio_blk *b, void **opaque)
{
	const struct virtio_blk_journal_ops *ops;

	if (!__atomic_load_n(&b->jops, __ATOMIC_ACQUIRE))
		return NULL;
	pthread_mutex_lock(&b->jlock);
	ops = b->jops;
	*opaque = b->jopaque;
	if (!ops)
		pthread_mutex_unlock(&b->jlock);
	return ops;
}

static void journal_end(struct virtio_blk *b, const struct virtio_blk_journal_ops *ops)
{
	if (ops)
		pthread_mutex_unlock(&b->jlock);
}

/* ---- request parsing ---- */

/* iovecs for bytes [off, off + len) of the chain's readable or writable part; their count. */
static int chain_iov(const struct virtq_chain *c, bool writable, uint64_t off, uint64_t len,
		     struct iovec *iov)
{
	unsigned i = writable ? c->nr_out : 0, end = writable ? c->nr_out + c->nr_in : c->nr_out;
	int n = 0;

	for (; i < end && len; i++) {
		const struct virtq_buf *buf = &c->bufs[i];
		uint64_t l;

		if (off >= buf->len) {
			off -= buf->len;
			continue;
		}
		l = buf->len - off < len ? buf->len - off : len;
		iov[n++] = (struct iovec){.iov_base = buf->host + off, .iov_len = l};
		len -= l;
		off = 0;
	}
	return n;
}

/* Is [sector, sector + bytes/512) on the disk?  No overflow for any sector. */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	return sector <= b->capacity && bytes / BLK_SECTOR_SIZE <= b->capacity - sector;
}

static int blk_read(struct virtio_blk *b, struct blk_worker *w, uint64_t sector, uint32_t *written)
{
	const struct virtq_chain *c = &w->chain;
	uint64_t len = c->in_len - 1;
	int n, ret;

	if (len % BLK_SECTOR_SIZE || !in_range(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = chain_iov(c, true, 0, len, w->iov);
	ret = n ? b->be->ops->read(b->be, w->iov, n, sector * BLK_SECTOR_SIZE) : 0;
	/* Even a failed read may have landed partly: mark it all. */
	virtq_chain_mark_written(c, b->mem, (uint32_t)len);
	if (ret)
		return VIRTIO_BLK_S_IOERR;
	count(&b->stats.reads, &b->stats.read_bytes, len);
	*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

static int blk_write(struct virtio_blk *b, struct blk_worker *w, uint64_t sector)
{
	const struct virtq_chain *c = &w->chain;
	const struct virtio_blk_journal_ops *j;
	uint64_t len = c->out_len - HDR_LEN, off = sector * BLK_SECTOR_SIZE;
	void *jo = NULL;
	int n, ret;

	if (b->be->readonly || len % BLK_SECTOR_SIZE || !in_range(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = chain_iov(c, false, HDR_LEN, len, w->iov);
	if (n) {
		j = journal_begin(b, &jo);
		ret = b->be->ops->write(b->be, w->iov, n, off);
		if (!ret && j) {
			/* The backend may have advanced the vector: build it again. */
			n = chain_iov(c, false, HDR_LEN, len, w->iov);
			j->journal(jo, b->index, VIRTIO_BLK_T_OUT, off, len, w->iov, n);
		}
		journal_end(b, j);
		if (ret)
			return VIRTIO_BLK_S_IOERR;
	}
	count(&b->stats.writes, &b->stats.write_bytes, len);
	return VIRTIO_BLK_S_OK;
}

static int blk_get_id(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *written)
{
	uint64_t len = c->in_len - 1;

	if (len > VIRTIO_BLK_ID_BYTES)
		len = VIRTIO_BLK_ID_BYTES;
	*written = (uint32_t)virtq_chain_write(c, b->mem, 0, b->serial, len);
	count(&b->stats.get_ids, NULL, 0);
	return VIRTIO_BLK_S_OK;
}

/* DISCARD or WRITE_ZEROES: check every segment, then do them in order. */
static int blk_dwz(struct virtio_blk *b, const struct virtq_chain *c, uint32_t type)
{
	struct virtio_blk_discard_write_zeroes seg[VIRTIO_BLK_MAX_DWZ_SEG];
	const struct virtio_blk_journal_ops *j;
	bool discard = type == VIRTIO_BLK_T_DISCARD;
	void *jo = NULL;
	uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	uint64_t len = c->out_len - HDR_LEN;
	unsigned n, i;
	int ret;

	if (b->be->readonly || !len || len % DWZ_LEN || len / DWZ_LEN > VIRTIO_BLK_MAX_DWZ_SEG)
		return VIRTIO_BLK_S_IOERR;
	n = (unsigned)(len / DWZ_LEN);
	virtq_chain_read(c, HDR_LEN, seg, len);
	for (i = 0; i < n; i++) {
		uint64_t sector = le64toh(seg[i].sector);
		uint32_t nsec = le32toh(seg[i].num_sectors), flags = le32toh(seg[i].flags);

		/* Spec 5.2.6.2: unknown flags, or UNMAP on a discard, are unsupported. */
		if (flags & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		if (nsec > VIRTIO_BLK_MAX_DWZ_SECTORS ||
		    !in_range(b, sector, (uint64_t)nsec * BLK_SECTOR_SIZE))
			return VIRTIO_BLK_S_IOERR;
	}
	j = journal_begin(b, &jo);
	for (i = 0; i < n; i++) {
		uint64_t off = le64toh(seg[i].sector) * BLK_SECTOR_SIZE;
		uint64_t bytes = (uint64_t)le32toh(seg[i].num_sectors) * BLK_SECTOR_SIZE;
		bool unmap = le32toh(seg[i].flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;

		if (!bytes)
			continue;
		ret = discard ? b->be->ops->discard(b->be, off, bytes)
			      : b->be->ops->write_zeroes(b->be, off, bytes, unmap);
		/* What was done goes to the journal, even if a later segment fails. */
		if (!ret && j)
			j->journal(jo, b->index, type, off, bytes, NULL, 0);
		/* A discard is a hint: a backend that cannot drop blocks keeps them. */
		if (ret && !(discard && ret == -EOPNOTSUPP)) {
			journal_end(b, j);
			return VIRTIO_BLK_S_IOERR;
		}
	}
	journal_end(b, j);
	count(discard ? &b->stats.discards : &b->stats.write_zeroes, NULL, 0);
	return VIRTIO_BLK_S_OK;
}

/*
 * Serve the worker's chain: the status to report, with *written the bytes
 * of data written into the chain and *holdable whether it is a write-type
 * request (its completion waits for the epoch with hold on); NO_STATUS if
 * there is nowhere to put one.
 */
static int blk_serve(struct virtio_blk *b, struct blk_worker *w, uint32_t *written, bool *holdable)
{
	const struct virtq_chain *c = &w->chain;
	struct virtio_blk_outhdr hdr;
	uint64_t sector;
	uint32_t type;

	*written = 0;
	*holdable = false;
	if (!c->in_len)
		return NO_STATUS;
	/* The used length must fit in 32 bits; no real request comes near it. */
	if (c->in_len > UINT32_MAX || c->out_len > UINT32_MAX)
		return VIRTIO_BLK_S_IOERR;
	if (virtq_chain_read(c, 0, &hdr, HDR_LEN) < HDR_LEN)
		return VIRTIO_BLK_S_IOERR;
	type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);
	*holdable = type == VIRTIO_BLK_T_OUT || type == VIRTIO_BLK_T_FLUSH ||
		    type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES;
	switch (type) {
	case VIRTIO_BLK_T_IN:
		return blk_read(b, w, sector, written);
	case VIRTIO_BLK_T_OUT:
		return blk_write(b, w, sector);
	case VIRTIO_BLK_T_FLUSH:
		if (b->be->ops->flush(b->be))
			return VIRTIO_BLK_S_IOERR;
		count(&b->stats.flushes, NULL, 0);
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		return blk_get_id(b, c, written);
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return blk_dwz(b, c, type);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* ---- workers ---- */

/* Lock held (dropped around the transport call). */
static void mark_broken(struct virtio_blk *b, const char *why)
{
	b->broken = true;
	/* Counted as in flight until the transport knows: drain and reset wait for it. */
	b->inflight++;
	pthread_mutex_unlock(&b->lock);
	pr_warn("%s: %s: device needs reset", b->name, why);
	virtio_set_needs_reset(&b->vdev);
	pthread_mutex_lock(&b->lock);
	if (--b->inflight == 0)
		pthread_cond_broadcast(&b->idle);
}

/* Lock held: sleep until there may be work. */
static void worker_sleep(struct virtio_blk *b)
{
	b->busy--;
	pthread_cond_broadcast(&b->idle);
	pthread_cond_wait(&b->work, &b->lock);
	b->busy++;
}

/* Lock held: more chains wait in the ring (a hint; a wrong answer costs a wake-up). */
static bool ring_has_more(struct virtio_blk *b)
{
	struct virtq *vq = virtio_queue(&b->vdev, REQ_QUEUE);
	uint16_t idx;

	if (guest_mem_read(b->mem, vq->avail_gpa + 2, &idx, sizeof(idx)))
		return false;
	return idx != vq->last_avail_idx;
}

static void *worker_main(void *arg)
{
	struct blk_worker *w = arg;
	struct virtio_blk *b = w->blk;
	struct guest_mem *mem = b->mem;
	struct virtq *vq = virtio_queue(&b->vdev, REQ_QUEUE);
	uint32_t written;
	bool holdable;
	int r, status;

	pthread_mutex_lock(&b->lock);
	b->busy++;
	while (!b->stop) {
		if (!can_pop(b) || !b->pending) {
			worker_sleep(b);
			continue;
		}
		b->pending = false;
		r = virtq_pop(vq, mem, &w->chain);
		if (r == 0) {
			/* Ask for a notification at the next chain, then look once more (the race).
			 */
			virtq_update_avail_event(vq, mem);
			r = virtq_pop(vq, mem, &w->chain);
			if (r == 0)
				continue;
		}
		if (r < 0) {
			mark_broken(b, "malformed request queue");
			continue;
		}
		b->inflight++;
		/* Keep looking for the rest, and let an idle worker help. */
		b->pending = true;
		if (ring_has_more(b))
			pthread_cond_signal(&b->work);
		pthread_mutex_unlock(&b->lock);

		status = blk_serve(b, w, &written, &holdable);
		if (status != NO_STATUS)
			blk_complete(b, &w->chain, (uint8_t)status, written + 1, holdable);

		pthread_mutex_lock(&b->lock);
		if (status == NO_STATUS && b->active && !b->broken)
			mark_broken(b, "request without a status byte");
		if (--b->inflight == 0)
			pthread_cond_broadcast(&b->idle);
	}
	b->busy--;
	pthread_cond_broadcast(&b->idle);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* Lock held: wake the workers to look at the ring. */
static void kick_locked(struct virtio_blk *b)
{
	b->pending = true;
	pthread_cond_signal(&b->work);
}

/* Lock held: wait until nothing is in flight. */
static void wait_inflight(struct virtio_blk *b)
{
	while (b->inflight)
		pthread_cond_wait(&b->idle, &b->lock);
}

/* ---- virtio ops ---- */

static void blk_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct virtio_blk *b = vdev->opaque;

	if (q != REQ_QUEUE)
		return;
	pthread_mutex_lock(&b->lock);
	kick_locked(b);
	pthread_mutex_unlock(&b->lock);
}

static int blk_activate(struct virtio_dev *vdev)
{
	struct virtio_blk *b = vdev->opaque;

	pthread_mutex_lock(&b->lock);
	b->active = true;
	b->broken = false;
	kick_locked(b);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static void blk_reset(struct virtio_dev *vdev)
{
	struct virtio_blk *b = vdev->opaque;

	pthread_mutex_lock(&b->lock);
	b->active = false;
	b->broken = false;
	b->pending = false;
	wait_inflight(b);
	/* The driver forgot the requests whose completions were held. */
	b->nr_held = 0;
	pthread_mutex_unlock(&b->lock);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

#define CFG(field) offsetof(struct virtio_blk_config, field)

static void blk_config_read(struct virtio_dev *vdev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_blk *b = vdev->opaque;
	uint8_t cfg[VIRTIO_BLK_CONFIG_SIZE] = {0};

	/* All of it is fixed for the life of the device: no lock. */
	put_le64(cfg + CFG(capacity), b->capacity);
	put_le32(cfg + CFG(seg_max), VIRTIO_BLK_SEG_MAX);
	put_le32(cfg + CFG(blk_size), BLK_SECTOR_SIZE);
	put_le16(cfg + CFG(num_queues), 1);
	if (b->offered & BIT(VIRTIO_BLK_F_DISCARD)) {
		put_le32(cfg + CFG(max_discard_sectors), VIRTIO_BLK_MAX_DWZ_SECTORS);
		put_le32(cfg + CFG(max_discard_seg), VIRTIO_BLK_MAX_DWZ_SEG);
		put_le32(cfg + CFG(discard_sector_alignment), VIRTIO_BLK_DISCARD_ALIGN);
	}
	if (b->offered & BIT(VIRTIO_BLK_F_WRITE_ZEROES)) {
		put_le32(cfg + CFG(max_write_zeroes_sectors), VIRTIO_BLK_MAX_DWZ_SECTORS);
		put_le32(cfg + CFG(max_write_zeroes_seg), VIRTIO_BLK_MAX_DWZ_SEG);
		cfg[CFG(write_zeroes_may_unmap)] = 1;
	}
	if (offset <= sizeof(cfg) && len <= sizeof(cfg) - offset)
		memcpy(data, cfg + offset, len);
}

static void blk_config_write(struct virtio_dev *vdev, uint32_t offset, const uint8_t *data,
			     uint32_t len)
{
	/* Only wce is writable, and only with CONFIG_WCE, which is not offered. */
	(void)vdev, (void)offset, (void)data, (void)len;
}

static const struct virtio_device_ops blk_ops = {
    .queue_notify = blk_queue_notify,
    .activate = blk_activate,
    .reset = blk_reset,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
};

/* ---- life cycle ---- */

static void stop_workers(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->stop = true;
	pthread_cond_broadcast(&b->work);
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0; i < b->nr_workers; i++) {
		pthread_join(b->workers[i]->thread, NULL);
		free(b->workers[i]);
	}
	b->nr_workers = 0;
}

static int start_workers(struct virtio_blk *b)
{
	sigset_t all, old;
	int ret = 0;

	/* Signals are for the vCPU and main threads; workers never take them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (b->nr_workers < VIRTIO_BLK_WORKERS) {
		struct blk_worker *w = malloc(sizeof(*w));

		if (!w) {
			ret = -ENOMEM;
			break;
		}
		w->blk = b;
		ret = -pthread_create(&w->thread, NULL, worker_main, w);
		if (ret) {
			free(w);
			break;
		}
		b->workers[b->nr_workers++] = w;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

static void free_blk(struct virtio_blk *b)
{
	pthread_cond_destroy(&b->work);
	pthread_cond_destroy(&b->idle);
	pthread_mutex_destroy(&b->lock);
	pthread_mutex_destroy(&b->push_lock);
	pthread_mutex_destroy(&b->jlock);
	blk_backend_close(b->be);
	free(b);
}

int virtio_blk_create_backend(struct virtio_blk **out, const struct virtio_env *env,
			      struct blk_backend *be, const char *serial, unsigned index)
{
	struct virtio_blk *b = env->mem ? calloc(1, sizeof(*b)) : NULL;
	int ret;

	if (!b) {
		blk_backend_close(be);
		return env->mem ? -ENOMEM : -EINVAL;
	}
	b->be = be;
	b->mem = env->mem;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->push_lock, NULL);
	pthread_mutex_init(&b->jlock, NULL);
	pthread_cond_init(&b->work, NULL);
	pthread_cond_init(&b->idle, NULL);
	b->index = index;
	snprintf(b->name, sizeof(b->name), "virtio-blk%u", index);
	if (serial && *serial)
		memcpy(b->serial, serial, strnlen(serial, sizeof(b->serial)));
	else
		snprintf((char *)b->serial, sizeof(b->serial), "vmm-disk%u", index);
	b->capacity = be->size / BLK_SECTOR_SIZE;
	b->offered =
	    BIT(VIRTIO_BLK_F_SEG_MAX) | BIT(VIRTIO_BLK_F_BLK_SIZE) | BIT(VIRTIO_BLK_F_FLUSH);
	if (be->readonly)
		b->offered |= BIT(VIRTIO_BLK_F_RO);
	else
		b->offered |= BIT(VIRTIO_BLK_F_DISCARD) | BIT(VIRTIO_BLK_F_WRITE_ZEROES);

	b->vdev.info = (struct virtio_dev_info){
	    .name = b->name,
	    .device_id = VIRTIO_ID_BLOCK,
	    .features = b->offered,
	    .nr_queues = 1,
	    .queue_size = VIRTIO_BLK_QUEUE_SIZE,
	    .config_size = VIRTIO_BLK_CONFIG_SIZE,
	};
	b->vdev.ops = &blk_ops;
	b->vdev.opaque = b;
	b->vdev.env = *env;
	b->vdev.t.vqs[REQ_QUEUE].size = VIRTIO_BLK_QUEUE_SIZE;
	ret = start_workers(b);
	if (ret) {
		stop_workers(b);
		free_blk(b);
		return ret;
	}
	*out = b;
	return 0;
}

int virtio_blk_attach_pci(struct virtio_blk *b, int slot)
{
	int ret = virtio_pci_init(&b->vdev, &b->vdev.info, &blk_ops, b, &b->vdev.env);

	if (ret)
		return ret;
	b->on_pci = true;
	return virtio_pci_register(&b->vdev, slot);
}

int virtio_blk_create(struct virtio_blk **out, const struct virtio_env *env,
		      const struct disk_option *opt, unsigned index)
{
	struct blk_backend *be;
	struct virtio_blk *b;
	int ret;

	ret = blk_backend_open_file(&be, opt->path, opt->readonly);
	if (ret)
		return ret;
	ret = virtio_blk_create_backend(&b, env, be, opt->serial, index);
	if (ret) {
		pr_err("disk %s: %s", opt->path, strerror(-ret));
		return ret;
	}
	ret = virtio_blk_attach_pci(b, -1);
	if (ret) {
		pr_err("%s: cannot add to PCI: %s", b->name, strerror(-ret));
		virtio_blk_destroy(b);
		return ret;
	}
	pr_info("%s: %s, %llu sectors%s, serial %.20s", b->name, opt->path,
		(unsigned long long)b->capacity, opt->readonly ? ", read-only" : "",
		(const char *)b->serial);
	*out = b;
	return 0;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	/* Workers first: a completion still reaches the transport. */
	stop_workers(b);
	if (b->on_pci)
		virtio_pci_destroy(&b->vdev);
	free_blk(b);
}

struct virtio_dev *virtio_blk_vdev(struct virtio_blk *b)
{
	return &b->vdev;
}

void virtio_blk_get_stats(struct virtio_blk *b, struct virtio_blk_stats *stats)
{
	const uint64_t *src = (const uint64_t *)&b->stats;
	uint64_t *dst = (uint64_t *)stats;

	for (size_t i = 0; i < sizeof(*stats) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void virtio_blk_quiesce(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->quiesced = true;
	wait_inflight(b);
	pthread_mutex_unlock(&b->lock);
}

void virtio_blk_resume(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->quiesced = false;
	kick_locked(b);
	pthread_mutex_unlock(&b->lock);
}

void virtio_blk_drain(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->lock);
	while (b->inflight || (can_pop(b) && (b->pending || b->busy)))
		pthread_cond_wait(&b->idle, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

/* ---- state ---- */

/* One held completion in the tree: epoch, status GPA, used length, head, status, pad. */
static void held_encode(uint8_t *p, const struct blk_held *h)
{
	uint64_t e = htobe64(h->epoch), g = htobe64(h->status_gpa);
	uint32_t l = htobe32(h->used_len);
	uint16_t hd = htobe16(h->head);

	memcpy(p, &e, 8);
	memcpy(p + 8, &g, 8);
	memcpy(p + 16, &l, 4);
	memcpy(p + 20, &hd, 2);
	p[22] = h->status;
	p[23] = 0;
}

static void held_decode(const uint8_t *p, struct blk_held *h)
{
	uint64_t e, g;
	uint32_t l;
	uint16_t hd;

	memcpy(&e, p, 8);
	memcpy(&g, p + 8, 8);
	memcpy(&l, p + 16, 4);
	memcpy(&hd, p + 20, 2);
	*h = (struct blk_held){.epoch = be64toh(e),
			       .status_gpa = be64toh(g),
			       .used_len = be32toh(l),
			       .head = be16toh(hd),
			       .status = p[22]};
}

int virtio_blk_save(struct virtio_blk *b, void *fdt)
{
	uint8_t held[VIRTIO_BLK_QUEUE_SIZE * VIRTIO_BLK_HELD_BYTES];
	uint32_t active, broken, nr_held;
	bool quiesced;
	int ret;

	/* No completion or release may change the used ring or the held list meanwhile. */
	pthread_mutex_lock(&b->push_lock);
	pthread_mutex_lock(&b->lock);
	if (b->inflight) {
		pthread_mutex_unlock(&b->lock);
		pthread_mutex_unlock(&b->push_lock);
		pr_err("%s: cannot save with requests in flight (quiesce first)", b->name);
		return -EBUSY;
	}
	/* No pop may change the queue while the transport copies it. */
	quiesced = b->quiesced;
	b->quiesced = true;
	active = b->active;
	broken = b->broken;
	nr_held = b->nr_held;
	for (unsigned i = 0; i < nr_held; i++)
		held_encode(held + i * VIRTIO_BLK_HELD_BYTES, &b->held[i]);
	pthread_mutex_unlock(&b->lock);
	ret = b->on_pci ? virtio_pci_save(&b->vdev, fdt) : 0;
	pthread_mutex_lock(&b->lock);
	b->quiesced = quiesced;
	if (!quiesced)
		kick_locked(b);
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_unlock(&b->push_lock);
	if (ret)
		return ret;
	if ((ret = state_put_u64(fdt, "blk-capacity", b->capacity)) ||
	    (ret = state_put_u32(fdt, "blk-readonly", b->be->readonly)) ||
	    (ret = state_put_bytes(fdt, "blk-serial", b->serial, sizeof(b->serial))) ||
	    (ret = state_put_u32(fdt, "blk-active", active)) ||
	    (ret = state_put_u32(fdt, "blk-broken", broken)) ||
	    (ret = state_put_u32(fdt, "blk-held-count", nr_held)) ||
	    (ret = state_put_bytes(fdt, "blk-held", held, nr_held * VIRTIO_BLK_HELD_BYTES)))
		return ret;
	return 0;
}

/* The saved held completions, checked; 0 or -EINVAL.  A tree without them has none. */
static int load_held(struct virtio_blk *b, const void *fdt, int node, bool active,
		     struct blk_held *held, unsigned *nr)
{
	uint8_t raw[VIRTIO_BLK_QUEUE_SIZE * VIRTIO_BLK_HELD_BYTES];
	uint32_t count;

	*nr = 0;
	if (!fdt_getprop(fdt, node, "blk-held-count", NULL))
		return 0;
	if (state_get_u32(fdt, node, "blk-held-count", &count) || count > VIRTIO_BLK_QUEUE_SIZE ||
	    (count && !active) ||
	    state_get_bytes(fdt, node, "blk-held", raw, (size_t)count * VIRTIO_BLK_HELD_BYTES))
		return -EINVAL;
	for (unsigned i = 0; i < count; i++) {
		struct blk_held *h = &held[i];

		held_decode(raw + i * VIRTIO_BLK_HELD_BYTES, h);
		/* Held requests write no data: the used length is the status byte. */
		if (h->head >= VIRTIO_BLK_QUEUE_SIZE || h->used_len != 1 ||
		    !guest_mem_ptr(b->mem, h->status_gpa, 1) ||
		    (h->status != VIRTIO_BLK_S_OK && h->status != VIRTIO_BLK_S_IOERR &&
		     h->status != VIRTIO_BLK_S_UNSUPP) ||
		    raw[i * VIRTIO_BLK_HELD_BYTES + 23])
			return -EINVAL;
	}
	*nr = count;
	return 0;
}

int virtio_blk_load(struct virtio_blk *b, const void *fdt, int node)
{
	struct blk_held held[VIRTIO_BLK_QUEUE_SIZE];
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
	uint32_t ro, active, broken;
	uint64_t capacity;
	unsigned nr_held;
	bool quiesced;
	int ret;

	if (state_get_u64(fdt, node, "blk-capacity", &capacity) ||
	    state_get_u32(fdt, node, "blk-readonly", &ro) ||
	    state_get_bytes(fdt, node, "blk-serial", serial, sizeof(serial)) ||
	    state_get_u32(fdt, node, "blk-active", &active) ||
	    state_get_u32(fdt, node, "blk-broken", &broken) || ro > 1 || active > 1 || broken > 1 ||
	    load_held(b, fdt, node, active, held, &nr_held))
		return -EINVAL;
	if (capacity != b->capacity || ro != b->be->readonly ||
	    memcmp(serial, b->serial, sizeof(serial))) {
		pr_err("%s: the saved disk (%llu sectors%s) is not this one (%llu sectors%s)",
		       b->name, (unsigned long long)capacity, ro ? ", read-only" : "",
		       (unsigned long long)b->capacity, b->be->readonly ? ", read-only" : "");
		return -EINVAL;
	}
	/* Nothing may pop while the transport replaces the queues. */
	pthread_mutex_lock(&b->lock);
	quiesced = b->quiesced;
	b->quiesced = true;
	wait_inflight(b);
	pthread_mutex_unlock(&b->lock);
	/* Nothing in flight: no worker waits for push_lock; keep releases out too. */
	pthread_mutex_lock(&b->push_lock);
	ret = b->on_pci ? virtio_pci_load(&b->vdev, fdt, node) : 0;
	pthread_mutex_lock(&b->lock);
	if (!ret) {
		b->active = active;
		b->broken = broken;
		memcpy(b->held, held, nr_held * sizeof(held[0]));
		b->nr_held = nr_held;
	}
	b->quiesced = quiesced;
	/* The driver will not notify again for chains it already posted. */
	kick_locked(b);
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_unlock(&b->push_lock);
	return ret;
}

/* ---- replication ---- */

void virtio_blk_set_journal(struct virtio_blk *b, const struct virtio_blk_journal_ops *ops,
			    void *opaque)
{
	if (ops && !ops->journal)
		ops = NULL;
	pthread_mutex_lock(&b->jlock);
	b->jopaque = opaque;
	__atomic_store_n(&b->jops, ops, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&b->jlock);
}

void virtio_blk_hold_completions(struct virtio_blk *b, bool hold)
{
	pthread_mutex_lock(&b->lock);
	b->hold = hold;
	pthread_mutex_unlock(&b->lock);
}

void virtio_blk_set_epoch(struct virtio_blk *b, uint64_t epoch)
{
	pthread_mutex_lock(&b->lock);
	b->epoch = epoch;
	pthread_mutex_unlock(&b->lock);
}

unsigned virtio_blk_held_count(struct virtio_blk *b)
{
	unsigned n;

	pthread_mutex_lock(&b->lock);
	n = b->nr_held;
	pthread_mutex_unlock(&b->lock);
	return n;
}

void virtio_blk_release_completions(struct virtio_blk *b, uint64_t upto_epoch)
{
	struct guest_mem *mem = b->mem;
	struct virtq *vq = virtio_queue(&b->vdev, REQ_QUEUE);
	bool pushed = false, broken = false;
	unsigned kept = 0;

	pthread_mutex_lock(&b->push_lock);
	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < b->nr_held; i++) {
		const struct blk_held h = b->held[i];

		if (h.epoch > upto_epoch) {
			b->held[kept++] = h;
			continue;
		}
		/* A device that cannot complete drops them, as a completion would. */
		if (!b->active || b->broken)
			continue;
		/* A loaded head may exceed the size the driver chose for the queue. */
		if (!vq->ready || h.head >= vq->size ||
		    guest_mem_write(mem, h.status_gpa, &h.status, 1) ||
		    virtq_push(vq, mem, h.head, h.used_len))
			broken = b->broken = true;
		else
			pushed = true;
	}
	b->nr_held = kept;
	pthread_mutex_unlock(&b->lock);
	if (pushed)
		virtio_queue_interrupt(&b->vdev, REQ_QUEUE);
	pthread_mutex_unlock(&b->push_lock);
	if (broken) {
		pr_warn("%s: a held completion does not fit the queue: device needs reset",
			b->name);
		virtio_set_needs_reset(&b->vdev);
	}
}

int virtio_blk_replica_apply(struct virtio_blk *b, uint32_t type, uint64_t offset, const void *data,
			     uint64_t len)
{
	struct blk_backend *be = b->be;

	if (type != VIRTIO_BLK_T_OUT && type != VIRTIO_BLK_T_DISCARD &&
	    type != VIRTIO_BLK_T_WRITE_ZEROES)
		return -EINVAL;
	if (be->readonly)
		return -EROFS;
	if (offset % BLK_SECTOR_SIZE || len % BLK_SECTOR_SIZE ||
	    !blk_backend_in_range(be, offset, len) || (type == VIRTIO_BLK_T_OUT && len && !data))
		return -EINVAL;
	if (!len)
		return 0;
	switch (type) {
	case VIRTIO_BLK_T_OUT:
		return blk_backend_pwrite(be, offset, data, len);
	case VIRTIO_BLK_T_DISCARD:
		/* The primary's punched file reads back zeroes: so must the replica. */
		return be->ops->write_zeroes(be, offset, len, true);
	default:
		return be->ops->write_zeroes(be, offset, len, false);
	}
}

int virtio_blk_replica_flush(struct virtio_blk *b)
{
	return b->be->ops->flush(b->be);
}
