/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables for the guest: RSDP (v2) -> XSDT -> FADT (hardware-reduced,
 * revision 6) -> DSDT, and the MADT, all at LAYOUT_ACPI (inside the BIOS
 * area Linux scans for the RSDP, so even a loader that cannot pass the RSDP
 * address works).
 *
 * What the guest gets from them:
 *  - SMP: one enabled local APIC per vCPU (APIC IDs 0..ncpus-1), an IOAPIC
 *    with ID ncpus at LAYOUT_IOAPIC (GSI base 0), IRQ0 -> GSI2 override;
 *  - power-off: \_S5_ = {ACPI_SLP_TYP_S5} and the FADT sleep control/status
 *    registers at PORT_ACPI_SLEEP_CTL/STS;
 *  - reset: FADT RESET_REG = I/O port 0x64, value 0xFE;
 *  - devices: \_SB.PCI0 (PCI root bridge, bus 0, config mechanism 1) and
 *    \_SB.COM1 (PNP0501 at 0x3f8, IRQ 4).
 */
#ifndef VMM_ACPI_H
#define VMM_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"
#include "layout.h"

#define ACPI_MAX_CPUS 254 /* xAPIC IDs 0..253, the IOAPIC takes the next */

#define ACPI_RSDP_ADDR LAYOUT_ACPI

/*
 * Write all tables for ncpus vCPUs into mem at LAYOUT_ACPI and return the
 * RSDP's address in *rsdp_addr.  0, -EINVAL (ncpus out of range), -ENOSPC
 * (tables do not fit LAYOUT_ACPI_MAX) or -EFAULT (no RAM there).
 */
int acpi_build(struct guest_mem *mem, unsigned ncpus, uint64_t *rsdp_addr);

/* Encode the DSDT's AML body (without the table header) into buf.  0 or -errno. */
int acpi_dsdt_aml(uint8_t *buf, size_t cap, size_t *len);

/* The byte that makes len bytes at p sum to zero (0 when they already do). */
uint8_t acpi_checksum(const void *p, size_t len);

#endif
