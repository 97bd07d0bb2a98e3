// SPDX-License-Identifier: MIT
/* bzImage loading: a synthetic 64-bit image, hostile headers, and Debian's kernel if present. */
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

#define MIB (1ULL << 20)

static uint8_t img[TEST_BZ_SIZE] __attribute__((aligned(8)));
static uint8_t initrd[MIB + 123];

struct fixture {
	struct guest_mem mem;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, 128 * MIB))
		return -1;
	test_make_bzimage(img, NULL, 0);
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

static void test_good(void **state)
{
	struct fixture *f = *state;
	struct boot_params *bp;
	struct boot_entry e;
	const char *cl = "console=ttyS0 panic=-1";
	size_t i;

	for (i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i ^ 0x5a);
	assert_int_equal(
	    boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, initrd, sizeof(initrd), cl, 2, &e, "bz"),
	    0);
	assert_int_equal(e.mode, BOOT_MODE_LINUX64);
	assert_int_equal(e.rip, TEST_BZ_PREF + 0x200);
	assert_int_equal(e.rsi, LAYOUT_ZERO_PAGE);

	bp = guest_mem_ptr(&f->mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	assert_non_null(bp);
	assert_memory_equal(&bp->hdr.header, "HdrS", 4);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_true(bp->hdr.loadflags & CAN_USE_HEAP);
	assert_true(bp->hdr.loadflags & LOADED_HIGH);
	assert_int_equal(bp->hdr.heap_end_ptr, 0xfe00);
	assert_int_equal(bp->hdr.vid_mode, 0xffff);
	assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	assert_string_equal((char *)guest_mem_ptr(&f->mem, LAYOUT_CMDLINE, strlen(cl) + 1), cl);
	assert_int_equal(bp->acpi_rsdp_addr, LAYOUT_ACPI);
	assert_memory_equal(guest_mem_ptr(&f->mem, LAYOUT_ACPI, 8), "RSD PTR ", 8);

	/* The initrd: page-aligned, as high as possible, above the kernel's init_size. */
	assert_int_equal(bp->hdr.ramdisk_size, sizeof(initrd));
	assert_int_equal(bp->hdr.ramdisk_image % 4096, 0);
	assert_true(bp->hdr.ramdisk_image >= TEST_BZ_PREF + TEST_BZ_INIT_SIZE);
	assert_true(bp->hdr.ramdisk_image + sizeof(initrd) <= 128 * MIB);
	assert_true(bp->hdr.ramdisk_image + sizeof(initrd) > 128 * MIB - 4096);
	assert_memory_equal(guest_mem_ptr(&f->mem, bp->hdr.ramdisk_image, sizeof(initrd)), initrd,
			    sizeof(initrd));

	/* The protected-mode kernel at pref_address. */
	assert_memory_equal(guest_mem_ptr(&f->mem, TEST_BZ_PREF, TEST_BZ_KERNEL_SIZE),
			    img + TEST_BZ_SETUP_SIZE, TEST_BZ_KERNEL_SIZE);

	/* e820: RAM, reserved EBDA..1 MiB, RAM to the top. */
	assert_int_equal(bp->e820_entries, 3);
	assert_int_equal(bp->e820_table[0].addr, 0);
	assert_int_equal(bp->e820_table[0].size, LAYOUT_EBDA);
	assert_int_equal(bp->e820_table[0].type, E820_TYPE_RAM);
	assert_int_equal(bp->e820_table[1].addr, LAYOUT_EBDA);
	assert_int_equal(bp->e820_table[1].type, E820_TYPE_RESERVED);
	assert_int_equal(bp->e820_table[2].addr, MIB);
	assert_int_equal(bp->e820_table[2].size, 127 * MIB);
	assert_int_equal(bp->e820_table[2].type, E820_TYPE_RAM);
}

static void test_no_initrd_no_cmdline(void **state)
{
	struct fixture *f = *state;
	struct boot_params *bp;
	struct boot_entry e;

	assert_int_equal(boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, NULL, 0, NULL, 1, &e, "bz"),
			 0);
	bp = guest_mem_ptr(&f->mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	assert_int_equal(bp->hdr.ramdisk_image, 0);
	assert_int_equal(bp->hdr.ramdisk_size, 0);
	assert_int_equal(*(char *)guest_mem_ptr(&f->mem, LAYOUT_CMDLINE, 1), '\0');
}

static void test_setup_sects_zero_means_four(void **state)
{
	struct fixture *f = *state;
	struct boot_entry e;

	test_bz_hdr(img)->setup_sects = 0; /* 4, which is what the image has */
	assert_int_equal(boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, NULL, 0, "", 1, &e, "bz"),
			 0);
	assert_memory_equal(guest_mem_ptr(&f->mem, TEST_BZ_PREF, 64), img + TEST_BZ_SETUP_SIZE, 64);
}

