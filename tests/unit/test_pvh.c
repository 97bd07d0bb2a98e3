// SPDX-License-Identifier: MIT
/* PVH ELF loading: synthetic ELF64/ELF32 images, hostile headers, a real vmlinux if present. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot.h"
#include "boot_images.h"
#include "capture.h"
#include "e820.h"
#include "guest_mem.h"
#include "layout.h"
#include "pvh.h"

#define MIB (1ULL << 20)

static uint8_t img[TEST_PVH_SIZE] __attribute__((aligned(8)));

struct fixture {
	struct guest_mem mem;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, 64 * MIB))
		return -1;
	test_make_pvh64(img, NULL, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static void check_loaded(struct fixture *f, const struct boot_entry *e, size_t initrd_len)
{
	struct hvm_start_info *si;
	struct hvm_memmap_table_entry *mm;
	struct hvm_modlist_entry *mod;
	uint8_t *bss;
	size_t i;

	assert_int_equal(e->mode, BOOT_MODE_PVH32);
	assert_int_equal(e->rip, TEST_PVH_ENTRY);
	assert_int_equal(e->rbx, LAYOUT_START_INFO);
	assert_memory_equal(guest_mem_ptr(&f->mem, TEST_PVH_PADDR, TEST_PVH_FILESZ),
			    img + TEST_PVH_DATA_OFF, TEST_PVH_FILESZ);
	bss = guest_mem_ptr(&f->mem, TEST_PVH_PADDR + TEST_PVH_FILESZ,
			    TEST_PVH_MEMSZ - TEST_PVH_FILESZ);
	for (i = 0; i < TEST_PVH_MEMSZ - TEST_PVH_FILESZ; i++)
		assert_int_equal(bss[i], 0);

	si = guest_mem_ptr(&f->mem, LAYOUT_START_INFO, sizeof(*si));
	assert_int_equal(si->magic, HVM_START_MAGIC);
	assert_int_equal(si->version, 1);
	assert_int_equal(si->cmdline_paddr, LAYOUT_CMDLINE);
	assert_int_equal(si->rsdp_paddr, LAYOUT_ACPI);
	assert_int_equal(si->memmap_entries, 3);
	mm = guest_mem_ptr(&f->mem, si->memmap_paddr, 3 * sizeof(*mm));
	assert_non_null(mm);
	assert_int_equal(mm[0].addr, 0);
	assert_int_equal(mm[0].size, LAYOUT_EBDA);
	assert_int_equal(mm[0].type, HVM_MEMMAP_TYPE_RAM);
	assert_int_equal(mm[1].type, HVM_MEMMAP_TYPE_RESERVED);
	assert_int_equal(mm[2].addr, MIB);
	assert_int_equal(mm[2].addr + mm[2].size, 64 * MIB);
	assert_int_equal(mm[2].type, HVM_MEMMAP_TYPE_RAM);
	if (!initrd_len) {
		assert_int_equal(si->nr_modules, 0);
		return;
	}
	assert_int_equal(si->nr_modules, 1);
	mod = guest_mem_ptr(&f->mem, si->modlist_paddr, sizeof(*mod));
	assert_non_null(mod);
	assert_int_equal(mod->size, initrd_len);
	assert_int_equal(mod->paddr % 4096, 0);
	assert_true(mod->paddr >= TEST_PVH_PADDR + TEST_PVH_MEMSZ);
	assert_true(mod->paddr + initrd_len <= 64 * MIB);
	assert_true(mod->paddr + initrd_len > 64 * MIB - 4096);
}

static void test_good64(void **state)
{
	struct fixture *f = *state;
	uint8_t rd[5000];
	struct boot_entry e;
	uint8_t *bss;

	memset(rd, 0x77, sizeof(rd));
	/* Dirty the bss area first: the loader must zero it. */
	bss = guest_mem_ptr(&f->mem, TEST_PVH_PADDR, TEST_PVH_MEMSZ);
	memset(bss, 0xaa, TEST_PVH_MEMSZ);
	assert_int_equal(boot_load_buffers(&f->mem, img, TEST_PVH_SIZE, rd, sizeof(rd),
					   "console=ttyS0", 1, &e, "pvh.elf"),
			 0);
	check_loaded(f, &e, sizeof(rd));
	assert_string_equal((char *)guest_mem_ptr(&f->mem, LAYOUT_CMDLINE, 14), "console=ttyS0");
}

