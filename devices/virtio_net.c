// SPDX-License-Identifier: MIT
/* virtio-net on a tap: frames go straight between guest buffers and the tap with readv/writev. */
#include "virtio_net.h"

#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "event_loop.h"
#include "log.h"
#include "state.h"

#define HDR_LEN	    TAP_VNET_HDR_LEN
#define NUM_BUF_OFF 10 /* offsetof(struct virtio_net_hdr_v1, num_buffers) */
#define VLAN_HLEN   4
#define MAX_FRAME   (65535 + ETH_HLEN + VLAN_HLEN) /* a 64 KiB IP packet with a VLAN tag */
#define CONFIG_SIZE 10				   /* mac, status, max_virtqueue_pairs */
#define RX_MAX_IOV  (1024 - 1)			   /* IOV_MAX with one slot for the overflow sink */
#define RX_MAX_SEGS 1024
#define RX_BUDGET   64 /* frames per wake-up, so transmit and other devices get a turn */

#define BIT(n) (1ULL << (n))
#define GUEST_GSO                                                                                  \
	(BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_GUEST_UFO))

struct rx_seg {
	uint16_t head;
	uint16_t nr_iov; /* its buffers in rx_iov, after those of the chains before it */
	uint32_t len;	 /* bytes of this chain a frame may fill (header included) */
};

struct virtio_net {
	struct virtio_dev vdev;
	pthread_mutex_t lock; /* everything below against activate/reset */
	int fd;
	struct tap_info tap;
	char name[24];
	uint8_t mac[6];
	uint16_t status;
	uint64_t offered;  /* device feature bits offered */
	uint64_t features; /* device feature bits negotiated, from activate */
	bool active;	   /* DRIVER_OK and not reset */
	bool broken;	   /* the driver broke a rule: nothing more until reset */
	bool rx_polling;   /* the tap is on the event loop */
	bool on_pci;
	bool is_tun;	  /* TUNSETOFFLOAD applies (false for the socketpairs of tests) */
	uint32_t rx_need; /* guest bytes (header included) the largest frame may take */
	struct virtio_net_stats stats;

	struct virtq_chain *tx_chain, *rx_chain;
	unsigned rx_nsegs, rx_niov; /* chains held during virtio_net_rx, their buffers */
	uint64_t rx_cap;	    /* bytes they hold */
	struct iovec tx_iov[VIRTQ_MAX_CHAIN + 1];
	struct iovec rx_iov[RX_MAX_IOV + 1];
	uint64_t rx_gpa[RX_MAX_IOV];
	struct rx_seg rx_segs[RX_MAX_SEGS];
	uint8_t rx_sink[64];
	virtio_net_output_fn output; /* replaces the tap write when set */
	void *output_opaque;
};

static inline struct virtio_net *to_net(struct virtio_dev *vdev)
{
	return vdev->opaque;
}

static bool has(const struct virtio_net *n, unsigned bit)
{
	return n->features & BIT(bit);
}

/*
 * The one way out of the guest for frames (TX and announcements): the hook
 * replication will route through the epoch's output buffer.  iov starts
 * with the virtio-net header when the tap takes one.  0 or -errno.
 */
