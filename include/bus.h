/* SPDX-License-Identifier: MIT */
/*
 * The port-I/O and MMIO buses.  Devices register address ranges at set-up;
 * vCPU threads dispatch exits to them.  Handlers run on the vCPU thread that
 * took the exit, concurrently with other vCPUs, so a device locks its own
 * state.  Registration may also happen while vCPUs run (PCI BAR moves): the
 * bus takes a read lock to look a range up and a write lock to change.
 *
 * The lock is not held while a handler runs, so a handler may register and
 * unregister ranges, on this bus too (a config write at 0xcfc that moves an
 * I/O BAR does).  The price: bus_unregister() does not wait for a handler
 * already running on another vCPU (or looked up just before): a device must
 * stay alive until the vCPUs are stopped, and may see one access through a
 * range it has just released.
 */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * A device access: offset is relative to the start of the registered range,
 * data holds len (1, 2, 4 or 8) bytes, little-endian, and the access lies
 * wholly inside the range (offset + len <= range length), so a handler need
 * not re-check guest offsets against its size.  For reads the handler fills
 * data.  Return 0, or -errno which the bus logs once per range; the guest
 * then reads all-ones and its write is dropped.
 */
typedef int (*bus_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_handler_fn handler;
	void *opaque;
	const char *name;
	bool warned;
};

struct bus {
	const char *name; /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;
	struct bus_range *ranges; /* sorted by base, non-overlapping */
	int nr_ranges;
	int cap;
};

int bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/*
 * Claim [base, base+len); name (kept by pointer) must outlive the range.
 * -EEXIST if it overlaps a range, -EINVAL if len is 0 or the range wraps
 * past the top of the address space (ending exactly at 2^64 is fine),
 * -ENOMEM.
 */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn handler, void *opaque,
		 const char *name);

/* Release the range that starts at base.  -ENOENT if none. */
int bus_unregister(struct bus *bus, uint64_t base);

/*
 * Route an access.  Returns 0 if a device took it, -ENODEV if no range holds
 * all of [addr, addr+len), -EINVAL if len is not 1, 2, 4 or 8, or the
 * handler's error.  On any error a read's data is all-ones.  Callers split
 * larger or odd-sized accesses (rep string I/O, 16-byte MMIO) themselves.
 */
int bus_access(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
