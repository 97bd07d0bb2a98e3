// SPDX-License-Identifier: MIT
/*
 * virtio-blk through the PCI transport, without KVM: the test plays the
 * driver (rings and requests in guest RAM, registers through the bus), the
 * disk is a temporary file behind a wrapping backend that counts flushes
 * and can hold I/O back, so requests can be caught in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "state.h"
#include "virtio_blk.h"
#include "virtio_driver.h"

#define RAM	 (4ULL << 20)
#define QS	 16
#define DESC	 0x10000ULL
#define AVAIL	 0x11000ULL
#define USED	 0x12000ULL
#define INDIRECT 0x13000ULL
#define HDR	 0x20000ULL /* request headers, 0x100 apart */
#define STATUS	 0x30000ULL /* status bytes, one per request */
#define DATA	 0x100000ULL
#define DISK	 (1ULL << 20)
#define SECTORS	 (DISK / 512)
#define MSI_ADR	 0xfee00000ULL
#define F(b)	 (1ULL << (b))
#define F_V1	 F(VIRTIO_F_VERSION_1)
#define W	 VIRTQ_DESC_F_WRITE

/* ---- a backend around the file one: counts, gates and failures ---- */

struct tbe {
	struct blk_backend be;
	struct blk_backend *inner;
	pthread_mutex_t m;
	pthread_cond_t c;
	bool gate_closed;
	unsigned entered; /* I/O calls that reached the gate */
	unsigned flushes;
	int fail;    /* -errno for every read/write while set */
	bool mangle; /* writes scribble over the vector afterwards, as backends may */
};

static struct tbe *to_tbe(struct blk_backend *be)
{
	return (struct tbe *)be;
}

static int gate(struct tbe *t)
{
	int fail;

	pthread_mutex_lock(&t->m);
	t->entered++;
	pthread_cond_broadcast(&t->c);
	while (t->gate_closed)
		pthread_cond_wait(&t->c, &t->m);
	fail = t->fail;
	pthread_mutex_unlock(&t->m);
	return fail;
}

static int t_read(struct blk_backend *be, struct iovec *iov, int n, uint64_t off)
{
	int fail = gate(to_tbe(be));

	return fail ? fail : to_tbe(be)->inner->ops->read(to_tbe(be)->inner, iov, n, off);
}

static int t_write(struct blk_backend *be, struct iovec *iov, int n, uint64_t off)
{
	int fail = gate(to_tbe(be)), ret;

	if (fail)
		return fail;
	ret = to_tbe(be)->inner->ops->write(to_tbe(be)->inner, iov, n, off);
	if (to_tbe(be)->mangle)
		for (int i = 0; i < n; i++)
			iov[i] = (struct iovec){.iov_base = NULL, .iov_len = 0};
	return ret;
}

static int t_flush(struct blk_backend *be)
{
	struct tbe *t = to_tbe(be);

	gate(t);
	pthread_mutex_lock(&t->m);
	t->flushes++;
	pthread_mutex_unlock(&t->m);
	return t->inner->ops->flush(t->inner);
}

static int t_discard(struct blk_backend *be, uint64_t off, uint64_t len)
{
	return to_tbe(be)->inner->ops->discard(to_tbe(be)->inner, off, len);
}

static int t_write_zeroes(struct blk_backend *be, uint64_t off, uint64_t len, bool unmap)
{
	return to_tbe(be)->inner->ops->write_zeroes(to_tbe(be)->inner, off, len, unmap);
}

static void t_close(struct blk_backend *be)
{
	struct tbe *t = to_tbe(be);

	blk_backend_close(t->inner);
	pthread_mutex_destroy(&t->m);
	pthread_cond_destroy(&t->c);
	free(t);
}

static const struct blk_backend_ops t_ops = {
    .read = t_read,
    .write = t_write,
    .flush = t_flush,
    .discard = t_discard,
    .write_zeroes = t_write_zeroes,
    .close = t_close,
};

static void gate_set(struct tbe *t, bool closed)
{
	pthread_mutex_lock(&t->m);
	t->gate_closed = closed;
	pthread_cond_broadcast(&t->c);
	pthread_mutex_unlock(&t->m);
}

static void set_fail(struct tbe *t, int fail)
{
	pthread_mutex_lock(&t->m);
	t->fail = fail;
	pthread_mutex_unlock(&t->m);
}

static void gate_wait_entered(struct tbe *t, unsigned n)
{
	pthread_mutex_lock(&t->m);
	while (t->entered < n)
		pthread_cond_wait(&t->c, &t->m);
	pthread_mutex_unlock(&t->m);
}

/* ---- fixture ---- */

struct fx {
	struct vdrv d;
	char path[64];
	int fd;
	bool borrowed_file; /* fresh_like: the path belongs to another fixture */
	struct tbe *t;
	struct virtio_blk *blk;
	unsigned next_desc, nreq;
	uint16_t used_seen;
};

static uint8_t pat(uint64_t off)
{
	return (uint8_t)(off * 7 + off / 512 + 1);
}

static void make_file(struct fx *f, uint64_t size)
{
	uint8_t buf[4096];

	strcpy(f->path, "/tmp/vmm-blk-test-XXXXXX");
	f->fd = mkstemp(f->path);
	assert_true(f->fd >= 0);
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		for (unsigned i = 0; i < sizeof(buf); i++)
			buf[i] = pat(off + i);
		assert_int_equal(pwrite(f->fd, buf, sizeof(buf), (off_t)off), sizeof(buf));
	}
}

static void make_dev(struct fx *f, bool readonly, const char *serial)
{
	struct virtio_env env = vd_env(&f->d);
	struct blk_backend *inner;

	assert_int_equal(blk_backend_open_file(&inner, f->path, readonly), 0);
	f->t = calloc(1, sizeof(*f->t));
	assert_non_null(f->t);
	f->t->be = (struct blk_backend){.ops = &t_ops, .size = inner->size, .readonly = readonly};
	f->t->inner = inner;
	pthread_mutex_init(&f->t->m, NULL);
	pthread_cond_init(&f->t->c, NULL);
	assert_int_equal(virtio_blk_create_backend(&f->blk, &env, &f->t->be, serial, 0), 0);
	assert_int_equal(virtio_blk_attach_pci(f->blk, -1), 0);
	vd_probe(&f->d, virtio_blk_vdev(f->blk)->pci.slot);
}

static struct fx *fx_new(bool readonly, uint64_t size)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	vd_init(&f->d, RAM);
	make_file(f, size);
	make_dev(f, readonly, "test-serial");
	return f;
}

static void fx_free(struct fx *f)
{
	virtio_blk_destroy(f->blk);
	vd_fini(&f->d);
	close(f->fd);
	if (!f->borrowed_file)
		unlink(f->path);
	free(f);
}

static int setup(void **state)
{
	*state = fx_new(false, DISK);
	return 0;
}

static int setup_ro(void **state)
{
	*state = fx_new(true, DISK);
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

static void bring_up(struct fx *f, uint64_t features)
{
	struct vdrv *d = &f->d;

	assert_true(vd_negotiate(d, F_V1 | features) & VIRTIO_CONFIG_S_FEATURES_OK);
	/* A new driver starts with empty rings. */
	memset(guest_mem_ptr(&d->mem, DESC, 0x3000), 0, 0x3000);
	vd_msix_enable(d, true, false);
	vd_msix_entry(d, 1, MSI_ADR, 0x61, false);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	assert_int_equal(vd_queue(d, 0, QS, DESC, AVAIL, USED), 1);
	vd_driver_ok(d);
	f->next_desc = 0;
	f->used_seen = 0;
}

/* ---- requests ---- */

struct seg {
	uint64_t gpa;
	uint32_t len;
	uint16_t flags; /* W */
};

/* Descriptors for segs (consecutive entries), offered; returns the head. */
static uint16_t post(struct fx *f, const struct seg *s, unsigned n)
{
	uint16_t head;

	if (f->next_desc + n > QS)
		f->next_desc = 0;
	head = (uint16_t)f->next_desc;
	for (unsigned i = 0; i < n; i++)
		vd_desc(&f->d, DESC, head + i, s[i].gpa, s[i].len,
			s[i].flags | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0), (uint16_t)(head + i + 1));
	f->next_desc += n;
	vd_offer(&f->d, AVAIL, QS, head);
	return head;
}

static void kick(struct fx *f)
{
	vd_notify(&f->d, 0);
	virtio_blk_drain(f->blk);
}

/* The next used element: must be there; returns its length, checks its id. */
static uint32_t next_used(struct fx *f, uint16_t head)
{
	uint32_t id, len;

	assert_true((uint16_t)(vd_used_idx(&f->d, USED) - f->used_seen) >= 1);
	vd_used_elem(&f->d, USED, QS, f->used_seen++, &id, &len);
	assert_int_equal(id, head);
	return len;
}

