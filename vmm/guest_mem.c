// SPDX-License-Identifier: MIT
/* Guest RAM: memfd-backed, split around the PCI hole, checked and dirty-logged. */
#include "guest_mem.h"
#include "layout.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int guest_mem_layout(struct guest_mem *mem, uint64_t ram_size)
{
	uint64_t low;

	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
	if (ram_size < (1ULL << 20) || ram_size % GUEST_PAGE_SIZE)
		return -EINVAL;
	/* 1 TiB is far beyond what a test host offers; it keeps the sums safe. */
	if (ram_size > (1ULL << 40))
		return -E2BIG;
	low = ram_size < LAYOUT_LOW_RAM_MAX ? ram_size : LAYOUT_LOW_RAM_MAX;
	mem->ram_size = ram_size;
	mem->regions[0] = (struct guest_region){.gpa = 0, .size = low, .file_offset = 0};
	mem->nr_regions = 1;
	if (ram_size > low) {
		mem->regions[1] = (struct guest_region){
		    .gpa = LAYOUT_HIGH_RAM_BASE, .size = ram_size - low, .file_offset = low};
		mem->nr_regions = 2;
	}
	return 0;
}

int guest_mem_init(struct guest_mem *mem, uint64_t ram_size)
{
	size_t bitmap_words;
	int ret, i;

	ret = guest_mem_layout(mem, ram_size);
	if (ret)
		return ret;
	mem->memfd = memfd_create("vmm-guest-ram", MFD_CLOEXEC);
	if (mem->memfd < 0)
		return -errno;
	if (ftruncate(mem->memfd, (off_t)ram_size) < 0) {
		ret = -errno;
		goto fail;
	}
	mem->host_base =
	    mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mem->memfd, 0);
	if (mem->host_base == MAP_FAILED) {
		mem->host_base = NULL;
		ret = -errno;
		goto fail;
	}
	/* Guest RAM is the guest's business: keep it out of VMM core dumps. */
	madvise(mem->host_base, ram_size, MADV_DONTDUMP);
	for (i = 0; i < mem->nr_regions; i++)
		mem->regions[i].host = mem->host_base + mem->regions[i].file_offset;
	bitmap_words = (ram_size / GUEST_PAGE_SIZE + 63) / 64;
	mem->dirty = calloc(bitmap_words, sizeof(uint64_t));
	if (!mem->dirty) {
		ret = -ENOMEM;
		goto fail;
	}
	return 0;
fail:
	guest_mem_destroy(mem);
	return ret;
}

void guest_mem_destroy(struct guest_mem *mem)
{
	if (mem->host_base)
		munmap(mem->host_base, mem->ram_size);
	if (mem->memfd >= 0)
		close(mem->memfd);
	free(mem->dirty);
	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
}

static const struct guest_region *find_region(const struct guest_mem *mem, uint64_t gpa,
					      uint64_t len)
{
	int i;

	for (i = 0; i < mem->nr_regions; i++) {
		const struct guest_region *r = &mem->regions[i];

		/* Written so that no sum can overflow: gpa - r->gpa only after gpa >= r->gpa. */
		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		if (len > r->size - (gpa - r->gpa))
			return NULL;
		return r;
	}
	return NULL;
}

void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct guest_region *r = find_region(mem, gpa, len);

	if (!r || !r->host)
		return NULL;
	return r->host + (gpa - r->gpa);
}

bool guest_mem_is_ram(const struct guest_mem *mem, uint64_t gpa)
{
	return find_region(mem, gpa, 1) != NULL;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = guest_mem_ptr(mem, gpa, len);

	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = guest_mem_ptr(mem, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	guest_mem_mark_dirty(mem, gpa, len);
	return 0;
}

void guest_mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct guest_region *r = find_region(mem, gpa, len);
	uint64_t first, last, page;

	if (!r || !mem->dirty || len == 0)
		return;
	first = (r->file_offset + (gpa - r->gpa)) / GUEST_PAGE_SIZE;
	last = (r->file_offset + (gpa - r->gpa) + len - 1) / GUEST_PAGE_SIZE;
	/* Atomic: devices on the event loop and vCPU threads write concurrently. */
	for (page = first; page <= last; page++)
		__atomic_fetch_or(&mem->dirty[page / 64], 1ULL << (page % 64), __ATOMIC_RELAXED);
}

int guest_mem_set_slot(const struct guest_mem *mem, int vm_fd, int i, uint32_t flags)
{
	const struct guest_region *r = &mem->regions[i];
	struct kvm_userspace_memory_region slot = {
	    .slot = (uint32_t)i,
	    .flags = flags,
	    .guest_phys_addr = r->gpa,
	    .memory_size = r->size,
	    .userspace_addr = (uint64_t)(uintptr_t)r->host,
	};

	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0 ? -errno : 0;
}