static int net_output(struct virtio_net *n, const struct iovec *iov, int iovcnt)
{
	ssize_t r;

	/* Replication keeps the frame until its epoch is safe (output commit). */
	if (n->output)
		return n->output(n->output_opaque, iov, iovcnt);
	do {
		r = writev(n->fd, iov, iovcnt);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/* ---- the tap on the event loop ---- */

void virtio_net_set_output(struct virtio_net *n, virtio_net_output_fn fn, void *opaque)
{
	pthread_mutex_lock(&n->lock);
	n->output = fn;
	n->output_opaque = opaque;
	pthread_mutex_unlock(&n->lock);
}

int virtio_net_send_frame(struct virtio_net *n, const void *frame, size_t len)
{
	ssize_t r;

	do
		r = write(n->fd, frame, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static void rx_event(void *opaque, uint32_t events)
{
	(void)events;
	virtio_net_rx(opaque);
}

static void rx_start(struct virtio_net *n)
{
	int ret;

	if (n->rx_polling)
		return;
	if (n->vdev.env.loop) {
		ret = event_loop_add(n->vdev.env.loop, n->fd, EPOLLIN, rx_event, n);
		if (ret) {
			pr_err("%s: cannot watch %s: %s", n->name, n->tap.name, strerror(-ret));
			return;
		}
	}
	n->rx_polling = true;
}

static void rx_stop(struct virtio_net *n)
{
	if (!n->rx_polling)
		return;
	if (n->vdev.env.loop)
		event_loop_remove(n->vdev.env.loop, n->fd);
	n->rx_polling = false;
}

/* ---- features ---- */

static uint64_t offered_features(const struct tap_info *tap)
{
	uint64_t f = BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MRG_RXBUF);

	if (!tap->vnet_hdr)
		return f;
	/* What the guest hands us, the tap takes as is once it has the header. */
	f |= BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6) |
	     BIT(VIRTIO_NET_F_HOST_ECN);
	if (tap->offloads & TUN_F_UFO)
		f |= BIT(VIRTIO_NET_F_HOST_UFO);
	/* What the host hands the guest needs TUNSETOFFLOAD. */
	if (tap->offloads & TUN_F_CSUM)
		f |= BIT(VIRTIO_NET_F_GUEST_CSUM);
	if ((tap->offloads & (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) ==
	    (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6))
		f |= BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6);
	if ((f & BIT(VIRTIO_NET_F_GUEST_TSO4)) && (tap->offloads & TUN_F_TSO_ECN))
		f |= BIT(VIRTIO_NET_F_GUEST_ECN);
	if ((tap->offloads & (TUN_F_CSUM | TUN_F_UFO)) == (TUN_F_CSUM | TUN_F_UFO))
		f |= BIT(VIRTIO_NET_F_GUEST_UFO);
	return f;
}

/* TUN_F_* for the negotiated guest offloads; the tap wants CSUM under all of them. */
static unsigned guest_offloads(uint64_t features)
{
	unsigned o = 0;

	if (!(features & BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	o |= TUN_F_CSUM;
	if (features & BIT(VIRTIO_NET_F_GUEST_TSO4))
		o |= TUN_F_TSO4;
	if (features & BIT(VIRTIO_NET_F_GUEST_TSO6))
		o |= TUN_F_TSO6;
	if ((features & BIT(VIRTIO_NET_F_GUEST_ECN)) && (o & (TUN_F_TSO4 | TUN_F_TSO6)))
		o |= TUN_F_TSO_ECN;
	if (features & BIT(VIRTIO_NET_F_GUEST_UFO))
		o |= TUN_F_UFO;
	return o;
}

/* Enter a negotiated feature set: tap offloads and receive sizing.  Lock held. */
static int apply_features(struct virtio_net *n, uint64_t features)
{
	uint32_t frame;
	int ret;

	if (n->tap.vnet_hdr && n->is_tun) {
		ret = tap_set_offload(n->fd, guest_offloads(features));
		if (ret) {
			pr_err("%s: %s: cannot set offloads: %s", n->name, n->tap.name,
			       strerror(-ret));
			return ret;
		}
	}
	n->features = features;
	frame = (features & GUEST_GSO) ? MAX_FRAME : n->tap.mtu + ETH_HLEN + VLAN_HLEN;
	if (frame > MAX_FRAME)
		frame = MAX_FRAME;
	n->rx_need = HDR_LEN + frame;
	return 0;
}

/* ---- transmit ---- */

static bool tx_header_ok(const struct virtio_net *n, const struct virtio_net_hdr_v1 *h)
{
	uint8_t gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;

	/* Spec 5.1.6.2.1: drivers set no other flag on transmit. */
	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return false;
	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !has(n, VIRTIO_NET_F_CSUM))
		return false;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has(n, VIRTIO_NET_F_HOST_ECN))
		return false;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return !(h->gso_type & VIRTIO_NET_HDR_GSO_ECN);
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!has(n, VIRTIO_NET_F_HOST_TSO4))
			return false;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!has(n, VIRTIO_NET_F_HOST_TSO6))
			return false;
		break;
	case VIRTIO_NET_HDR_GSO_UDP:
		if (!has(n, VIRTIO_NET_F_HOST_UFO))
			return false;
		break;
	default:
		return false;
	}
	/* Segmentation needs a segment size and a checksum to fill in. */
	return h->gso_size && (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM);
}

