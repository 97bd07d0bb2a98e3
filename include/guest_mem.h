/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM: one memfd, mapped once in the VMM, cut into KVM memory slots
 * around the PCI hole.
 *
 * Two rules from the brief live here:
 *  - every guest-supplied address and length is checked by guest_mem_ptr()
 *    (or the read/write helpers built on it) before the VMM touches it;
 *  - every write the VMM makes into guest RAM goes through guest_mem_write()
 *    or guest_mem_mark_dirty(), so the VMM's own dirty log stays complete.
 */
#ifndef VMM_GUEST_MEM_H
#define VMM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_PAGE_SIZE	      4096ULL
#define GUEST_MEM_MAX_REGIONS 2

struct guest_region {
	uint64_t gpa;	      /* guest-physical start */
	uint64_t size;	      /* bytes */
	uint64_t file_offset; /* offset in the memfd (and in host_base) */
	uint8_t *host;	      /* host_base + file_offset */
};

struct guest_mem {
	int memfd;
	uint64_t ram_size;  /* total bytes of RAM, all regions */
	uint8_t *host_base; /* the whole memfd, mapped shared */
	int nr_regions;
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	uint64_t *dirty; /* VMM dirty log: one bit per page of the memfd */
};

/*
 * Lay out ram_size bytes of RAM (page multiple, at least 1 MiB) below the
 * PCI hole and, if needed, above 4 GiB; create and map the memfd.
 * Returns 0 or -errno.
 */
int guest_mem_init(struct guest_mem *mem, uint64_t ram_size);

/* Compute the regions only (no memfd, no mapping): for layout and tests. */
int guest_mem_layout(struct guest_mem *mem, uint64_t ram_size);

void guest_mem_destroy(struct guest_mem *mem);

/*
 * Host pointer for [gpa, gpa+len) if the whole range is RAM within one
 * region, else NULL.  Overflowing ranges and len 0 past the end are NULL.
 * The pointer is for reading; a VMM that writes through it must call
 * guest_mem_mark_dirty() for the same range.
 */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Checked copy out of guest RAM.  0, or -EFAULT if not all RAM. */
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);

/* Checked copy into guest RAM that marks the pages dirty.  0 or -EFAULT. */
int guest_mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);

/* Record that the VMM wrote [gpa, gpa+len) (must be RAM; ignored otherwise). */
void guest_mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Is there RAM at gpa? */
bool guest_mem_is_ram(const struct guest_mem *mem, uint64_t gpa);

/*
 * (Re)register region i with KVM as memory slot i, with flags (0 or
 * KVM_MEM_LOG_DIRTY_PAGES).  0 or -errno.
 */
int guest_mem_set_slot(const struct guest_mem *mem, int vm_fd, int i, uint32_t flags);

#endif
