/* SPDX-License-Identifier: MIT */
/*
 * Booting a guest: put a kernel (Linux bzImage through the 64-bit boot
 * protocol, or an ELF with a PVH entry note) with its initrd and command
 * line into guest RAM, together with everything it expects to find there
 * (zero page or hvm_start_info, memory map, ACPI tables, GDT, page tables),
 * and say where the BSP starts.
 *
 * Everything about the kernel file is untrusted: every offset and size is
 * checked against the file and against guest RAM.  A bad input prints one
 * line with pr_err naming the file and the problem and returns -errno;
 * nothing is written outside guest RAM and nothing crashes.
 *
 * Guest memory used (include/layout.h): LAYOUT_GDT, LAYOUT_START_INFO or
 * LAYOUT_ZERO_PAGE, LAYOUT_PML4..LAYOUT_PD+4 pages, LAYOUT_CMDLINE,
 * LAYOUT_ACPI; the kernel at 1 MiB or above, the initrd page-aligned as high
 * as possible in RAM below the PCI hole.
 */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

struct boot_config {
	const char *kernel_path; /* required */
	const char *initrd_path; /* NULL if none */
	const char *cmdline;	 /* NULL -> "" */
	unsigned ncpus;		 /* >= 1 */
};

enum boot_mode {
	BOOT_MODE_LINUX64, /* long mode, paging on, rsi = zero page */
	BOOT_MODE_PVH32,   /* 32-bit protected mode, paging off, rbx = hvm_start_info */
};

struct boot_entry {
	enum boot_mode mode;
	uint64_t rip, rsi, rbx;
};

/* GDT selectors of the boot GDT at LAYOUT_GDT (0x10/0x18 are Linux's __BOOT_CS/__BOOT_DS). */
#define BOOT_SEL_CODE32 0x08
#define BOOT_SEL_CODE64 0x10
#define BOOT_SEL_DATA	0x18
#define BOOT_SEL_TSS	0x20

/*
 * Read kernel (+initrd) from disk, detect bzImage ("HdrS" at 0x202) or ELF
 * with a PVH note, and load everything for ncpus vCPUs (see above).  0, or
 * -errno after one pr_err line ("kernel.img: not a bzImage or PVH ELF").
 */
int boot_load(struct guest_mem *mem, const struct boot_config *cfg, struct boot_entry *entry);

/* The same from buffers; kernel_name (NULL -> "kernel") is used in messages. */
int boot_load_buffers(struct guest_mem *mem, const uint8_t *kernel, size_t kernel_len,
		      const uint8_t *initrd, size_t initrd_len, const char *cmdline, unsigned ncpus,
		      struct boot_entry *entry, const char *kernel_name);

/*
 * Set regs (all of it) and sregs (segments, descriptor tables, CR0/3/4,
 * EFER; the rest, e.g. apic_base, is kept) for the BSP to start at entry.
 * sregs must come from KVM_GET_SREGS after KVM_SET_CPUID2 (KVM checks EFER
 * against the guest's CPUID).
 */
void boot_entry_regs(const struct boot_entry *e, struct kvm_regs *regs, struct kvm_sregs *sregs);

/* ---- Shared by the loaders (bzimage.c, pvh.c) ---- */

/* Write the boot GDT at LAYOUT_GDT.  0 or -EFAULT. */
int boot_write_gdt(struct guest_mem *mem);

/* Write identity page tables for the first 4 GiB (2 MiB pages) at LAYOUT_PML4.  0 or -EFAULT. */
int boot_write_page_tables(struct guest_mem *mem);

/*
 * Check that the command line (NULL -> "") has at most max_len bytes and
 * write it, NUL-terminated, at LAYOUT_CMDLINE.  0, or -E2BIG after a message.
 */
int boot_write_cmdline(struct guest_mem *mem, const char *cmdline, size_t max_len,
		       const char *name);

/*
 * Place the initrd page-aligned as high as possible with its end at or below
 * limit, and at or above floor (the kernel's end); copy it there.  A len of
 * 0 places nothing (*addr = 0).  0, or -ENOMEM if it does not fit (no message).
 */
int boot_place_initrd(struct guest_mem *mem, const uint8_t *initrd, size_t len, uint64_t floor,
		      uint64_t limit, uint64_t *addr);

/*
 * Print the one "memory too small" line: the kernel needs need bytes at
 * load, the initrd initrd_len bytes.  Returns -ENOMEM.
 */
int boot_err_too_small(const struct guest_mem *mem, uint64_t need, uint64_t load,
		       size_t initrd_len);

#endif