static void test_good32(void **state)
{
	struct fixture *f = *state;
	struct boot_entry e;

	test_make_pvh32(img, NULL, 0);
	assert_int_equal(
	    boot_load_buffers(&f->mem, img, TEST_PVH_SIZE, NULL, 0, NULL, 1, &e, "pvh32.elf"), 0);
	check_loaded(f, &e, 0);
}

static void test_note_desc_8_bytes(void **state)
{
	struct fixture *f = *state;
	struct boot_entry e;
	size_t len = test_put_notes(img + TEST_PVH_NOTE_OFF, TEST_PVH_ENTRY, 8);

	test_pvh64_phdr(img, 1)->p_filesz = len;
	assert_int_equal(boot_load_buffers(&f->mem, img, TEST_PVH_SIZE, NULL, 0, "", 1, &e, "p"),
			 0);
	assert_int_equal(e.rip, TEST_PVH_ENTRY);
}

static void expect_error(struct fixture *f, size_t len, int err, const char *what)
{
	struct boot_entry e;
	struct capture c;
	int ret, lines;

	capture_begin(&c);
	ret = boot_load_buffers(&f->mem, img, len, NULL, 0, "", 1, &e, "pvh.elf");
	lines = capture_end(&c);
	assert_int_equal(ret, err);
	assert_int_equal(lines, 1);
	assert_non_null(strstr(c.text, what));
}

static void test_no_note(void **state)
{
	struct fixture *f = *state;

	test_pvh64_phdr(img, 1)->p_type = PT_NULL;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "pvh.elf: ELF has no PVH entry note");
}

static void test_note_bad_size(void **state)
{
	struct fixture *f = *state;
	size_t len = test_put_notes(img + TEST_PVH_NOTE_OFF, TEST_PVH_ENTRY, 2);

	test_pvh64_phdr(img, 1)->p_filesz = len;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "expected 4 or 8");
}

static void test_note_truncated(void **state)
{
	struct fixture *f = *state;

	/* The Xen note's descriptor runs past the segment: not found, not read. */
	test_pvh64_phdr(img, 1)->p_filesz = 20 + 16 + 2;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "no PVH entry note");
	test_pvh64_phdr(img, 1)->p_filesz = 0xffffffff;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "note segment");
	test_pvh64_phdr(img, 1)->p_filesz = 8;
	test_pvh64_phdr(img, 1)->p_offset = UINT64_MAX - 4;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "note segment");
}

static void test_note_padding_past_segment(void **state)
{
	struct fixture *f = *state;
	uint32_t w[3] = {4, 1, 3}; /* a GNU note with a 1-byte desc, padded to 4 */

	/* The segment ends inside that padding; a Xen note follows outside it. */
	memcpy(img + TEST_PVH_NOTE_OFF, w, 12);
	test_put_notes(img + TEST_PVH_NOTE_OFF + 20, TEST_PVH_ENTRY, 4);
	test_pvh64_phdr(img, 1)->p_filesz = 17;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "no PVH entry note");
	/* The same at the very end of the file. */
	test_pvh64_phdr(img, 1)->p_offset = TEST_PVH_SIZE - 17;
	memcpy(img + TEST_PVH_SIZE - 17, w, 12);
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "no PVH entry note");
}

