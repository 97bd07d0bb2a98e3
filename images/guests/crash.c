// SPDX-License-Identifier: MIT
/*
 * crash: dies on purpose, for the VMM's crash paths.
 * mode=ud2 (default): #UD in ring 3, reported by the kit, exit status 3.
 * mode=pagefault: a write above the identity map, reported, exit status 3.
 * mode=triplefault: clears the IDT and faults: shutdown (KVM_EXIT_SHUTDOWN).
 */
#include "kit.h"

int main(const char *cmdline)
{
	char mode[32] = "ud2";

	(void)cmdline;
	cmdline_get_str("mode", mode, sizeof(mode));
	printf("crash: mode=%s\n", mode);
	if (!strcmp(mode, "ud2")) {
		__asm__ volatile("ud2");
	} else if (!strcmp(mode, "pagefault")) {
		*(volatile uint64_t *)(uintptr_t)kit_mapped_limit() = 1;
	} else if (!strcmp(mode, "triplefault")) {
		triple_fault();
	} else {
		printf("crash: unknown mode (ud2, pagefault, triplefault)\n");
		return KIT_EXIT_USAGE;
	}
	printf("crash: still alive\n");
	return KIT_EXIT_FAIL;
}
