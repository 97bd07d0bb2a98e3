// SPDX-License-Identifier: MIT
/* The state stream: framing, hashes, page runs, and what a reader refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_mem.h"
#include "stream.h"

#define MIB  (1ULL << 20)
#define PAGE GUEST_PAGE_SIZE

/* A memfd standing in for the file or socket; rewound for reading. */
static int make_fd(void)
{
	int fd = memfd_create("stream", 0);

	assert_true(fd >= 0);
	return fd;
}

static void rewind_fd(int fd)
{
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
}

static void poke(int fd, off_t off, const void *data, size_t len)
{
	assert_int_equal(pwrite(fd, data, len, off), (ssize_t)len);
}

static void test_header_round_trip(void **state)
{
	struct stream_header h;
	struct stream_stats st = {0};
	int fd = make_fd();

	(void)state;
	assert_int_equal(stream_write_header(fd, 64 * MIB, 2, &st), 0);
	assert_int_equal(st.bytes, sizeof(struct stream_header));
	rewind_fd(fd);
	assert_int_equal(stream_read_header(fd, &h, NULL), 0);
	assert_int_equal(h.ncpus, 2);
	assert_int_equal(h.ram_size, 64 * MIB);
	close(fd);
}

static void test_header_rejects(void **state)
{
	struct stream_header h;
	uint32_t v;
	uint64_t big = htole64(1ULL << 50);
	int fd;

	(void)state;
	/* bad magic */
	fd = make_fd();
	stream_write_header(fd, 64 * MIB, 1, NULL);
	poke(fd, 0, "X", 1);
	rewind_fd(fd);
	assert_int_equal(stream_read_header(fd, &h, NULL), -EINVAL);
	close(fd);
	/* another version */
	fd = make_fd();
	stream_write_header(fd, 64 * MIB, 1, NULL);
	v = htole32(STREAM_VERSION + 1);
	poke(fd, 8, &v, 4);
	rewind_fd(fd);
	assert_int_equal(stream_read_header(fd, &h, NULL), -EINVAL);
	close(fd);
	/* zero vCPUs, absurd RAM */
	fd = make_fd();
	stream_write_header(fd, 64 * MIB, 1, NULL);
	v = 0;
	poke(fd, 12, &v, 4);
	rewind_fd(fd);
	assert_int_equal(stream_read_header(fd, &h, NULL), -EINVAL);
	close(fd);
	fd = make_fd();
	stream_write_header(fd, 64 * MIB, 1, NULL);
	poke(fd, 16, &big, 8);
	rewind_fd(fd);
	assert_int_equal(stream_read_header(fd, &h, NULL), -EINVAL);
	close(fd);
	/* truncated */
	fd = make_fd();
	poke(fd, 0, STREAM_MAGIC, 8);
	rewind_fd(fd);
	assert_int_equal(stream_read_header(fd, &h, NULL), -EPIPE);
	close(fd);
}

static void test_section_round_trip_and_hash(void **state)
{
	const char payload[] = "a state tree stands here";
	uint32_t type;
	uint64_t len;
	void *got;
	int fd = make_fd();

	(void)state;
	assert_int_equal(stream_write_section(fd, STREAM_SEC_STATE, payload, sizeof(payload), NULL),
			 0);
	assert_int_equal(stream_write_section(fd, STREAM_SEC_END, NULL, 0, NULL), 0);
	rewind_fd(fd);
	assert_int_equal(stream_read_section(fd, &type, &len, NULL), 0);
	assert_int_equal(type, STREAM_SEC_STATE);
	assert_int_equal(len, sizeof(payload));
	assert_int_equal(stream_read_payload(fd, len, &got, NULL), 0);
	assert_memory_equal(got, payload, sizeof(payload));
	free(got);
	assert_int_equal(stream_read_section(fd, &type, &len, NULL), 0);
	assert_int_equal(type, STREAM_SEC_END);
	assert_int_equal(len, 0);
	/* One flipped payload byte: the hash catches it. */
	poke(fd, 16 + 3, "Z", 1);
	rewind_fd(fd);
	assert_int_equal(stream_read_section(fd, &type, &len, NULL), 0);
	assert_int_equal(stream_read_payload(fd, len, &got, NULL), -EINVAL);
	close(fd);
}

static void test_section_rejects(void **state)
{
	struct {
		uint32_t type, reserved;
		uint64_t length;
	} s;
	uint32_t type;
	uint64_t len;
	int fd;

	(void)state;
	/* unknown type, over-long tree, END with a payload */
	const uint32_t types[] = {99, STREAM_SEC_CONFIG, STREAM_SEC_END};
	const uint64_t lens[] = {4, (uint64_t)STREAM_MAX_TREE + 1, 8};
	for (int i = 0; i < 3; i++) {
		fd = make_fd();
		s.type = htole32(types[i]);
		s.reserved = 0;
		s.length = htole64(lens[i]);
		poke(fd, 0, &s, sizeof(s));
		rewind_fd(fd);
		assert_int_equal(stream_read_section(fd, &type, &len, NULL), -EINVAL);
		close(fd);
	}
}

static void fill_page(struct guest_mem *m, uint64_t page, uint8_t v)
{
	memset(m->host_base + page * PAGE, v, PAGE);
}

