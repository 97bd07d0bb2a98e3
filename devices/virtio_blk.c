// SPDX-License-Identifier: MIT
/*
 * virtio-blk: worker threads pop chains, check them, and move data with
 * positioned vectored I/O straight between the image and guest buffers.
 *
 * Locks: blk->lock guards the device flags and the avail side of the
 * queue (pops); blk->push_lock orders the used side (pushes and the
 * interrupt decision that reads them) and is taken before blk->lock.
 * Transport calls are made without blk->lock.
 */
#include "virtio_blk.h"

#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

	pthread_mutex_t push_lock;
	unsigned nr_workers;
	struct blk_worker *workers[VIRTIO_BLK_WORKERS];
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

/*
 * The one place a request leaves the device: status byte, used ring,
 * interrupt.  Replication will hold disk-write completions back here
 * until their epoch is acknowledged.  After a reset began nothing is
 * written: the driver has forgotten the request.
 */
static void blk_complete(struct virtio_blk *b, const struct virtq_chain *c, uint8_t status,
			 uint32_t written)
{
	struct guest_mem *mem = b->mem;
	struct virtq *vq = virtio_queue(&b->vdev, REQ_QUEUE);
	bool pushed = false, broken = false;

	pthread_mutex_lock(&b->push_lock);
	pthread_mutex_lock(&b->lock);
	if (b->active && !b->broken) {
		virtq_chain_write(c, mem, c->in_len - 1, &status, 1);
		if (virtq_push(vq, mem, c->head, written))
			broken = b->broken = true;
		else
			pushed = true;
		if (status == VIRTIO_BLK_S_IOERR)
			count(&b->stats.errors, NULL, 0);
		else if (status == VIRTIO_BLK_S_UNSUPP)
			count(&b->stats.unsupported, NULL, 0);
	}
	pthread_mutex_unlock(&b->lock);
	if (pushed)
		virtio_queue_interrupt(&b->vdev, REQ_QUEUE);
	pthread_mutex_unlock(&b->push_lock);
	if (broken)
		virtio_set_needs_reset(&b->vdev);
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
	uint64_t len = c->out_len - HDR_LEN;
	int n;

	if (b->be->readonly || len % BLK_SECTOR_SIZE || !in_range(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = chain_iov(c, false, HDR_LEN, len, w->iov);
	if (n && b->be->ops->write(b->be, w->iov, n, sector * BLK_SECTOR_SIZE))
		return VIRTIO_BLK_S_IOERR;
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
	bool discard = type == VIRTIO_BLK_T_DISCARD;
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
	for (i = 0; i < n; i++) {
		uint64_t off = le64toh(seg[i].sector) * BLK_SECTOR_SIZE;
		uint64_t bytes = (uint64_t)le32toh(seg[i].num_sectors) * BLK_SECTOR_SIZE;
		bool unmap = le32toh(seg[i].flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;

		if (!bytes)
			continue;
		ret = discard ? b->be->ops->discard(b->be, off, bytes)
			      : b->be->ops->write_zeroes(b->be, off, bytes, unmap);
		/* A discard is a hint: a backend that cannot drop blocks keeps them. */
		if (ret && !(discard && ret == -EOPNOTSUPP))
			return VIRTIO_BLK_S_IOERR;
	}
	count(discard ? &b->stats.discards : &b->stats.write_zeroes, NULL, 0);
	return VIRTIO_BLK_S_OK;
}

/*
 * Serve the worker's chain: the status to report, with *written the bytes
 * of data written into the chain; NO_STATUS if there is nowhere to put one.
 */
static int blk_serve(struct virtio_blk *b, struct blk_worker *w, uint32_t *written)
{
	const struct virtq_chain *c = &w->chain;
	struct virtio_blk_outhdr hdr;
	uint64_t sector;
	uint32_t type;

	*written = 0;
	if (!c->in_len)
		return NO_STATUS;
	/* The used length must fit in 32 bits; no real request comes near it. */
	if (c->in_len > UINT32_MAX || c->out_len > UINT32_MAX)
		return VIRTIO_BLK_S_IOERR;
	if (virtq_chain_read(c, 0, &hdr, HDR_LEN) < HDR_LEN)
		return VIRTIO_BLK_S_IOERR;
	type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);
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

		status = blk_serve(b, w, &written);
		if (status != NO_STATUS)
			blk_complete(b, &w->chain, (uint8_t)status, written + 1);

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
	pthread_cond_init(&b->work, NULL);
	pthread_cond_init(&b->idle, NULL);
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

int virtio_blk_save(struct virtio_blk *b, void *fdt)
{
	uint32_t active, broken;
	bool quiesced;
	int ret;

	pthread_mutex_lock(&b->lock);
	if (b->inflight) {
		pthread_mutex_unlock(&b->lock);
		pr_err("%s: cannot save with requests in flight (quiesce first)", b->name);
		return -EBUSY;
	}
	/* No pop may change the queue while the transport copies it. */
	quiesced = b->quiesced;
	b->quiesced = true;
	active = b->active;
	broken = b->broken;
	pthread_mutex_unlock(&b->lock);
	ret = b->on_pci ? virtio_pci_save(&b->vdev, fdt) : 0;
	pthread_mutex_lock(&b->lock);
	b->quiesced = quiesced;
	if (!quiesced)
		kick_locked(b);
	pthread_mutex_unlock(&b->lock);
	if (ret)
		return ret;
	if ((ret = state_put_u64(fdt, "blk-capacity", b->capacity)) ||
	    (ret = state_put_u32(fdt, "blk-readonly", b->be->readonly)) ||
	    (ret = state_put_bytes(fdt, "blk-serial", b->serial, sizeof(b->serial))) ||
	    (ret = state_put_u32(fdt, "blk-active", active)) ||
	    (ret = state_put_u32(fdt, "blk-broken", broken)))
		return ret;
	return 0;
}

int virtio_blk_load(struct virtio_blk *b, const void *fdt, int node)
{
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
	uint32_t ro, active, broken;
	uint64_t capacity;
	bool quiesced;
	int ret;

	if (state_get_u64(fdt, node, "blk-capacity", &capacity) ||
	    state_get_u32(fdt, node, "blk-readonly", &ro) ||
	    state_get_bytes(fdt, node, "blk-serial", serial, sizeof(serial)) ||
	    state_get_u32(fdt, node, "blk-active", &active) ||
	    state_get_u32(fdt, node, "blk-broken", &broken) || ro > 1 || active > 1 || broken > 1)
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
	ret = b->on_pci ? virtio_pci_load(&b->vdev, fdt, node) : 0;
	pthread_mutex_lock(&b->lock);
	if (!ret) {
		b->active = active;
		b->broken = broken;
	}
	b->quiesced = quiesced;
	/* The driver will not notify again for chains it already posted. */
	kick_locked(b);
	pthread_mutex_unlock(&b->lock);
	return ret;
}
