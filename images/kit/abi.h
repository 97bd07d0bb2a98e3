/* SPDX-License-Identifier: MIT */
/*
 * Machine constants shared by the kit's assembly and C: segment selectors,
 * page-table and control-register bits, stack sizes.  Nothing here is a
 * guest-facing API; guests include kit.h.
 */
#ifndef KIT_ABI_H
#define KIT_ABI_H

/* GDT layout (tables.S).  Ring-3 selectors carry RPL 3. */
#define KIT_SEL_CODE0 0x08
#define KIT_SEL_DATA0 0x10
#define KIT_SEL_CODE3 0x1b
#define KIT_SEL_DATA3 0x23
#define KIT_SEL_TSS   0x28

#define KIT_RFLAGS3 0x3002 /* IOPL=3, IF=0, reserved bit 1; DF clear */

#define CR0_PE 0x00000001
#define CR0_MP 0x00000002
#define CR0_ET 0x00000010
#define CR0_NE 0x00000020
#define CR0_PG 0x80000000

#define CR4_PAE	       0x00000020
#define CR4_OSFXSR     0x00000200
#define CR4_OSXMMEXCPT 0x00000400

#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

/* Table entries: present, writable, user; leaves pre-set accessed/dirty. */
#define PTE_TABLE 0x27
#define PTE_LEAF  0xe7

/* Identity map: 1 GiB pages when the CPU has them, else 2 MiB pages. */
#define KIT_MAP_GIB_1G 64
#define KIT_MAP_GIB_2M 4

#define KIT_STACK0_SIZE	  8192	/* ring 0: exceptions from ring 3 */
#define KIT_STACKIST_SIZE 4096	/* ring 0: #DF, NMI, #MC */
#define KIT_STACK3_SIZE	  65536 /* ring 3: the guest */

#define KIT_NR_VECTORS 32

#endif