static uint64_t hdr(struct fx *f, uint32_t type, uint64_t sector)
{
	uint64_t gpa = HDR + 0x100ULL * (f->nreq++ % 64);
	struct virtio_blk_outhdr h = {.type = type, .ioprio = 0, .sector = sector};

	assert_int_equal(guest_mem_write(&f->d.mem, gpa, &h, sizeof(h)), 0);
	return gpa;
}

static uint8_t status_at(struct fx *f, uint64_t gpa)
{
	uint8_t s;

	assert_int_equal(guest_mem_read(&f->d.mem, gpa, &s, 1), 0);
	return s;
}

/*
 * Post one request (not notified): header, one data buffer (device-
 * writable for IN/GET_ID), status (set to 0xee, its GPA in *st).  Returns
 * the head.
 */
static uint16_t submit(struct fx *f, uint32_t type, uint64_t sector, uint64_t data,
		       uint32_t data_len, uint64_t *st)
{
	bool in = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
	struct seg s[3];
	unsigned n = 1;

	*st = STATUS + f->nreq;
	s[0] = (struct seg){hdr(f, type, sector), 16, 0};
	assert_int_equal(guest_mem_write(&f->d.mem, *st, &(uint8_t){0xee}, 1), 0);
	if (data_len)
		s[n++] = (struct seg){data, data_len, in ? W : 0};
	s[n++] = (struct seg){*st, 1, W};
	return post(f, s, n);
}

/* One request, served: returns the status byte, *len the used length. */
static uint8_t request(struct fx *f, uint32_t type, uint64_t sector, uint64_t data,
		       uint32_t data_len, uint32_t *len)
{
	uint64_t st;
	uint16_t head = submit(f, type, sector, data, data_len, &st);
	uint32_t l;

	kick(f);
	l = next_used(f, head);
	if (len)
		*len = l;
	return status_at(f, st);
}

static void fill_guest(struct fx *f, uint64_t gpa, uint64_t len, uint8_t seed)
{
	uint8_t *p = guest_mem_ptr(&f->d.mem, gpa, len);

	assert_non_null(p);
	for (uint64_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 13);
}

static bool file_is(struct fx *f, uint64_t off, uint64_t len, int byte /* -1: pattern */)
{
	uint8_t *buf = malloc(len);
	bool ok = true;

	assert_int_equal(pread(f->fd, buf, len, (off_t)off), (ssize_t)len);
	for (uint64_t i = 0; i < len && ok; i++)
		ok = buf[i] == (byte < 0 ? pat(off + i) : (uint8_t)byte);
	free(buf);
	return ok;
}

static uint64_t dev_features(struct fx *f)
{
	uint64_t v = 0;

	for (unsigned sel = 0; sel < 2; sel++) {
		vd_common_write(&f->d, VIRTIO_PCI_COMMON_DFSELECT, 4, sel);
		v |= vd_common_read(&f->d, VIRTIO_PCI_COMMON_DF, 4) << (32 * sel);
	}
	return v;
}

/* ---- tests ---- */

static void test_identity_config(void **state)
{
	struct fx *f = *state;
	struct vdrv *d = &f->d;
	uint64_t feat = dev_features(f);

	assert_int_equal(vd_cfg_read(d, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_BLOCK);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_NUMQ, 2), 1);
	assert_int_equal(d->device_len, VIRTIO_BLK_CONFIG_SIZE);
	assert_true(feat & F(VIRTIO_BLK_F_SEG_MAX));
	assert_true(feat & F(VIRTIO_BLK_F_BLK_SIZE));
	assert_true(feat & F(VIRTIO_BLK_F_FLUSH));
	assert_true(feat & F(VIRTIO_BLK_F_DISCARD));
	assert_true(feat & F(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_false(feat & F(VIRTIO_BLK_F_RO));
	assert_false(feat & F(VIRTIO_BLK_F_CONFIG_WCE));
	assert_int_equal(vd_read(d, d->device + offsetof(struct virtio_blk_config, capacity), 8),
			 SECTORS);
	assert_int_equal(vd_read(d, d->device + offsetof(struct virtio_blk_config, seg_max), 4),
			 VIRTIO_BLK_SEG_MAX);
	assert_int_equal(vd_read(d, d->device + offsetof(struct virtio_blk_config, blk_size), 4),
			 512);
	assert_int_equal(
	    vd_read(d, d->device + offsetof(struct virtio_blk_config, max_discard_sectors), 4),
	    VIRTIO_BLK_MAX_DWZ_SECTORS);
	assert_int_equal(
	    vd_read(d, d->device + offsetof(struct virtio_blk_config, max_discard_seg), 4),
	    VIRTIO_BLK_MAX_DWZ_SEG);
	assert_int_equal(
	    vd_read(d, d->device + offsetof(struct virtio_blk_config, discard_sector_alignment), 4),
	    VIRTIO_BLK_DISCARD_ALIGN);
	assert_int_equal(
	    vd_read(d, d->device + offsetof(struct virtio_blk_config, max_write_zeroes_seg), 4),
	    VIRTIO_BLK_MAX_DWZ_SEG);
	assert_int_equal(
	    vd_read(d, d->device + offsetof(struct virtio_blk_config, write_zeroes_may_unmap), 1),
	    1);
	/* Config is read-only: a write changes nothing. */
	vd_write(d, d->device, 8, 5);
	assert_int_equal(vd_read(d, d->device, 8), SECTORS);
	vd_common_write(d, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	assert_int_equal(vd_common_read(d, VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_BLK_QUEUE_SIZE);
}

static void test_write_read_round_trip(void **state)
{
	struct fx *f = *state;
	uint8_t *src, dst[4096];
	uint32_t len;
	uint16_t head;

	bring_up(f, 0);
	/* OUT of 4 KiB at sector 8, data in two buffers. */
	fill_guest(f, DATA, 4096, 3);
	uint64_t st = STATUS + 1;
	struct seg w[4] = {{hdr(f, VIRTIO_BLK_T_OUT, 8), 16, 0},
			   {DATA, 1024, 0},
			   {DATA + 1024, 3072, 0},
			   {st, 1, W}};
	head = post(f, w, 4);
	kick(f);
	assert_int_equal(next_used(f, head), 1);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	src = guest_mem_ptr(&f->d.mem, DATA, 4096);
	assert_int_equal(pread(f->fd, dst, 4096, 8 * 512), 4096);
	assert_memory_equal(src, dst, 4096);
	assert_true(file_is(f, 0, 8 * 512, -1));
	assert_true(file_is(f, 16 * 512, 512, -1));

	/* IN of the same, header split 8+8, data in three buffers, status in the last one. */
	uint64_t h = hdr(f, VIRTIO_BLK_T_IN, 8);
	uint64_t out = DATA + 0x10000;
	struct seg r[5] = {{h, 8, 0},
			   {h + 8, 8, 0},
			   {out, 512, W},
			   {out + 512, 3000, W},
			   {out + 3512, 585, W}}; /* 584 data bytes + status */
	memset(guest_mem_ptr(&f->d.mem, out, 8192), 0, 8192);
	head = post(f, r, 5);
	kick(f);
	assert_int_equal(next_used(f, head), 4097);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, out, 4096), src, 4096);
	assert_int_equal(status_at(f, out + 4096), VIRTIO_BLK_S_OK);

	/* And a plain read of untouched sectors. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 100, DATA + 0x20000, 2048, &len), 0);
	assert_int_equal(len, 2049);
	for (unsigned i = 0; i < 2048; i++)
		assert_int_equal(((uint8_t *)guest_mem_ptr(&f->d.mem, DATA + 0x20000, 2048))[i],
				 pat(100 * 512 + i));
	/* The queue's vector fired. */
	assert_true(f->d.nr_msi >= 1);
	assert_int_equal(f->d.msi[0].data, 0x61);
}

static bool page_dirty(struct fx *f, uint64_t gpa)
{
	uint64_t page = gpa / GUEST_PAGE_SIZE; /* low RAM: file offset = gpa */

	return f->d.mem.dirty[page / 64] & (1ULL << (page % 64));
}

static void clear_dirty(struct fx *f)
{
	memset(f->d.mem.dirty, 0, (RAM / GUEST_PAGE_SIZE + 63) / 64 * 8);
}

static void test_read_dirty_marks(void **state)
{
	struct fx *f = *state;
	uint64_t buf = DATA + 0x40000; /* 3 pages, straddling */
	uint32_t len;

	bring_up(f, 0);
	clear_dirty(f);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, buf + 0x800, 8192, &len), 0);
	assert_int_equal(len, 8193);
	assert_true(page_dirty(f, buf));
	assert_true(page_dirty(f, buf + 0x1000));
	assert_true(page_dirty(f, buf + 0x2000));
	assert_false(page_dirty(f, buf + 0x3000));
	assert_false(page_dirty(f, buf - 0x1000));
	assert_true(page_dirty(f, STATUS)); /* the status byte */
	assert_true(page_dirty(f, USED));   /* the used ring */

	/* A write dirties only the status byte and the used ring, not the data. */
	clear_dirty(f);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, buf + 0x800, 8192, &len), 0);
	assert_false(page_dirty(f, buf));
	assert_false(page_dirty(f, buf + 0x1000));
	assert_true(page_dirty(f, STATUS));
}

