// SPDX-License-Identifier: MIT
/* The virtqueue walker against good, malformed and hostile rings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtqueue.h"

#define QSIZE 8
#define DESC  0x10000ULL
#define AVAIL 0x11000ULL
#define USED  0x12000ULL
#define DATA  0x20000ULL
#define MEM   (1ULL << 20)

struct fixture {
	struct guest_mem mem;
	struct virtq vq;
	struct virtq_chain *chain;
	uint16_t avail_idx;
};

static void set_desc(struct fixture *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t d[16];

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
	assert_int_equal(guest_mem_write(&f->mem, table + 16ULL * i, d, 16), 0);
}

static void offer(struct fixture *f, uint16_t head)
{
	uint16_t slot = f->avail_idx % QSIZE;

	guest_mem_write(&f->mem, AVAIL + 4 + 2ULL * slot, &head, 2);
	f->avail_idx++;
	guest_mem_write(&f->mem, AVAIL + 2, &f->avail_idx, 2);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_int_equal(guest_mem_init(&f->mem, MEM), 0);
	f->chain = malloc(sizeof(*f->chain));
	f->vq.size = QSIZE;
	f->vq.desc_gpa = DESC;
	f->vq.avail_gpa = AVAIL;
	f->vq.used_gpa = USED;
	f->vq.indirect = true;
	assert_int_equal(virtq_enable(&f->vq, &f->mem), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem_destroy(&f->mem);
	free(f->chain);
	free(f);
	return 0;
}

static void test_enable_checks(void **state)
{
	struct fixture *f = *state;
	struct virtq vq = f->vq;

	vq.size = 6; /* not a power of 2 */
	assert_int_equal(virtq_enable(&vq, &f->mem), -EINVAL);
	vq = f->vq;
	vq.size = 0;
	assert_int_equal(virtq_enable(&vq, &f->mem), -EINVAL);
	vq = f->vq;
	vq.desc_gpa = MEM - 16; /* table runs past RAM */
	assert_int_equal(virtq_enable(&vq, &f->mem), -EINVAL);
	vq = f->vq;
	vq.used_gpa = USED + 2; /* misaligned */
	assert_int_equal(virtq_enable(&vq, &f->mem), -EINVAL);
	vq = f->vq;
	vq.avail_gpa = UINT64_MAX - 3; /* wraps */
	assert_int_equal(virtq_enable(&vq, &f->mem), -EINVAL);
}

static void test_empty_then_chain(void **state)
{
	struct fixture *f = *state;
	uint8_t out[4] = {1, 2, 3, 4}, got[4];
	uint16_t used_idx;
	uint32_t used_id, used_len;

	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 0);
	guest_mem_write(&f->mem, DATA, out, 4);
	set_desc(f, DESC, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 3);
	set_desc(f, DESC, 3, DATA + 0x100, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5);
	set_desc(f, DESC, 5, DATA + 0x200, 28, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 1);
	assert_int_equal(f->chain->head, 0);
	assert_int_equal(f->chain->nr_out, 1);
	assert_int_equal(f->chain->nr_in, 2);
	assert_int_equal(f->chain->out_len, 4);
	assert_int_equal(f->chain->in_len, 128);
	assert_int_equal(virtq_chain_read(f->chain, 1, got, 4), 3);
	assert_memory_equal(got, out + 1, 3);
	/* A write spanning both writable buffers lands in both. */
	uint8_t pattern[110];
	memset(pattern, 0xab, sizeof(pattern));
	assert_int_equal(virtq_chain_write(f->chain, &f->mem, 0, pattern, sizeof(pattern)), 110);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->mem, DATA + 0x200 + 9, 1), 0xab);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->mem, DATA + 0x200 + 10, 1), 0);
	assert_int_equal(virtq_push(&f->vq, &f->mem, f->chain->head, 110), 0);
	guest_mem_read(&f->mem, USED + 2, &used_idx, 2);
	guest_mem_read(&f->mem, USED + 4, &used_id, 4);
	guest_mem_read(&f->mem, USED + 8, &used_len, 4);
	assert_int_equal(used_idx, 1);
	assert_int_equal(used_id, 0);
	assert_int_equal(used_len, 110);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 0);
}

static void test_used_ring_dirty(void **state)
{
	struct fixture *f = *state;
	uint64_t page = USED / 4096;

	memset(f->mem.dirty, 0, (MEM / 4096 + 63) / 64 * 8);
	set_desc(f, DESC, 0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 1);
	assert_int_equal(virtq_chain_write(f->chain, &f->mem, 0, "x", 1), 1);
	assert_int_equal(virtq_push(&f->vq, &f->mem, 0, 1), 0);
	assert_true(f->mem.dirty[page / 64] & (1ULL << (page % 64)));
	assert_true(f->mem.dirty[(DATA / 4096) / 64] & (1ULL << ((DATA / 4096) % 64)));
}

static void expect_bad(struct fixture *f, int err)
{
	uint16_t before = f->vq.last_avail_idx;

	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), err);
	assert_int_equal(f->vq.last_avail_idx, before); /* nothing consumed */
}

static void test_out_of_range_address(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC, 0, MEM - 8, 16, 0, 0);
	offer(f, 0);
	expect_bad(f, -EFAULT);
}

