// SPDX-License-Identifier: MIT
/* KVM's dirty log and the VMM's, merged per page of guest RAM. */
#include "dirty_log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"

#define PAGE GUEST_PAGE_SIZE

uint64_t dirty_log_words(const struct guest_mem *mem)
{
	return (mem->ram_size / PAGE + 63) / 64;
}

static int set_slot_flags(struct dirty_log *d, int slot, uint32_t flags)
{
	return guest_mem_set_slot(d->mem, d->vm_fd, slot, flags);
}

/* Take and re-protect slot's KVM log; OR it into out at the slot's page offset. */
static int64_t collect_slot(struct dirty_log *d, int slot, uint64_t *out)
{
	const struct guest_region *r = &d->mem->regions[slot];
	uint64_t pages = r->size / PAGE, base = r->file_offset / PAGE, words = (pages + 63) / 64;
	struct kvm_dirty_log log = {.slot = (uint32_t)slot, .dirty_bitmap = d->scratch};
	int64_t added = 0;

	memset(d->scratch, 0, words * sizeof(uint64_t));
	if (ioctl(d->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	if (d->manual_protect) {
		struct kvm_clear_dirty_log clear = {
		    .slot = (uint32_t)slot,
		    .num_pages = (uint32_t)pages,
		    .first_page = 0,
		    .dirty_bitmap = d->scratch,
		};

		if (ioctl(d->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0)
			return -errno;
	}
	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = d->scratch[w];

		while (bits) {
			uint64_t page = base + w * 64 + (uint64_t)__builtin_ctzll(bits);
			uint64_t mask = 1ULL << (page % 64);

			bits &= bits - 1;
			if (!(out[page / 64] & mask)) {
				out[page / 64] |= mask;
				added++;
			}
		}
	}
	return added;
}

int dirty_log_start(struct dirty_log *d, int vm_fd, struct guest_mem *mem)
{
	uint64_t max_words = 0;
	int ret;

	*d = (struct dirty_log){.vm_fd = vm_fd, .mem = mem};
	for (int i = 0; i < mem->nr_regions; i++) {
		uint64_t w = (mem->regions[i].size / PAGE + 63) / 64;

		max_words = w > max_words ? w : max_words;
	}
	d->scratch = calloc(max_words, sizeof(uint64_t));
	if (!d->scratch)
		return -ENOMEM;
	if (ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0) {
		struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = {1}};

		d->manual_protect = ioctl(vm_fd, KVM_ENABLE_CAP, &cap) == 0;
	}
	for (int i = 0; i < mem->nr_regions; i++) {
		ret = set_slot_flags(d, i, KVM_MEM_LOG_DIRTY_PAGES);
		if (ret) {
			pr_err("dirty logging on memory slot %d: %s", i, strerror(-ret));
			dirty_log_stop(d);
			return ret;
		}
	}
	d->enabled = true;
	/* Start clean: drain both logs. */
	uint64_t *sink = calloc(dirty_log_words(mem), sizeof(uint64_t));

	if (!sink) {
		dirty_log_stop(d);
		return -ENOMEM;
	}
	ret = (int)(dirty_log_collect(d, sink) < 0);
	free(sink);
	return ret ? -EIO : 0;
}

int64_t dirty_log_collect_guest(struct dirty_log *d, uint64_t *out)
{
	int64_t added = 0;

	for (int i = 0; i < d->mem->nr_regions; i++) {
		int64_t n = collect_slot(d, i, out);

		if (n < 0) {
			pr_err("KVM dirty log of slot %d: %s", i, strerror((int)-n));
			return n;
		}
		added += n;
	}
	return added;
}

int64_t dirty_log_collect(struct dirty_log *d, uint64_t *out)
{
	uint64_t words = dirty_log_words(d->mem);
	int64_t added = dirty_log_collect_guest(d, out);

	if (added < 0)
		return added;
	/* The VMM's log: take each word whole so a concurrent mark is never lost. */
	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits;

		if (!__atomic_load_n(&d->mem->dirty[w], __ATOMIC_RELAXED))
			continue;
		bits = __atomic_exchange_n(&d->mem->dirty[w], 0, __ATOMIC_ACQ_REL);
		added += __builtin_popcountll(bits & ~out[w]);
		out[w] |= bits;
	}
	return added;
}

void dirty_log_stop(struct dirty_log *d)
{
	if (d->enabled)
		for (int i = 0; i < d->mem->nr_regions; i++)
			set_slot_flags(d, i, 0);
	d->enabled = false;
	free(d->scratch);
	d->scratch = NULL;
}