static void test_flush(void **state)
{
	struct fx *f = *state;
	uint32_t len;

	bring_up(f, 0);
	assert_int_equal(f->t->flushes, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 1);
	assert_int_equal(f->t->flushes, 1);
	/* The sector field means nothing for a flush. */
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, ~0ULL, 0, 0, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(f->t->flushes, 2);
}

static void test_get_id(void **state)
{
	struct fx *f = *state;
	uint8_t want[20] = "test-serial", *got;
	uint32_t len;

	bring_up(f, 0);
	memset(guest_mem_ptr(&f->d.mem, DATA, 64), 0xaa, 64);
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, DATA, 20, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 21);
	got = guest_mem_ptr(&f->d.mem, DATA, 20);
	assert_memory_equal(got, want, 20); /* NUL-padded */
	/* A shorter buffer gets what fits. */
	memset(guest_mem_ptr(&f->d.mem, DATA, 64), 0xaa, 64);
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, DATA, 4, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 5);
	assert_memory_equal(got, "test", 4);
	assert_int_equal(got[4], 0xaa);
}

static void test_default_serial(void **state)
{
	struct fx *f = *state;
	uint8_t want[20] = "vmm-disk0";
	uint32_t len;

	virtio_blk_destroy(f->blk);
	make_dev(f, false, "");
	bring_up(f, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, DATA, 20, &len), VIRTIO_BLK_S_OK);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, DATA, 20), want, 20);
}

/* A DISCARD/WRITE_ZEROES request with n segments from the arrays. */
static uint8_t dwz(struct fx *f, uint32_t type, const uint64_t *sector, const uint32_t *nsec,
		   const uint32_t *flags, unsigned n)
{
	struct virtio_blk_discard_write_zeroes seg[20];
	uint32_t len;
	uint8_t s;

	for (unsigned i = 0; i < n; i++)
		seg[i] = (struct virtio_blk_discard_write_zeroes){
		    .sector = sector[i], .num_sectors = nsec[i], .flags = flags[i]};
	assert_int_equal(guest_mem_write(&f->d.mem, DATA, seg, sizeof(seg[0]) * n), 0);
	s = request(f, type, 0, DATA, (uint32_t)(sizeof(seg[0]) * n), &len);
	assert_int_equal(len, 1);
	return s;
}

static void test_discard(void **state)
{
	struct fx *f = *state;
	uint64_t sec[2] = {16, 64};
	uint32_t nsec[2] = {8, 16}, flags[2] = {0, 0};
	struct stat before, after;

	bring_up(f, 0);
	assert_int_equal(fsync(f->fd), 0);
	assert_int_equal(fstat(f->fd, &before), 0);
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 2), VIRTIO_BLK_S_OK);
	/* Holes read back as zeroes and give their blocks back; the rest is untouched. */
	assert_true(file_is(f, 16 * 512, 8 * 512, 0));
	assert_true(file_is(f, 64 * 512, 16 * 512, 0));
	assert_true(file_is(f, 0, 16 * 512, -1));
	assert_true(file_is(f, 24 * 512, 40 * 512, -1));
	assert_true(file_is(f, 80 * 512, 512, -1));
	assert_int_equal(fstat(f->fd, &after), 0);
	assert_true(after.st_blocks < before.st_blocks);
	assert_int_equal(after.st_size, DISK);

	/* UNMAP is not a discard flag; unknown flags neither. */
	flags[0] = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 1), VIRTIO_BLK_S_UNSUPP);
	flags[0] = 0x80;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 1), VIRTIO_BLK_S_UNSUPP);
	/* Past the end, too big, wrapping: IOERR and nothing discarded. */
	flags[0] = 0;
	sec[0] = SECTORS - 4;
	nsec[0] = 8;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 1), VIRTIO_BLK_S_IOERR);
	assert_true(file_is(f, (SECTORS - 4) * 512, 4 * 512, -1));
	sec[0] = ~0ULL - 2;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 1), VIRTIO_BLK_S_IOERR);
	sec[0] = 0;
	nsec[0] = VIRTIO_BLK_MAX_DWZ_SECTORS + 1;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 1), VIRTIO_BLK_S_IOERR);
	/* A bad second segment stops the first too. */
	sec[0] = 200, nsec[0] = 8, sec[1] = SECTORS, nsec[1] = 1;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 2), VIRTIO_BLK_S_IOERR);
	assert_true(file_is(f, 200 * 512, 8 * 512, -1));
	/* Too many segments, a partial segment, none. */
	{
		uint64_t s17[17] = {0};
		uint32_t n17[17] = {0}, f17[17] = {0};

		assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, s17, n17, f17, 17),
				 VIRTIO_BLK_S_IOERR);
		assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, s17, n17, f17, 16), VIRTIO_BLK_S_OK);
	}
	assert_int_equal(request(f, VIRTIO_BLK_T_DISCARD, 0, DATA, 24, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_DISCARD, 0, 0, 0, NULL), VIRTIO_BLK_S_IOERR);
}

static void test_write_zeroes(void **state)
{
	struct fx *f = *state;
	uint64_t sec[2] = {32, 100};
	uint32_t nsec[2] = {8, 3}, flags[2] = {0, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};

	bring_up(f, 0);
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, nsec, flags, 2), VIRTIO_BLK_S_OK);
	assert_true(file_is(f, 32 * 512, 8 * 512, 0));
	assert_true(file_is(f, 100 * 512, 3 * 512, 0));
	assert_true(file_is(f, 31 * 512, 512, -1));
	assert_true(file_is(f, 40 * 512, 60 * 512, -1));
	assert_true(file_is(f, 103 * 512, 512, -1));
	/* And through the device: read back zeroes. */
	memset(guest_mem_ptr(&f->d.mem, DATA + 0x8000, 4096), 0xff, 4096);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 32, DATA + 0x8000, 4096, NULL), 0);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(((uint8_t *)guest_mem_ptr(&f->d.mem, DATA + 0x8000, 4096))[i], 0);
	flags[0] = 2;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, nsec, flags, 1),
			 VIRTIO_BLK_S_UNSUPP);
	flags[0] = 0;
	sec[0] = SECTORS;
	nsec[0] = 1;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, nsec, flags, 1),
			 VIRTIO_BLK_S_IOERR);
	/* Zero sectors is nothing to do. */
	sec[0] = SECTORS;
	nsec[0] = 0;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, nsec, flags, 1), VIRTIO_BLK_S_OK);
}

static void test_readonly(void **state)
{
	struct fx *f = *state;
	uint64_t feat = dev_features(f), sec = 0;
	uint32_t nsec = 8, flags = 0, len;

	assert_true(feat & F(VIRTIO_BLK_F_RO));
	assert_false(feat & F(VIRTIO_BLK_F_DISCARD));
	assert_false(feat & F(VIRTIO_BLK_F_WRITE_ZEROES));
	bring_up(f, F(VIRTIO_BLK_F_RO));
	fill_guest(f, DATA, 4096, 9);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA, 4096, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(len, 1);
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, &sec, &nsec, &flags, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, &sec, &nsec, &flags, 1),
			 VIRTIO_BLK_S_IOERR);
	assert_true(file_is(f, 0, DISK, -1));
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 1, DATA, 512, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 513);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->d.mem, DATA, 1), pat(512));
}

