// SPDX-License-Identifier: MIT
/*
 * virtio-console, one port: transmit chains go to ops->output as they are,
 * host input is copied into posted receive chains.
 *
 * Locks: tx_lock serialises the transmit path (so output stays in order),
 * lock the receive path, the size and the flags.  Flags change with both
 * held (tx_lock first) and are read with either.  Transport calls and
 * rx_space are made with neither held.
 */
#include "virtio_console.h"

#include <endian.h>
#include <errno.h>
#include <linux/virtio_console.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "state.h"

#define BIT(n)	      (1ULL << (n))
#define FEATURES      (BIT(VIRTIO_CONSOLE_F_SIZE) | BIT(VIRTIO_CONSOLE_F_EMERG_WRITE))
#define DEFAULT_COLS  80
#define DEFAULT_ROWS  25
#define CFG_COLS      0
#define CFG_ROWS      2
#define CFG_MAX_PORTS 4
#define CFG_EMERG_WR  8

_Static_assert(sizeof(struct virtio_console_config) == VIRTIO_CONSOLE_CONFIG_SIZE, "config layout");

struct virtio_console {
	struct virtio_dev vdev;
	struct guest_mem *mem;
	const struct virtio_console_ops *ops;
	void *opaque;

	pthread_mutex_t tx_lock;
	struct virtq_chain *tx_chain;

	pthread_mutex_t lock;
	struct virtq_chain *rx_chain;
	bool active;	/* DRIVER_OK and not reset */
	bool broken;	/* the driver broke the rules: nothing more until reset */
	bool rx_wanted; /* the host has input that did not fit: tell it about new buffers */
	uint16_t cols, rows;
};

/* tx_lock held: stop the device; the caller then calls virtio_set_needs_reset() unlocked. */
static void mark_broken(struct virtio_console *con, const char *why)
{
	pthread_mutex_lock(&con->lock);
	if (!con->broken)
		pr_warn("%s: %s: device needs reset", con->vdev.info.name, why);
	con->broken = true;
	pthread_mutex_unlock(&con->lock);
}

/* ---- transmit ---- */

static void tx_process(struct virtio_console *con)
{
	struct virtq *vq = virtio_queue(&con->vdev, VIRTIO_CONSOLE_TXQ);
	struct virtq_chain *c = con->tx_chain;
	bool pushed = false, rearmed = false;
	const char *bad = NULL;
	int r;

	pthread_mutex_lock(&con->tx_lock);
	while (con->active && !con->broken) {
		r = virtq_pop(vq, con->mem, c);
		if (r == 0 && !rearmed) {
			/* Ask for a notification at the next chain, then look once more. */
			virtq_update_avail_event(vq, con->mem);
			rearmed = true;
			continue;
		}
		if (r == 0)
			break;
		if (r < 0) {
			bad = "malformed transmit queue";
			break;
		}
		rearmed = false;
		/* Writable buffers in a transmit chain are ignored: nothing is written back. */
		for (unsigned i = 0; i < c->nr_out; i++)
			if (c->bufs[i].len)
				con->ops->output(con->opaque, c->bufs[i].host, c->bufs[i].len);
		if (virtq_push(vq, con->mem, c->head, 0)) {
			bad = "transmit used ring";
			break;
		}
		pushed = true;
	}
	if (bad)
		mark_broken(con, bad);
	pthread_mutex_unlock(&con->tx_lock);
	if (bad)
		virtio_set_needs_reset(&con->vdev);
	if (pushed)
		virtio_queue_interrupt(&con->vdev, VIRTIO_CONSOLE_TXQ);
}

/* ---- receive ---- */

