/* SPDX-License-Identifier: MIT */
/*
 * The PVH boot ABI (Xen's public arch-x86/hvm/start_info.h, a stable public
 * interface): the loader enters the image's XEN_ELFNOTE_PHYS32_ENTRY in
 * 32-bit protected mode, paging off, with ebx = physical address of this
 * structure.  Version 1 added the memory map.
 */
#ifndef KIT_PVH_H
#define KIT_PVH_H

#include <stdint.h>

#define PVH_START_MAGIC		 0x336ec578u
#define XEN_ELFNOTE_PHYS32_ENTRY 18

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr; /* 0 or a NUL-terminated string */
	uint64_t rsdp_paddr;	/* 0 if the loader did not say */
	uint64_t memmap_paddr;	/* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

#define HVM_MEMMAP_TYPE_RAM 1 /* the e820 types */

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

#endif
