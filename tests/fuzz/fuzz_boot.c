// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the input is a kernel image for boot_load_buffers().
 * Its first byte picks the other arguments (bit 0: add an initrd, bit 1: a
 * long command line, bits 2-3: ncpus - 1) so those paths are fuzzed too.
 * Guest RAM is small (32 MiB) so "does not fit" paths are reachable and a
 * 16 MiB-preferring bzImage still fits.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot.h"
#include "guest_mem.h"
#include "log.h"

#define FUZZ_RAM (32u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static uint8_t initrd[64 << 10];
	static char long_cmdline[5000];
	struct boot_entry entry;
	uint8_t flags;

	if (!mem.host_base) {
		if (guest_mem_init(&mem, FUZZ_RAM))
			abort();
		memset(initrd, 0x42, sizeof(initrd));
		memset(long_cmdline, 'c', sizeof(long_cmdline) - 1);
		/* Every rejected input prints a line; silence keeps the fuzzer fast. */
		log_verbosity = -1;
	}
	if (size < 1)
		return 0;
	flags = data[0];
	boot_load_buffers(
	    &mem, data + 1, size - 1, (flags & 1) ? initrd : NULL, (flags & 1) ? sizeof(initrd) : 0,
	    (flags & 2) ? long_cmdline : "console=ttyS0", 1 + ((flags >> 2) & 3), &entry, "fuzz");
	return 0;
}
