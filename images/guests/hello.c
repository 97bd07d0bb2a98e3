// SPDX-License-Identifier: MIT
/*
 * hello: the smallest guest.  Keys: status=N (exit status, default 0),
 * reboot=1 (reboot instead of powering off).
 */
#include "kit.h"

int main(const char *cmdline)
{
	printf("hello: Hello from a bare-metal guest, cmdline=\"%s\"\n", cmdline);
	if (cmdline_get_u64("reboot", 0))
		reboot();
	return (int)cmdline_get_u64("status", KIT_EXIT_OK);
}
