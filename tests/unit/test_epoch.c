// SPDX-License-Identifier: MIT
/*
 * Replication epochs on the wire: what the primary sends is what the
 * standby stages, and a partial, damaged or out-of-order epoch is refused
 * without touching the standby's image.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <libfdt.h>
#include <linux/virtio_blk.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "epoch.h"
#include "guest_mem.h"
#include "state.h"

#define MIB  (1ULL << 20)
#define PAGE GUEST_PAGE_SIZE

static int memfd(void)
{
	int fd = memfd_create("epoch", 0);

	assert_true(fd >= 0);
	return fd;
}

/* A small valid state tree as an epoch's STATE. */
static void make_state(struct epoch *e, uint32_t marker)
{
	size_t size = 4096;
	void *t = malloc(size);

	assert_int_equal(state_tree_begin(t, size), 0);
	assert_int_equal(state_put_u32(t, "marker", marker), 0);
	assert_int_equal(state_tree_end(t), 0);
	e->state = t;
	e->state_len = fdt_totalsize(t);
}

/* Epoch seq: pages 3 and 4 and 100, a write and a discard, a state tree. */
static void make_epoch(struct epoch *e, uint64_t seq)
{
	uint8_t page[PAGE];
	uint8_t data[1024];
	struct iovec iov[2] = {{data, 512}, {data + 512, 512}};

	memset(e, 0, sizeof(*e));
	e->seq = seq;
	for (uint64_t p = 3; p <= 4; p++) {
		memset(page, (int)(p + seq), sizeof(page));
		assert_int_equal(page_list_add(&e->pages, p, page), 0);
	}
	memset(page, 0, sizeof(page)); /* a page that became zero is still carried */
	assert_int_equal(page_list_add(&e->pages, 100, page), 0);
	memset(data, 0xab, sizeof(data));
	assert_int_equal(epoch_disk_add(e, 0, VIRTIO_BLK_T_OUT, 4096, 1024, iov, 2), 0);
	assert_int_equal(epoch_disk_add(e, 1, VIRTIO_BLK_T_DISCARD, 8192, 4096, NULL, 0), 0);
	make_state(e, (uint32_t)seq);
}

/* Read the EPOCH section that starts the stream, then the rest into out. */
static int recv_one(int fd, uint64_t want_seq, struct epoch *out)
{
	uint32_t type;
	uint64_t len, seq;
	int ret = stream_read_section(fd, &type, &len, NULL);

	if (ret)
		return ret;
	if (type != STREAM_SEC_EPOCH)
		return -EINVAL;
	ret = epoch_read_u64(fd, len, &seq, NULL);
	if (ret)
		return ret;
	if (seq != want_seq)
		return -EINVAL;
	return epoch_recv(fd, seq, 1024, out, NULL);
}

struct applied {
	unsigned n;
	unsigned disk[4];
	uint32_t type[4];
	uint64_t off[4], len[4];
	uint8_t first[4];
};

static int apply(void *opaque, unsigned disk, uint32_t type, uint64_t offset, const void *data,
		 uint64_t len)
{
	struct applied *a = opaque;

	a->disk[a->n] = disk;
	a->type[a->n] = type;
	a->off[a->n] = offset;
	a->len[a->n] = len;
	a->first[a->n] = data ? *(const uint8_t *)data : 0;
	a->n++;
	return 0;
}

static void test_round_trip(void **state)
{
	struct epoch e, got = {0};
	struct applied a = {0};
	uint32_t marker;
	int fd = memfd();

	(void)state;
	make_epoch(&e, 7);
	assert_int_equal(epoch_send(fd, &e, NULL), 0);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(recv_one(fd, 7, &got), 0);
	assert_int_equal(got.seq, 7);
	assert_int_equal(got.pages.n, 3);
	assert_int_equal(got.pages.index[0], 3);
	assert_int_equal(got.pages.index[2], 100);
	assert_memory_equal(got.pages.data, e.pages.data, 3 * PAGE);
	assert_int_equal(got.disk_len, e.disk_len);
	assert_int_equal(epoch_disk_foreach(got.disk, got.disk_len, 2, apply, &a), 0);
	assert_int_equal(a.n, 2);
	assert_int_equal(a.type[0], VIRTIO_BLK_T_OUT);
	assert_int_equal(a.off[0], 4096);
	assert_int_equal(a.len[0], 1024);
	assert_int_equal(a.first[0], 0xab);
	assert_int_equal(a.disk[1], 1);
	assert_int_equal(a.type[1], VIRTIO_BLK_T_DISCARD);
	assert_int_equal(state_get_u32(got.state, 0, "marker", &marker), 0);
	assert_int_equal(marker, 7);
	epoch_free(&e);
	epoch_free(&got);
	close(fd);
}