size_t virtio_console_receive(struct virtio_console *con, const uint8_t *buf, size_t len)
{
	struct virtq *vq = virtio_queue(&con->vdev, VIRTIO_CONSOLE_RXQ);
	struct virtq_chain *c = con->rx_chain;
	bool pushed = false, rearmed = false, broken = false;
	size_t taken = 0;
	uint64_t n;
	int r;

	pthread_mutex_lock(&con->lock);
	while (taken < len && con->active && !con->broken) {
		r = virtq_pop(vq, con->mem, c);
		if (r == 0 && !rearmed) {
			virtq_update_avail_event(vq, con->mem);
			rearmed = true;
			continue;
		}
		if (r == 0)
			break;
		rearmed = false;
		/* Spec 5.3.6.1: receive buffers are device-writable only. */
		if (r < 0 || c->nr_out) {
			broken = true;
			break;
		}
		n = len - taken < c->in_len ? len - taken : c->in_len;
		n = virtq_chain_write(c, con->mem, 0, buf + taken, n);
		if (virtq_push(vq, con->mem, c->head, (uint32_t)n)) {
			broken = true;
			break;
		}
		taken += n;
		pushed = true;
	}
	if (taken < len)
		con->rx_wanted = true;
	pthread_mutex_unlock(&con->lock);
	if (broken) {
		pthread_mutex_lock(&con->tx_lock);
		mark_broken(con, "malformed receive queue");
		pthread_mutex_unlock(&con->tx_lock);
		virtio_set_needs_reset(&con->vdev);
	}
	if (pushed)
		virtio_queue_interrupt(&con->vdev, VIRTIO_CONSOLE_RXQ);
	return taken;
}

/* The driver posted receive buffers (or came up): tell a host that has input waiting. */
static void rx_posted(struct virtio_console *con)
{
	bool fire;

	pthread_mutex_lock(&con->lock);
	fire = con->rx_wanted && con->active && !con->broken;
	if (fire)
		con->rx_wanted = false;
	pthread_mutex_unlock(&con->lock);
	if (fire && con->ops->rx_space)
		con->ops->rx_space(con->opaque);
}

/* ---- virtio ops ---- */

static void con_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	struct virtio_console *con = vdev->opaque;

	if (q == VIRTIO_CONSOLE_TXQ)
		tx_process(con);
	else if (q == VIRTIO_CONSOLE_RXQ)
		rx_posted(con);
}

static void set_active(struct virtio_console *con, bool active, bool broken)
{
	pthread_mutex_lock(&con->tx_lock);
	pthread_mutex_lock(&con->lock);
	con->active = active;
	con->broken = broken;
	/* Whatever the host holds back is worth another try with the next driver. */
	con->rx_wanted = true;
	pthread_mutex_unlock(&con->lock);
	pthread_mutex_unlock(&con->tx_lock);
}

static int con_activate(struct virtio_dev *vdev)
{
	struct virtio_console *con = vdev->opaque;

	set_active(con, true, false);
	/* Buffers posted before DRIVER_OK came with a notification the transport dropped. */
	rx_posted(con);
	return 0;
}

static void con_reset(struct virtio_dev *vdev)
{
	set_active(vdev->opaque, false, false);
}

static void con_config_read(struct virtio_dev *vdev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_console *con = vdev->opaque;
	uint8_t cfg[VIRTIO_CONSOLE_CONFIG_SIZE] = {0};
	uint16_t v16;
	uint32_t v32 = htole32(1);

	pthread_mutex_lock(&con->lock);
	v16 = htole16(con->cols);
	memcpy(cfg + CFG_COLS, &v16, 2);
	v16 = htole16(con->rows);
	memcpy(cfg + CFG_ROWS, &v16, 2);
	pthread_mutex_unlock(&con->lock);
	memcpy(cfg + CFG_MAX_PORTS, &v32, 4);
	if (offset <= sizeof(cfg) && len <= sizeof(cfg) - offset)
		memcpy(data, cfg + offset, len);
}

static void con_config_write(struct virtio_dev *vdev, uint32_t offset, const uint8_t *data,
			     uint32_t len)
{
	struct virtio_console *con = vdev->opaque;

	/* Emergency write: the low byte of emerg_wr is one character of output. */
	if (offset != CFG_EMERG_WR || !len)
		return;
	pthread_mutex_lock(&con->tx_lock);
	con->ops->output(con->opaque, data, 1);
	pthread_mutex_unlock(&con->tx_lock);
}

static const struct virtio_device_ops con_ops = {
    .queue_notify = con_queue_notify,
    .activate = con_activate,
    .reset = con_reset,
    .config_read = con_config_read,
    .config_write = con_config_write,
};

/* ---- life cycle ---- */

