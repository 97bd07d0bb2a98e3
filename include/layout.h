/* SPDX-License-Identifier: MIT */
/*
 * The guest-physical and port map of the machine, decided once.
 *
 * Low memory holds the boot structures the VMM writes; RAM runs from 0 up
 * to the PCI hole and continues at 4 GiB when the guest has more than
 * LAYOUT_LOW_RAM_MAX.  Everyone who places something in guest memory or
 * claims a port takes the address from here.
 */
#ifndef VMM_LAYOUT_H
#define VMM_LAYOUT_H

#define LAYOUT_GDT	   0x00000500ULL /* boot GDT (bzImage 64-bit and PVH) */
#define LAYOUT_START_INFO  0x00006000ULL /* PVH hvm_start_info + memmap + modules */
#define LAYOUT_ZERO_PAGE   0x00007000ULL /* Linux boot_params */
#define LAYOUT_PML4	   0x00009000ULL /* identity page tables for 64-bit entry */
#define LAYOUT_PDPT	   0x0000a000ULL
#define LAYOUT_PD	   0x0000b000ULL /* four pages: identity map of 4 GiB with 2 MiB pages */
#define LAYOUT_CMDLINE	   0x00020000ULL
#define LAYOUT_CMDLINE_MAX 0x00010000ULL /* 64 KiB, Linux accepts up to 2 KiB..-more */
#define LAYOUT_EBDA	   0x0009fc00ULL /* reserved from here to 1 MiB */
#define LAYOUT_ACPI	   0x000e0000ULL /* RSDP and the ACPI tables (legacy search area) */
#define LAYOUT_ACPI_MAX	   0x00010000ULL
#define LAYOUT_HIGH_MEMORY 0x00100000ULL /* 1 MiB: kernels load at or above this */

#define LAYOUT_LOW_RAM_MAX   0xc0000000ULL /* RAM below 4 GiB ends at the PCI hole (3 GiB) */
#define LAYOUT_PCI_MMIO_BASE 0xc0000000ULL /* 32-bit BAR window */
#define LAYOUT_PCI_MMIO_SIZE 0x3ec00000ULL /* up to the IOAPIC */
#define LAYOUT_KVM_IDENTITY_MAP                                                                    \
	0xfeffc000ULL /* KVM's real-mode identity page (VMX), below the LAPIC */
#define LAYOUT_KVM_TSS	     0xfeffd000ULL /* KVM's three TSS pages (VMX) */
#define LAYOUT_IOAPIC	     0xfec00000ULL
#define LAYOUT_LAPIC	     0xfee00000ULL
#define LAYOUT_HIGH_RAM_BASE 0x100000000ULL /* RAM above the hole resumes at 4 GiB */

/* I/O ports */
#define PORT_COM1	     0x3f8
#define PORT_COM1_IRQ	     4
#define PORT_I8042_DATA	     0x60
#define PORT_I8042_CMD	     0x64
#define PORT_PCI_CONFIG_ADDR 0xcf8
#define PORT_PCI_CONFIG_DATA 0xcfc
/*
 * ACPI hardware-reduced sleep control/status registers (FADT SLEEP_CONTROL_REG
 * and SLEEP_STATUS_REG).  A guest powers off by writing SLP_EN | (5 << 2)
 * (the _S5 sleep type from our DSDT) to PORT_ACPI_SLEEP_CTL.
 */
#define PORT_ACPI_SLEEP_CTL 0x600
#define PORT_ACPI_SLEEP_STS 0x601
#define ACPI_SLP_EN	    0x20
#define ACPI_SLP_TYP_S5	    5
#define ACPI_SLEEP_S5_VALUE (ACPI_SLP_EN | (ACPI_SLP_TYP_S5 << 2))
/* Test-exit port (QEMU isa-debug-exit's usual address): a write of N exits with status N. */
#define PORT_DEBUG_EXIT 0xf4

#endif