static void test_note_huge_namesz(void **state)
{
	struct fixture *f = *state;
	uint32_t namesz = 0xfffffff0;

	memcpy(img + TEST_PVH_NOTE_OFF, &namesz, 4);
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "no PVH entry note");
}

static void test_truncated_header(void **state)
{
	struct fixture *f = *state;

	expect_error(f, 8, -ENOEXEC, "truncated ELF header");
	expect_error(f, 40, -ENOEXEC, "truncated ELF header");
	/* Program headers cut off. */
	expect_error(f, sizeof(Elf64_Ehdr) + 60, -ENOEXEC, "program headers");
}

static void test_bad_ident(void **state)
{
	struct fixture *f = *state;

	img[EI_CLASS] = 7;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "ELF class");
	img[EI_CLASS] = ELFCLASS64;
	img[EI_DATA] = ELFDATA2MSB;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "little-endian");
}

static void test_bad_machine_type(void **state)
{
	struct fixture *f = *state;
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;

	eh->e_machine = EM_AARCH64;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "not an x86 ELF");
	eh->e_machine = EM_X86_64;
	eh->e_type = ET_REL;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "not an executable");
}

static void test_bad_phdrs(void **state)
{
	struct fixture *f = *state;
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;

	eh->e_phnum = 0;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "0 program headers");
	eh->e_phnum = 1000;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "1000 program headers");
	eh->e_phnum = 2;
	eh->e_phentsize = 20;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "program header size");
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phoff = UINT64_MAX - 8;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "past the end of the file");
	eh->e_phoff = TEST_PVH_SIZE - 100;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "past the end of the file");
}

static void test_segment_past_eof(void **state)
{
	struct fixture *f = *state;

	test_pvh64_phdr(img, 0)->p_offset = TEST_PVH_SIZE - 10;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "past the end of the file");
	test_pvh64_phdr(img, 0)->p_offset = UINT64_MAX - 10;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "past the end of the file");
}

static void test_filesz_above_memsz(void **state)
{
	struct fixture *f = *state;

	test_pvh64_phdr(img, 0)->p_memsz = 0x100;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "above its memory size");
}

static void test_segment_below_1m(void **state)
{
	struct fixture *f = *state;

	test_pvh64_phdr(img, 0)->p_paddr = 0x8000;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "below 1 MiB");
}

static void test_segment_wraps(void **state)
{
	struct fixture *f = *state;

	test_pvh64_phdr(img, 0)->p_memsz = UINT64_MAX - 0x1000;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "wraps around");
}

static void test_segment_outside_ram(void **state)
{
	struct fixture *f = *state;

	test_pvh64_phdr(img, 0)->p_paddr = 0xd0000000; /* PCI hole */
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "outside RAM");
	test_pvh64_phdr(img, 0)->p_paddr = 60 * MIB;
	test_pvh64_phdr(img, 0)->p_memsz = 8 * MIB;
	expect_error(f, TEST_PVH_SIZE, -ENOMEM,
		     "memory too small: kernel needs 8 MiB at 0x3c00000, only 64 MiB of RAM");
}

static void test_overlapping_segments(void **state)
{
	struct fixture *f = *state;
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;

	/* A third header, a PT_LOAD overlapping the first one's bss. */
	*test_pvh64_phdr(img, 2) = *test_pvh64_phdr(img, 0);
	test_pvh64_phdr(img, 2)->p_paddr = TEST_PVH_PADDR + TEST_PVH_MEMSZ - 1;
	eh->e_phnum = 3;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "segments 0 and 2 overlap");
}

static void test_entry_outside(void **state)
{
	struct fixture *f = *state;
	size_t len = test_put_notes(img + TEST_PVH_NOTE_OFF, 0x2000000, 4);

	test_pvh64_phdr(img, 1)->p_filesz = len;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "outside the loaded segments");
	test_put_notes(img + TEST_PVH_NOTE_OFF, 0x100000000ULL + TEST_PVH_ENTRY, 8);
	test_pvh64_phdr(img, 1)->p_filesz =
	    test_put_notes(img + TEST_PVH_NOTE_OFF, 0x100000000ULL + TEST_PVH_ENTRY, 8);
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "above 4 GiB");
}