static void free_console(struct virtio_console *con)
{
	pthread_mutex_destroy(&con->tx_lock);
	pthread_mutex_destroy(&con->lock);
	free(con->tx_chain);
	free(con->rx_chain);
	free(con);
}

int virtio_console_create(struct virtio_console **out, const struct virtio_env *env,
			  const struct virtio_console_ops *ops, void *opaque)
{
	static const struct virtio_dev_info info = {
	    .name = "virtio-console",
	    .device_id = VIRTIO_ID_CONSOLE,
	    .features = FEATURES,
	    .nr_queues = 2,
	    .queue_size = VIRTIO_CONSOLE_QUEUE_SIZE,
	    .config_size = VIRTIO_CONSOLE_CONFIG_SIZE,
	};
	struct virtio_console *con;
	int ret;

	if (!ops || !ops->output || !env->mem)
		return -EINVAL;
	con = calloc(1, sizeof(*con));
	if (!con)
		return -ENOMEM;
	con->tx_chain = malloc(sizeof(*con->tx_chain));
	con->rx_chain = malloc(sizeof(*con->rx_chain));
	pthread_mutex_init(&con->tx_lock, NULL);
	pthread_mutex_init(&con->lock, NULL);
	if (!con->tx_chain || !con->rx_chain) {
		free_console(con);
		return -ENOMEM;
	}
	con->mem = env->mem;
	con->ops = ops;
	con->opaque = opaque;
	con->cols = DEFAULT_COLS;
	con->rows = DEFAULT_ROWS;
	con->rx_wanted = true;
	ret = virtio_pci_init(&con->vdev, &info, &con_ops, con, env);
	if (ret) {
		free_console(con);
		return ret;
	}
	ret = virtio_pci_register(&con->vdev, -1);
	if (ret) {
		virtio_console_destroy(con);
		return ret;
	}
	*out = con;
	return 0;
}

void virtio_console_destroy(struct virtio_console *con)
{
	if (!con)
		return;
	virtio_pci_destroy(&con->vdev);
	free_console(con);
}

struct virtio_dev *virtio_console_vdev(struct virtio_console *con)
{
	return &con->vdev;
}

void virtio_console_set_size(struct virtio_console *con, uint16_t cols, uint16_t rows)
{
	bool changed;

	pthread_mutex_lock(&con->lock);
	changed = con->cols != cols || con->rows != rows;
	con->cols = cols;
	con->rows = rows;
	pthread_mutex_unlock(&con->lock);
	if (changed)
		virtio_config_interrupt(&con->vdev);
}

/* ---- state ---- */

int virtio_console_save(struct virtio_console *con, void *fdt)
{
	uint32_t cols, rows, active, broken;
	int ret;

	pthread_mutex_lock(&con->lock);
	cols = con->cols;
	rows = con->rows;
	active = con->active;
	broken = con->broken;
	pthread_mutex_unlock(&con->lock);
	if ((ret = virtio_pci_save(&con->vdev, fdt)) ||
	    (ret = state_put_u32(fdt, "console-cols", cols)) ||
	    (ret = state_put_u32(fdt, "console-rows", rows)) ||
	    (ret = state_put_u32(fdt, "console-active", active)) ||
	    (ret = state_put_u32(fdt, "console-broken", broken)))
		return ret;
	return 0;
}

int virtio_console_load(struct virtio_console *con, const void *fdt, int node)
{
	uint32_t cols, rows, active, broken;
	int ret;

	if (state_get_u32(fdt, node, "console-cols", &cols) ||
	    state_get_u32(fdt, node, "console-rows", &rows) ||
	    state_get_u32(fdt, node, "console-active", &active) ||
	    state_get_u32(fdt, node, "console-broken", &broken) || cols > 0xffff || rows > 0xffff ||
	    active > 1 || broken > 1)
		return -EINVAL;
	ret = virtio_pci_load(&con->vdev, fdt, node);
	if (ret)
		return ret;
	set_active(con, active, broken);
	pthread_mutex_lock(&con->lock);
	con->cols = (uint16_t)cols;
	con->rows = (uint16_t)rows;
	pthread_mutex_unlock(&con->lock);
	return 0;
}
