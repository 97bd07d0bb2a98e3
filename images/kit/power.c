// SPDX-License-Identifier: MIT
/*
 * Leaving the machine: poweroff, reboot, triple fault.
 */
#include "kit.h"

/* Values from include/layout.h, which this freestanding code cannot include. */
#define PORT_ACPI_SLEEP_CTL 0x600
#define ACPI_SLEEP_S5_VALUE 0x34
#define PORT_DEBUG_EXIT	    0xf4
#define PORT_I8042_CMD	    0x64
#define I8042_RESET	    0xfe
/* Long enough for any i8042 to act; no TSC needed (it may be uncalibrated). */
#define RESET_WAIT_SPINS 1000000

extern char kit_idt[], kit_idt_end[];

__attribute__((noreturn)) static void spin(void)
{
	for (;;)
		cpu_relax();
}

void poweroff(int code)
{
	/* The status first: our VMM and QEMU's isa-debug-exit both stop on it. */
	outl(PORT_DEBUG_EXIT, (uint32_t)code);
	outb(PORT_ACPI_SLEEP_CTL, ACPI_SLEEP_S5_VALUE);
	spin();
}

void triple_fault(void)
{
	/* Every vector now raises #NP, then #DF, then shutdown. */
	memset(kit_idt, 0, (size_t)(kit_idt_end - kit_idt));
	__asm__ volatile("ud2");
	spin();
}

void reboot(void)
{
	unsigned i;

	outb(PORT_I8042_CMD, I8042_RESET);
	/* Machines without an i8042 (QEMU microvm) reset on a triple fault. */
	for (i = 0; i < RESET_WAIT_SPINS; i++)
		cpu_relax();
	triple_fault();
}