/* Send one chain's frame.  Lock held; the chain is returned by the caller. */
static void tx_one(struct virtio_net *n, const struct virtq_chain *c)
{
	struct virtio_net_hdr_v1 hdr;
	uint64_t skip = HDR_LEN, frame_len;
	int iovcnt = 0, ret;
	unsigned i;

	if (c->nr_in || c->out_len < HDR_LEN) {
		n->stats.tx_errors++;
		return;
	}
	frame_len = c->out_len - HDR_LEN;
	/* Validate and send a private copy: the guest may change its own while the kernel reads. */
	virtq_chain_read(c, 0, &hdr, HDR_LEN);
	if (!tx_header_ok(n, &hdr) || frame_len < ETH_HLEN || frame_len > MAX_FRAME) {
		n->stats.tx_errors++;
		return;
	}
	hdr.num_buffers = 0;
	if (n->tap.vnet_hdr)
		n->tx_iov[iovcnt++] = (struct iovec){.iov_base = &hdr, .iov_len = HDR_LEN};
	for (i = 0; i < c->nr_out; i++) {
		const struct virtq_buf *b = &c->bufs[i];

		if (skip >= b->len) {
			skip -= b->len;
			continue;
		}
		n->tx_iov[iovcnt++] =
		    (struct iovec){.iov_base = b->host + skip, .iov_len = b->len - skip};
		skip = 0;
	}
	ret = net_output(n, n->tx_iov, iovcnt);
	if (ret) {
		n->stats.tx_dropped++;
		return;
	}
	n->stats.tx_packets++;
	n->stats.tx_bytes += frame_len;
}

static void tx_process(struct virtio_net *n)
{
	struct guest_mem *mem = n->vdev.env.mem;
	struct virtq *vq = virtio_queue(&n->vdev, VIRTIO_NET_TXQ);
	bool notify = false, broken = false, rearmed = false;
	int r;

	pthread_mutex_lock(&n->lock);
	while (n->active && !n->broken) {
		r = virtq_pop(vq, mem, n->tx_chain);
		if (r == 0 && !rearmed) {
			/* Ask for a kick at the next frame, then look once more (the race). */
			virtq_update_avail_event(vq, mem);
			rearmed = true;
			continue;
		}
		if (r == 0)
			break;
		if (r > 0) {
			tx_one(n, n->tx_chain);
			r = virtq_push(vq, mem, n->tx_chain->head, 0);
		}
		if (r < 0) {
			broken = n->broken = true;
			break;
		}
		notify = true;
		rearmed = false;
	}
	pthread_mutex_unlock(&n->lock);
	if (broken) {
		pr_warn("%s: malformed transmit queue: device needs reset", n->name);
		virtio_set_needs_reset(&n->vdev);
	}
	if (notify)
		virtio_queue_interrupt(&n->vdev, VIRTIO_NET_TXQ);
}

/* ---- receive ---- */

/*
 * Chains popped from the receive queue and not yet used are held in
 * rx_segs/rx_iov during one virtio_net_rx call, so a small frame after a
 * big one does not pop the same chains again; they go back to the ring
 * (rx_release) before the call returns.
 */

/* Give back the last k chains we popped but did not use. */
static void rx_unpop(struct virtq *vq, unsigned k)
{
	vq->last_avail_idx -= k;
}

static void rx_release(struct virtio_net *n)
{
	rx_unpop(virtio_queue(&n->vdev, VIRTIO_NET_RXQ), n->rx_nsegs);
	n->rx_nsegs = n->rx_niov = 0;
	n->rx_cap = 0;
}

/* Forget the first k held chains (the frame took them). */
static void rx_consume(struct virtio_net *n, unsigned k)
{
	unsigned i, m = 0;

	for (i = 0; i < k; i++) {
		m += n->rx_segs[i].nr_iov;
		n->rx_cap -= n->rx_segs[i].len;
	}
	memmove(n->rx_iov, n->rx_iov + m, (n->rx_niov - m) * sizeof(n->rx_iov[0]));
	memmove(n->rx_gpa, n->rx_gpa + m, (n->rx_niov - m) * sizeof(n->rx_gpa[0]));
	memmove(n->rx_segs, n->rx_segs + k, (n->rx_nsegs - k) * sizeof(n->rx_segs[0]));
	n->rx_niov -= m;
	n->rx_nsegs -= k;
}

