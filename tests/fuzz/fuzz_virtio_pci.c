// SPDX-License-Identifier: MIT
/*
 * Fuzz the virtio-pci transport: the input is a hostile driver's program of
 * register reads and writes in any order and width (common, notify, ISR,
 * device config, MSI-X table and PBA, PCI config space including the BARs,
 * the MSI-X control word and the PCI-configuration window), interleaved
 * with pokes into guest RAM (rings, descriptors) and device completions.
 * A toy device model pops and completes every chain it is notified of.
 * Nothing may crash or touch memory outside guest RAM, and whatever state
 * the driver reached must save and load into a fresh device.
 */
#include <errno.h>
#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "guest_mem.h"
#include "layout.h"
#include "log.h"
#include "pci.h"
#include "state.h"
#include "virtio.h"

#define MEM	   (1ULL << 20)
#define RING_AREA  0x10000 /* guest RAM the input can poke */
#define OP_SIZE	   12
#define TREE_SIZE  65536
#define VIRTIO_BAR 4
#define MSIX_BAR   1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct machine {
	struct bus pio, mmio;
	struct pci_host host;
	struct virtio_dev vdev;
	struct virtq_chain chain;
	uint8_t cfg[12];
	unsigned msis;
};

static struct guest_mem mem;

static void toy_notify(struct virtio_dev *vdev, unsigned q)
{
	struct machine *m = vdev->opaque;
	struct virtq *vq = virtio_queue(vdev, q);
	uint8_t buf[32];
	int i, ret;

	for (i = 0; i < 16; i++) {
		ret = virtq_pop(vq, vdev->env.mem, &m->chain);
		if (ret == 0)
			break;
		if (ret < 0) {
			virtio_set_needs_reset(vdev);
			return;
		}
		virtq_chain_read(&m->chain, 0, buf, sizeof(buf));
		uint32_t n =
		    (uint32_t)virtq_chain_write(&m->chain, vdev->env.mem, 0, buf, sizeof(buf));
		if (virtq_push(vq, vdev->env.mem, m->chain.head, n)) {
			virtio_set_needs_reset(vdev);
			return;
		}
	}
	virtq_update_avail_event(vq, vdev->env.mem);
	virtio_queue_interrupt(vdev, q);
}

static void toy_cfg_read(struct virtio_dev *vdev, uint32_t off, uint8_t *d, uint32_t len)
{
	struct machine *m = vdev->opaque;

	if (off + len > sizeof(m->cfg))
		abort();
	memcpy(d, m->cfg + off, len);
}

static void toy_cfg_write(struct virtio_dev *vdev, uint32_t off, const uint8_t *d, uint32_t len)
{
	struct machine *m = vdev->opaque;

	if (off + len > sizeof(m->cfg))
		abort();
	memcpy(m->cfg + off, d, len);
	virtio_config_interrupt(vdev);
}

static int toy_activate(struct virtio_dev *vdev)
{
	return vdev->t.driver_features & 2 ? -EIO : 0; /* sometimes fail */
}

static void toy_reset(struct virtio_dev *vdev)
{
	(void)vdev;
}

static const struct virtio_device_ops toy_ops = {
    .queue_notify = toy_notify,
    .activate = toy_activate,
    .reset = toy_reset,
    .config_read = toy_cfg_read,
    .config_write = toy_cfg_write,
};

static void count_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct machine *m = opaque;

	(void)addr;
	(void)data;
	m->msis++;
}

static int machine_init(struct machine *m)
{
	static const struct virtio_dev_info info = {
	    .name = "virtio-fuzz",
	    .device_id = VIRTIO_ID_BLOCK,
	    .features = 0x3f,
	    .nr_queues = 3,
	    .queue_size = 64,
	    .config_size = 12,
	};
	struct virtio_env env = {
	    .mem = &mem, .vm_fd = -1, .signal_msi = count_msi, .signal_opaque = m};

	memset(m, 0, sizeof(*m));
	env.pci = &m->host;
	if (bus_init(&m->pio, "pio") || bus_init(&m->mmio, "mmio") ||
	    pci_host_init(&m->host, &m->pio, &m->mmio))
		abort();
	if (virtio_pci_init(&m->vdev, &info, &toy_ops, m, &env) || virtio_pci_register(&m->vdev, 3))
		abort();
	return 0;
}

static void machine_fini(struct machine *m)
{
	virtio_pci_destroy(&m->vdev);
	pci_host_destroy(&m->host);
	bus_destroy(&m->pio);
	bus_destroy(&m->mmio);
}

static void pio(struct machine *m, uint16_t port, uint8_t *d, uint32_t len, bool w)
{
	bus_access(&m->pio, port, d, len, w);
}