static void test_out_of_range(void **state)
{
	struct fx *f = *state;
	uint32_t len;

	bring_up(f, 0);
	/* The last sector is fine; one past, or straddling the end, is not. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, SECTORS - 1, DATA, 512, &len), 0);
	assert_int_equal(len, 513);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, SECTORS, DATA, 512, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(len, 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, SECTORS - 1, DATA, 1024, &len),
			 VIRTIO_BLK_S_IOERR);
	fill_guest(f, DATA, 1024, 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, SECTORS - 1, DATA, 1024, &len),
			 VIRTIO_BLK_S_IOERR);
	assert_true(file_is(f, DISK - 512, 512, -1));
	/* Sectors whose byte offset or end wraps around 64 bits. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, ~0ULL, DATA, 512, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, ~0ULL / 512 + 1, DATA, 512, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, (1ULL << 63) / 256, DATA, 1024, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_true(file_is(f, 0, DISK, -1));
	/* A zero-length read at the very end is in range and does nothing. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, SECTORS, 0, 0, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 1);
}

static void test_bad_lengths(void **state)
{
	struct fx *f = *state;
	uint32_t len;
	uint16_t head;

	bring_up(f, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 513, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(len, 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 100, &len), VIRTIO_BLK_S_IOERR);
	fill_guest(f, DATA, 1024, 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA, 1000, &len), VIRTIO_BLK_S_IOERR);
	assert_true(file_is(f, 0, 1024, -1));

	/* A header short of 16 bytes (8 readable), with a status byte: IOERR. */
	uint64_t st = STATUS + 0x80;
	struct seg s[2] = {{hdr(f, VIRTIO_BLK_T_IN, 0), 8, 0}, {st, 1, W}};
	head = post(f, s, 2);
	kick(f);
	assert_int_equal(next_used(f, head), 1);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_IOERR);
	/* No header at all. */
	struct seg s2[1] = {{st, 1, W}};
	head = post(f, s2, 1);
	kick(f);
	assert_int_equal(next_used(f, head), 1);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_IOERR);
	/* The queue still works. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 512, NULL), VIRTIO_BLK_S_OK);
}

static void test_unsupported(void **state)
{
	struct fx *f = *state;
	static const uint32_t types[] = {2,	      3,  5, 10, 12, VIRTIO_BLK_T_SECURE_ERASE,
					 0x80000000u, ~0u};
	uint32_t len;

	bring_up(f, 0);
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		assert_int_equal(request(f, types[i], 0, DATA, 512, &len), VIRTIO_BLK_S_UNSUPP);
		assert_int_equal(len, 1);
	}
	struct virtio_blk_stats st;

	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.unsupported, sizeof(types) / sizeof(types[0]));
}

static uint8_t dev_status(struct fx *f)
{
	return (uint8_t)vd_common_read(&f->d, VIRTIO_PCI_COMMON_STATUS, 1);
}

static void test_no_status_byte(void **state)
{
	struct fx *f = *state;
	uint16_t before;

	bring_up(f, 0);
	/* Only readable buffers: nowhere to report. */
	struct seg s[2] = {{hdr(f, VIRTIO_BLK_T_OUT, 0), 16, 0}, {DATA, 512, 0}};
	post(f, s, 2);
	before = vd_used_idx(&f->d, USED);
	kick(f);
	assert_true(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(vd_used_idx(&f->d, USED), before);
	assert_true(file_is(f, 0, 512, -1));
	/* A zero-length writable buffer is no status byte either. */
	bring_up(f, 0);
	assert_false(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	struct seg s2[2] = {{hdr(f, VIRTIO_BLK_T_FLUSH, 0), 16, 0}, {STATUS, 0, W}};
	post(f, s2, 2);
	kick(f);
	assert_true(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	/* After a reset the device works again. */
	bring_up(f, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 512, NULL), VIRTIO_BLK_S_OK);
}

static void test_malformed_ring(void **state)
{
	struct fx *f = *state;

	bring_up(f, 0);
	/* A descriptor outside RAM. */
	struct seg s[2] = {{hdr(f, VIRTIO_BLK_T_IN, 0), 16, 0}, {RAM - 256, 512, W}};
	post(f, s, 2);
	kick(f);
	assert_true(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
}

static void test_io_error(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_stats st;
	uint32_t len;

	bring_up(f, 0);
	set_fail(f->t, -EIO);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 512, &len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(len, 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA, 512, &len), VIRTIO_BLK_S_IOERR);
	set_fail(f->t, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 512, &len), VIRTIO_BLK_S_OK);
	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.errors, 2);
	assert_int_equal(st.reads, 1);
	assert_int_equal(st.read_bytes, 512);
}

/* Many requests in one notification, with indirect tables and event index: all served. */
static void test_batch_indirect(void **state)
{
	struct fx *f = *state;
	enum { N = 12 };
	uint16_t heads[N];
	bool seen[QS] = {false};
	uint32_t id, len;

	bring_up(f, F(VIRTIO_RING_F_INDIRECT_DESC) | F(VIRTIO_RING_F_EVENT_IDX));
	for (unsigned i = 0; i < N; i++) {
		uint64_t table = INDIRECT + 0x100ULL * i, buf = DATA + 0x1000ULL * i;
		bool wr = i % 2;

		if (wr)
			fill_guest(f, buf, 1024, (uint8_t)i);
		uint64_t h = hdr(f, wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, 400 + 2 * i);
		vd_desc(&f->d, table, 0, h, 16, VIRTQ_DESC_F_NEXT, 1);
		vd_desc(&f->d, table, 1, buf, 1024, (wr ? 0 : W) | VIRTQ_DESC_F_NEXT, 2);
		vd_desc(&f->d, table, 2, STATUS + 0x100 + i, 1, W, 0);
		vd_desc(&f->d, DESC, i, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
		heads[i] = (uint16_t)i;
		vd_offer(&f->d, AVAIL, QS, heads[i]);
	}
	kick(f);
	assert_int_equal(vd_used_idx(&f->d, USED), N);
	for (unsigned i = 0; i < N; i++) {
		vd_used_elem(&f->d, USED, QS, i, &id, &len);
		assert_true(id < N && !seen[id]);
		seen[id] = true;
		assert_int_equal(len, id % 2 ? 1 : 1025);
		assert_int_equal(status_at(f, STATUS + 0x100 + id), 0);
	}
	for (unsigned i = 0; i < N; i++) {
		uint8_t *g = guest_mem_ptr(&f->d.mem, DATA + 0x1000ULL * i, 1024), disk[1024];

		assert_int_equal(pread(f->fd, disk, 1024, (off_t)(400 + 2 * i) * 512), 1024);
		if (i % 2)
			assert_memory_equal(g, disk, 1024);
		else
			assert_true(file_is(f, (400 + 2 * i) * 512ULL, 1024, -1) &&
				    !memcmp(g, disk, 1024));
	}
	/* With event index the driver's used_event decides: at least one interrupt. */
	assert_true(f->d.nr_msi >= 1);
}

struct resetter {
	struct fx *f;
	bool done;
};

static void *reset_thread(void *arg)
{
	struct resetter *r = arg;
	uint8_t zero = 0;

	/* Status 0 through the common config, as a driver's reset does (no cmocka here). */
	bus_access(&r->f->d.mmio, r->f->d.common + VIRTIO_PCI_COMMON_STATUS, &zero, 1, true);
	__atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void test_reset_waits_for_inflight(void **state)
{
	struct fx *f = *state;
	struct resetter r = {.f = f};
	uint8_t used[4 + 8 * QS + 2], after[sizeof(used)];
	struct timespec ts = {0, 50 * 1000 * 1000};
	pthread_t th;

	bring_up(f, 0);
	gate_set(f->t, true);
	struct seg s[3] = {{hdr(f, VIRTIO_BLK_T_IN, 0), 16, 0}, {DATA, 4096, W}, {STATUS, 1, W}};
	memset(guest_mem_ptr(&f->d.mem, DATA, 4096), 0, 4096);
	*(uint8_t *)guest_mem_ptr(&f->d.mem, STATUS, 1) = 0xee;
	post(f, s, 3);
	vd_notify(&f->d, 0);
	gate_wait_entered(f->t, 1);

	assert_int_equal(pthread_create(&th, NULL, reset_thread, &r), 0);
	nanosleep(&ts, NULL);
	assert_false(__atomic_load_n(&r.done, __ATOMIC_ACQUIRE)); /* held by the read */
	gate_set(f->t, false);
	pthread_join(th, NULL);
	assert_true(r.done);
	assert_int_equal(dev_status(f), 0);
	/* The driver forgot the request: it was not completed, and nothing changes later. */
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	assert_int_equal(status_at(f, STATUS), 0xee);
	guest_mem_read(&f->d.mem, USED, used, sizeof(used));
	nanosleep(&ts, NULL);
	guest_mem_read(&f->d.mem, USED, after, sizeof(after));
	assert_memory_equal(used, after, sizeof(used));
	/* The device comes back up. */
	bring_up(f, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 512, NULL), VIRTIO_BLK_S_OK);
}

static void test_quiesce(void **state)
{
	struct fx *f = *state;
	void *fdt = malloc(65536);

	bring_up(f, 0);
	gate_set(f->t, true);
	struct seg s[3] = {{hdr(f, VIRTIO_BLK_T_IN, 0), 16, 0}, {DATA, 512, W}, {STATUS, 1, W}};
	post(f, s, 3);
	vd_notify(&f->d, 0);
	gate_wait_entered(f->t, 1);
	/* In flight: no save. */
	assert_int_equal(state_tree_begin(fdt, 65536), 0);
	assert_int_equal(fdt_begin_node(fdt, "blk"), 0);
	assert_int_equal(virtio_blk_save(f->blk, fdt), -EBUSY);
	gate_set(f->t, false);
	virtio_blk_quiesce(f->blk);
	assert_int_equal(vd_used_idx(&f->d, USED), 1);
	/* Quiesced: a new request stays in the ring... */
	struct seg s2[3] = {
	    {hdr(f, VIRTIO_BLK_T_IN, 1), 16, 0}, {DATA, 512, W}, {STATUS + 1, 1, W}};
	post(f, s2, 3);
	vd_notify(&f->d, 0);
	virtio_blk_drain(f->blk);
	assert_int_equal(vd_used_idx(&f->d, USED), 1);
	assert_int_equal(virtio_blk_save(f->blk, fdt), 0);
	/* ... until resumed. */
	virtio_blk_resume(f->blk);
	virtio_blk_drain(f->blk);
	assert_int_equal(vd_used_idx(&f->d, USED), 2);
	free(fdt);
}

static size_t save(struct virtio_blk *blk, void *fdt, size_t size)
{
	assert_int_equal(state_tree_begin(fdt, size), 0);
	assert_int_equal(fdt_begin_node(fdt, "blk0"), 0);
	assert_int_equal(virtio_blk_save(blk, fdt), 0);
	assert_int_equal(fdt_end_node(fdt), 0);
	assert_int_equal(state_tree_end(fdt), 0);
	assert_int_equal(fdt_check_full(fdt, size), 0);
	return fdt_totalsize(fdt);
}

/* A fresh device on the same image, on a fresh machine whose RAM came along. */
static struct fx *fresh_like(struct fx *f)
{
	struct fx *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	vd_init(&g->d, RAM);
	memcpy(g->d.mem.host_base, f->d.mem.host_base, RAM);
	strcpy(g->path, f->path);
	g->borrowed_file = true;
	g->fd = open(f->path, O_RDWR);
	assert_true(g->fd >= 0);
	make_dev(g, false, "test-serial");
	return g;
}

static void test_save_load(void **state)
{
	struct fx *f = *state, *g;
	void *a = malloc(65536), *b = malloc(65536);
	size_t la, lb;
	int node;

	bring_up(f, F(VIRTIO_RING_F_EVENT_IDX));
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 3, DATA, 512, NULL), 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, NULL), 0);
	/* One request posted and not yet seen by the device travels in RAM. */
	struct seg s[3] = {
	    {hdr(f, VIRTIO_BLK_T_IN, 5), 16, 0}, {DATA + 0x1000, 512, W}, {STATUS + 9, 1, W}};
	virtio_blk_quiesce(f->blk);
	uint16_t head = post(f, s, 3);
	la = save(f->blk, a, 65536);

	g = fresh_like(f);
	node = state_find_node(a, 0, "blk0");
	assert_true(node >= 0);
	virtio_blk_quiesce(g->blk); /* hold the pending request until we compared */
	assert_int_equal(virtio_blk_load(g->blk, a, node), 0);
	lb = save(g->blk, b, 65536);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	assert_memory_equal(&virtio_blk_vdev(g->blk)->t.vqs[0], &virtio_blk_vdev(f->blk)->t.vqs[0],
			    sizeof(struct virtq));
	/* The loaded device serves the pending request without a new notification. */
	virtio_blk_resume(g->blk);
	virtio_blk_drain(g->blk);
	g->used_seen = 2;
	assert_int_equal(vd_used_idx(&g->d, USED), 3);
	assert_int_equal(next_used(g, head), 513);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&g->d.mem, DATA + 0x1000, 1), pat(5 * 512));
	/* And the next one normally. */
	g->next_desc = f->next_desc;
	g->nreq = f->nreq;
	assert_int_equal(request(g, VIRTIO_BLK_T_IN, 6, DATA, 512, NULL), 0);
	/* The original stays quiesced and untouched. */
	assert_int_equal(vd_used_idx(&f->d, USED), 2);
	fx_free(g);

	/* A different disk refuses the state. */
	struct fx *h = fx_new(false, DISK / 2);

	assert_int_equal(virtio_blk_load(h->blk, a, node), -EINVAL);
	fx_free(h);
	h = fx_new(true, DISK);
	assert_int_equal(virtio_blk_load(h->blk, a, node), -EINVAL);
	fx_free(h);

	/* Bad values and missing properties. */
	g = fresh_like(f);
	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "blk0");
	assert_int_equal(fdt_setprop_u32(b, node, "blk-active", 2), 0);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "blk0");
	assert_int_equal(fdt_setprop_string(b, node, "blk-serial", "other"), 0);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "blk0");
	assert_int_equal(fdt_delprop(b, node, "blk-broken"), 0);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	fx_free(g);
	free(a);
	free(b);
}

