/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (virtio 1.2 section 5.1) on a tap: one receive and one
 * transmit queue, no control queue.  Offered features: MAC, STATUS (link
 * always up), MRG_RXBUF, and the checksum/segmentation offloads the tap
 * accepted (CSUM, HOST_TSO4/6/ECN/UFO when it takes the virtio-net header;
 * GUEST_CSUM, GUEST_TSO4/6/ECN/UFO for what TUNSETOFFLOAD accepted).  Every
 * frame carries a 12-byte struct virtio_net_hdr_v1.
 *
 * TX (queue_notify on the event-loop thread): every pending chain is sent
 * with one writev from a validated copy of its header plus the checked
 * guest buffers, then returned with length 0; one interrupt per batch.  A
 * chain with device-writable buffers, a short header, a header using
 * offloads that were not negotiated, or a frame shorter than an Ethernet
 * header or longer than 64 KiB is dropped and counted (tx_errors); a
 * malformed ring (virtq_pop error) marks the device NEEDS_RESET.
 *
 * RX (tap readable, on the event-loop thread): one readv per frame straight
 * into the guest's buffers (one chain, or with MRG_RXBUF as many chains as
 * the largest frame the negotiated offloads allow, all published at once
 * with num_buffers set); written bytes are dirty-marked.  Without posted
 * buffers the tap leaves the event loop until the driver notifies the
 * receive queue, so frames wait in the tap's queue, not in a busy loop.  An
 * RX chain with device-readable buffers or shorter than the header is a
 * driver bug: NEEDS_RESET.
 *
 * Frames leaving the guest all go through one function (net_output in
 * virtio_net.c) so that replication can hold them back until their epoch
 * is acknowledged.
 *
 * Locking: the device's mutex serialises the event-loop work against
 * activate/reset on vCPU threads; transport calls (interrupts, needs-reset)
 * are made without it.
 */
#ifndef VMM_VIRTIO_NET_H
#define VMM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "options.h"
#include "tap.h"
#include "virtio.h"

#define VIRTIO_NET_RXQ	      0
#define VIRTIO_NET_TXQ	      1
#define VIRTIO_NET_QUEUE_SIZE 256

struct virtio_net;

/*
 * Where transmitted frames go instead of the tap (replication's output
 * buffer): iov is the frame as it would be written to the tap (with the
 * virtio-net header if the tap takes one), valid only during the call.
 * 0: taken (the guest sees it sent).  Called on the loop thread.
 */
typedef int (*virtio_net_output_fn)(void *opaque, const struct iovec *iov, int iovcnt);

struct virtio_net_stats {
	uint64_t tx_packets, tx_bytes, tx_errors,
	    tx_dropped;				   /* dropped: the tap refused the frame */
	uint64_t rx_packets, rx_bytes, rx_dropped; /* dropped: did not fit, read error */
};

/*
 * Open the tap of opt (creating it if allowed; see tap_open for the error
 * text), build the device and put it on PCI at the next free slot.  The MAC
 * is opt->mac, or else 52:54:00 followed by three bytes of a hash of the
 * tap name and index: stable across restarts of the same configuration,
 * different for each tap.  Returns 0 or -errno (message already printed).
 */
int virtio_net_create(struct virtio_net **out, const struct virtio_env *env,
		      const struct net_option *opt, unsigned index);

/*
 * The device model on any fd that behaves like a tap described by *tap
 * (a socketpair in tests: one datagram per frame, with the vnet header if
 * tap->vnet_hdr).  The device takes the fd and starts watching it on
 * env->loop (if any).  No PCI: vdev's info, ops, opaque and env are filled
 * as virtio_pci_init() would, so tests can drive the ops directly.
 * 0 or -errno.
 */
int virtio_net_create_fd(struct virtio_net **out, const struct virtio_env *env, int fd,
			 const struct tap_info *tap, const uint8_t mac[6], unsigned index);

/*
 * Give a device from virtio_net_create_fd its PCI function (virtio_pci_init,
 * virtio_pci_register at slot, -1 for the next free).  0 or -errno.
 */
int virtio_net_attach_pci(struct virtio_net *n, int slot);

/* Stop watching and close the tap; release the PCI function's transport if attached. */
void virtio_net_destroy(struct virtio_net *n);

/* The virtio device (for tests, and for the VM to reach the transport). */
struct virtio_dev *virtio_net_vdev(struct virtio_net *n);

void virtio_net_get_mac(const struct virtio_net *n, uint8_t mac[6]);

/* Route transmitted frames to fn (NULL: back to the tap). */
void virtio_net_set_output(struct virtio_net *n, virtio_net_output_fn fn, void *opaque);

/* Write one frame, as handed to the output fn, to the tap now.  0 or -errno.  Any thread. */
int virtio_net_send_frame(struct virtio_net *n, const void *frame, size_t len);
void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *stats);

/*
 * The tap fd is readable: receive what fits (the event-loop callback;
 * public so tests can drive it without running the loop).
 */
void virtio_net_rx(struct virtio_net *n);

/* Is the tap on the event loop (false while waiting for receive buffers)? */
bool virtio_net_rx_polling(struct virtio_net *n);

/*
 * Send a RARP announcement for the guest's MAC out of the tap so switches
 * learn where it lives now (after failover or migration).  0 or -errno.
 */
int virtio_net_announce(struct virtio_net *n);

/*
 * Device state (MAC, link status, negotiated features, active) as
 * properties of the open node.  Load validates everything, applies the
 * offloads to this tap and resumes receiving; call it with the event loop
 * stopped or from its thread.  -EINVAL for a bad tree, -ENOTSUP when this
 * tap cannot do what the guest negotiated.
 */
int virtio_net_save(struct virtio_net *n, void *fdt);
int virtio_net_load(struct virtio_net *n, const void *fdt, int node);

#endif