static void test_relocatable_alignment(void **state)
{
	struct fixture *f = *state;
	struct boot_entry e;

	test_bz_hdr(img)->pref_address = TEST_BZ_PREF + 0x1234;
	assert_int_equal(boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, NULL, 0, "", 1, &e, "bz"),
			 0);
	assert_int_equal(e.rip, TEST_BZ_PREF + 0x200000 + 0x200);

	/* A relocatable kernel with no preference still lands at or above 1 MiB. */
	test_bz_hdr(img)->pref_address = 0;
	test_bz_hdr(img)->kernel_alignment = 0x1000;
	assert_int_equal(boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, NULL, 0, "", 1, &e, "bz"),
			 0);
	assert_int_equal(e.rip, MIB + 0x200);
}

static void test_fixed_address(void **state)
{
	struct fixture *f = *state;
	struct boot_entry e;

	test_bz_hdr(img)->relocatable_kernel = 0;
	test_bz_hdr(img)->pref_address = 0x2345000;
	assert_int_equal(boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, NULL, 0, "", 1, &e, "bz"),
			 0);
	assert_int_equal(e.rip, 0x2345200);
}

/* Load img as modified by the test; expect err and exactly one line containing what. */
static void expect_error(struct fixture *f, size_t len, const uint8_t *rd, size_t rd_len,
			 const char *cmdline, int err, const char *what)
{
	struct boot_entry e;
	struct capture c;
	int ret, lines;

	capture_begin(&c);
	ret = boot_load_buffers(&f->mem, img, len, rd, rd_len, cmdline, 1, &e, "bz.img");
	lines = capture_end(&c);
	assert_int_equal(ret, err);
	assert_int_equal(lines, 1);
	assert_non_null(strstr(c.text, what));
}

static void test_truncated(void **state)
{
	struct fixture *f = *state;

	expect_error(f, 0x206, NULL, 0, "", -ENOEXEC, "bz.img: truncated");
	expect_error(f, TEST_BZ_SETUP_SIZE, NULL, 0, "", -ENOEXEC, "truncated");
	expect_error(f, TEST_BZ_SETUP_SIZE + 0x100, NULL, 0, "", -ENOEXEC, "truncated");
	test_bz_hdr(img)->setup_sects = 255;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "setup code");
}

static void test_old_protocol(void **state)
{
	struct fixture *f = *state;

	test_bz_hdr(img)->version = 0x020b;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "boot protocol 2.11 is too old");
}

static void test_no_64bit_entry(void **state)
{
	struct fixture *f = *state;

	test_bz_hdr(img)->xloadflags = 0;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "XLF_KERNEL_64");
}

static void test_zimage(void **state)
{
	struct fixture *f = *state;

	test_bz_hdr(img)->loadflags = 0;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "zImage");
}

static void test_bad_alignment(void **state)
{
	struct fixture *f = *state;

	test_bz_hdr(img)->kernel_alignment = 0x3000;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "kernel_alignment");
	test_bz_hdr(img)->kernel_alignment = 0;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "kernel_alignment");
}

static void test_bad_load_address(void **state)
{
	struct fixture *f = *state;

	test_bz_hdr(img)->relocatable_kernel = 0;
	test_bz_hdr(img)->pref_address = 0x8000;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "below 1 MiB");
	test_bz_hdr(img)->pref_address = UINT64_MAX - 0x100;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOMEM, "memory too small");
	test_bz_hdr(img)->relocatable_kernel = 1;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOEXEC, "out of range");
	/* Inside the PCI hole: never RAM. */
	test_bz_hdr(img)->pref_address = LAYOUT_PCI_MMIO_BASE;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOMEM, "memory too small");
}

static void test_cmdline_too_long(void **state)
{
	struct fixture *f = *state;
	char cl[64];

	memset(cl, 'x', sizeof(cl) - 1);
	cl[sizeof(cl) - 1] = '\0';
	test_bz_hdr(img)->cmdline_size = 62;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, cl, -E2BIG, "command line is 63 bytes");
	test_bz_hdr(img)->cmdline_size = 63; /* exactly fits */
	{
		struct boot_entry e;

		assert_int_equal(
		    boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, NULL, 0, cl, 1, &e, "bz"), 0);
	}
}

static void test_memory_too_small(void **state)
{
	struct fixture *f = *state;

	/* init_size that runs past 128 MiB. */
	test_bz_hdr(img)->init_size = 0xffffffff;
	expect_error(f, TEST_BZ_SIZE, NULL, 0, "", -ENOMEM,
		     "memory too small: kernel needs 4096 MiB at 0x1000000, only 128 MiB of RAM");
}