static void test_create_errors(void **state)
{
	struct fx *f = *state;
	struct virtio_env env = vd_env(&f->d);
	struct disk_option opt = {.readonly = false};
	struct virtio_blk *b;
	int fd;

	strcpy(opt.path, "/nonexistent/disk.img");
	assert_int_equal(virtio_blk_create(&b, &env, &opt, 1), -ENOENT);
	strcpy(opt.path, "/tmp");
	assert_int_equal(virtio_blk_create(&b, &env, &opt, 1), -EISDIR);
	opt.readonly = true;
	assert_int_equal(virtio_blk_create(&b, &env, &opt, 1), -EINVAL);
	strcpy(opt.path, "/dev/null");
	assert_int_equal(virtio_blk_create(&b, &env, &opt, 1), -EINVAL);
	/* Not a multiple of 512. */
	strcpy(opt.path, "/tmp/vmm-blk-odd-XXXXXX");
	fd = mkstemp(opt.path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1000), 0);
	assert_int_equal(virtio_blk_create(&b, &env, &opt, 1), -EINVAL);
	/* A good one, through the option, on the bus. */
	assert_int_equal(ftruncate(fd, 8192), 0);
	strcpy(opt.serial, "opt-serial");
	assert_int_equal(virtio_blk_create(&b, &env, &opt, 1), 0);
	struct vdrv *d = &f->d;
	vd_probe(d, virtio_blk_vdev(b)->pci.slot);
	assert_int_equal(vd_read(d, d->device, 8), 16);
	assert_true(dev_features(f) & F(VIRTIO_BLK_F_RO));
	virtio_blk_destroy(b);
	close(fd);
	unlink(opt.path);
}

/* ---- replication: journal ---- */

struct jentry {
	unsigned disk;
	uint32_t type;
	uint64_t off, len;
	uint8_t *data; /* OUT: a copy */
	int iovcnt;
};

struct journal_rec {
	pthread_mutex_t m;
	unsigned n;
	struct jentry e[64];
};

static void rec_journal(void *opaque, unsigned disk, uint32_t type, uint64_t off, uint64_t len,
			const struct iovec *iov, int iovcnt)
{
	struct journal_rec *r = opaque;
	struct jentry *e;
	uint64_t done = 0;

	pthread_mutex_lock(&r->m);
	if (r->n < 64) {
		e = &r->e[r->n];
		*e = (struct jentry){
		    .disk = disk, .type = type, .off = off, .len = len, .iovcnt = iovcnt};
		if (iov) {
			e->data = malloc(len);
			for (int i = 0; i < iovcnt && e->data; i++) {
				if (done + iov[i].iov_len > len)
					break; /* caught below: the lengths must add up */
				memcpy(e->data + done, iov[i].iov_base, iov[i].iov_len);
				done += iov[i].iov_len;
			}
			if (done != len)
				e->len = ~0ULL;
		}
	}
	r->n++;
	pthread_mutex_unlock(&r->m);
}

static const struct virtio_blk_journal_ops rec_ops = {.journal = rec_journal};

static void rec_free(struct journal_rec *r)
{
	for (unsigned i = 0; i < r->n && i < 64; i++)
		free(r->e[i].data);
	pthread_mutex_destroy(&r->m);
}

