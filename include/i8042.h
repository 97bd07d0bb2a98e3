/* SPDX-License-Identifier: MIT */
/*
 * The PC keyboard controller (i8042) with nothing plugged into its keyboard
 * and mouse ports, plus system control port B (0x61).  Guests use it to
 * reset the machine: command 0xFE (pulse output-port bit 0 low; also what
 * the FADT reset register points at) or command 0xD1 followed by an output
 * port value with bit 0 clear.  Either calls reset(opaque), with no lock
 * held, from the vCPU thread that asked.
 *
 * Linux probes the controller directly (no PNP0303 in our DSDT, FADT says
 * an 8042 is present), so the model answers its probe like real hardware
 * with empty ports, and fast: self-test 0xAA -> 0x55, interface tests
 * 0xAB/0xA9 -> 0x00, command byte 0x20/0x60, AUX loopback 0xD3 echoes with
 * the AUX flag and IRQ 12, and every byte sent to a device (a data-port
 * write, or 0xD4 + byte) is answered at once by 0xFE with the status
 * register's timeout bit, as a controller does when no device clocks the
 * byte in.  Linux's keyboard and mouse drivers then give up on their first
 * command instead of waiting out their timeouts.
 *
 * IRQ 1 (keyboard) and 12 (AUX) follow "output buffer full from that port
 * and its interrupt enabled in the command byte"; reading 0x60 lowers them.
 * Wire them (GSI 1 and 12, edge ISA IRQs): without IRQ 12 Linux's AUX IRQ
 * test waits 250 ms before it gives up on the mouse port.
 *
 * Port 0x61: bits 0-3 read back as written, bit 4 (refresh) toggles on each
 * read and bit 5 (PIT channel 2 output) reads 1.  KVM's in-kernel PIT
 * claims 0x61 itself, so this only answers when the VM has no PIT.
 */
#ifndef VMM_I8042_H
#define VMM_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "irq.h"

#define PORT_I8042_PORTB 0x61 /* system control port B */

/* Status register (read 0x64) */
#define I8042_STR_OBF	  0x01 /* output buffer full */
#define I8042_STR_IBF	  0x02 /* input buffer full: never, we are instant */
#define I8042_STR_SYS	  0x04 /* system flag, mirrors command byte bit 2 */
#define I8042_STR_CMD	  0x08 /* last write went to 0x64 */
#define I8042_STR_UNLOCK  0x10 /* keyboard not inhibited by the keylock */
#define I8042_STR_AUXDATA 0x20 /* output buffer holds an AUX byte */
#define I8042_STR_TIMEOUT 0x40 /* the device did not answer */

/* Command byte (controller RAM byte 0) */
#define I8042_CTR_KBDINT 0x01
#define I8042_CTR_AUXINT 0x02
#define I8042_CTR_SYS	 0x04
#define I8042_CTR_KBDDIS 0x10
#define I8042_CTR_AUXDIS 0x20
#define I8042_CTR_XLATE	 0x40

#define I8042_RAM_SIZE 32

/* Guest-visible state as plain data (snapshots copy it). */
struct i8042_state {
	uint8_t ram[I8042_RAM_SIZE]; /* ram[0] is the command byte */
	uint8_t outport;	     /* output port: bit 0 reset (1 = run), bit 1 A20 */
	uint8_t outbuf;		     /* output buffer (read at 0x60) */
	uint8_t status;		     /* OBF, CMD, AUXDATA, TIMEOUT; SYS/UNLOCK derived */
	uint8_t pending_cmd;	     /* command waiting for its data byte, 0 if none */
	uint8_t portb;		     /* port 0x61 bits 0-3 */
	bool refresh;		     /* port 0x61 bit 4, toggles per read */
};

struct i8042 {
	struct i8042_state s; /* guarded by lock */

	pthread_mutex_t lock;
	struct irq_line kbd_irq, aux_irq;
	int kbd_level, aux_level; /* levels last driven */
	void (*reset)(void *opaque);
	void *opaque;
};

/*
 * Power-on state; claim 0x60, 0x61 and 0x64 on pio.  reset is required;
 * either IRQ line may be unconnected (set_level NULL).  0 or -errno.
 */
int i8042_init(struct i8042 *k, struct bus *pio, struct irq_line kbd_irq, struct irq_line aux_irq,
	       void (*reset)(void *opaque), void *opaque);

/* Release the lock.  Does not unregister (bus_destroy does); no handler may run. */
void i8042_destroy(struct i8042 *k);

void i8042_get_state(struct i8042 *k, struct i8042_state *st);

/* Load state and drive both IRQ lines to match it.  -EINVAL on an unknown pending command. */
int i8042_set_state(struct i8042 *k, const struct i8042_state *st);

/*
 * State tree (include/state.h): the caller has opened the controller's
 * node.  Save adds the controller RAM (command byte first), output port
 * (reset and A20 bits), output buffer byte and status (OBF, CMD, AUX data,
 * timeout), the command waiting for its data byte, port 0x61 and its
 * refresh bit, and both IRQ levels.  0 or a state_put error.
 *
 * Load rejects with -EINVAL, applying nothing, any value the model cannot
 * reach (status bits it never sets, AUX/timeout without a full buffer, a
 * pending command that takes no data byte, port B beyond bits 0-3, IRQ
 * levels disagreeing with status and command byte), then drives both IRQ
 * lines to the loaded levels.
 */
int i8042_save(struct i8042 *k, void *fdt);
int i8042_load(struct i8042 *k, const void *fdt, int node);

#endif