static void test_length_wraps(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC, 0, UINT64_MAX - 16, 0x100, 0, 0);
	offer(f, 0);
	expect_bad(f, -EFAULT);
}

static void test_loop(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, DESC, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_next_out_of_table(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_head_out_of_table(void **state)
{
	struct fixture *f = *state;

	offer(f, QSIZE + 3);
	expect_bad(f, -EINVAL);
}

static void test_avail_idx_too_far(void **state)
{
	struct fixture *f = *state;
	uint16_t idx = QSIZE + 1;

	guest_mem_write(&f->mem, AVAIL + 2, &idx, 2);
	expect_bad(f, -EINVAL);
}

static void test_readable_after_writable(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC, 0, DATA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, DESC, 1, DATA, 8, 0, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_zero_length(void **state)
{
	struct fixture *f = *state;

	/* Zero-length buffers are legal if their address is sane ... */
	set_desc(f, DESC, 0, DATA, 0, 0, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 1);
	assert_int_equal(f->chain->out_len, 0);
	/* ... and rejected if not. */
	set_desc(f, DESC, 1, MEM + 4096, 0, 0, 0);
	offer(f, 1);
	expect_bad(f, -EFAULT);
}

static void test_indirect(void **state)
{
	struct fixture *f = *state;
	uint64_t table = 0x30000;

	set_desc(f, table, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, table, 2, DATA + 16, 32, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f, DESC, 0, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 1);
	assert_int_equal(f->chain->nr_out, 1);
	assert_int_equal(f->chain->nr_in, 1);
	assert_int_equal(f->chain->in_len, 32);
}

static void test_indirect_in_indirect(void **state)
{
	struct fixture *f = *state;
	uint64_t table = 0x30000;

	set_desc(f, table, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(f, DESC, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_indirect_bad_tables(void **state)
{
	struct fixture *f = *state;
	uint64_t table = 0x30000;

	set_desc(f, DESC, 0, table, 20, VIRTQ_DESC_F_INDIRECT, 0); /* not a multiple of 16 */
	offer(f, 0);
	expect_bad(f, -EINVAL);
	set_desc(f, DESC, 0, MEM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0); /* table past RAM */
	expect_bad(f, -EFAULT);
	set_desc(f, DESC, 0, table, 0, VIRTQ_DESC_F_INDIRECT, 0); /* empty */
	expect_bad(f, -EINVAL);
	set_desc(f, table, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1); /* loop inside the table */
	set_desc(f, table, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	set_desc(f, DESC, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_bad(f, -EINVAL);
	set_desc(f, DESC, 0, table, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	expect_bad(f, -EINVAL); /* INDIRECT with NEXT */
	f->vq.indirect = false;
	set_desc(f, table, 1, DATA, 8, 0, 0);
	set_desc(f, DESC, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_bad(f, -EINVAL); /* not negotiated */
}

static void test_too_many_descriptors(void **state)
{
	struct fixture *f = *state;
	uint64_t table = 0x30000;
	unsigned i, n = VIRTQ_MAX_CHAIN + 1;

	for (i = 0; i < n; i++)
		set_desc(f, table, i, DATA, 1, i + 1 < n ? VIRTQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	set_desc(f, DESC, 0, table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_event_idx(void **state)
{
	struct fixture *f = *state;
	uint16_t used_event, avail_event;

	f->vq.event_idx = true;
	set_desc(f, DESC, 0, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
	/* The driver asks for an interrupt when used idx passes 1. */
	used_event = 1;
	guest_mem_write(&f->mem, AVAIL + 4 + 2 * QSIZE, &used_event, 2);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 1);
	virtq_push(&f->vq, &f->mem, 0, 8);
	assert_true(virtq_should_notify(&f->vq, &f->mem)); /* first one always */
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 1);
	virtq_push(&f->vq, &f->mem, 0, 8);
	assert_true(virtq_should_notify(&f->vq, &f->mem)); /* used idx 1 -> 2 crosses event 1 */
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->mem, f->chain), 1);
	virtq_push(&f->vq, &f->mem, 0, 8);
	assert_false(virtq_should_notify(&f->vq, &f->mem)); /* event 1 already passed */
	virtq_update_avail_event(&f->vq, &f->mem);
	guest_mem_read(&f->mem, USED + 4 + 8 * QSIZE, &avail_event, 2);
	assert_int_equal(avail_event, 3);
}

static void test_no_interrupt_flag(void **state)
{
	struct fixture *f = *state;
	uint16_t flags = 1;

	assert_true(virtq_should_notify(&f->vq, &f->mem));
	guest_mem_write(&f->mem, AVAIL, &flags, 2);
	assert_false(virtq_should_notify(&f->vq, &f->mem));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_enable_checks),	  T(test_empty_then_chain),
	    T(test_used_ring_dirty),	  T(test_out_of_range_address),
	    T(test_length_wraps),	  T(test_loop),
	    T(test_next_out_of_table),	  T(test_head_out_of_table),
	    T(test_avail_idx_too_far),	  T(test_readable_after_writable),
	    T(test_zero_length),	  T(test_indirect),
	    T(test_indirect_in_indirect), T(test_indirect_bad_tables),
	    T(test_too_many_descriptors), T(test_event_idx),
	    T(test_no_interrupt_flag),
	};
	return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