static void test_journal(void **state)
{
	struct fx *f = *state;
	struct journal_rec r = {.n = 0};
	uint64_t sec[3] = {16, 64, 90};
	uint32_t nsec[3] = {8, 0, 4}, flags[3] = {0, 0, 0};
	uint16_t head;

	pthread_mutex_init(&r.m, NULL);
	bring_up(f, 0);
	virtio_blk_set_journal(f->blk, &rec_ops, &r);
	f->t->mangle = true;

	/* An OUT of 4 KiB at sector 8 in two buffers: one entry with the data. */
	fill_guest(f, DATA, 4096, 5);
	uint64_t st = STATUS + 1;
	struct seg w[4] = {{hdr(f, VIRTIO_BLK_T_OUT, 8), 16, 0},
			   {DATA, 1536, 0},
			   {DATA + 1536, 2560, 0},
			   {st, 1, W}};
	head = post(f, w, 4);
	kick(f);
	assert_int_equal(next_used(f, head), 1);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.e[0].disk, 0);
	assert_int_equal(r.e[0].type, VIRTIO_BLK_T_OUT);
	assert_int_equal(r.e[0].off, 8 * 512);
	assert_int_equal(r.e[0].len, 4096);
	assert_int_equal(r.e[0].iovcnt, 2);
	assert_non_null(r.e[0].data);
	assert_memory_equal(r.e[0].data, guest_mem_ptr(&f->d.mem, DATA, 4096), 4096);

	/* Reads, flushes, GET_ID, unsupported requests and failures: nothing. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 8, DATA + 0x10000, 4096, NULL), 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, DATA + 0x10000, 20, NULL), 0);
	assert_int_equal(request(f, 77, 0, DATA, 512, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, SECTORS, DATA, 512, NULL),
			 VIRTIO_BLK_S_IOERR);
	set_fail(f->t, -EIO);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA, 512, NULL), VIRTIO_BLK_S_IOERR);
	set_fail(f->t, 0);
	/* A write without data does nothing on the image: nothing either. */
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, 0, 0, NULL), 0);
	assert_int_equal(r.n, 1);

	/* DISCARD and WRITE_ZEROES: one entry per non-empty segment, no data. */
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 3), VIRTIO_BLK_S_OK);
	flags[2] = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	sec[0] = 200;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, nsec, flags, 3), VIRTIO_BLK_S_OK);
	assert_int_equal(r.n, 5);
	assert_int_equal(r.e[1].type, VIRTIO_BLK_T_DISCARD);
	assert_int_equal(r.e[1].off, 16 * 512);
	assert_int_equal(r.e[1].len, 8 * 512);
	assert_null(r.e[1].data);
	assert_int_equal(r.e[1].iovcnt, 0);
	assert_int_equal(r.e[2].type, VIRTIO_BLK_T_DISCARD);
	assert_int_equal(r.e[2].off, 90 * 512);
	assert_int_equal(r.e[2].len, 4 * 512);
	assert_int_equal(r.e[3].type, VIRTIO_BLK_T_WRITE_ZEROES);
	assert_int_equal(r.e[3].off, 200 * 512);
	assert_int_equal(r.e[3].len, 8 * 512);
	assert_int_equal(r.e[4].type, VIRTIO_BLK_T_WRITE_ZEROES);
	assert_int_equal(r.e[4].off, 90 * 512);
	/* A rejected one (past the end): nothing. */
	sec[0] = SECTORS;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, nsec, flags, 1),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(r.n, 5);

	/* Off: nothing more. */
	virtio_blk_set_journal(f->blk, NULL, NULL);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA, 512, NULL), 0);
	assert_int_equal(r.n, 5);
	rec_free(&r);
}

/* The journal replayed on a second image with replica_apply gives the same disk. */
static void test_journal_replay(void **state)
{
	struct fx *f = *state, *g = fx_new(false, DISK);
	struct journal_rec r = {.n = 0};
	uint64_t sec[2] = {40, 300};
	uint32_t nsec[2] = {16, 8}, flags[2] = {0, 0};
	uint8_t *a = malloc(DISK), *b = malloc(DISK);

	pthread_mutex_init(&r.m, NULL);
	bring_up(f, 0);
	virtio_blk_set_journal(f->blk, &rec_ops, &r);
	for (unsigned i = 0; i < 6; i++) {
		fill_guest(f, DATA + 0x2000ULL * i, 2048, (uint8_t)(i * 31));
		assert_int_equal(
		    request(f, VIRTIO_BLK_T_OUT, 37 * i + 1, DATA + 0x2000ULL * i, 2048, NULL), 0);
	}
	assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, sec, nsec, flags, 2), 0);
	sec[0] = 3;
	assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, sec, nsec, flags, 1), 0);
	assert_int_equal(r.n, 9);
	for (unsigned i = 0; i < r.n; i++)
		assert_int_equal(virtio_blk_replica_apply(g->blk, r.e[i].type, r.e[i].off,
							  r.e[i].data, r.e[i].len),
				 0);
	assert_int_equal(virtio_blk_replica_flush(g->blk), 0);
	assert_int_equal(pread(f->fd, a, DISK, 0), DISK);
	assert_int_equal(pread(g->fd, b, DISK, 0), DISK);
	assert_memory_equal(a, b, DISK);
	free(a);
	free(b);
	rec_free(&r);
	fx_free(g);
}

/* ---- replication: held completions ---- */

static void test_hold_write(void **state)
{
	struct fx *f = *state;
	uint64_t st;
	uint16_t head;
	unsigned msi;

	bring_up(f, 0);
	virtio_blk_hold_completions(f->blk, true);
	virtio_blk_set_epoch(f->blk, 1);
	fill_guest(f, DATA, 1024, 7);
	head = submit(f, VIRTIO_BLK_T_OUT, 4, DATA, 1024, &st);
	msi = f->d.nr_msi;
	clear_dirty(f);
	kick(f);
	/* The write is on the image, its completion is not in the guest. */
	{
		uint8_t disk[1024];

		assert_int_equal(pread(f->fd, disk, 1024, 4 * 512), 1024);
		assert_memory_equal(disk, guest_mem_ptr(&f->d.mem, DATA, 1024), 1024);
	}
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	assert_int_equal(status_at(f, st), 0xee);
	assert_int_equal(f->d.nr_msi, msi);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	assert_false(page_dirty(f, STATUS));
	assert_false(page_dirty(f, USED));
	/* An earlier epoch releases nothing. */
	virtio_blk_release_completions(f->blk, 0);
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	/* Its own epoch: status, used element, interrupt, dirty pages. */
	virtio_blk_release_completions(f->blk, 1);
	assert_int_equal(vd_used_idx(&f->d, USED), 1);
	assert_int_equal(next_used(f, head), 1);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(f->d.nr_msi, msi + 1);
	assert_int_equal(f->d.msi[msi].data, 0x61);
	assert_true(page_dirty(f, STATUS));
	assert_true(page_dirty(f, USED));
	assert_int_equal(virtio_blk_held_count(f->blk), 0);
	/* Nothing twice. */
	virtio_blk_release_completions(f->blk, UINT64_MAX);
	assert_int_equal(vd_used_idx(&f->d, USED), 1);
	assert_int_equal(f->d.nr_msi, msi + 1);
}

static void test_hold_epochs(void **state)
{
	struct fx *f = *state;
	uint64_t st[6], sec = 500;
	uint16_t head[6];
	uint32_t nsec = 8, flags = 0, id, len;
	unsigned msi;

	bring_up(f, 0);
	virtio_blk_hold_completions(f->blk, true);
	virtio_blk_set_epoch(f->blk, 1);
	fill_guest(f, DATA, 4096, 1);
	/* Epoch 1: a write, a flush, a failed write (held too: it is a write). */
	head[0] = submit(f, VIRTIO_BLK_T_OUT, 0, DATA, 512, &st[0]);
	kick(f);
	head[1] = submit(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &st[1]);
	kick(f);
	head[2] = submit(f, VIRTIO_BLK_T_OUT, SECTORS, DATA, 512, &st[2]);
	kick(f);
	/* Epoch 2: a write, a discard, a write-zeroes. */
	virtio_blk_set_epoch(f->blk, 2);
	head[3] = submit(f, VIRTIO_BLK_T_OUT, 1, DATA + 512, 512, &st[3]);
	kick(f);
	struct virtio_blk_discard_write_zeroes seg = {
	    .sector = sec, .num_sectors = nsec, .flags = flags};
	assert_int_equal(guest_mem_write(&f->d.mem, DATA + 0x8000, &seg, sizeof(seg)), 0);
	head[4] = submit(f, VIRTIO_BLK_T_DISCARD, 0, DATA + 0x8000, 16, &st[4]);
	kick(f);
	assert_int_equal(guest_mem_write(&f->d.mem, DATA + 0x8100, &seg, sizeof(seg)), 0);
	head[5] = submit(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA + 0x8100, 16, &st[5]);
	kick(f);
	assert_int_equal(virtio_blk_held_count(f->blk), 6);
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	assert_int_equal(f->t->flushes, 1); /* the flush was done */
	assert_true(file_is(f, 500 * 512, 8 * 512, 0));

	msi = f->d.nr_msi;
	virtio_blk_release_completions(f->blk, 1);
	assert_int_equal(vd_used_idx(&f->d, USED), 3);
	assert_int_equal(f->d.nr_msi, msi + 1); /* once for the batch */
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(next_used(f, head[i]), 1);
	assert_int_equal(status_at(f, st[0]), VIRTIO_BLK_S_OK);
	assert_int_equal(status_at(f, st[1]), VIRTIO_BLK_S_OK);
	assert_int_equal(status_at(f, st[2]), VIRTIO_BLK_S_IOERR);
	for (unsigned i = 3; i < 6; i++)
		assert_int_equal(status_at(f, st[i]), 0xee);
	assert_int_equal(virtio_blk_held_count(f->blk), 3);

	virtio_blk_release_completions(f->blk, 2);
	assert_int_equal(vd_used_idx(&f->d, USED), 6);
	assert_int_equal(f->d.nr_msi, msi + 2);
	for (unsigned i = 3; i < 6; i++) {
		vd_used_elem(&f->d, USED, QS, (uint16_t)i, &id, &len);
		assert_int_equal(id, head[i]);
		assert_int_equal(len, 1);
		assert_int_equal(status_at(f, st[i]), VIRTIO_BLK_S_OK);
	}
	assert_int_equal(virtio_blk_held_count(f->blk), 0);
}

