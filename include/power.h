/* SPDX-License-Identifier: MIT */
/*
 * ACPI hardware-reduced sleep registers (the FADT's SLEEP_CONTROL_REG and
 * SLEEP_STATUS_REG).  Writing SLP_EN with the _S5 sleep type powers off.
 *
 * Also a test-exit port at PORT_DEBUG_EXIT (like QEMU's isa-debug-exit):
 * a 32-bit write of N powers off with exit status N & 0xff, so bare-metal
 * test guests can report pass/fail.  Linux never touches it.
 */
#ifndef VMM_POWER_H
#define VMM_POWER_H

#include "bus.h"

struct power {
	/* status: 0 for ACPI S5, the written value for the test-exit port */
	void (*poweroff)(void *opaque, int status);
	void *opaque;
};

int power_init(struct power *pm, struct bus *pio, void (*poweroff)(void *opaque, int status),
	       void *opaque);

/*
 * State tree (include/state.h): the caller has opened the node.  The model
 * keeps no register state: both sleep registers read 0 (no wake status,
 * since the only sleep state offered, S5, never returns) and a control
 * write acts at once.  Save records that status as "sleep-status" = 0;
 * load requires the property and the value 0 (-EINVAL otherwise, e.g. a
 * tree from a model that kept a wake status this one cannot represent).
 */
int power_save(struct power *pm, void *fdt);
int power_load(struct power *pm, const void *fdt, int node);

#endif