/*
 * Publish the k chains of one frame with a single used-index update, so a
 * driver polling concurrently never sees the head of a merged frame
 * without the rest (Linux drops such frames as "buffers missing").  The
 * element layout is the spec's (2.7.8); guest_mem_write checks and
 * dirty-marks.  0 or -EFAULT.
 */
static int rx_publish(struct virtq *vq, struct guest_mem *mem, const struct rx_seg *segs,
		      const uint32_t *lens, unsigned k)
{
	uint16_t idx = vq->used_idx;
	unsigned i;

	for (i = 0; i < k; i++) {
		uint32_t e[2] = {segs[i].head, lens[i]};
		uint64_t slot = vq->used_gpa + 4 + 8ULL * ((uint16_t)(idx + i) % vq->size);

		if (guest_mem_write(mem, slot, e, sizeof(e)))
			return -EFAULT;
	}
	__atomic_thread_fence(__ATOMIC_RELEASE);
	idx += k;
	if (guest_mem_write(mem, vq->used_gpa + 2, &idx, sizeof(idx)))
		return -EFAULT;
	vq->used_idx = idx;
	return 0;
}

/* Hold chain c: its writable buffers, up to the largest frame, join the iovec. */
static void rx_hold(struct virtio_net *n, const struct virtq_chain *c)
{
	struct rx_seg *seg = &n->rx_segs[n->rx_nsegs];
	unsigned i, start = n->rx_niov;
	uint64_t got = 0;

	for (i = c->nr_out; i < c->nr_out + c->nr_in && got < n->rx_need && n->rx_niov < RX_MAX_IOV;
	     i++) {
		const struct virtq_buf *b = &c->bufs[i];
		uint64_t len = b->len < n->rx_need - got ? b->len : n->rx_need - got;

		if (!len)
			continue;
		n->rx_iov[n->rx_niov] = (struct iovec){.iov_base = b->host, .iov_len = len};
		n->rx_gpa[n->rx_niov] = b->gpa;
		n->rx_niov++;
		got += len;
	}
	seg->head = c->head;
	seg->nr_iov = (uint16_t)(n->rx_niov - start);
	seg->len = (uint32_t)got;
	n->rx_cap += got;
	n->rx_nsegs++;
}

/*
 * Hold enough chains for the largest frame (one without MRG_RXBUF).
 * 0, -ENOBUFS (not yet: the driver can still post more) or -EPROTO.
 */
static int rx_fill(struct virtio_net *n)
{
	struct guest_mem *mem = n->vdev.env.mem;
	struct virtq *vq = virtio_queue(&n->vdev, VIRTIO_NET_RXQ);
	bool mrg = has(n, VIRTIO_NET_F_MRG_RXBUF);
	struct virtq_chain *c = n->rx_chain;
	bool room;
	int p;

	for (;;) {
		room = n->rx_nsegs < RX_MAX_SEGS && n->rx_niov < RX_MAX_IOV;
		if (n->rx_nsegs && (!mrg || n->rx_cap >= n->rx_need || !room))
			break;
		p = virtq_pop(vq, mem, c);
		if (p < 0)
			return -EPROTO;
		if (p == 0)
			break;
		/* Spec 5.1.6.3.1: receive buffers are device-writable and hold at least a header.
		 */
		if (c->nr_out || c->in_len < HDR_LEN) {
			rx_unpop(vq, 1);
			return -EPROTO;
		}
		rx_hold(n, c);
		if (n->rx_segs[n->rx_nsegs - 1].len < HDR_LEN) {
			/* Out of iovec slots: leave the chain for the next call. */
			n->rx_nsegs--;
			n->rx_niov -= n->rx_segs[n->rx_nsegs].nr_iov;
			n->rx_cap -= n->rx_segs[n->rx_nsegs].len;
			rx_unpop(vq, 1);
			break;
		}
	}
	if (!n->rx_nsegs)
		return -ENOBUFS;
	/* Wait for room for the largest frame while the driver can still post more. */
	room = n->rx_nsegs < RX_MAX_SEGS && n->rx_niov < RX_MAX_IOV;
	if (mrg && n->rx_cap < n->rx_need && room && n->rx_nsegs < vq->size)
		return -ENOBUFS;
	return 0;
}

