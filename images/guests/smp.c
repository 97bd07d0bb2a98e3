// SPDX-License-Identifier: MIT
/*
 * smp: counts the enabled CPUs in the ACPI MADT.  Keys: scan=1 ignores
 * start_info.rsdp_paddr and scans 0xe0000-0xfffff for the RSDP.
 */
#include "kit.h"

int main(const char *cmdline)
{
	struct acpi_cpus c;

	(void)cmdline;
	if (acpi_count_cpus(&c, cmdline_get_u64("scan", 0) ? ACPI_SCAN_ONLY : 0)) {
		printf("smp: FAIL %s\n", c.error);
		return KIT_EXIT_FAIL;
	}
	printf("smp: rsdp=0x%lx (%s) revision=%u madt=0x%lx lapic=%u x2apic=%u\n", c.rsdp,
	       c.rsdp_from_start_info ? "start_info" : "scan", c.revision, c.madt, c.lapic,
	       c.x2apic);
	printf("smp: cpus=%u\n", c.lapic + c.x2apic);
	return KIT_EXIT_OK;
}
