// SPDX-License-Identifier: MIT
/* Boot GDT, identity page tables and the BSP's first register state. */
#include "boot.h"
#include "layout.h"

#include <string.h>

#define CR0_PE	 (1ULL << 0)
#define CR0_ET	 (1ULL << 4)
#define CR0_PG	 (1ULL << 31)
#define CR4_PAE	 (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define PTE_PRESENT (1ULL << 0)
#define PTE_WRITE   (1ULL << 1)
#define PTE_HUGE    (1ULL << 7)
#define PAGE_2M	    (2ULL << 20)
#define PD_PAGES    4 /* 4 x 512 x 2 MiB = 4 GiB */

#define SEG_TYPE_CODE_XR  0xb /* execute/read, accessed */
#define SEG_TYPE_DATA_RW  0x3 /* read/write, accessed */
#define SEG_TYPE_TSS_BUSY 0xb
#define TSS_LIMIT	  0x67
#define BOOT_GDT_ENTRIES  (BOOT_SEL_TSS / 8 + 1)

/*
 * A descriptor from its access byte (low 8 bits of flags) and the G/DB/L/AVL
 * nibble (bits 12..15 of flags).
 */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

int boot_write_gdt(struct guest_mem *mem)
{
	uint64_t gdt[BOOT_GDT_ENTRIES];

	gdt[0] = 0;
	gdt[BOOT_SEL_CODE32 / 8] = gdt_entry(0xc09b, 0, 0xfffff);
	gdt[BOOT_SEL_CODE64 / 8] = gdt_entry(0xa09b, 0, 0xfffff);
	gdt[BOOT_SEL_DATA / 8] = gdt_entry(0xc093, 0, 0xfffff);
	/* TR must hold a busy TSS for VM entry; nothing switches tasks, so base 0 serves. */
	gdt[BOOT_SEL_TSS / 8] = gdt_entry(0x008b, 0, TSS_LIMIT);
	return guest_mem_write(mem, LAYOUT_GDT, gdt, sizeof(gdt));
}

int boot_write_page_tables(struct guest_mem *mem)
{
	uint64_t page[512];
	unsigned i, p;
	int ret;

	memset(page, 0, sizeof(page));
	page[0] = LAYOUT_PDPT | PTE_PRESENT | PTE_WRITE;
	ret = guest_mem_write(mem, LAYOUT_PML4, page, sizeof(page));
	if (ret)
		return ret;
	memset(page, 0, sizeof(page));
	for (i = 0; i < PD_PAGES; i++)
		page[i] = (LAYOUT_PD + i * GUEST_PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
	ret = guest_mem_write(mem, LAYOUT_PDPT, page, sizeof(page));
	for (p = 0; !ret && p < PD_PAGES; p++) {
		for (i = 0; i < 512; i++)
			page[i] = ((uint64_t)(p * 512 + i) * PAGE_2M) | PTE_PRESENT | PTE_WRITE |
				  PTE_HUGE;
		ret = guest_mem_write(mem, LAYOUT_PD + p * GUEST_PAGE_SIZE, page, sizeof(page));
	}
	return ret;
}

static struct kvm_segment flat_seg(uint16_t selector, uint8_t type, uint8_t db, uint8_t l)
{
	return (struct kvm_segment){.base = 0,
				    .limit = 0xffffffff,
				    .selector = selector,
				    .type = type,
				    .present = 1,
				    .dpl = 0,
				    .db = db,
				    .s = 1,
				    .l = l,
				    .g = 1};
}

void boot_entry_regs(const struct boot_entry *e, struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	struct kvm_segment data = flat_seg(BOOT_SEL_DATA, SEG_TYPE_DATA_RW, 1, 0);

	memset(regs, 0, sizeof(*regs));
	regs->rflags = 2; /* reserved bit 1; IF clear */
	regs->rip = e->rip;
	regs->rsi = e->rsi;
	regs->rbx = e->rbx;

	sregs->gdt.base = LAYOUT_GDT;
	sregs->gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
	sregs->idt.base = 0;
	sregs->idt.limit = 0;
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->tr = (struct kvm_segment){.base = 0,
					 .limit = TSS_LIMIT,
					 .selector = BOOT_SEL_TSS,
					 .type = SEG_TYPE_TSS_BUSY,
					 .present = 1};
	if (e->mode == BOOT_MODE_LINUX64) {
		sregs->cs = flat_seg(BOOT_SEL_CODE64, SEG_TYPE_CODE_XR, 0, 1);
		sregs->cr0 = CR0_PE | CR0_ET | CR0_PG;
		sregs->cr3 = LAYOUT_PML4;
		sregs->cr4 = CR4_PAE;
		sregs->efer = EFER_LME | EFER_LMA;
	} else {
		sregs->cs = flat_seg(BOOT_SEL_CODE32, SEG_TYPE_CODE_XR, 1, 0);
		sregs->cr0 = CR0_PE | CR0_ET;
		sregs->cr3 = 0;
		sregs->cr4 = 0;
		sregs->efer = 0;
	}
}