/* Write header bytes into the first held chain, dirty-marking them. */
static void rx_write_hdr(struct virtio_net *n, uint32_t off, const void *src, uint32_t len)
{
	const uint8_t *p = src;
	unsigned i;

	for (i = 0; i < n->rx_segs[0].nr_iov && len; i++) {
		uint32_t l = (uint32_t)n->rx_iov[i].iov_len, c;

		if (off >= l) {
			off -= l;
			continue;
		}
		c = l - off < len ? l - off : len;
		memcpy((uint8_t *)n->rx_iov[i].iov_base + off, p, c);
		guest_mem_mark_dirty(n->vdev.env.mem, n->rx_gpa[i] + off, c);
		p += c;
		len -= c;
		off = 0;
	}
}

static void rx_mark_dirty(struct virtio_net *n, uint64_t bytes)
{
	unsigned i;

	for (i = 0; i < n->rx_niov && bytes; i++) {
		uint64_t len = n->rx_iov[i].iov_len < bytes ? n->rx_iov[i].iov_len : bytes;

		guest_mem_mark_dirty(n->vdev.env.mem, n->rx_gpa[i], len);
		bytes -= len;
	}
}

/*
 * readv into the held chains, after `skip` header bytes the device writes
 * itself (a tap without the vnet header), with the sink last to catch
 * frames too big for them.
 */
static ssize_t rx_read(struct virtio_net *n, uint32_t skip)
{
	unsigned j = 0;
	struct iovec save;
	ssize_t r;

	while (skip && skip >= n->rx_iov[j].iov_len)
		skip -= (uint32_t)n->rx_iov[j++].iov_len;
	save = n->rx_iov[j];
	n->rx_iov[j].iov_base = (uint8_t *)n->rx_iov[j].iov_base + skip;
	n->rx_iov[j].iov_len -= skip;
	n->rx_iov[n->rx_niov] =
	    (struct iovec){.iov_base = n->rx_sink, .iov_len = sizeof(n->rx_sink)};
	do {
		r = readv(n->fd, n->rx_iov + j, (int)(n->rx_niov - j + 1));
	} while (r < 0 && errno == EINTR);
	n->rx_iov[j] = save;
	return r;
}

/*
 * Receive one frame.  1: a frame was delivered or dropped; 0: the tap is
 * empty; -ENOBUFS: not enough receive buffers; -EPROTO: the driver broke
 * the rules; -EIO: the tap is unusable.  Lock held.
 */
static int rx_one(struct virtio_net *n)
{
	struct virtq *vq = virtio_queue(&n->vdev, VIRTIO_NET_RXQ);
	uint32_t skip = n->tap.vnet_hdr ? 0 : HDR_LEN, lens[RX_MAX_SEGS];
	uint64_t total, left;
	uint16_t num_buffers;
	unsigned k;
	ssize_t r;
	int ret;

	ret = rx_fill(n);
	if (ret)
		return ret;
	r = rx_read(n, skip);
	if (r <= 0) {
		int err = r ? errno : 0;

		if (err == EAGAIN || err == EWOULDBLOCK)
			return 0;
		if (err == EFAULT || err == EINVAL || err == EMSGSIZE) {
			n->stats.rx_dropped++; /* that frame is gone; the next may be fine */
			return 1;
		}
		pr_err("%s: %s: %s", n->name, n->tap.name, err ? strerror(err) : "end of file");
		return -EIO;
	}
	total = (uint64_t)r + skip;
	/* Landed in the sink (or the kernel reports the untruncated size): too big, drop. */
	if (total > n->rx_cap || total < HDR_LEN) {
		n->stats.rx_dropped++;
		return 1;
	}
	rx_mark_dirty(n, total);
	for (k = 0, left = total; left; k++) {
		lens[k] = n->rx_segs[k].len < left ? n->rx_segs[k].len : (uint32_t)left;
		left -= lens[k];
	}
	if (skip) {
		static const struct virtio_net_hdr_v1 none;

		rx_write_hdr(n, 0, &none, HDR_LEN);
	}
	num_buffers = (uint16_t)k;
	rx_write_hdr(n, NUM_BUF_OFF, &num_buffers, sizeof(num_buffers));
	if (rx_publish(vq, n->vdev.env.mem, n->rx_segs, lens, k))
		return -EPROTO;
	rx_consume(n, k);
	n->stats.rx_packets++;
	n->stats.rx_bytes += total - HDR_LEN;
	return 1;
}

