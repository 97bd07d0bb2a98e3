/* SPDX-License-Identifier: MIT */
/*
 * The descriptor tables and page tables, as static data, so that ring 0
 * only loads them.  Descriptors that hold a split address take the pieces
 * from symbols link.ld computes (kit_tss_b*, kit_vectors_lo/hi).
 * Everything is identity mapped and user-accessible: ring 3 drives devices
 * and reads firmware tables directly.
 */
#include "abi.h"

	.section .data.pagetables, "aw"
	.balign	4096
	.globl	kit_pml4
kit_pml4:
	.quad	kit_pdpt_2m + PTE_TABLE	/* boot.S switches to kit_pdpt_1g */
	.fill	511, 8, 0

	.globl	kit_pdpt_1g
kit_pdpt_1g:
	.set	i, 0
	.rept	KIT_MAP_GIB_1G
	.quad	(i << 30) | PTE_LEAF
	.set	i, i + 1
	.endr
	.fill	512 - KIT_MAP_GIB_1G, 8, 0

kit_pdpt_2m:
	.set	i, 0
	.rept	KIT_MAP_GIB_2M
	.quad	kit_pd + (i << 12) + PTE_TABLE
	.set	i, i + 1
	.endr
	.fill	512 - KIT_MAP_GIB_2M, 8, 0

kit_pd:
	.set	i, 0
	.rept	KIT_MAP_GIB_2M * 512
	.quad	(i << 21) | PTE_LEAF
	.set	i, i + 1
	.endr

	.section .data.tables, "aw"
	.balign	16
	.globl	kit_gdt
kit_gdt:
	.quad	0
	.quad	0x00af9a000000ffff	/* KIT_SEL_CODE0: 64-bit code, DPL 0 */
	.quad	0x00cf92000000ffff	/* KIT_SEL_DATA0 */
	.quad	0x00affa000000ffff	/* KIT_SEL_CODE3: 64-bit code, DPL 3 */
	.quad	0x00cff2000000ffff	/* KIT_SEL_DATA3 */
	.word	kit_tss_end - kit_tss - 1	/* KIT_SEL_TSS: 64-bit TSS, 16 bytes */
	.word	kit_tss_b15_0
	.byte	kit_tss_b23_16
	.byte	0x89
	.byte	0
	.byte	kit_tss_b31_24
	.long	0
	.long	0
kit_gdt_end:

	.balign	8
	.globl	kit_gdt_ptr
kit_gdt_ptr:
	.word	kit_gdt_end - kit_gdt - 1
	.quad	kit_gdt

	.balign	8
	.globl	kit_idt_ptr
kit_idt_ptr:
	.word	kit_idt_end - kit_idt - 1
	.quad	kit_idt

	/* Interrupt gates, DPL 0; #DF, NMI and #MC switch to the IST stack. */
	.balign	16
	.globl	kit_idt
kit_idt:
	.set	i, 0
	.rept	KIT_NR_VECTORS
	.word	kit_vectors_lo + i * 16
	.word	KIT_SEL_CODE0
	.if	(i == 2) || (i == 8) || (i == 18)
	.byte	1
	.else
	.byte	0
	.endif
	.byte	0x8e
	.word	kit_vectors_hi
	.long	0
	.long	0
	.set	i, i + 1
	.endr
	.globl	kit_idt_end
kit_idt_end:

	/* The first 104 bytes must not cross a page. */
	.balign	128
kit_tss:
	.long	0
	.quad	kit_stack0_top		/* rsp0 */
	.quad	0, 0			/* rsp1, rsp2 */
	.quad	0
	.quad	kit_stackist_top	/* ist1 */
	.fill	6, 8, 0			/* ist2..ist7 */
	.quad	0
	.word	0
	.word	kit_iopb - kit_tss	/* I/O permission bitmap offset */
	/*
	 * Every port open to ring 3: IOPL=3 from iretq alone is not enough on
	 * every host.  The 0xff byte after the bitmap is architectural.
	 */
kit_iopb:
	.fill	8192, 1, 0
	.byte	0xff
kit_tss_end:
	.globl	kit_tss

	.section .data, "aw"
	.balign	4
	.globl	kit_start_info_paddr
kit_start_info_paddr:
	.long	0
	.globl	kit_map_gib
kit_map_gib:
	.long	KIT_MAP_GIB_2M

	.section .note.GNU-stack, "", @progbits
