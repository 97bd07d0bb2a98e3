// SPDX-License-Identifier: MIT
/* ACPI sleep control/status registers: the guest's way to power off. */
#include "power.h"
#include "layout.h"
#include "state.h"

#include <errno.h>
#include <string.h>

/* What SLEEP_STATUS_REG reads: no WAK_STS, ever. */
#define SLEEP_STATUS 0

static int power_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct power *pm = opaque;

	if (!is_write) {
		/* Sleep status: never "woken", nothing pending. */
		memset(data, SLEEP_STATUS, len);
		return 0;
	}
	if (offset == 0 && (data[0] & ACPI_SLP_EN) && ((data[0] >> 2) & 7) == ACPI_SLP_TYP_S5)
		pm->poweroff(pm->opaque, 0);
	/* Other sleep states are not offered in the DSDT; a write of them is ignored. */
	return 0;
}

static int debug_exit_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct power *pm = opaque;

	if (!is_write) {
		memset(data, 0xff, len);
		return 0;
	}
	if (offset == 0)
		pm->poweroff(pm->opaque, data[0]);
	return 0;
}

int power_init(struct power *pm, struct bus *pio, void (*poweroff)(void *opaque, int status),
	       void *opaque)
{
	int ret;

	pm->poweroff = poweroff;
	pm->opaque = opaque;
	ret = bus_register(pio, PORT_ACPI_SLEEP_CTL, 2, power_io, pm, "acpi-sleep");
	if (!ret)
		ret = bus_register(pio, PORT_DEBUG_EXIT, 4, debug_exit_io, pm, "test-exit");
	return ret;
}

int power_save(struct power *pm, void *fdt)
{
	(void)pm;
	return state_put_u32(fdt, "sleep-status", SLEEP_STATUS);
}

int power_load(struct power *pm, const void *fdt, int node)
{
	uint32_t status;

	(void)pm;
	if (state_get_u32(fdt, node, "sleep-status", &status) || status != SLEEP_STATUS)
		return -EINVAL;
	return 0;
}
