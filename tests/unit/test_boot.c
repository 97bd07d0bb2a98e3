// SPDX-License-Identifier: MIT
/* boot_load: files, format detection, the boot GDT, page tables and entry registers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot.h"
#include "boot_images.h"
#include "capture.h"
#include "guest_mem.h"
#include "layout.h"

#define MIB (1ULL << 20)

struct fixture {
	struct guest_mem mem;
	char dir[64];
	char kernel[128], initrd[128], junk[128], empty[128], pvh[128];
};

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

static int setup(void **state)
{
	static uint8_t img[TEST_BZ_SIZE];
	static uint8_t elf[TEST_PVH_SIZE];
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, 64 * MIB))
		return -1;
	strcpy(f->dir, "/tmp/vmm-boot-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->kernel, sizeof(f->kernel), "%s/bzImage", f->dir);
	snprintf(f->initrd, sizeof(f->initrd), "%s/initrd.gz", f->dir);
	snprintf(f->junk, sizeof(f->junk), "%s/kernel.img", f->dir);
	snprintf(f->empty, sizeof(f->empty), "%s/empty", f->dir);
	snprintf(f->pvh, sizeof(f->pvh), "%s/guest.elf", f->dir);
	write_file(f->kernel, img, test_make_bzimage(img, NULL, 0));
	write_file(f->pvh, elf, test_make_pvh64(elf, NULL, 0));
	write_file(f->initrd, "0123456789", 10);
	write_file(f->junk, "this is not a kernel, just some text that is long enough to look at",
		   68);
	write_file(f->empty, "", 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd))
		return -1;
	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static void test_load_files(void **state)
{
	struct fixture *f = *state;
	struct boot_config cfg = {
	    .kernel_path = f->kernel, .initrd_path = f->initrd, .cmdline = "quiet", .ncpus = 2};
	struct boot_params *bp;
	struct boot_entry e;

	assert_int_equal(boot_load(&f->mem, &cfg, &e), 0);
	assert_int_equal(e.mode, BOOT_MODE_LINUX64);
	bp = guest_mem_ptr(&f->mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	assert_int_equal(bp->hdr.ramdisk_size, 10);
	assert_memory_equal(guest_mem_ptr(&f->mem, bp->hdr.ramdisk_image, 10), "0123456789", 10);

	cfg.kernel_path = f->pvh;
	assert_int_equal(boot_load(&f->mem, &cfg, &e), 0);
	assert_int_equal(e.mode, BOOT_MODE_PVH32);
}

static void expect_error(struct fixture *f, const char *kernel, const char *initrd, unsigned ncpus,
			 int err, const char *what)
{
	struct boot_config cfg = {
	    .kernel_path = kernel, .initrd_path = initrd, .cmdline = NULL, .ncpus = ncpus};
	struct boot_entry e;
	struct capture c;
	int ret, lines;

	capture_begin(&c);
	ret = boot_load(&f->mem, &cfg, &e);
	lines = capture_end(&c);
	assert_int_equal(ret, err);
	assert_int_equal(lines, 1);
	assert_non_null(strstr(c.text, what));
}

static void test_file_errors(void **state)
{
	struct fixture *f = *state;
	char missing[160], want[200];

	snprintf(missing, sizeof(missing), "%s/nope", f->dir);
	snprintf(want, sizeof(want), "%s: No such file or directory", missing);
	expect_error(f, missing, NULL, 1, -ENOENT, want);
	expect_error(f, f->kernel, missing, 1, -ENOENT, want);
	snprintf(want, sizeof(want), "%s: Is a directory", f->dir);
	expect_error(f, f->dir, NULL, 1, -EISDIR, want);
	expect_error(f, f->kernel, f->dir, 1, -EISDIR, want);
	expect_error(f, f->empty, NULL, 1, -ENOEXEC, "empty");
	expect_error(f, f->kernel, f->empty, 1, -ENOEXEC, "empty");
	expect_error(f, "/dev/null", NULL, 1, -EINVAL, "not a regular file");
	snprintf(want, sizeof(want), "%s: not a bzImage or PVH ELF", f->junk);
	expect_error(f, f->junk, NULL, 1, -ENOEXEC, want);
	expect_error(f, f->kernel, NULL, 0, -EINVAL, "0 vCPUs");
	expect_error(f, f->kernel, NULL, 1000, -EINVAL, "1000 vCPUs");
}

static void test_unreadable(void **state)
{
	struct fixture *f = *state;

	if (geteuid() == 0) { /* root reads anything */
		skip();
		return;
	}
	assert_int_equal(chmod(f->kernel, 0), 0);
	expect_error(f, f->kernel, NULL, 1, -EACCES, "Permission denied");
}

static void test_file_bigger_than_ram(void **state)
{
	struct fixture *f = *state;
	struct guest_mem small;
	struct boot_config cfg = {.kernel_path = f->kernel, .initrd_path = f->initrd, .ncpus = 1};
	struct boot_entry e;
	struct capture c;
	FILE *fp;
	int ret;

	/* A sparse 2 MiB initrd for a 1 MiB guest. */
	fp = fopen(f->initrd, "wb");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 2 * MIB - 1, SEEK_SET), 0);
	fputc(0, fp);
	fclose(fp);
	assert_int_equal(guest_mem_init(&small, MIB), 0);
	capture_begin(&c);
	ret = boot_load(&small, &cfg, &e);
	assert_int_equal(capture_end(&c), 1);
	assert_int_equal(ret, -EFBIG);
	assert_non_null(strstr(c.text, "2 MiB does not fit in 1 MiB of RAM"));
	guest_mem_destroy(&small);
}

