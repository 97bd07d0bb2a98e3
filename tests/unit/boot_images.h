/* SPDX-License-Identifier: MIT */
/*
 * Synthetic kernel images for the boot tests: a minimal bzImage (64-bit
 * boot protocol header, no real code unless the test puts some in) and
 * minimal PVH ELFs (one PT_LOAD, one PT_NOTE holding a decoy note and the
 * Xen PHYS32_ENTRY note).  Header-only; each test binary gets its own copy.
 */
#ifndef TEST_BOOT_IMAGES_H
#define TEST_BOOT_IMAGES_H

#include <asm/bootparam.h>
#include <elf.h>
#include <stdint.h>
#include <string.h>

#define TEST_BZ_SETUP_SECTS 4
#define TEST_BZ_SETUP_SIZE  ((TEST_BZ_SETUP_SECTS + 1) * 512)
#define TEST_BZ_KERNEL_SIZE 0x4000
#define TEST_BZ_SIZE	    (TEST_BZ_SETUP_SIZE + TEST_BZ_KERNEL_SIZE)
#define TEST_BZ_PREF	    0x1000000ULL
#define TEST_BZ_INIT_SIZE   0x800000U

static inline struct setup_header *test_bz_hdr(uint8_t *img)
{
	return (struct setup_header *)(img + 0x1f1);
}

/* A 64-bit bzImage of TEST_BZ_SIZE bytes; code (if any) lands at the 64-bit entry. */
static inline size_t test_make_bzimage(uint8_t *img, const uint8_t *code, size_t code_len)
{
	struct setup_header *h = test_bz_hdr(img);
	size_t i;

	memset(img, 0, TEST_BZ_SIZE);
	h->setup_sects = TEST_BZ_SETUP_SECTS;
	h->boot_flag = 0xaa55;
	memcpy(&h->header, "HdrS", 4);
	h->version = 0x020f;
	h->loadflags = LOADED_HIGH;
	h->initrd_addr_max = 0x7fffffff;
	h->kernel_alignment = 0x200000;
	h->relocatable_kernel = 1;
	h->min_alignment = 21;
	h->xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
	h->cmdline_size = 2047;
	h->pref_address = TEST_BZ_PREF;
	h->init_size = TEST_BZ_INIT_SIZE;
	/* A recognisable pattern in the protected-mode part. */
	for (i = 0; i < TEST_BZ_KERNEL_SIZE; i++)
		img[TEST_BZ_SETUP_SIZE + i] = (uint8_t)(i * 7 + 1);
	if (code)
		memcpy(img + TEST_BZ_SETUP_SIZE + 0x200, code, code_len);
	return TEST_BZ_SIZE;
}

#define TEST_PVH_SIZE	  0x2000
#define TEST_PVH_PADDR	  0x100000ULL
#define TEST_PVH_FILESZ	  0x1000
#define TEST_PVH_MEMSZ	  0x3000
#define TEST_PVH_DATA_OFF 0x1000
#define TEST_PVH_NOTE_OFF 0x200
#define TEST_PVH_ENTRY	  (TEST_PVH_PADDR + 0x10)

/* Notes: a decoy GNU note, then Xen/PHYS32_ENTRY with a desc of desc_size (4 or 8) bytes. */
static inline size_t test_put_notes(uint8_t *p, uint64_t entry, uint32_t desc_size)
{
	uint32_t w[3];
	size_t off = 0;

	w[0] = 4, w[1] = 4, w[2] = 3;
	memcpy(p + off, w, 12);
	memcpy(p + off + 12, "GNU", 4);
	memcpy(p + off + 16, "abcd", 4);
	off += 20;
	w[0] = 4, w[1] = desc_size, w[2] = 18;
	memcpy(p + off, w, 12);
	memcpy(p + off + 12, "Xen", 4);
	memcpy(p + off + 16, &entry, desc_size > 8 ? 8 : desc_size);
	off += 16 + ((desc_size + 3) & ~3u);
	return off;
}

static inline void test_fill_pvh_data(uint8_t *img, const uint8_t *code, size_t code_len)
{
	size_t i;

	for (i = 0; i < TEST_PVH_FILESZ; i++)
		img[TEST_PVH_DATA_OFF + i] = (uint8_t)(i * 3 + 5);
	if (code)
		memcpy(img + TEST_PVH_DATA_OFF + (TEST_PVH_ENTRY - TEST_PVH_PADDR), code, code_len);
}

/* ELF64 with phdr[0] = PT_LOAD, phdr[1] = PT_NOTE; returns TEST_PVH_SIZE. */
static inline size_t test_make_pvh64(uint8_t *img, const uint8_t *code, size_t code_len)
{
	Elf64_Ehdr eh = {0};
	Elf64_Phdr ph[2] = {{0}};
	size_t notes_len;

	memset(img, 0, TEST_PVH_SIZE);
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = 0xffffffff81000000ULL; /* the virtual entry: the loader must ignore it */
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 2;
	notes_len = test_put_notes(img + TEST_PVH_NOTE_OFF, TEST_PVH_ENTRY, 4);
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_offset = TEST_PVH_DATA_OFF,
			     .p_vaddr = 0xffffffff81000000ULL,
			     .p_paddr = TEST_PVH_PADDR,
			     .p_filesz = TEST_PVH_FILESZ,
			     .p_memsz = TEST_PVH_MEMSZ,
			     .p_align = 0x1000};
	ph[1] = (Elf64_Phdr){.p_type = PT_NOTE,
			     .p_offset = TEST_PVH_NOTE_OFF,
			     .p_filesz = notes_len,
			     .p_memsz = notes_len,
			     .p_align = 4};
	memcpy(img, &eh, sizeof(eh));
	memcpy(img + sizeof(eh), ph, sizeof(ph));
	test_fill_pvh_data(img, code, code_len);
	return TEST_PVH_SIZE;
}

static inline Elf64_Phdr *test_pvh64_phdr(uint8_t *img, unsigned i)
{
	return (Elf64_Phdr *)(img + sizeof(Elf64_Ehdr)) + i;
}

/* The same as ELF32 (EM_386). */
static inline size_t test_make_pvh32(uint8_t *img, const uint8_t *code, size_t code_len)
{
	Elf32_Ehdr eh = {0};
	Elf32_Phdr ph[2] = {{0}};
	size_t notes_len;

	memset(img, 0, TEST_PVH_SIZE);
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_386;
	eh.e_version = EV_CURRENT;
	eh.e_entry = (uint32_t)TEST_PVH_ENTRY;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf32_Phdr);
	eh.e_phnum = 2;
	notes_len = test_put_notes(img + TEST_PVH_NOTE_OFF, TEST_PVH_ENTRY, 4);
	ph[0] = (Elf32_Phdr){.p_type = PT_LOAD,
			     .p_offset = TEST_PVH_DATA_OFF,
			     .p_vaddr = (uint32_t)TEST_PVH_PADDR,
			     .p_paddr = (uint32_t)TEST_PVH_PADDR,
			     .p_filesz = TEST_PVH_FILESZ,
			     .p_memsz = TEST_PVH_MEMSZ,
			     .p_align = 0x1000};
	ph[1] = (Elf32_Phdr){.p_type = PT_NOTE,
			     .p_offset = TEST_PVH_NOTE_OFF,
			     .p_filesz = (uint32_t)notes_len,
			     .p_memsz = (uint32_t)notes_len,
			     .p_align = 4};
	memcpy(img, &eh, sizeof(eh));
	memcpy(img + sizeof(eh), ph, sizeof(ph));
	test_fill_pvh_data(img, code, code_len);
	return TEST_PVH_SIZE;
}

#endif
