/* SPDX-License-Identifier: MIT */
/*
 * The guest's physical memory map, as both the Linux zero page (e820) and
 * the PVH start info (memmap) report it.  The types are the same numbers in
 * both ABIs, so one table serves both.
 *
 *   RAM       0 .. LAYOUT_EBDA
 *   reserved  LAYOUT_EBDA .. 1 MiB (EBDA, ACPI tables, BIOS area)
 *   RAM       1 MiB .. top of RAM below the PCI hole
 *   RAM       4 GiB .. (only if the guest has more than LAYOUT_LOW_RAM_MAX)
 */
#ifndef VMM_E820_H
#define VMM_E820_H

#include <stdint.h>

#include "guest_mem.h"

#define E820_TYPE_RAM	   1
#define E820_TYPE_RESERVED 2
#define E820_TYPE_ACPI	   3

#define E820_MAX_ENTRIES 8 /* more than the map above can ever need */

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/*
 * Fill out[0..cap) with the map of mem.  Returns the number of entries, or
 * -E2BIG if cap is too small, -EINVAL if mem has no RAM at 0.
 */
int e820_build(const struct guest_mem *mem, struct e820_entry *out, unsigned cap);

/* End of the RAM that starts at 0 (below the PCI hole); 0 if none. */
uint64_t e820_low_ram_top(const struct guest_mem *mem);

#endif
