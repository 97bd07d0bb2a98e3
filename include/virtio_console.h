/* SPDX-License-Identifier: MIT */
/*
 * virtio-console (virtio 1.2 section 5.3): one port, the guest's hvc0, on
 * receiveq0 (host to guest) and transmitq0 (guest to host); no MULTIPORT,
 * so no control queues.  Offered: SIZE (cols/rows in config, 80x25 until
 * virtio_console_set_size) and EMERG_WRITE (a byte written to emerg_wr
 * comes out like transmitted output).
 *
 * Guest output leaves only through ops->output, the hook the lead routes
 * to stdout, a file or a socket, and replication through the epoch's
 * output buffer.  Host input goes in with virtio_console_receive(), which
 * copies into the receive buffers the driver posted; what does not fit
 * stays with the caller, who is told through ops->rx_space when the
 * driver posts more.  The device holds no chains between calls, so its
 * saved state is the transport's plus the size and the active flag.
 */
#ifndef VMM_VIRTIO_CONSOLE_H
#define VMM_VIRTIO_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "virtio.h"

#define VIRTIO_CONSOLE_RXQ	   0
#define VIRTIO_CONSOLE_TXQ	   1
#define VIRTIO_CONSOLE_QUEUE_SIZE  128
#define VIRTIO_CONSOLE_CONFIG_SIZE 12 /* cols, rows, max_nr_ports, emerg_wr */

struct virtio_console;

struct virtio_console_ops {
	/*
	 * Guest output, in order.  buf points into guest RAM and is valid only
	 * during the call.  Called on the event-loop thread (transmitq) or on a
	 * vCPU thread (emergency write), with the device's transmit lock held:
	 * it may call virtio_console_receive() but not reset the device.
	 */
	void (*output)(void *opaque, const uint8_t *buf, size_t len);
	/*
	 * Receive buffers may be available again after a virtio_console_receive()
	 * that took less than it was given (or when the driver comes up).  Any
	 * thread, no device lock held: may call virtio_console_receive().
	 * Optional.
	 */
	void (*rx_space)(void *opaque);
};

/*
 * Build the device and put it on env->pci at the next free slot.  ops is
 * kept (it must outlive the device); output is required.  0 or -errno.
 */
int virtio_console_create(struct virtio_console **out, const struct virtio_env *env,
			  const struct virtio_console_ops *ops, void *opaque);
void virtio_console_destroy(struct virtio_console *con);

struct virtio_dev *virtio_console_vdev(struct virtio_console *con);

/*
 * Host to guest: copy up to len bytes into posted receive buffers (one
 * chain after another; a chain may get fewer bytes than it holds) and
 * interrupt.  Returns the bytes taken: less than len (0 if the driver is
 * not ready or posted nothing) means rx_space will be called later.  Any
 * thread.
 */
size_t virtio_console_receive(struct virtio_console *con, const uint8_t *buf, size_t len);

/* The host terminal's size changed: update config and raise the config interrupt. */
void virtio_console_set_size(struct virtio_console *con, uint16_t cols, uint16_t rows);

/* Transport, size and active flag as properties of the open node; load validates. */
int virtio_console_save(struct virtio_console *con, void *fdt);
int virtio_console_load(struct virtio_console *con, const void *fdt, int node);

#endif
