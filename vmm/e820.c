// SPDX-License-Identifier: MIT
/* The guest memory map shared by the bzImage and PVH loaders. */
#include "e820.h"
#include "layout.h"

#include <errno.h>

uint64_t e820_low_ram_top(const struct guest_mem *mem)
{
	int i;

	for (i = 0; i < mem->nr_regions; i++)
		if (mem->regions[i].gpa == 0)
			return mem->regions[i].size;
	return 0;
}

static int add(struct e820_entry *out, unsigned cap, unsigned *n, uint64_t addr, uint64_t size,
	       uint32_t type)
{
	if (size == 0)
		return 0;
	if (*n >= cap)
		return -E2BIG;
	out[*n] = (struct e820_entry){.addr = addr, .size = size, .type = type};
	(*n)++;
	return 0;
}

int e820_build(const struct guest_mem *mem, struct e820_entry *out, unsigned cap)
{
	uint64_t low_top = e820_low_ram_top(mem);
	unsigned n = 0;
	int i, ret;

	/* The boot structures live below the EBDA, so the map needs RAM there. */
	if (low_top < LAYOUT_HIGH_MEMORY)
		return -EINVAL;
	ret = add(out, cap, &n, 0, LAYOUT_EBDA, E820_TYPE_RAM);
	if (!ret)
		ret = add(out, cap, &n, LAYOUT_EBDA, LAYOUT_HIGH_MEMORY - LAYOUT_EBDA,
			  E820_TYPE_RESERVED);
	if (!ret)
		ret = add(out, cap, &n, LAYOUT_HIGH_MEMORY, low_top - LAYOUT_HIGH_MEMORY,
			  E820_TYPE_RAM);
	for (i = 0; !ret && i < mem->nr_regions; i++)
		if (mem->regions[i].gpa != 0)
			ret = add(out, cap, &n, mem->regions[i].gpa, mem->regions[i].size,
				  E820_TYPE_RAM);
	return ret ? ret : (int)n;
}