static bool tap_readable(struct virtio_net *n)
{
	struct pollfd p = {.fd = n->fd, .events = POLLIN};

	return poll(&p, 1, 0) != 0;
}

void virtio_net_rx(struct virtio_net *n)
{
	struct virtq *vq = virtio_queue(&n->vdev, VIRTIO_NET_RXQ);
	bool notify = false, broken = false, rearmed = false;
	unsigned budget;
	int r;

	pthread_mutex_lock(&n->lock);
	for (budget = 0; budget < RX_BUDGET; budget++) {
		if (!n->active || n->broken) {
			/* Nothing to receive into: let frames wait in the tap until
			 * activate+notify. */
			rx_stop(n);
			break;
		}
		r = rx_one(n);
		if (r > 0) {
			notify = true;
			rearmed = false;
			continue;
		}
		if (r == 0)
			break;
		if (r == -ENOBUFS && !rearmed) {
			virtq_update_avail_event(vq, n->vdev.env.mem);
			rearmed = true;
			continue;
		}
		/* Out of buffers with nothing waiting: stay on the loop, the next frame decides. */
		if (r == -ENOBUFS && !tap_readable(n))
			break;
		if (r == -EPROTO)
			broken = n->broken = true;
		rx_stop(n); /* back on the loop when the driver notifies the queue */
		break;
	}
	rx_release(n);
	pthread_mutex_unlock(&n->lock);
	if (broken) {
		pr_warn("%s: malformed receive queue: device needs reset", n->name);
		virtio_set_needs_reset(&n->vdev);
	}
	if (notify)
		virtio_queue_interrupt(&n->vdev, VIRTIO_NET_RXQ);
}

bool virtio_net_rx_polling(struct virtio_net *n)
{
	bool on;

	pthread_mutex_lock(&n->lock);
	on = n->rx_polling;
	pthread_mutex_unlock(&n->lock);
	return on;
}

/* ---- virtio ops ---- */

static void net_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct virtio_net *n = to_net(vdev);

	if (q == VIRTIO_NET_TXQ) {
		tx_process(n);
	} else if (q == VIRTIO_NET_RXQ) {
		pthread_mutex_lock(&n->lock);
		rx_start(n);
		pthread_mutex_unlock(&n->lock);
		virtio_net_rx(n);
	}
}

static int net_activate(struct virtio_dev *vdev)
{
	struct virtio_net *n = to_net(vdev);
	int ret;

	pthread_mutex_lock(&n->lock);
	ret = apply_features(n, vdev->t.driver_features & n->offered);
	if (!ret) {
		n->active = true;
		n->broken = false;
	}
	pthread_mutex_unlock(&n->lock);
	return ret;
}

static void net_reset(struct virtio_dev *vdev)
{
	struct virtio_net *n = to_net(vdev);

	pthread_mutex_lock(&n->lock);
	n->active = false;
	n->broken = false;
	n->features = 0;
	/* The host stops handing us segments the next driver may not take. */
	if (n->tap.vnet_hdr && n->is_tun)
		tap_set_offload(n->fd, 0);
	pthread_mutex_unlock(&n->lock);
}

static void net_config_read(struct virtio_dev *vdev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_net *n = to_net(vdev);
	uint8_t cfg[CONFIG_SIZE];

	pthread_mutex_lock(&n->lock);
	memcpy(cfg, n->mac, 6);
	cfg[6] = n->status & 0xff;
	cfg[7] = n->status >> 8;
	cfg[8] = 1; /* max_virtqueue_pairs */
	cfg[9] = 0;
	pthread_mutex_unlock(&n->lock);
	if (offset < CONFIG_SIZE && len <= CONFIG_SIZE - offset)
		memcpy(data, cfg + offset, len);
}

