/* SPDX-License-Identifier: MIT */
/*
 * Linux bzImage through the 64-bit boot protocol (Documentation/arch/x86/
 * boot.rst): protocol 2.12 or newer with XLF_KERNEL_64.  The protected-mode
 * kernel goes to pref_address (aligned to kernel_alignment when
 * relocatable) and needs init_size bytes there; the zero page at
 * LAYOUT_ZERO_PAGE carries the setup header, command line, initrd, e820
 * map and RSDP address.
 */
#ifndef VMM_BZIMAGE_H
#define VMM_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot.h"
#include "guest_mem.h"

/* Offset of the "HdrS" magic and of the setup header in the file. */
#define BZIMAGE_MAGIC_OFFSET 0x202
#define BZIMAGE_HDR_OFFSET   0x1f1

/* Does the image carry the "HdrS" signature of the Linux boot protocol? */
bool bzimage_detect(const uint8_t *img, size_t len);

/*
 * Load img (with initrd and cmdline) into mem and fill entry for a 64-bit
 * start.  rsdp_addr goes into the zero page.  GDT and page tables are the
 * caller's.  0, or -errno after one pr_err line naming name.
 */
int bzimage_load(struct guest_mem *mem, const uint8_t *img, size_t len, const uint8_t *initrd,
		 size_t initrd_len, const char *cmdline, uint64_t rsdp_addr,
		 struct boot_entry *entry, const char *name);

#endif
