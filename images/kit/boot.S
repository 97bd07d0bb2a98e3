/* SPDX-License-Identifier: MIT */
/*
 * Ring 0, all of it: the PVH entry switches to long mode and drops to ring 3
 * in about 35 instructions, and the exception stubs report a fault.  Ring 0
 * is emulated (slowly) on some hosts, so nothing else runs here.
 *
 * Entry state (PVH): 32-bit protected mode, paging off, flat cs/ds/es/ss,
 * ebx = physical address of struct hvm_start_info, no usable stack.
 */
#include "abi.h"

	.section .note.Xen, "a"
	.balign 4
	.long 4			/* namesz */
	.long 4			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long kit_entry32

	.section .text.boot, "ax"
	.code32
	.globl kit_entry32
kit_entry32:
	movl	%ebx, kit_start_info_paddr

	/* The static tables map 4 GiB with 2 MiB pages; prefer 1 GiB pages. */
	movl	$0x80000000, %eax
	cpuid
	cmpl	$0x80000001, %eax
	jb	1f
	movl	$0x80000001, %eax
	cpuid
	btl	$26, %edx		/* pdpe1gb */
	jnc	1f
	movl	$(kit_pdpt_1g + PTE_TABLE), kit_pml4
	movl	$KIT_MAP_GIB_1G, kit_map_gib
1:
	/*
	 * The VMM's TSC-frequency leaf: CPUID in ring 3 may run natively on
	 * the outer host (PVM-style KVM) and miss the VMM's leaves, so ask here.
	 */
	movl	$0x40000000, %eax
	cpuid
	cmpl	$0x40000010, %eax
	jb	2f
	cmpl	$0x40010000, %eax
	jae	2f
	movl	$0x40000010, %eax
	cpuid
	movl	%eax, kit_hv_tsc_khz
2:
	movl	$kit_pml4, %eax
	movl	%eax, %cr3
	movl	$(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	movl	%eax, %cr4
	movl	$MSR_EFER, %ecx
	movl	$EFER_LME, %eax
	xorl	%edx, %edx
	wrmsr
	movl	$(CR0_PG | CR0_NE | CR0_ET | CR0_MP | CR0_PE), %eax
	movl	%eax, %cr0
	lgdt	kit_gdt_ptr
	ljmp	$KIT_SEL_CODE0, $kit_entry64

	.code64
kit_entry64:
	movl	$KIT_SEL_DATA0, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movq	$kit_stack0_top, %rsp
	/* A reset that re-enters without reloading the image finds it busy. */
	movb	$0x89, kit_gdt + KIT_SEL_TSS + 5
	movl	$KIT_SEL_TSS, %eax
	ltr	%ax
	lidt	kit_idt_ptr

	/* The C ABI wants rsp = 8 (mod 16) at a function's first instruction. */
	pushq	$KIT_SEL_DATA3
	pushq	$(kit_stack3_top - 8)
	pushq	$KIT_RFLAGS3
	pushq	$KIT_SEL_CODE3
	pushq	$kit_start3
	iretq

/*
 * One 16-byte stub per vector, so the IDT (tables.S) can be static data.
 * Each leaves the frame {vector, error, rip, cs, rflags, rsp, ss}.
 */
	.macro	VECTOR n
	.balign	16
	.if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
	.else
	pushq	$0			/* the CPU pushed no error code */
	.endif
	pushq	$\n
	jmp	kit_fault_entry
	.endm

	.section .text.vectors, "ax"
	.balign	512			/* never straddles 64 KiB: see link.ld */
	.globl	kit_vectors
kit_vectors:
	.altmacro
	.set	vec, 0
	.rept	KIT_NR_VECTORS
	VECTOR	%vec
	.set	vec, vec + 1
	.endr
	.noaltmacro

kit_fault_entry:
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	kit_fault
	ud2

	.section .bss
	.balign	4
	.globl	kit_hv_tsc_khz
kit_hv_tsc_khz:
	.long	0

	.section .bss.stacks, "aw", @nobits
	.balign	4096
	.space	KIT_STACK3_SIZE
	.globl	kit_stack3_top
kit_stack3_top:
	.space	KIT_STACK0_SIZE
	.globl	kit_stack0_top
kit_stack0_top:
	.space	KIT_STACKIST_SIZE
	.globl	kit_stackist_top
kit_stackist_top:

	.section .note.GNU-stack, "", @progbits
