// SPDX-License-Identifier: MIT
/* PVH ELF loader: PT_LOAD segments at p_paddr, 32-bit entry from the Xen note. */
#include "pvh.h"
#include "e820.h"
#include "layout.h"
#include "log.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

/* Real kernels have about 5; the cap keeps the overlap check cheap on hostile input. */
#define PVH_MAX_PHDRS 64
#define NOTE_HDR      12

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info ABI");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry ABI");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry ABI");
_Static_assert(PVH_MEMMAP_OFFSET + E820_MAX_ENTRIES * sizeof(struct hvm_memmap_table_entry) <=
		   LAYOUT_ZERO_PAGE - LAYOUT_START_INFO,
	       "start info fits its page");

/* A program header of either class, widened. */
struct seg {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz, align;
};

struct elf_info {
	bool is64;
	uint16_t type, machine, phentsize, phnum;
	uint64_t phoff;
};

bool pvh_detect(const uint8_t *img, size_t len)
{
	return len >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0;
}

static int parse_ehdr(const uint8_t *img, size_t len, struct elf_info *e, const char *name)
{
	if (len < EI_NIDENT) {
		pr_err("%s: truncated ELF header (%zu bytes)", name, len);
		return -ENOEXEC;
	}
	if (img[EI_CLASS] != ELFCLASS32 && img[EI_CLASS] != ELFCLASS64) {
		pr_err("%s: unknown ELF class %u", name, img[EI_CLASS]);
		return -ENOEXEC;
	}
	if (img[EI_DATA] != ELFDATA2LSB) {
		pr_err("%s: not a little-endian ELF", name);
		return -ENOEXEC;
	}
	e->is64 = img[EI_CLASS] == ELFCLASS64;
	if (e->is64) {
		Elf64_Ehdr h;

		if (len < sizeof(h)) {
			pr_err("%s: truncated ELF header (%zu bytes)", name, len);
			return -ENOEXEC;
		}
		memcpy(&h, img, sizeof(h));
		e->type = h.e_type;
		e->machine = h.e_machine;
		e->phoff = h.e_phoff;
		e->phentsize = h.e_phentsize;
		e->phnum = h.e_phnum;
	} else {
		Elf32_Ehdr h;

		if (len < sizeof(h)) {
			pr_err("%s: truncated ELF header (%zu bytes)", name, len);
			return -ENOEXEC;
		}
		memcpy(&h, img, sizeof(h));
		e->type = h.e_type;
		e->machine = h.e_machine;
		e->phoff = h.e_phoff;
		e->phentsize = h.e_phentsize;
		e->phnum = h.e_phnum;
	}
	if (e->machine != (e->is64 ? EM_X86_64 : EM_386)) {
		pr_err("%s: not an x86 ELF (machine %u)", name, e->machine);
		return -ENOEXEC;
	}
	if (e->type != ET_EXEC) {
		pr_err("%s: not an executable ELF (type %u)", name, e->type);
		return -ENOEXEC;
	}
	if (e->phentsize != (e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr))) {
		pr_err("%s: bad program header size %u", name, e->phentsize);
		return -ENOEXEC;
	}
	if (e->phnum == 0 || e->phnum > PVH_MAX_PHDRS) {
		pr_err("%s: %u program headers (expected 1 to %u)", name, e->phnum, PVH_MAX_PHDRS);
		return -ENOEXEC;
	}
	if (e->phoff > len || (uint64_t)e->phnum * e->phentsize > len - e->phoff) {
		pr_err("%s: program headers at %#llx are past the end of the file (%zu bytes)",
		       name, (unsigned long long)e->phoff, len);
		return -ENOEXEC;
	}
	return 0;
}

