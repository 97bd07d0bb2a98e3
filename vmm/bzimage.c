// SPDX-License-Identifier: MIT
/* Linux bzImage loader for the 64-bit boot protocol. */
#include "bzimage.h"
#include "e820.h"
#include "layout.h"
#include "log.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <string.h>

#define BZIMAGE_MIN_VERSION 0x020c /* 2.12: xloadflags, and so XLF_KERNEL_64 */
#define SECTOR		    512
#define DEFAULT_SETUP_SECTS 4 /* "setup_sects 0 means 4" */
#define ENTRY64_OFFSET	    0x200
#define LOADER_UNDEFINED    0xff
#define VID_MODE_NORMAL	    0xffff
/* Real-mode heap end relative to the setup code, as a loader at 0x90000 reports it. */
#define HEAP_END_PTR 0xfe00

_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");

bool bzimage_detect(const uint8_t *img, size_t len)
{
	return len >= BZIMAGE_MAGIC_OFFSET + 4 &&
	       memcmp(img + BZIMAGE_MAGIC_OFFSET, "HdrS", 4) == 0;
}

/* Where the protected-mode kernel goes; 0 after printing why there is no such place. */
static int load_address(const struct setup_header *hdr, uint64_t *addr, const char *name)
{
	uint64_t at = hdr->pref_address, align = hdr->kernel_alignment;

	if (!hdr->relocatable_kernel) {
		if (at < LAYOUT_HIGH_MEMORY) {
			pr_err("%s: kernel wants to load at %#llx, below 1 MiB", name,
			       (unsigned long long)at);
			return -ENOEXEC;
		}
		*addr = at;
		return 0;
	}
	if (align == 0 || (align & (align - 1))) {
		pr_err("%s: kernel_alignment %#llx is not a power of two", name,
		       (unsigned long long)align);
		return -ENOEXEC;
	}
	if (at < LAYOUT_HIGH_MEMORY)
		at = LAYOUT_HIGH_MEMORY;
	if (at > UINT64_MAX - (align - 1)) {
		pr_err("%s: preferred load address %#llx is out of range", name,
		       (unsigned long long)at);
		return -ENOEXEC;
	}
	*addr = (at + align - 1) & ~(align - 1);
	return 0;
}

int bzimage_load(struct guest_mem *mem, const uint8_t *img, size_t len, const uint8_t *initrd,
		 size_t initrd_len, const char *cmdline, uint64_t rsdp_addr,
		 struct boot_entry *entry, const char *name)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	struct boot_params bp;
	struct setup_header hdr;
	uint64_t load, need, low_top, initrd_addr, initrd_limit;
	size_t setup_size, kernel_len;
	int ret, n, i;

	if (len < BZIMAGE_HDR_OFFSET + sizeof(hdr)) {
		pr_err("%s: truncated bzImage: %zu bytes, the setup header ends at %zu", name, len,
		       BZIMAGE_HDR_OFFSET + sizeof(hdr));
		return -ENOEXEC;
	}
	memcpy(&hdr, img + BZIMAGE_HDR_OFFSET, sizeof(hdr));
	if (hdr.version < BZIMAGE_MIN_VERSION) {
		pr_err("%s: boot protocol %u.%02u is too old, the 64-bit entry needs 2.12", name,
		       hdr.version >> 8, hdr.version & 0xff);
		return -ENOEXEC;
	}
	if (!(hdr.xloadflags & XLF_KERNEL_64)) {
		pr_err("%s: kernel has no 64-bit entry point (XLF_KERNEL_64 not set)", name);
		return -ENOEXEC;
	}
	if (!(hdr.loadflags & LOADED_HIGH)) {
		pr_err("%s: zImage (loaded low) is not supported", name);
		return -ENOEXEC;
	}
	setup_size =
	    (size_t)((hdr.setup_sects ? hdr.setup_sects : DEFAULT_SETUP_SECTS) + 1) * SECTOR;
	if (setup_size >= len || len - setup_size <= ENTRY64_OFFSET) {
		pr_err("%s: truncated bzImage: %zu bytes, setup code alone takes %zu", name, len,
		       setup_size);
		return -ENOEXEC;
	}
	kernel_len = len - setup_size;

	ret = load_address(&hdr, &load, name);
	if (ret)
		return ret;
	need = hdr.init_size > kernel_len ? hdr.init_size : kernel_len;
	low_top = e820_low_ram_top(mem);
	/* The 64-bit entry's page tables map 4 GiB: the kernel must sit in low RAM. */
	if (load > low_top || need > low_top - load)
		return boot_err_too_small(mem, need, load, initrd_len);

	ret = boot_write_cmdline(mem, cmdline, hdr.cmdline_size, name);
	if (ret)
		return ret;
	initrd_limit = (uint64_t)hdr.initrd_addr_max + 1;
	if (initrd_limit > low_top)
		initrd_limit = low_top;
	if (boot_place_initrd(mem, initrd, initrd_len, load + need, initrd_limit, &initrd_addr))
		return boot_err_too_small(mem, need, load, initrd_len);
	if (guest_mem_write(mem, load, img + setup_size, kernel_len))
		return boot_err_too_small(mem, need, load, initrd_len);

	n = e820_build(mem, map, E820_MAX_ENTRIES);
	if (n < 0) {
		pr_err("%s: cannot build the memory map: %s", name, strerror(-n));
		return n;
	}
	memset(&bp, 0, sizeof(bp));
	bp.hdr = hdr;
	bp.hdr.type_of_loader = LOADER_UNDEFINED;
	bp.hdr.loadflags |= CAN_USE_HEAP;
	bp.hdr.heap_end_ptr = HEAP_END_PTR;
	bp.hdr.vid_mode = VID_MODE_NORMAL;
	bp.hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	bp.hdr.code32_start = (uint32_t)load;
	bp.hdr.ramdisk_image = (uint32_t)initrd_addr;
	bp.hdr.ramdisk_size = (uint32_t)initrd_len;
	bp.hdr.setup_data = 0;
	bp.acpi_rsdp_addr = rsdp_addr;
	bp.e820_entries = (uint8_t)n;
	for (i = 0; i < n; i++) {
		bp.e820_table[i].addr = map[i].addr;
		bp.e820_table[i].size = map[i].size;
		bp.e820_table[i].type = map[i].type;
	}
	if (guest_mem_write(mem, LAYOUT_ZERO_PAGE, &bp, sizeof(bp))) {
		pr_err("%s: no RAM for the zero page", name);
		return -EFAULT;
	}
	entry->mode = BOOT_MODE_LINUX64;
	entry->rip = load + ENTRY64_OFFSET;
	entry->rsi = LAYOUT_ZERO_PAGE;
	entry->rbx = 0;
	return 0;
}