static void test_memory_round_trip(void **state)
{
	struct guest_mem src, dst;
	struct stream_stats wst = {0}, rst = {0};
	uint32_t type;
	uint64_t len, npages;
	int fd = make_fd();

	(void)state;
	assert_int_equal(guest_mem_init(&src, 8 * MIB), 0);
	assert_int_equal(guest_mem_init(&dst, 8 * MIB), 0);
	npages = src.ram_size / PAGE;
	fill_page(&src, 0, 0x11);
	fill_page(&src, 1, 0x22);
	fill_page(&src, 2, 0x00);		   /* touched but zero: skipped */
	for (uint64_t p = 100; p < 100 + 300; p++) /* longer than one run */
		fill_page(&src, p, (uint8_t)(p | 1));
	fill_page(&src, npages - 1, 0x99);
	assert_int_equal(stream_write_memory(fd, &src, NULL, STREAM_MEM_LIVE, &wst), 0);
	assert_int_equal(wst.pages, 2 + 300 + 1);
	assert_int_equal(wst.zero_pages, npages - wst.pages);
	rewind_fd(fd);
	assert_int_equal(stream_read_section(fd, &type, &len, NULL), 0);
	assert_int_equal(type, STREAM_SEC_MEMORY);
	assert_int_equal(stream_read_memory(fd, len, &dst, &rst), 0);
	assert_int_equal(rst.pages, wst.pages);
	assert_memory_equal(src.host_base, dst.host_base, src.ram_size);
	/* Received pages are dirty in the VMM's log; others are not. */
	assert_true(dst.dirty[0] & 1);
	assert_false(dst.dirty[0] & 4);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
	close(fd);
}

static void test_memory_dirty_pages_with_zero(void **state)
{
	struct guest_mem src, dst;
	struct stream_stats st = {0};
	uint64_t bitmap[64] = {0};
	uint32_t type;
	uint64_t len;
	int fd = make_fd();

	(void)state;
	assert_int_equal(guest_mem_init(&src, 4 * MIB), 0);
	assert_int_equal(guest_mem_init(&dst, 4 * MIB), 0);
	fill_page(&dst, 5, 0xee); /* the receiver's stale copy */
	fill_page(&src, 7, 0x77);
	bitmap[0] = (1ULL << 5) | (1ULL << 7); /* page 5 became zero: it must still be sent */
	assert_int_equal(stream_write_memory(fd, &src, bitmap, STREAM_MEM_SEND_ZERO, &st), 0);
	assert_int_equal(st.pages, 2);
	rewind_fd(fd);
	assert_int_equal(stream_read_section(fd, &type, &len, NULL), 0);
	assert_int_equal(stream_read_memory(fd, len, &dst, NULL), 0);
	assert_memory_equal(src.host_base, dst.host_base, src.ram_size);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
	close(fd);
}

/* A MEMORY section holding one hand-made run header (and no data past it). */
static int bad_run(struct guest_mem *m, uint64_t first, uint32_t count, uint64_t section_len)
{
	struct {
		uint32_t type, reserved;
		uint64_t length;
		uint64_t first;
		uint32_t count, zero;
	} w = {
	    htole32(STREAM_SEC_MEMORY), 0, htole64(section_len), htole64(first), htole32(count), 0};
	uint32_t type;
	uint64_t len;
	int fd = make_fd(), ret;

	poke(fd, 0, &w, sizeof(w));
	rewind_fd(fd);
	assert_int_equal(stream_read_section(fd, &type, &len, NULL), 0);
	ret = stream_read_memory(fd, len, m, NULL);
	close(fd);
	return ret;
}

static void test_memory_rejects_bad_runs(void **state)
{
	struct guest_mem m;
	uint64_t npages;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 4 * MIB), 0);
	npages = m.ram_size / PAGE;
	assert_int_equal(bad_run(&m, npages, 1, 16 + PAGE), -EINVAL);	      /* past the end */
	assert_int_equal(bad_run(&m, npages - 1, 2, 16 + 2 * PAGE), -EINVAL); /* runs off it */
	assert_int_equal(bad_run(&m, 0, 0, 16), -EINVAL);		      /* empty run */
	assert_int_equal(bad_run(&m, 0, STREAM_RUN_MAX_PAGES + 1, 16 + 257 * PAGE), -EINVAL);
	assert_int_equal(bad_run(&m, 0, 4, 16 + PAGE), -EINVAL); /* longer than the section */
	assert_int_equal(bad_run(&m, UINT64_MAX, 1, 16 + PAGE), -EINVAL);
	assert_int_equal(bad_run(&m, 0, 1, 16 + PAGE), -EPIPE); /* data missing */
	assert_int_equal(bad_run(&m, 0, 1, 8), -EINVAL);	/* section shorter than a header */
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_round_trip),
	    cmocka_unit_test(test_header_rejects),
	    cmocka_unit_test(test_section_round_trip_and_hash),
	    cmocka_unit_test(test_section_rejects),
	    cmocka_unit_test(test_memory_round_trip),
	    cmocka_unit_test(test_memory_dirty_pages_with_zero),
	    cmocka_unit_test(test_memory_rejects_bad_runs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