/* Applying the staged pages is the only thing that touches RAM. */
static void test_apply_pages(void **state)
{
	struct guest_mem mem;
	struct epoch e;

	(void)state;
	assert_int_equal(guest_mem_init(&mem, 8 * MIB), 0);
	memset(mem.host_base + 100 * PAGE, 0x55, PAGE); /* the standby's old copy */
	make_epoch(&e, 1);
	page_list_apply(&e.pages, &mem);
	assert_int_equal(mem.host_base[3 * PAGE], 4);
	assert_int_equal(mem.host_base[4 * PAGE + 17], 5);
	assert_int_equal(mem.host_base[100 * PAGE + 9], 0); /* overwritten with zero */
	assert_true(mem.dirty[0] & (1ULL << 3));
	epoch_free(&e);
	guest_mem_destroy(&mem);
}

/* Every cut of the stream short of EPOCH_END is refused (the primary died mid-send). */
static void test_partial_epochs_refused(void **state)
{
	struct epoch e, got = {0};
	int fd = memfd();
	off_t total;

	(void)state;
	make_epoch(&e, 2);
	assert_int_equal(epoch_send(fd, &e, NULL), 0);
	total = lseek(fd, 0, SEEK_END);
	for (off_t cut = 1; cut < total; cut += (cut < 64 ? 1 : 97)) {
		int part = memfd();
		uint8_t *buf = malloc((size_t)cut);

		assert_int_equal(pread(fd, buf, (size_t)cut, 0), cut);
		assert_int_equal(write(part, buf, (size_t)cut), cut);
		lseek(part, 0, SEEK_SET);
		int ret = recv_one(part, 2, &got);

		assert_true(ret == -EPIPE || ret == -EINVAL);
		free(buf);
		close(part);
	}
	epoch_free(&e);
	epoch_free(&got);
	close(fd);
}

/* One flipped byte anywhere in a payload: the hash (or a check) catches it. */
static void test_corrupt_epochs_refused(void **state)
{
	struct epoch e, got = {0};
	int fd = memfd();
	off_t total;

	(void)state;
	make_epoch(&e, 3);
	assert_int_equal(epoch_send(fd, &e, NULL), 0);
	total = lseek(fd, 0, SEEK_END);
	for (off_t at = 0; at < total; at += 61) {
		int bad = memfd();
		uint8_t *buf = malloc((size_t)total);

		assert_int_equal(pread(fd, buf, (size_t)total, 0), total);
		buf[at] ^= 0x40;
		assert_int_equal(write(bad, buf, (size_t)total), total);
		lseek(bad, 0, SEEK_SET);
		if (recv_one(bad, 3, &got) == 0)
			fail_msg("byte %lld flipped, epoch accepted", (long long)at);
		free(buf);
		close(bad);
	}
	epoch_free(&e);
	epoch_free(&got);
	close(fd);
}

