// SPDX-License-Identifier: MIT
/*
 * Ring 3's first C code: boot information and the call to main().
 */
#include "kit.h"
#include "abi.h"

/* Written by boot.S in ring 0. */
extern uint32_t kit_start_info_paddr;
extern uint32_t kit_map_gib;
/* From link.ld. */
extern char __kit_image_start[], __kit_image_end[];

__attribute__((noreturn)) void kit_start3(void);

const struct hvm_start_info *kit_start_info(void)
{
	const struct hvm_start_info *si;

	si = (const struct hvm_start_info *)(uintptr_t)kit_start_info_paddr;
	if (!si || si->magic != PVH_START_MAGIC)
		return NULL;
	return si;
}

const char *kit_cmdline(void)
{
	const struct hvm_start_info *si = kit_start_info();

	if (!si || !si->cmdline_paddr || si->cmdline_paddr >= kit_mapped_limit())
		return "";
	return (const char *)(uintptr_t)si->cmdline_paddr;
}

uint64_t kit_image_end(void)
{
	return (uintptr_t)__kit_image_end;
}

uint64_t kit_mapped_limit(void)
{
	return (uint64_t)kit_map_gib << 30;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

bool kit_ram_usable(uint64_t base, uint64_t len)
{
	const struct hvm_start_info *si = kit_start_info();
	const struct hvm_memmap_table_entry *map;
	const struct hvm_modlist_entry *mod;
	bool in_ram = false;
	uint32_t i;

	if (!si || si->version < 1 || !si->memmap_paddr || base + len < base ||
	    base + len > kit_mapped_limit())
		return false;
	if (overlaps(base, len, (uintptr_t)__kit_image_start,
		     kit_image_end() - (uintptr_t)__kit_image_start))
		return false;
	map = (const void *)(uintptr_t)si->memmap_paddr;
	for (i = 0; i < si->memmap_entries; i++) {
		if (map[i].type == HVM_MEMMAP_TYPE_RAM && base >= map[i].addr &&
		    base + len <= map[i].addr + map[i].size)
			in_ram = true;
	}
	mod = (const void *)(uintptr_t)si->modlist_paddr;
	for (i = 0; mod && i < si->nr_modules; i++) {
		if (overlaps(base, len, mod[i].paddr, mod[i].size))
			return false;
	}
	return in_ram;
}

void kit_start3(void)
{
	static const uint32_t mxcsr = 0x1f80;

	/* The loader may leave the FPU in its reset state (exceptions unmasked). */
	__asm__ volatile("fninit; ldmxcsr %0" : : "m"(mxcsr));
	if (!kit_start_info())
		printf("kit: warning: no PVH start_info at 0x%x\n", kit_start_info_paddr);
	poweroff(main(kit_cmdline()));
}