static void read_phdr(const uint8_t *img, const struct elf_info *e, unsigned i, struct seg *s)
{
	const uint8_t *p = img + e->phoff + (uint64_t)i * e->phentsize;

	if (e->is64) {
		Elf64_Phdr ph;

		memcpy(&ph, p, sizeof(ph));
		*s = (struct seg){ph.p_type,   ph.p_offset, ph.p_paddr,
				  ph.p_filesz, ph.p_memsz,  ph.p_align};
	} else {
		Elf32_Phdr ph;

		memcpy(&ph, p, sizeof(ph));
		*s = (struct seg){ph.p_type,   ph.p_offset, ph.p_paddr,
				  ph.p_filesz, ph.p_memsz,  ph.p_align};
	}
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/*
 * Look through one PT_NOTE for XEN_ELFNOTE_PHYS32_ENTRY.  1 and *entry if
 * found, 0 if not, -ENOEXEC after a message if the note is malformed.
 */
static int find_entry_note(const uint8_t *img, size_t len, const struct seg *s, uint64_t *entry,
			   const char *name)
{
	/* gABI notes are 4-byte aligned; newer toolchains emit 8-byte aligned ones. */
	uint64_t align = s->align == 8 ? 8 : 4;
	uint64_t off = 0, desc_off, next;
	const uint8_t *notes;
	uint32_t w[3];

	if (s->offset > len || s->filesz > len - s->offset) {
		pr_err("%s: note segment at %#llx is past the end of the file (%zu bytes)", name,
		       (unsigned long long)s->offset, len);
		return -ENOEXEC;
	}
	notes = img + s->offset;
	/* off can pass filesz by the last note's padding: test before subtracting. */
	while (off <= s->filesz && s->filesz - off >= NOTE_HDR) {
		memcpy(w, notes + off, sizeof(w)); /* namesz, descsz, type */
		/* 32-bit fields widened to 64 bits: these sums cannot overflow. */
		desc_off = align_up(off + NOTE_HDR + w[0], align);
		next = align_up(desc_off + w[1], align);
		if (desc_off + w[1] > s->filesz)
			return 0; /* a truncated last note: nothing more to find */
		if (w[2] == XEN_ELFNOTE_PHYS32_ENTRY && w[0] == 4 &&
		    memcmp(notes + off + NOTE_HDR, "Xen", 4) == 0) {
			if (w[1] == 4) {
				uint32_t v;

				memcpy(&v, notes + desc_off, 4);
				*entry = v;
			} else if (w[1] == 8) {
				memcpy(entry, notes + desc_off, 8);
			} else {
				pr_err("%s: PVH entry note has %u bytes (expected 4 or 8)", name,
				       w[1]);
				return -ENOEXEC;
			}
			return 1;
		}
		if (next <= off)
			return 0;
		off = next;
	}
	return 0;
}

/* Check every PT_LOAD against the file and RAM; their span goes to lo/hi. */
static int check_segments(const struct guest_mem *mem, size_t len, const struct seg *segs,
			  unsigned n, size_t initrd_len, uint64_t *lo, uint64_t *hi,
			  const char *name)
{
	unsigned i, j, nload = 0;

	*lo = UINT64_MAX;
	*hi = 0;
	for (i = 0; i < n; i++) {
		const struct seg *s = &segs[i];

		if (s->type != PT_LOAD || s->memsz == 0)
			continue;
		nload++;
		if (s->filesz > s->memsz) {
			pr_err("%s: segment %u has file size %#llx above its memory size %#llx",
			       name, i, (unsigned long long)s->filesz,
			       (unsigned long long)s->memsz);
			return -ENOEXEC;
		}
		if (s->offset > len || s->filesz > len - s->offset) {
			pr_err("%s: segment %u data (%#llx bytes at %#llx) is past the end of the "
			       "file (%zu bytes)",
			       name, i, (unsigned long long)s->filesz,
			       (unsigned long long)s->offset, len);
			return -ENOEXEC;
		}
		if (s->paddr < LAYOUT_HIGH_MEMORY) {
			pr_err("%s: segment %u at %#llx is below 1 MiB, where the boot data lives",
			       name, i, (unsigned long long)s->paddr);
			return -ENOEXEC;
		}
		if (s->memsz > UINT64_MAX - s->paddr) {
			pr_err("%s: segment %u at %#llx with size %#llx wraps around", name, i,
			       (unsigned long long)s->paddr, (unsigned long long)s->memsz);
			return -ENOEXEC;
		}
		if (s->paddr < *lo)
			*lo = s->paddr;
		if (s->paddr + s->memsz > *hi)
			*hi = s->paddr + s->memsz;
		for (j = 0; j < i; j++) {
			const struct seg *t = &segs[j];

			if (t->type != PT_LOAD || t->memsz == 0)
				continue;
			if (s->paddr < t->paddr + t->memsz && t->paddr < s->paddr + s->memsz) {
				pr_err("%s: segments %u and %u overlap", name, j, i);
				return -ENOEXEC;
			}
		}
	}
	if (nload == 0) {
		pr_err("%s: ELF has no loadable segment", name);
		return -ENOEXEC;
	}
	for (i = 0; i < n; i++) {
		const struct seg *s = &segs[i];

		if (s->type != PT_LOAD || s->memsz == 0 || guest_mem_ptr(mem, s->paddr, s->memsz))
			continue;
		/* Below the hole more RAM would help; elsewhere nothing would. */
		if (*hi <= LAYOUT_LOW_RAM_MAX)
			return boot_err_too_small(mem, *hi - *lo, *lo, initrd_len);
		pr_err("%s: segment %u at %#llx (%#llx bytes) is outside RAM", name, i,
		       (unsigned long long)s->paddr, (unsigned long long)s->memsz);
		return -ENOEXEC;
	}
	return 0;
}

static int load_segments(struct guest_mem *mem, const uint8_t *img, const struct seg *segs,
			 unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		const struct seg *s = &segs[i];
		uint8_t *bss;

		if (s->type != PT_LOAD || s->memsz == 0)
			continue;
		if (guest_mem_write(mem, s->paddr, img + s->offset, s->filesz))
			return -EFAULT;
		bss = guest_mem_ptr(mem, s->paddr + s->filesz, s->memsz - s->filesz);
		if (!bss)
			return -EFAULT;
		memset(bss, 0, s->memsz - s->filesz);
		guest_mem_mark_dirty(mem, s->paddr + s->filesz, s->memsz - s->filesz);
	}
	return 0;
}