/* Sections in the wrong order, a mismatched EPOCH_END, a missing part. */
static void test_out_of_order(void **state)
{
	struct epoch e, got = {0};
	uint64_t le;
	int fd;

	(void)state;
	make_epoch(&e, 5);
	/* EPOCH_END naming another epoch. */
	fd = memfd();
	le = htole64(5);
	stream_write_section(fd, STREAM_SEC_EPOCH, &le, 8, NULL);
	stream_write_page_list(fd, &e.pages, NULL);
	stream_write_section(fd, STREAM_SEC_DISK, e.disk, e.disk_len, NULL);
	stream_write_section(fd, STREAM_SEC_STATE, e.state, e.state_len, NULL);
	le = htole64(6);
	stream_write_section(fd, STREAM_SEC_EPOCH_END, &le, 8, NULL);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(recv_one(fd, 5, &got), -EINVAL);
	close(fd);
	/* No STATE before EPOCH_END. */
	fd = memfd();
	le = htole64(5);
	stream_write_section(fd, STREAM_SEC_EPOCH, &le, 8, NULL);
	stream_write_page_list(fd, &e.pages, NULL);
	stream_write_section(fd, STREAM_SEC_DISK, e.disk, e.disk_len, NULL);
	stream_write_section(fd, STREAM_SEC_EPOCH_END, &le, 8, NULL);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(recv_one(fd, 5, &got), -EINVAL);
	close(fd);
	/* Two MEMORY sections in one epoch, or a CONFIG inside it. */
	fd = memfd();
	stream_write_section(fd, STREAM_SEC_EPOCH, &le, 8, NULL);
	stream_write_page_list(fd, &e.pages, NULL);
	stream_write_page_list(fd, &e.pages, NULL);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(recv_one(fd, 5, &got), -EINVAL);
	close(fd);
	fd = memfd();
	stream_write_section(fd, STREAM_SEC_EPOCH, &le, 8, NULL);
	stream_write_section(fd, STREAM_SEC_CONFIG, e.state, e.state_len, NULL);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(recv_one(fd, 5, &got), -EINVAL);
	close(fd);
	/* A malformed state tree. */
	fd = memfd();
	uint8_t junk[64] = {0};
	stream_write_section(fd, STREAM_SEC_EPOCH, &le, 8, NULL);
	stream_write_page_list(fd, &e.pages, NULL);
	stream_write_section(fd, STREAM_SEC_DISK, e.disk, e.disk_len, NULL);
	stream_write_section(fd, STREAM_SEC_STATE, junk, sizeof(junk), NULL);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(recv_one(fd, 5, &got), -EINVAL);
	close(fd);
	epoch_free(&e);
	epoch_free(&got);
}

/* A disk log is checked whole before the first entry is applied. */
static void test_disk_log_checked_first(void **state)
{
	struct epoch e = {0};
	struct applied a = {0};
	uint8_t data[512] = {1};
	struct iovec iov = {data, 512};

	(void)state;
	assert_int_equal(epoch_disk_add(&e, 0, VIRTIO_BLK_T_OUT, 0, 512, &iov, 1), 0);
	assert_int_equal(epoch_disk_add(&e, 3, VIRTIO_BLK_T_OUT, 0, 512, &iov, 1), 0);
	/* Disk 3 of 2: nothing applied, not even the good first entry. */
	assert_int_equal(epoch_disk_foreach(e.disk, e.disk_len, 2, apply, &a), -EINVAL);
	assert_int_equal(a.n, 0);
	/* Truncated data. */
	assert_int_equal(epoch_disk_foreach(e.disk, e.disk_len - 1, 4, apply, &a), -EINVAL);
	assert_int_equal(a.n, 0);
	/* An unknown type. */
	uint32_t bad = htole32(99);
	memcpy(e.disk + 4, &bad, 4);
	assert_int_equal(epoch_disk_foreach(e.disk, e.disk_len, 4, apply, &a), -EINVAL);
	assert_int_equal(a.n, 0);
	epoch_free(&e);
}

/* The staging cap: a page list refuses to grow beyond max. */
static void test_staging_cap(void **state)
{
	struct page_list l = {.max = 3};
	uint8_t page[PAGE] = {0};

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_int_equal(page_list_add(&l, (uint64_t)i, page), 0);
	assert_int_equal(page_list_add(&l, 3, page), -ENOSPC);
	page_list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_apply_pages),
	    cmocka_unit_test(test_partial_epochs_refused),
	    cmocka_unit_test(test_corrupt_epochs_refused),
	    cmocka_unit_test(test_out_of_order),
	    cmocka_unit_test(test_disk_log_checked_first),
	    cmocka_unit_test(test_staging_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