static uint32_t cfg_read32(struct machine *m, unsigned off)
{
	uint8_t a[4], d[4];

	pci_set32(a, 0, 0x80000000u | 3u << 11 | (off & 0xfc));
	pio(m, PORT_PCI_CONFIG_ADDR, a, 4, true);
	pio(m, PORT_PCI_CONFIG_DATA, d, 4, false);
	return pci_get32(d, 0);
}

static uint64_t bar_addr(struct machine *m, int bar)
{
	uint32_t lo = cfg_read32(m, PCI_BASE_ADDRESS_0 + 4 * bar);
	uint64_t a = lo & ~0xfu;

	if ((lo & 6) == 4)
		a |= (uint64_t)cfg_read32(m, PCI_BASE_ADDRESS_0 + 4 * (bar + 1)) << 32;
	return a;
}

static void run_op(struct machine *m, const uint8_t *op)
{
	static const uint32_t widths[] = {1, 2, 4, 8};
	uint16_t off = (uint16_t)(op[1] | op[2] << 8);
	uint32_t len = widths[op[3] & 3];
	bool w = op[3] & 4;
	uint8_t d[8];
	uint8_t a[4];

	memcpy(d, op + 4, 8);
	switch (op[0] % 9) {
	case 0: /* common configuration, mostly real fields */
		bus_access(&m->mmio, bar_addr(m, VIRTIO_BAR) + (off % 0x40), d, len, w);
		break;
	case 1: /* anywhere in the virtio BAR */
		bus_access(&m->mmio, bar_addr(m, VIRTIO_BAR) + (off % 0x4000), d, len, w);
		break;
	case 2: /* notify */
		bus_access(&m->mmio, bar_addr(m, VIRTIO_BAR) + 0x3000 + (off % 16), d, len, true);
		break;
	case 3: /* MSI-X table and PBA */
		bus_access(&m->mmio, bar_addr(m, MSIX_BAR) + (off % 0x1000), d, len, w);
		break;
	case 4: /* PCI configuration space, the way mechanism 1 splits it */
		pci_set32(a, 0, 0x80000000u | 3u << 11 | (off & 0xfc));
		pio(m, PORT_PCI_CONFIG_ADDR, a, 4, true);
		if (len == 8)
			len = 4;
		pio(m, (uint16_t)(PORT_PCI_CONFIG_DATA + (off & (4 - len))), d, len, w);
		break;
	case 5: /* guest RAM: rings and descriptors */
		guest_mem_write(&mem, (uint64_t)(off % (RING_AREA / 8)) * 8, d, 8);
		break;
	case 6: /* a device completing on its own (worker threads do this) */
		virtio_queue_interrupt(&m->vdev, op[1] % 4);
		break;
	case 7:
		if (op[1] & 1)
			virtio_config_interrupt(&m->vdev);
		else if (op[1] == 2)
			virtio_set_needs_reset(&m->vdev);
		break;
	default: /* the ISR, read-to-clear */
		bus_access(&m->mmio, bar_addr(m, VIRTIO_BAR) + 0x1000, d, 1, false);
		break;
	}
}

/* Whatever state the driver reached, a fresh device must take it back. */
static void save_load(struct machine *m)
{
	static uint8_t tree[TREE_SIZE];
	struct machine *n = malloc(sizeof(*n));
	int node;

	if (!n || state_tree_begin(tree, sizeof(tree)) || fdt_begin_node(tree, "dev") ||
	    virtio_pci_save(&m->vdev, tree) || fdt_end_node(tree) || state_tree_end(tree))
		abort();
	machine_init(n);
	node = state_find_node(tree, 0, "dev");
	if (node < 0 || virtio_pci_load(&n->vdev, tree, node))
		abort();
	if (memcmp(&n->vdev.t.vqs, &m->vdev.t.vqs, sizeof(m->vdev.t.vqs)) ||
	    n->vdev.t.status != m->vdev.t.status ||
	    n->vdev.t.driver_features != m->vdev.t.driver_features)
		abort();
	machine_fini(n);
	free(n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct machine *m;

	if (!m) {
		log_verbosity = -1; /* a hostile driver makes the transport warn a lot */
		if (guest_mem_init(&mem, MEM))
			abort();
		m = malloc(sizeof(*m));
		if (!m)
			abort();
	}
	memset(mem.host_base, 0, RING_AREA);
	machine_init(m);
	for (size_t i = 0; i + OP_SIZE <= size && i < 512 * OP_SIZE; i += OP_SIZE)
		run_op(m, data + i);
	save_load(m);
	machine_fini(m);
	return 0;
}