static void test_initrd_does_not_fit(void **state)
{
	struct fixture *f = *state;
	size_t big = 120 * MIB;
	uint8_t *rd = calloc(1, big);

	assert_non_null(rd);
	expect_error(f, TEST_BZ_SIZE, rd, big, "", -ENOMEM,
		     "memory too small: kernel needs 8 MiB at 0x1000000, initrd 120 MiB, only "
		     "128 MiB of RAM");
	/* initrd_addr_max below the kernel's end leaves no room either. */
	test_bz_hdr(img)->initrd_addr_max = 0x1000000;
	expect_error(f, TEST_BZ_SIZE, rd, 4096, "", -ENOMEM, "memory too small");
	free(rd);
}

static void test_initrd_addr_max(void **state)
{
	struct fixture *f = *state;
	struct boot_params *bp;
	struct boot_entry e;

	test_bz_hdr(img)->initrd_addr_max = 0x3ffffff; /* last byte below 64 MiB */
	assert_int_equal(
	    boot_load_buffers(&f->mem, img, TEST_BZ_SIZE, initrd, 8192, "", 1, &e, "bz"), 0);
	bp = guest_mem_ptr(&f->mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	assert_int_equal(bp->hdr.ramdisk_image, 0x4000000 - 8192);
}

static void test_high_ram_e820(void **state)
{
	struct guest_mem mem;
	struct boot_params *bp;
	struct boot_entry e;

	(void)state;
	/* 3 GiB + 64 MiB: RAM resumes at 4 GiB.  The memfd is sparse, so this is cheap. */
	assert_int_equal(guest_mem_init(&mem, LAYOUT_LOW_RAM_MAX + 64 * MIB), 0);
	assert_int_equal(boot_load_buffers(&mem, img, TEST_BZ_SIZE, initrd, 4096, "", 1, &e, "bz"),
			 0);
	bp = guest_mem_ptr(&mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	assert_int_equal(bp->e820_entries, 4);
	assert_int_equal(bp->e820_table[2].addr + bp->e820_table[2].size, LAYOUT_LOW_RAM_MAX);
	assert_int_equal(bp->e820_table[3].addr, LAYOUT_HIGH_RAM_BASE);
	assert_int_equal(bp->e820_table[3].size, 64 * MIB);
	/* The initrd stays below 2 GiB (initrd_addr_max 0x7fffffff). */
	assert_int_equal(bp->hdr.ramdisk_image, 0x80000000 - 4096);
	guest_mem_destroy(&mem);
}

/*
 * Debian's stock kernel, if present: $VMM_TEST_BZIMAGE, else what
 * images/linux/build.sh --kernel-only leaves.  Skipped otherwise.
 */
static void test_real_kernel(void **state)
{
	const char *path = getenv("VMM_TEST_BZIMAGE");
	struct boot_config cfg = {.cmdline = "console=ttyS0", .ncpus = 2};
	struct fixture *f = *state;
	struct boot_params *bp;
	struct boot_entry e;

	if (!path)
		path = "images/linux/out/vmlinuz";
	if (access(path, R_OK)) {
		skip();
		return;
	}
	cfg.kernel_path = path;
	assert_int_equal(boot_load(&f->mem, &cfg, &e), 0);
	bp = guest_mem_ptr(&f->mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	assert_true(bp->hdr.version >= 0x020c);
	assert_true(bp->hdr.xloadflags & XLF_KERNEL_64);
	assert_int_equal(e.rip, bp->hdr.pref_address + 0x200);
	assert_int_equal(bp->hdr.pref_address % bp->hdr.kernel_alignment, 0);
	assert_true(bp->hdr.init_size > 0 && bp->hdr.init_size < 128 * MIB);
	assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	print_message("real kernel %s: protocol %x, load %#llx, init_size %#x\n", path,
		      bp->hdr.version, (unsigned long long)bp->hdr.pref_address, bp->hdr.init_size);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_good),
	    T(test_no_initrd_no_cmdline),
	    T(test_setup_sects_zero_means_four),
	    T(test_relocatable_alignment),
	    T(test_fixed_address),
	    T(test_truncated),
	    T(test_old_protocol),
	    T(test_no_64bit_entry),
	    T(test_zimage),
	    T(test_bad_alignment),
	    T(test_bad_load_address),
	    T(test_cmdline_too_long),
	    T(test_memory_too_small),
	    T(test_initrd_does_not_fit),
	    T(test_initrd_addr_max),
	    T(test_high_ram_e820),
	    T(test_real_kernel),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
