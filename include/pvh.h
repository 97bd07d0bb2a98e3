/* SPDX-License-Identifier: MIT */
/*
 * PVH boot: an ELF (32- or 64-bit) whose PT_NOTE carries
 * XEN_ELFNOTE_PHYS32_ENTRY.  PT_LOAD segments go to their p_paddr (at or
 * above 1 MiB), the BSP starts in 32-bit protected mode at the note's
 * address with rbx pointing at an hvm_start_info (Xen public ABI, version 1)
 * at LAYOUT_START_INFO.  Debian's uncompressed vmlinux boots this way.
 */
#ifndef VMM_PVH_H
#define VMM_PVH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot.h"
#include "guest_mem.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC		 0x336ec578
#define HVM_START_VERSION	 1

#define HVM_MEMMAP_TYPE_RAM	 1
#define HVM_MEMMAP_TYPE_RESERVED 2
#define HVM_MEMMAP_TYPE_ACPI	 3

/* xen/include/public/arch-x86/hvm/start_info.h, written from the ABI description. */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/* Where the pieces go inside the LAYOUT_START_INFO page. */
#define PVH_MODLIST_OFFSET 0x40
#define PVH_MEMMAP_OFFSET  0x80

/* Is this an ELF file (any class)?  The PVH note is checked by pvh_load. */
bool pvh_detect(const uint8_t *img, size_t len);

/*
 * Load the ELF's segments, initrd (module 0) and command line, write the
 * start info (memmap, rsdp_addr) and fill entry.  GDT is the caller's.
 * 0, or -errno after one pr_err line naming name.
 */
int pvh_load(struct guest_mem *mem, const uint8_t *img, size_t len, const uint8_t *initrd,
	     size_t initrd_len, const char *cmdline, uint64_t rsdp_addr, struct boot_entry *entry,
	     const char *name);

#endif
