// SPDX-License-Identifier: MIT
/*
 * info: prints what the loader handed over (start_info, memmap, modules),
 * the TSC frequency and its source, and the paging and IOPL the kit got,
 * for checking a VMM's PVH boot path.  No keys.
 */
#include "kit.h"

#define RFLAGS_IOPL_SHIFT 12

int main(const char *cmdline)
{
	const struct hvm_start_info *si = kit_start_info();
	const struct hvm_memmap_table_entry *map;
	const struct hvm_modlist_entry *mod;
	uint64_t rflags;
	uint32_t i;

	printf("info: cmdline=\"%s\"\n", cmdline);
	if (!si) {
		printf("info: FAIL no valid start_info\n");
		return KIT_EXIT_FAIL;
	}
	printf("info: start_info=%p version=%u flags=0x%x rsdp=0x%lx memmap=0x%lx entries=%u "
	       "modules=%u\n",
	       (const void *)si, si->version, si->flags, si->rsdp_paddr, si->memmap_paddr,
	       si->memmap_entries, si->nr_modules);
	map = (const void *)(uintptr_t)si->memmap_paddr;
	for (i = 0; si->version >= 1 && map && i < si->memmap_entries; i++)
		printf("info: memmap 0x%016lx-0x%016lx type %u\n", map[i].addr,
		       map[i].addr + map[i].size, map[i].type);
	mod = (const void *)(uintptr_t)si->modlist_paddr;
	for (i = 0; mod && i < si->nr_modules; i++)
		printf("info: module %u 0x%lx size %lu\n", i, mod[i].paddr, mod[i].size);
	__asm__ volatile("pushfq; popq %0" : "=r"(rflags));
	printf("info: image_end=0x%lx mapped=%lu GiB iopl=%lu tsc_khz=%lu (%s)\n", kit_image_end(),
	       kit_mapped_limit() >> 30, (rflags >> RFLAGS_IOPL_SHIFT) & 3, tsc_khz(),
	       tsc_khz_source());
	return KIT_EXIT_OK;
}
