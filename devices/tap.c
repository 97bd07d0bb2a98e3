// SPDX-License-Identifier: MIT
/* Tap interfaces through /dev/net/tun, with the virtio-net header when the kernel has it. */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int ifreq_for(struct ifreq *ifr, const char *name)
{
	memset(ifr, 0, sizeof(*ifr));
	if (!name[0] || strlen(name) >= IFNAMSIZ)
		return -EINVAL;
	memcpy(ifr->ifr_name, name, strlen(name));
	return 0;
}

static void explain_attach(int err, const char *name, bool existed, char *msg, size_t len)
{
	if (err == EPERM && !existed)
		snprintf(
		    msg, len,
		    "%s: cannot create (%s): create it with `ip tuntap add %s mode tap user $USER`",
		    name, strerror(err), name);
	else if (err == EPERM)
		snprintf(msg, len,
			 "%s: cannot attach (%s): it belongs to another user; recreate it with "
			 "`ip tuntap add %s mode tap user $USER`",
			 name, strerror(err), name);
	else if (err == EBUSY)
		snprintf(msg, len, "%s: cannot attach (%s): another process has it open", name,
			 strerror(err));
	else if (err == EINVAL && existed)
		snprintf(msg, len, "%s: cannot attach (%s): it exists but is not a tap interface",
			 name, strerror(err));
	else
		snprintf(msg, len, "%s: cannot open (%s)", name, strerror(err));
}

/*
 * Which offloads the kernel takes, cumulatively as virtio-net depends on
 * them: TSO needs checksum offload, ECN needs TSO.  The kernel rejects
 * flags it does not know with EINVAL, which is how it lets us probe.
 */
static unsigned probe_offloads(int fd)
{
	static const unsigned steps[] = {
	    TUN_F_CSUM,
	    TUN_F_TSO4 | TUN_F_TSO6,
	    TUN_F_TSO_ECN,
	};
	unsigned ok = 0;
	size_t i;

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (ioctl(fd, TUNSETOFFLOAD, ok | steps[i]) < 0)
			break;
		ok |= steps[i];
	}
	if ((ok & TUN_F_CSUM) && ioctl(fd, TUNSETOFFLOAD, ok | TUN_F_UFO) == 0)
		ok |= TUN_F_UFO;
	if (ioctl(fd, TUNSETOFFLOAD, 0) < 0)
		return 0;
	return ok;
}

static unsigned query_mtu(const char *name)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	unsigned mtu = 1500;

	if (s < 0)
		return mtu;
	if (!ifreq_for(&ifr, name) && ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
		mtu = (unsigned)ifr.ifr_mtu;
	close(s);
	return mtu;
}

/* TUNSETIFF with or without the virtio-net header.  0 or -errno. */
static int attach(int fd, const char *name, bool vnet_hdr)
{
	struct ifreq ifr;
	int hdr_len = TAP_VNET_HDR_LEN;

	if (ifreq_for(&ifr, name))
		return -EINVAL;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return -errno;
	if (vnet_hdr && ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0)
		return -errno;
	return 0;
}

int tap_open(const char *name, struct tap_info *info, char *err, size_t errlen)
{
	unsigned features = 0;
	bool existed;
	int fd, ret;

	memset(info, 0, sizeof(*info));
	if (!name || !name[0] || strlen(name) >= IFNAMSIZ) {
		snprintf(err, errlen, "tap name '%s' must be 1 to %d characters", name ? name : "",
			 IFNAMSIZ - 1);
		return -EINVAL;
	}
	existed = if_nametoindex(name) != 0;
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen,
			 "%s: cannot open /dev/net/tun (%s): is the tun module loaded?", name,
			 strerror(-ret));
		return ret;
	}
	if (ioctl(fd, TUNGETFEATURES, &features) < 0)
		features = 0;
	ret = -EINVAL;
	if (features & IFF_VNET_HDR) {
		ret = attach(fd, name, true);
		/* TUNSETVNETHDRSZ failing leaves the fd attached with the wrong header: start over.
		 */
		if (ret == -EINVAL || ret == -ENOTTY) {
			close(fd);
			fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0) {
				ret = -errno;
				snprintf(err, errlen, "%s: cannot reopen /dev/net/tun (%s)", name,
					 strerror(-ret));
				return ret;
			}
		}
	}
	if (ret == 0) {
		info->vnet_hdr = true;
	} else if (ret == -EINVAL || ret == -ENOTTY) {
		ret = attach(fd, name, false);
	}
	if (ret) {
		explain_attach(-ret, name, existed, err, errlen);
		close(fd);
		return ret;
	}
	memcpy(info->name, name, strlen(name) + 1);
	info->created = !existed;
	if (info->vnet_hdr)
		info->offloads = probe_offloads(fd);
	info->mtu = query_mtu(name);
	return fd;
}

int tap_set_offload(int fd, unsigned tun_flags)
{
	if (ioctl(fd, TUNSETOFFLOAD, tun_flags) < 0)
		return -errno;
	return 0;
}

int tap_set_up(const char *name)
{
	struct ifreq ifr;
	int s, ret = 0;

	if (ifreq_for(&ifr, name))
		return -EINVAL;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		ret = -errno;
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			ret = -errno;
	}
	close(s);
	return ret;
}