/* Reads, GET_ID and unsupported types complete at once with hold on; writes wait. */
static void test_hold_reads_complete(void **state)
{
	struct fx *f = *state;
	uint64_t st;
	uint16_t head;
	uint32_t len;

	bring_up(f, 0);
	virtio_blk_hold_completions(f->blk, true);
	virtio_blk_set_epoch(f->blk, 3);
	fill_guest(f, DATA, 512, 9);
	head = submit(f, VIRTIO_BLK_T_OUT, 10, DATA, 512, &st);
	kick(f);
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	/* A later read completes before the held write, and sees its data (the image). */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 10, DATA + 0x1000, 512, &len), 0);
	assert_int_equal(len, 513);
	assert_memory_equal(guest_mem_ptr(&f->d.mem, DATA + 0x1000, 512),
			    guest_mem_ptr(&f->d.mem, DATA, 512), 512);
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, DATA + 0x2000, 20, &len), 0);
	assert_int_equal(len, 21);
	assert_int_equal(request(f, 99, 0, 0, 0, &len), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	assert_int_equal(status_at(f, st), 0xee);
	virtio_blk_release_completions(f->blk, 3);
	assert_int_equal(next_used(f, head), 1);
	assert_int_equal(status_at(f, st), 0);

	/* Hold off: new writes complete at once; what was held stays held until released. */
	head = submit(f, VIRTIO_BLK_T_OUT, 11, DATA, 512, &st);
	kick(f);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	virtio_blk_hold_completions(f->blk, false);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 12, DATA, 512, NULL), 0);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	virtio_blk_release_completions(f->blk, UINT64_MAX);
	assert_int_equal(next_used(f, head), 1);
	assert_int_equal(status_at(f, st), 0);
}

static void test_hold_quiesce(void **state)
{
	struct fx *f = *state;
	void *fdt = malloc(65536);
	uint64_t st;
	uint16_t head;

	bring_up(f, 0);
	virtio_blk_hold_completions(f->blk, true);
	head = submit(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &st);
	kick(f);
	/* Held is not in flight: quiesce returns, save works. */
	virtio_blk_quiesce(f->blk);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	save(f->blk, fdt, 65536);
	virtio_blk_resume(f->blk);
	virtio_blk_release_completions(f->blk, 0);
	assert_int_equal(next_used(f, head), 1);
	free(fdt);
}

static void test_hold_save_load(void **state)
{
	struct fx *f = *state, *g;
	void *a = malloc(65536), *b = malloc(65536);
	uint64_t st[3];
	uint16_t head[3];
	size_t la, lb;
	unsigned msi;
	int node;

	bring_up(f, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 512, NULL), 0);
	virtio_blk_hold_completions(f->blk, true);
	virtio_blk_set_epoch(f->blk, 7);
	fill_guest(f, DATA, 1024, 3);
	head[0] = submit(f, VIRTIO_BLK_T_OUT, 20, DATA, 1024, &st[0]);
	kick(f);
	head[1] = submit(f, VIRTIO_BLK_T_OUT, SECTORS, DATA, 512, &st[1]); /* IOERR */
	kick(f);
	virtio_blk_set_epoch(f->blk, 8);
	head[2] = submit(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &st[2]);
	kick(f);
	virtio_blk_quiesce(f->blk);
	la = save(f->blk, a, 65536);
	node = state_find_node(a, 0, "blk0");
	assert_true(node >= 0);
	{
		int plen;

		assert_non_null(fdt_getprop(a, node, "blk-held", &plen));
		assert_int_equal(plen, 3 * VIRTIO_BLK_HELD_BYTES);
	}

	g = fresh_like(f);
	assert_int_equal(virtio_blk_load(g->blk, a, node), 0);
	assert_int_equal(virtio_blk_held_count(g->blk), 3);
	assert_int_equal(vd_used_idx(&g->d, USED), 1);
	/* The same tree again. */
	lb = save(g->blk, b, 65536);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	/* Take-over: everything held completes into the new machine's ring, in order. */
	g->used_seen = 1;
	msi = g->d.nr_msi;
	clear_dirty(g);
	virtio_blk_release_completions(g->blk, UINT64_MAX);
	assert_int_equal(vd_used_idx(&g->d, USED), 4);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(next_used(g, head[i]), 1);
	assert_int_equal(status_at(g, st[0]), VIRTIO_BLK_S_OK);
	assert_int_equal(status_at(g, st[1]), VIRTIO_BLK_S_IOERR);
	assert_int_equal(status_at(g, st[2]), VIRTIO_BLK_S_OK);
	assert_int_equal(g->d.nr_msi, msi + 1);
	assert_true(page_dirty(g, STATUS));
	assert_true(page_dirty(g, USED));
	assert_int_equal(virtio_blk_held_count(g->blk), 0);
	/* The original is untouched: still held, not in its ring. */
	assert_int_equal(vd_used_idx(&f->d, USED), 1);
	assert_int_equal(status_at(f, st[0]), 0xee);
	assert_int_equal(virtio_blk_held_count(f->blk), 3);
	/* And the loaded device goes on serving (hold is the host's, off on g). */
	virtio_blk_resume(g->blk);
	g->next_desc = f->next_desc;
	g->nreq = f->nreq;
	assert_int_equal(request(g, VIRTIO_BLK_T_OUT, 30, DATA, 512, NULL), 0);
	fx_free(g);
	free(a);
	free(b);
}

/* A copy of tree a with blk0's held list replaced; returns blk0's node in b. */
static int with_held(const void *a, void *b, int count, const void *held, int len)
{
	int node;

	assert_int_equal(fdt_open_into(a, b, 65536), 0);
	node = state_find_node(b, 0, "blk0");
	assert_true(node >= 0);
	if (count < 0) {
		assert_int_equal(fdt_delprop(b, node, "blk-held-count"), 0);
		assert_int_equal(fdt_delprop(b, node, "blk-held"), 0);
	} else {
		assert_int_equal(fdt_setprop_u32(b, node, "blk-held-count", (uint32_t)count), 0);
		assert_int_equal(fdt_setprop(b, node, "blk-held", held, len), 0);
	}
	return node;
}

static void put_held(uint8_t *p, uint64_t epoch, uint64_t gpa, uint32_t len, uint16_t head,
		     uint8_t status)
{
	fdt64_t e = cpu_to_fdt64(epoch), g = cpu_to_fdt64(gpa);
	fdt32_t l = cpu_to_fdt32(len);
	fdt16_t h = cpu_to_fdt16(head);

	memcpy(p, &e, 8);
	memcpy(p + 8, &g, 8);
	memcpy(p + 16, &l, 4);
	memcpy(p + 20, &h, 2);
	p[22] = status;
	p[23] = 0;
}

