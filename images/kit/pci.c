// SPDX-License-Identifier: MIT
/* PCI configuration space on bus 0 through mechanism 1, from ring 3 (the ports are open). */
#include "kit.h"

#define CONFIG_ADDR 0xcf8
#define CONFIG_DATA 0xcfc
#define CAP_LIST    0x34
#define STATUS	    0x06
#define STATUS_CAPS 0x10
#define BAR0	    0x10

static void select_reg(unsigned slot, unsigned off)
{
	outl(CONFIG_ADDR, 0x80000000u | (slot & 31) << 11 | (off & 0xfc));
}

uint32_t pci_read32(unsigned slot, unsigned off)
{
	select_reg(slot, off);
	return inl(CONFIG_DATA);
}

uint16_t pci_read16(unsigned slot, unsigned off)
{
	select_reg(slot, off);
	return inw(CONFIG_DATA + (off & 2));
}

uint8_t pci_read8(unsigned slot, unsigned off)
{
	select_reg(slot, off);
	return inb(CONFIG_DATA + (off & 3));
}

void pci_write32(unsigned slot, unsigned off, uint32_t v)
{
	select_reg(slot, off);
	outl(CONFIG_DATA, v);
}

void pci_write16(unsigned slot, unsigned off, uint16_t v)
{
	select_reg(slot, off);
	outw(CONFIG_DATA + (off & 2), v);
}

int pci_find(uint16_t vendor, uint16_t device, unsigned n)
{
	for (unsigned slot = 0; slot < PCI_SLOTS; slot++) {
		uint32_t id = pci_read32(slot, 0);

		if (id == 0xffffffffu || (id & 0xffff) != vendor || (id >> 16) != device)
			continue;
		if (n-- == 0)
			return (int)slot;
	}
	return -1;
}

uint64_t pci_bar_addr(unsigned slot, unsigned bar)
{
	uint32_t lo;
	uint64_t a;

	if (bar > 5)
		return 0;
	lo = pci_read32(slot, BAR0 + 4 * bar);
	if (lo & 1)
		return 0; /* I/O */
	a = lo & ~0xfu;
	if ((lo & 6) == 4 && bar < 5)
		a |= (uint64_t)pci_read32(slot, BAR0 + 4 * (bar + 1)) << 32;
	return a;
}

unsigned pci_next_cap(unsigned slot, uint8_t id, unsigned after)
{
	unsigned pos, n = 0;

	if (!(pci_read16(slot, STATUS) & STATUS_CAPS))
		return 0;
	pos = after ? pci_read8(slot, after + 1) : pci_read8(slot, CAP_LIST);
	/* 48 links is more than 192 bytes can hold: a longer chain is a loop. */
	for (; pos >= 0x40 && n < 48; pos = pci_read8(slot, pos + 1), n++) {
		pos &= 0xfc;
		if (pci_read8(slot, pos) == id)
			return pos;
	}
	return 0;
}