static void net_config_write(struct virtio_dev *vdev, uint32_t offset, const uint8_t *data,
			     uint32_t len)
{
	/* Read-only with VERSION_1 (the MAC changes only through a control queue we lack). */
	(void)vdev, (void)offset, (void)data, (void)len;
}

static const struct virtio_device_ops net_ops = {
    .queue_notify = net_queue_notify,
    .activate = net_activate,
    .reset = net_reset,
    .config_read = net_config_read,
    .config_write = net_config_write,
};

/* ---- life cycle ---- */

static void derive_mac(const char *tap, unsigned index, uint8_t mac[6])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	const char *p;

	for (p = tap; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ (index & 0xff)) * 16777619u;
	mac[0] = 0x52; /* locally administered, unicast */
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = h >> 16;
	mac[4] = h >> 8;
	mac[5] = h;
}

int virtio_net_create_fd(struct virtio_net **out, const struct virtio_env *env, int fd,
			 const struct tap_info *tap, const uint8_t mac[6], unsigned index)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	struct ifreq ifr;

	if (!n)
		return -ENOMEM;
	n->tx_chain = malloc(sizeof(*n->tx_chain));
	n->rx_chain = malloc(sizeof(*n->rx_chain));
	if (!n->tx_chain || !n->rx_chain) {
		free(n->tx_chain);
		free(n->rx_chain);
		free(n);
		return -ENOMEM;
	}
	pthread_mutex_init(&n->lock, NULL);
	n->fd = fd;
	n->is_tun = ioctl(fd, TUNGETIFF, &ifr) == 0;
	n->tap = *tap;
	if (!n->tap.mtu)
		n->tap.mtu = 1500;
	snprintf(n->name, sizeof(n->name), "virtio-net%u", index);
	memcpy(n->mac, mac, 6);
	n->status = VIRTIO_NET_S_LINK_UP;
	n->offered = offered_features(&n->tap);
	n->rx_need = HDR_LEN + n->tap.mtu + ETH_HLEN + VLAN_HLEN;

	n->vdev.info = (struct virtio_dev_info){
	    .name = n->name,
	    .device_id = VIRTIO_ID_NET,
	    .features = n->offered,
	    .nr_queues = 2,
	    .queue_size = VIRTIO_NET_QUEUE_SIZE,
	    .config_size = CONFIG_SIZE,
	};
	n->vdev.ops = &net_ops;
	n->vdev.opaque = n;
	n->vdev.env = *env;
	/* Frames that arrive before the driver is ready stop the polling until it notifies. */
	rx_start(n);
	*out = n;
	return 0;
}

int virtio_net_attach_pci(struct virtio_net *n, int slot)
{
	int ret = virtio_pci_init(&n->vdev, &n->vdev.info, &net_ops, n, &n->vdev.env);

	if (ret)
		return ret;
	n->on_pci = true;
	return virtio_pci_register(&n->vdev, slot);
}

int virtio_net_create(struct virtio_net **out, const struct virtio_env *env,
		      const struct net_option *opt, unsigned index)
{
	struct virtio_net *n;
	struct tap_info tap;
	uint8_t mac[6];
	char err[256];
	int fd, ret;

	fd = tap_open(opt->tap, &tap, err, sizeof(err));
	if (fd < 0) {
		pr_err("%s", err);
		return fd;
	}
	if (tap.created) {
		ret = tap_set_up(tap.name);
		if (ret)
			pr_warn("%s: cannot bring the link up: %s", tap.name, strerror(-ret));
	}
	if (!tap.vnet_hdr)
		pr_warn("%s: no virtio-net header support: no offloads", tap.name);
	if (opt->mac_set)
		memcpy(mac, opt->mac, 6);
	else
		derive_mac(tap.name, index, mac);
	ret = virtio_net_create_fd(&n, env, fd, &tap, mac, index);
	if (ret) {
		close(fd);
		return ret;
	}
	ret = virtio_net_attach_pci(n, -1);
	if (ret) {
		pr_err("%s: cannot add to PCI: %s", n->name, strerror(-ret));
		virtio_net_destroy(n);
		return ret;
	}
	pr_info("%s: tap %s, mac %02x:%02x:%02x:%02x:%02x:%02x, features %#llx", n->name, tap.name,
		mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], (unsigned long long)n->offered);
	*out = n;
	return 0;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	if (n->on_pci)
		virtio_pci_destroy(&n->vdev);
	rx_stop(n);
	close(n->fd);
	pthread_mutex_destroy(&n->lock);
	free(n->tx_chain);
	free(n->rx_chain);
	free(n);
}

