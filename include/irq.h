/* SPDX-License-Identifier: MIT */
/*
 * An interrupt line as devices see it: a level they drive.  The VM backs it
 * with KVM_IRQ_LINE on the in-kernel PIC+IOAPIC; tests back it with a
 * recorder, so devices stay testable without KVM.
 *
 * Devices drive the line with their own lock held (so two threads cannot
 * leave a stale level behind), hence set_level must not block for long or
 * call back into the device.  A NULL set_level is an unconnected line.
 */
#ifndef VMM_IRQ_H
#define VMM_IRQ_H

struct irq_line {
	void (*set_level)(void *opaque, unsigned gsi, int level);
	void *opaque;
	unsigned gsi;
};

static inline void irq_line_set(const struct irq_line *l, int level)
{
	if (l->set_level)
		l->set_level(l->opaque, l->gsi, level);
}

#endif