static void test_buffers_without_name(void **state)
{
	struct fixture *f = *state;
	struct boot_entry e;
	struct capture c;
	int ret;

	capture_begin(&c);
	ret = boot_load_buffers(&f->mem, (const uint8_t *)"MZ", 2, NULL, 0, NULL, 1, &e, NULL);
	assert_int_equal(capture_end(&c), 1);
	assert_int_equal(ret, -ENOEXEC);
	assert_non_null(strstr(c.text, "kernel: not a bzImage or PVH ELF"));
	capture_begin(&c);
	ret = boot_load_buffers(&f->mem, NULL, 0, NULL, 0, NULL, 1, &e, NULL);
	assert_int_equal(capture_end(&c), 1);
	assert_int_equal(ret, -ENOEXEC);
}

static void test_page_tables(void **state)
{
	struct fixture *f = *state;
	const uint64_t *pml4, *pdpt, *pd;
	unsigned i;

	assert_int_equal(boot_write_page_tables(&f->mem), 0);
	pml4 = guest_mem_ptr(&f->mem, LAYOUT_PML4, 4096);
	pdpt = guest_mem_ptr(&f->mem, LAYOUT_PDPT, 4096);
	pd = guest_mem_ptr(&f->mem, LAYOUT_PD, 4 * 4096);
	assert_int_equal(pml4[0], LAYOUT_PDPT | 3);
	for (i = 1; i < 512; i++)
		assert_int_equal(pml4[i], 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(pdpt[i], (LAYOUT_PD + i * 4096) | 3);
	assert_int_equal(pdpt[4], 0);
	/* 2048 2 MiB pages, identity-mapped, present + writable + PS. */
	for (i = 0; i < 2048; i++)
		assert_int_equal(pd[i], ((uint64_t)i << 21) | 0x83);
	/* The tables must not overlap each other or the other boot data. */
	assert_true(LAYOUT_PD + 4 * 4096 <= LAYOUT_CMDLINE);
	assert_true(LAYOUT_ZERO_PAGE + 4096 <= LAYOUT_PML4);
}

static void test_gdt(void **state)
{
	struct fixture *f = *state;
	const uint64_t *gdt;

	assert_int_equal(boot_write_gdt(&f->mem), 0);
	gdt = guest_mem_ptr(&f->mem, LAYOUT_GDT, 5 * 8);
	assert_int_equal(gdt[0], 0);
	assert_int_equal(gdt[BOOT_SEL_CODE32 / 8], 0x00cf9b000000ffffULL);
	assert_int_equal(gdt[BOOT_SEL_CODE64 / 8], 0x00af9b000000ffffULL);
	assert_int_equal(gdt[BOOT_SEL_DATA / 8], 0x00cf93000000ffffULL);
	assert_int_equal(gdt[BOOT_SEL_TSS / 8], 0x00008b0000000067ULL);
}

static void test_entry_regs_linux64(void **state)
{
	struct boot_entry e = {.mode = BOOT_MODE_LINUX64, .rip = 0x1000200, .rsi = 0x7000};
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	(void)state;
	memset(&regs, 0xff, sizeof(regs));
	memset(&sregs, 0, sizeof(sregs));
	sregs.apic_base = 0xfee00900;
	boot_entry_regs(&e, &regs, &sregs);
	assert_int_equal(regs.rip, 0x1000200);
	assert_int_equal(regs.rsi, 0x7000);
	assert_int_equal(regs.rax, 0);
	assert_int_equal(regs.rflags, 2);
	assert_int_equal(sregs.apic_base, 0xfee00900);
	assert_int_equal(sregs.cs.selector, 0x10);
	assert_int_equal(sregs.cs.l, 1);
	assert_int_equal(sregs.cs.db, 0);
	assert_int_equal(sregs.ds.selector, 0x18);
	assert_int_equal(sregs.ss.selector, 0x18);
	assert_int_equal(sregs.tr.type, 11);
	assert_int_equal(sregs.gdt.base, LAYOUT_GDT);
	assert_int_equal(sregs.cr3, LAYOUT_PML4);
	assert_true(sregs.cr0 & 1);
	assert_true(sregs.cr0 & 0x80000000);
	assert_int_equal(sregs.cr4, 0x20);
	assert_int_equal(sregs.efer, 0x500);
}

static void test_entry_regs_pvh(void **state)
{
	struct boot_entry e = {.mode = BOOT_MODE_PVH32, .rip = 0x100010, .rbx = 0x6000};
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	(void)state;
	memset(&sregs, 0, sizeof(sregs));
	sregs.efer = 0x500;
	boot_entry_regs(&e, &regs, &sregs);
	assert_int_equal(regs.rip, 0x100010);
	assert_int_equal(regs.rbx, 0x6000);
	assert_int_equal(regs.rflags, 2);
	assert_int_equal(sregs.cs.selector, 0x08);
	assert_int_equal(sregs.cs.db, 1);
	assert_int_equal(sregs.cs.l, 0);
	assert_int_equal(sregs.cs.limit, 0xffffffff);
	assert_int_equal(sregs.es.selector, 0x18);
	assert_int_equal(sregs.tr.selector, 0x20);
	assert_int_equal(sregs.cr0 & 0x80000001, 1);
	assert_int_equal(sregs.cr4, 0);
	assert_int_equal(sregs.efer, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_load_files),
	    T(test_file_errors),
	    T(test_unreadable),
	    T(test_file_bigger_than_ram),
	    T(test_buffers_without_name),
	    T(test_page_tables),
	    T(test_gdt),
	    T(test_entry_regs_linux64),
	    T(test_entry_regs_pvh),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
