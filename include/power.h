/* SPDX-License-Identifier: MIT */
/*
 * ACPI hardware-reduced sleep registers (the FADT's SLEEP_CONTROL_REG and
 * SLEEP_STATUS_REG).  Writing SLP_EN with the _S5 sleep type powers off.
 */
#ifndef VMM_POWER_H
#define VMM_POWER_H

#include "bus.h"

struct power {
	void (*poweroff)(void *opaque);
	void *opaque;
};

int power_init(struct power *pm, struct bus *pio, void (*poweroff)(void *opaque), void *opaque);

#endif