struct virtio_dev *virtio_net_vdev(struct virtio_net *n)
{
	return &n->vdev;
}

void virtio_net_get_mac(const struct virtio_net *n, uint8_t mac[6])
{
	memcpy(mac, n->mac, 6);
}

void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *stats)
{
	pthread_mutex_lock(&n->lock);
	*stats = n->stats;
	pthread_mutex_unlock(&n->lock);
}

/* ---- announce ---- */

int virtio_net_announce(struct virtio_net *n)
{
	static const uint8_t rarp_head[] = {
	    0x00, 0x01, /* hardware: Ethernet */
	    0x08, 0x00, /* protocol: IPv4 */
	    6,	  4,	/* address lengths */
	    0x00, 0x03, /* reverse request */
	};
	struct virtio_net_hdr_v1 hdr = {0};
	uint8_t f[60] = {0}; /* minimum Ethernet frame without FCS */
	struct iovec iov[2];
	int iovcnt = 0, ret;

	pthread_mutex_lock(&n->lock);
	memset(f, 0xff, 6);
	memcpy(f + 6, n->mac, 6);
	f[12] = ETH_P_RARP >> 8;
	f[13] = ETH_P_RARP & 0xff;
	memcpy(f + 14, rarp_head, sizeof(rarp_head));
	memcpy(f + 22, n->mac, 6); /* sender MAC, sender IP 0 */
	memcpy(f + 32, n->mac, 6); /* target MAC, target IP 0 */
	if (n->tap.vnet_hdr)
		iov[iovcnt++] = (struct iovec){.iov_base = &hdr, .iov_len = HDR_LEN};
	iov[iovcnt++] = (struct iovec){.iov_base = f, .iov_len = sizeof(f)};
	ret = net_output(n, iov, iovcnt);
	pthread_mutex_unlock(&n->lock);
	return ret;
}

/* ---- state ---- */

int virtio_net_save(struct virtio_net *n, void *fdt)
{
	int ret;

	/* The transport (config space, MSI-X, queues) first, as the other devices do. */
	ret = n->on_pci ? virtio_pci_save(&n->vdev, fdt) : 0;
	if (ret)
		return ret;
	pthread_mutex_lock(&n->lock);
	ret = state_put_bytes(fdt, "mac", n->mac, 6);
	if (!ret)
		ret = state_put_u32(fdt, "status", n->status);
	if (!ret)
		ret = state_put_u64(fdt, "features", n->features);
	if (!ret)
		ret = state_put_u32(fdt, "active", n->active);
	pthread_mutex_unlock(&n->lock);
	return ret;
}

int virtio_net_load(struct virtio_net *n, const void *fdt, int node)
{
	uint32_t status, active;
	uint64_t features;
	uint8_t mac[6];
	int ret;

	if (state_get_bytes(fdt, node, "mac", mac, 6) ||
	    state_get_u32(fdt, node, "status", &status) ||
	    state_get_u64(fdt, node, "features", &features) ||
	    state_get_u32(fdt, node, "active", &active))
		return -EINVAL;
	if ((status & ~VIRTIO_NET_S_LINK_UP) || active > 1 || (!active && features))
		return -EINVAL;
	if (features & ~n->offered) {
		pr_err("%s: %s cannot do the offloads the guest negotiated (%#llx)", n->name,
		       n->tap.name, (unsigned long long)(features & ~n->offered));
		return -ENOTSUP;
	}
	/* Queues, vectors and doorbells come back with the transport. */
	ret = n->on_pci ? virtio_pci_load(&n->vdev, fdt, node) : 0;
	if (ret)
		return ret;
	pthread_mutex_lock(&n->lock);
	ret = apply_features(n, features);
	if (!ret) {
		memcpy(n->mac, mac, 6);
		n->status = status;
		n->active = active;
		n->broken = false;
		/* The driver will not notify for buffers it already posted. */
		rx_start(n);
	}
	pthread_mutex_unlock(&n->lock);
	return ret;
}
