/* SPDX-License-Identifier: MIT */
/*
 * Tap backend for virtio-net: a Linux tap interface opened through
 * /dev/net/tun (IFF_TAP | IFF_NO_PI), preferably with IFF_VNET_HDR so every
 * frame carries a 12-byte struct virtio_net_hdr_v1 in front (TUNSETVNETHDRSZ
 * 12) and checksum/segmentation offloads pass between guest and host kernel
 * untouched.  Without IFF_VNET_HDR the device adds and strips headers itself
 * and offers no offloads.
 *
 * The fd is non-blocking and close-on-exec.  One open per device; the
 * interface is created if missing (needs CAP_NET_ADMIN) and then lives as
 * long as the fd unless it was persistent before.
 */
#ifndef VMM_TAP_H
#define VMM_TAP_H

#include <stdbool.h>
#include <stddef.h>

#define TAP_VNET_HDR_LEN                                                                           \
	12 /* struct virtio_net_hdr_v1: with VERSION_1, num_buffers is always there */

struct tap_info {
	char name[16];	   /* the interface's name (IFNAMSIZ) */
	bool vnet_hdr;	   /* frames carry a TAP_VNET_HDR_LEN-byte virtio-net header */
	unsigned offloads; /* TUN_F_* the tap accepted when probed (0 without vnet_hdr) */
	unsigned mtu;	   /* the interface's MTU when opened (1500 if unknown) */
	bool created;	   /* tap_open created the interface */
};

/*
 * Open tap `name`, creating it if missing, and probe what it supports.
 * Offloads are left off (tap_set_offload turns them on once the guest
 * negotiated them).  Returns the fd, or -errno with one line of
 * explanation for the user in err (e.g. how to create the tap by hand
 * when we lack CAP_NET_ADMIN).
 */
int tap_open(const char *name, struct tap_info *info, char *err, size_t errlen);

/* TUNSETOFFLOAD: which TUN_F_* kinds of frames the host may hand us.  0 or -errno. */
int tap_set_offload(int fd, unsigned tun_flags);

/* Bring the interface up (SIOCSIFFLAGS; needs CAP_NET_ADMIN).  0 or -errno. */
int tap_set_up(const char *name);

#endif