static int write_start_info(struct guest_mem *mem, uint64_t initrd_addr, size_t initrd_len,
			    uint64_t rsdp_addr)
{
	struct hvm_memmap_table_entry memmap[E820_MAX_ENTRIES];
	struct e820_entry map[E820_MAX_ENTRIES];
	struct hvm_modlist_entry mod;
	struct hvm_start_info si;
	int n, i, ret;

	n = e820_build(mem, map, E820_MAX_ENTRIES);
	if (n < 0)
		return n;
	memset(memmap, 0, sizeof(memmap));
	for (i = 0; i < n; i++) {
		memmap[i].addr = map[i].addr;
		memmap[i].size = map[i].size;
		/* e820 and PVH share the type numbers. */
		memmap[i].type = map[i].type;
	}
	memset(&si, 0, sizeof(si));
	si.magic = HVM_START_MAGIC;
	si.version = HVM_START_VERSION;
	si.cmdline_paddr = LAYOUT_CMDLINE;
	si.rsdp_paddr = rsdp_addr;
	si.memmap_paddr = LAYOUT_START_INFO + PVH_MEMMAP_OFFSET;
	si.memmap_entries = (uint32_t)n;
	if (initrd_len) {
		memset(&mod, 0, sizeof(mod));
		mod.paddr = initrd_addr;
		mod.size = initrd_len;
		si.nr_modules = 1;
		si.modlist_paddr = LAYOUT_START_INFO + PVH_MODLIST_OFFSET;
		ret = guest_mem_write(mem, si.modlist_paddr, &mod, sizeof(mod));
		if (ret)
			return ret;
	}
	ret = guest_mem_write(mem, si.memmap_paddr, memmap, (uint64_t)n * sizeof(memmap[0]));
	if (!ret)
		ret = guest_mem_write(mem, LAYOUT_START_INFO, &si, sizeof(si));
	return ret;
}

int pvh_load(struct guest_mem *mem, const uint8_t *img, size_t len, const uint8_t *initrd,
	     size_t initrd_len, const char *cmdline, uint64_t rsdp_addr, struct boot_entry *entry,
	     const char *name)
{
	struct seg segs[PVH_MAX_PHDRS];
	struct elf_info e;
	uint64_t pvh_entry = 0, lo, hi, floor, low_top, initrd_addr;
	unsigned i;
	int ret, found = 0;

	ret = parse_ehdr(img, len, &e, name);
	if (ret)
		return ret;
	for (i = 0; i < e.phnum; i++)
		read_phdr(img, &e, i, &segs[i]);
	for (i = 0; i < e.phnum && !found; i++) {
		if (segs[i].type != PT_NOTE)
			continue;
		found = find_entry_note(img, len, &segs[i], &pvh_entry, name);
		if (found < 0)
			return found;
	}
	if (!found) {
		pr_err("%s: ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)", name);
		return -ENOEXEC;
	}
	ret = check_segments(mem, len, segs, e.phnum, initrd_len, &lo, &hi, name);
	if (ret)
		return ret;
	if (pvh_entry > UINT32_MAX) {
		pr_err("%s: PVH entry %#llx is above 4 GiB", name, (unsigned long long)pvh_entry);
		return -ENOEXEC;
	}
	for (i = 0; i < e.phnum; i++)
		if (segs[i].type == PT_LOAD && pvh_entry >= segs[i].paddr &&
		    pvh_entry - segs[i].paddr < segs[i].memsz)
			break;
	if (i == e.phnum) {
		pr_err("%s: PVH entry %#llx is outside the loaded segments", name,
		       (unsigned long long)pvh_entry);
		return -ENOEXEC;
	}

	ret = boot_write_cmdline(mem, cmdline, LAYOUT_CMDLINE_MAX - 1, name);
	if (ret)
		return ret;
	/* The initrd goes above the highest segment in low RAM. */
	low_top = e820_low_ram_top(mem);
	floor = LAYOUT_HIGH_MEMORY;
	for (i = 0; i < e.phnum; i++)
		if (segs[i].type == PT_LOAD && segs[i].memsz && segs[i].paddr < low_top &&
		    segs[i].paddr + segs[i].memsz > floor)
			floor = segs[i].paddr + segs[i].memsz;
	if (boot_place_initrd(mem, initrd, initrd_len, floor, low_top, &initrd_addr))
		return boot_err_too_small(mem, hi - lo, lo, initrd_len);
	ret = load_segments(mem, img, segs, e.phnum);
	if (!ret)
		ret = write_start_info(mem, initrd_addr, initrd_len, rsdp_addr);
	if (ret) {
		/* check_segments vetted every range, so this is not the file's fault. */
		pr_err("%s: writing the image into guest RAM failed: %s", name, strerror(-ret));
		return ret;
	}
	entry->mode = BOOT_MODE_PVH32;
	entry->rip = pvh_entry;
	entry->rsi = 0;
	entry->rbx = LAYOUT_START_INFO;
	return 0;
}