static void test_load_bad_held(void **state)
{
	struct fx *f = *state, *g;
	void *a = malloc(65536), *b = malloc(65536);
	static uint8_t held[(VIRTIO_BLK_QUEUE_SIZE + 1) * VIRTIO_BLK_HELD_BYTES];
	struct virtq vq_before;
	uint64_t st;
	uint16_t ghead;
	int node;

	bring_up(f, 0);
	virtio_blk_quiesce(f->blk);
	save(f->blk, a, 65536);

	/* The target has a held completion of its own, which a bad load must not lose. */
	g = fresh_like(f);
	bring_up(g, 0);
	virtio_blk_hold_completions(g->blk, true);
	ghead = submit(g, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &st);
	kick(g);
	assert_int_equal(virtio_blk_held_count(g->blk), 1);
	memcpy(&vq_before, &virtio_blk_vdev(g->blk)->t.vqs[0], sizeof(vq_before));

	/* Too many. */
	for (unsigned i = 0; i <= VIRTIO_BLK_QUEUE_SIZE; i++)
		put_held(held + i * VIRTIO_BLK_HELD_BYTES, 1, STATUS + i, 1, (uint16_t)(i % 16), 0);
	node = with_held(a, b, VIRTIO_BLK_QUEUE_SIZE + 1, held, (int)sizeof(held));
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	/* A count the records do not match. */
	node = with_held(a, b, 2, held, VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	node = with_held(a, b, 1, held, 2 * VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	/* Head out of range. */
	put_held(held, 1, STATUS, 1, VIRTIO_BLK_QUEUE_SIZE, 0);
	node = with_held(a, b, 1, held, VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	put_held(held, 1, STATUS, 1, 0xffff, 0);
	node = with_held(a, b, 1, held, VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	/* Status byte outside RAM (past the end, in the hole, wrapping). */
	static const uint64_t bad_gpa[] = {RAM, RAM + 0x1000, 0xfee00000ULL, ~0ULL};
	for (unsigned i = 0; i < sizeof(bad_gpa) / sizeof(bad_gpa[0]); i++) {
		put_held(held, 1, bad_gpa[i], 1, 0, 0);
		node = with_held(a, b, 1, held, VIRTIO_BLK_HELD_BYTES);
		assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	}
	/* A used length other than the status byte, a status that is none. */
	put_held(held, 1, STATUS, 0, 0, 0);
	node = with_held(a, b, 1, held, VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	put_held(held, 1, STATUS, 4097, 0, 0);
	node = with_held(a, b, 1, held, VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	put_held(held, 1, STATUS, 1, 0, 7);
	node = with_held(a, b, 1, held, VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), -EINVAL);
	/* Nothing changed on the target. */
	assert_int_equal(virtio_blk_held_count(g->blk), 1);
	assert_memory_equal(&vq_before, &virtio_blk_vdev(g->blk)->t.vqs[0], sizeof(vq_before));
	assert_int_equal(vd_used_idx(&g->d, USED), 0);
	virtio_blk_release_completions(g->blk, UINT64_MAX);
	assert_int_equal(next_used(g, ghead), 1);

	/* Held completions on a device the driver never started. */
	fx_free(g);
	g = fresh_like(f);
	{
		struct fx *h = fx_new(false, DISK);
		void *c = malloc(65536);

		save(h->blk, c, 65536); /* inactive */
		put_held(held, 1, STATUS, 1, 0, 0);
		node = with_held(c, b, 1, held, VIRTIO_BLK_HELD_BYTES);
		assert_int_equal(virtio_blk_load(h->blk, b, node), -EINVAL);
		free(c);
		fx_free(h);
	}

	/* A good one, and a tree without any held list (none). */
	put_held(held, 5, STATUS + 3, 1, 2, VIRTIO_BLK_S_OK);
	node = with_held(a, b, 1, held, VIRTIO_BLK_HELD_BYTES);
	assert_int_equal(virtio_blk_load(g->blk, b, node), 0);
	assert_int_equal(virtio_blk_held_count(g->blk), 1);
	node = with_held(a, b, -1, NULL, 0);
	assert_int_equal(virtio_blk_load(g->blk, b, node), 0);
	assert_int_equal(virtio_blk_held_count(g->blk), 0);
	fx_free(g);
	free(a);
	free(b);
}

static void test_hold_reset_drops(void **state)
{
	struct fx *f = *state;
	uint64_t st;

	bring_up(f, 0);
	virtio_blk_hold_completions(f->blk, true);
	submit(f, VIRTIO_BLK_T_OUT, 0, DATA, 512, &st);
	kick(f);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	vd_common_write(&f->d, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(dev_status(f), 0);
	assert_int_equal(virtio_blk_held_count(f->blk), 0);
	bring_up(f, 0);
	virtio_blk_release_completions(f->blk, UINT64_MAX);
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	assert_int_equal(status_at(f, st), 0xee);
	/* Hold is still on for the new driver. */
	submit(f, VIRTIO_BLK_T_OUT, 0, DATA, 512, &st);
	kick(f);
	assert_int_equal(virtio_blk_held_count(f->blk), 1);
	virtio_blk_release_completions(f->blk, UINT64_MAX);
	assert_int_equal(vd_used_idx(&f->d, USED), 1);
}

/* A driver that reuses heads of held requests overflows the list: NEEDS_RESET. */
static void test_hold_overflow(void **state)
{
	struct fx *f = *state;
	uint64_t st;

	bring_up(f, 0);
	virtio_blk_hold_completions(f->blk, true);
	for (unsigned i = 0; i < VIRTIO_BLK_QUEUE_SIZE; i++) {
		submit(f, VIRTIO_BLK_T_OUT, 0, 0, 0, &st); /* no data: cheap */
		if (i % 4 == 3)
			kick(f);
	}
	assert_int_equal(virtio_blk_held_count(f->blk), VIRTIO_BLK_QUEUE_SIZE);
	assert_false(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	submit(f, VIRTIO_BLK_T_OUT, 0, 0, 0, &st);
	kick(f);
	assert_true(dev_status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(virtio_blk_held_count(f->blk), VIRTIO_BLK_QUEUE_SIZE);
	/* A broken device completes nothing: released ones are dropped. */
	virtio_blk_release_completions(f->blk, UINT64_MAX);
	assert_int_equal(virtio_blk_held_count(f->blk), 0);
	assert_int_equal(vd_used_idx(&f->d, USED), 0);
	bring_up(f, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA, 512, NULL), 0);
}

/* Completions racing with releases from another thread: each exactly once. */
struct releaser {
	struct virtio_blk *blk;
	bool stop;
};

static void *release_thread(void *arg)
{
	struct releaser *r = arg;
	uint64_t epoch = 0;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		virtio_blk_release_completions(r->blk, epoch++);
		sched_yield();
	}
	return NULL;
}

static void test_hold_concurrent_release(void **state)
{
	struct fx *f = *state;
	struct releaser r = {.blk = f->blk};
	enum { ROUNDS = 40, PER = 5 }; /* 15 descriptors: no reuse within a round */
	pthread_t th;
	uint32_t id, len;

	bring_up(f, 0);
	virtio_blk_hold_completions(f->blk, true);
	assert_int_equal(pthread_create(&th, NULL, release_thread, &r), 0);
	for (unsigned round = 0; round < ROUNDS; round++) {
		bool seen[QS] = {false};
		uint16_t base = vd_used_idx(&f->d, USED);

		virtio_blk_set_epoch(f->blk, round * 1000);
		for (unsigned i = 0; i < PER; i++) {
			uint64_t st;

			submit(f, i % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, i, DATA + 0x1000 * i,
			       512, &st);
		}
		vd_notify(&f->d, 0);
		virtio_blk_drain(f->blk);
		virtio_blk_release_completions(f->blk, UINT64_MAX);
		assert_int_equal((uint16_t)(vd_used_idx(&f->d, USED) - base), PER);
		for (unsigned i = 0; i < PER; i++) {
			vd_used_elem(&f->d, USED, QS, (uint16_t)(base + i), &id, &len);
			assert_true(id < QS && !seen[id]);
			seen[id] = true;
		}
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	assert_int_equal(virtio_blk_held_count(f->blk), 0);
}

/* ---- replication: the standby's replica ---- */

static void test_replica_apply(void **state)
{
	struct fx *f = *state;
	uint8_t buf[4096];
	unsigned flushes;

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 3 + 1);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, 8192, buf, 4096), 0);
	{
		uint8_t got[4096];

		assert_int_equal(pread(f->fd, got, 4096, 8192), 4096);
		assert_memory_equal(got, buf, 4096);
	}
	assert_true(file_is(f, 0, 8192, -1));
	assert_true(file_is(f, 12288, 512, -1));
	/* The last sector, exactly. */
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, DISK - 512, buf, 512),
			 0);
	assert_int_equal(
	    virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_DISCARD, 64 * 512, NULL, 16 * 512), 0);
	assert_true(file_is(f, 64 * 512, 16 * 512, 0));
	assert_true(file_is(f, 80 * 512, 512, -1));
	assert_int_equal(
	    virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_WRITE_ZEROES, 101 * 512, NULL, 3 * 512),
	    0);
	assert_true(file_is(f, 101 * 512, 3 * 512, 0));
	assert_true(file_is(f, 100 * 512, 512, -1));
	assert_true(file_is(f, 104 * 512, 512, -1));
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, 0, NULL, 0), 0);

	/* Outside the disk, straddling its end, wrapping, misaligned, other types. */
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, DISK, buf, 512),
			 -EINVAL);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, DISK - 512, buf, 1024),
			 -EINVAL);
	assert_int_equal(
	    virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_DISCARD, ~0ULL - 511, NULL, 1024),
	    -EINVAL);
	assert_int_equal(
	    virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_WRITE_ZEROES, 512, NULL, ~0ULL - 511),
	    -EINVAL);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, 100, buf, 512),
			 -EINVAL);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, 512, buf, 100),
			 -EINVAL);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, 512, NULL, 512),
			 -EINVAL);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_FLUSH, 0, NULL, 0), -EINVAL);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_IN, 0, buf, 512), -EINVAL);
	{
		struct stat sb;

		assert_int_equal(fstat(f->fd, &sb), 0);
		assert_int_equal(sb.st_size, DISK);
	}
	assert_true(file_is(f, 0, 512, -1));

	flushes = f->t->flushes;
	assert_int_equal(virtio_blk_replica_flush(f->blk), 0);
	assert_int_equal(f->t->flushes, flushes + 1);
}

static void test_replica_readonly(void **state)
{
	struct fx *f = *state;
	uint8_t buf[512] = {0};

	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_OUT, 0, buf, 512), -EROFS);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_DISCARD, 0, NULL, 512),
			 -EROFS);
	assert_int_equal(virtio_blk_replica_apply(f->blk, VIRTIO_BLK_T_WRITE_ZEROES, 0, NULL, 512),
			 -EROFS);
	assert_true(file_is(f, 0, DISK, -1));
	assert_int_equal(virtio_blk_replica_flush(f->blk), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_identity_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_read_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_dirty_marks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_default_serial, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readonly, setup_ro, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_lengths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsupported, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_status_byte, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_ring, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_io_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_indirect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_waits_for_inflight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quiesce, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_epochs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_reads_complete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_quiesce, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_save_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_bad_held, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_reset_drops, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_overflow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hold_concurrent_release, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replica_apply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replica_readonly, setup_ro, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