static void test_no_loadable(void **state)
{
	struct fixture *f = *state;

	test_pvh64_phdr(img, 0)->p_type = PT_NULL;
	expect_error(f, TEST_PVH_SIZE, -ENOEXEC, "no loadable segment");
}

static void test_cmdline_too_long(void **state)
{
	struct fixture *f = *state;
	size_t n = LAYOUT_CMDLINE_MAX;
	char *cl = malloc(n + 1);
	struct boot_entry e;
	struct capture c;
	int ret;

	memset(cl, 'a', n);
	cl[n] = '\0';
	capture_begin(&c);
	ret = boot_load_buffers(&f->mem, img, TEST_PVH_SIZE, NULL, 0, cl, 1, &e, "pvh.elf");
	assert_int_equal(capture_end(&c), 1);
	assert_int_equal(ret, -E2BIG);
	assert_non_null(strstr(c.text, "command line is 65536 bytes"));
	free(cl);
}

static void test_initrd_too_big(void **state)
{
	struct fixture *f = *state;
	size_t n = 63 * MIB;
	uint8_t *rd = calloc(1, n);
	struct boot_entry e;
	struct capture c;
	int ret;

	capture_begin(&c);
	ret = boot_load_buffers(&f->mem, img, TEST_PVH_SIZE, rd, n, "", 1, &e, "pvh.elf");
	assert_int_equal(capture_end(&c), 1);
	assert_int_equal(ret, -ENOMEM);
	assert_non_null(strstr(c.text, "initrd 63 MiB, only 64 MiB of RAM"));
	free(rd);
}

/* An uncompressed Linux vmlinux (PVH note), if present.  Skipped otherwise. */
static void test_real_vmlinux(void **state)
{
	const char *path = getenv("VMM_TEST_VMLINUX");
	struct boot_config cfg = {.cmdline = "console=ttyS0", .ncpus = 1};
	struct fixture *f = *state;
	struct guest_mem mem;
	struct hvm_start_info *si;
	struct boot_entry e;

	(void)f;
	if (!path)
		path = "images/linux/out/vmlinux";
	if (access(path, R_OK)) {
		skip();
		return;
	}
	assert_int_equal(guest_mem_init(&mem, 256 * MIB), 0);
	cfg.kernel_path = path;
	assert_int_equal(boot_load(&mem, &cfg, &e), 0);
	assert_int_equal(e.mode, BOOT_MODE_PVH32);
	assert_true(e.rip >= 0x1000000 && e.rip < 0x4000000);
	si = guest_mem_ptr(&mem, LAYOUT_START_INFO, sizeof(*si));
	assert_int_equal(si->magic, HVM_START_MAGIC);
	print_message("real vmlinux %s: PVH entry %#llx\n", path, (unsigned long long)e.rip);
	guest_mem_destroy(&mem);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_good64),
	    T(test_good32),
	    T(test_note_desc_8_bytes),
	    T(test_no_note),
	    T(test_note_bad_size),
	    T(test_note_truncated),
	    T(test_note_padding_past_segment),
	    T(test_note_huge_namesz),
	    T(test_truncated_header),
	    T(test_bad_ident),
	    T(test_bad_machine_type),
	    T(test_bad_phdrs),
	    T(test_segment_past_eof),
	    T(test_filesz_above_memsz),
	    T(test_segment_below_1m),
	    T(test_segment_wraps),
	    T(test_segment_outside_ram),
	    T(test_overlapping_segments),
	    T(test_entry_outside),
	    T(test_no_loadable),
	    T(test_cmdline_too_long),
	    T(test_initrd_too_big),
	    T(test_real_vmlinux),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
