// SPDX-License-Identifier: MIT
/* PCI host bridge on configuration mechanism 1, config spaces, BAR placement and mapping. */
#include "pci.h"
#include "layout.h"
#include "log.h"
#include "state.h"

#include <errno.h>
#include <libfdt.h>
#include <string.h>

#define CONFIG_ENABLE	 0x80000000u
#define CONFIG_ADDR_MASK 0x80fffffcu /* enable, bus, device, function, dword register */
#define IO_SPACE_END	 0x10000ULL  /* x86 port space */
#define MEM_BAR_ALIGN	 4096ULL     /* one device per page, so guests can map BARs per page */
#define MEM_BAR_MAX	 (1ULL << 30)
#define IO_BAR_MAX	 256
#define CAP_CHAIN_MAX	 48 /* (256 - 64) / 4: more links than that is a loop */

#define BAR_REG(i) (PCI_BASE_ADDRESS_0 + 4 * (i))

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

void pci_device_init(struct pci_device *dev, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code)
{
	memset(dev, 0, sizeof(*dev));
	dev->name = name;
	dev->slot = -1;
	dev->cap_next = PCI_CAP_FIRST;
	pci_set16(dev->config, PCI_VENDOR_ID, vendor);
	pci_set16(dev->config, PCI_DEVICE_ID, device);
	pci_set32(dev->config, PCI_CLASS_REVISION, class_code << 8); /* revision 0 */
	pci_set8(dev->config, PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL);

	pci_set16(dev->wmask, PCI_COMMAND,
		  PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
		      PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	pci_set8(dev->wmask, PCI_CACHE_LINE_SIZE, 0xff);
	pci_set8(dev->wmask, PCI_LATENCY_TIMER, 0xff);
	pci_set8(dev->wmask, PCI_INTERRUPT_LINE, 0xff);
	pci_set16(dev->w1cmask, PCI_STATUS,
		  PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT |
		      PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_SYSTEM_ERROR |
		      PCI_STATUS_DETECTED_PARITY);
}

int pci_set_bar(struct pci_device *dev, int bar, enum pci_bar_type type, uint64_t size,
		bool prefetchable, bus_handler_fn handler, void *opaque)
{
	uint32_t flags;
	uint64_t mask = ~(size - 1);

	if (bar < 0 || bar >= PCI_NR_BARS || !handler || !is_pow2(size) || dev->host ||
	    dev->bars[bar].type != PCI_BAR_UNUSED)
		return -EINVAL;
	switch (type) {
	case PCI_BAR_IO:
		if (size < 4 || size > IO_BAR_MAX || prefetchable)
			return -EINVAL;
		flags = PCI_BASE_ADDRESS_SPACE_IO;
		pci_set32(dev->wmask, BAR_REG(bar), (uint32_t)mask & PCI_BASE_ADDRESS_IO_MASK);
		break;
	case PCI_BAR_MEM32:
		if (size < 16 || size > MEM_BAR_MAX)
			return -EINVAL;
		flags = PCI_BASE_ADDRESS_MEM_TYPE_32;
		pci_set32(dev->wmask, BAR_REG(bar), (uint32_t)mask & PCI_BASE_ADDRESS_MEM_MASK);
		break;
	case PCI_BAR_MEM64:
		if (size < 16 || size > MEM_BAR_MAX || bar == PCI_NR_BARS - 1 ||
		    dev->bars[bar + 1].type != PCI_BAR_UNUSED)
			return -EINVAL;
		flags = PCI_BASE_ADDRESS_MEM_TYPE_64;
		pci_set32(dev->wmask, BAR_REG(bar), (uint32_t)mask & PCI_BASE_ADDRESS_MEM_MASK);
		pci_set32(dev->wmask, BAR_REG(bar + 1), (uint32_t)(mask >> 32));
		dev->bars[bar + 1].type = PCI_BAR_MEM64_HI;
		break;
	default:
		return -EINVAL;
	}
	if (prefetchable)
		flags |= PCI_BASE_ADDRESS_MEM_PREFETCH;
	pci_set32(dev->config, BAR_REG(bar), flags);
	dev->bars[bar] = (struct pci_bar){.type = type,
					  .size = size,
					  .prefetchable = prefetchable,
					  .handler = handler,
					  .opaque = opaque};
	return 0;
}

int pci_add_capability(struct pci_device *dev, uint8_t cap_id, uint8_t len)
{
	unsigned off = align_up(dev->cap_next < PCI_CAP_FIRST ? PCI_CAP_FIRST : dev->cap_next, 4);
	unsigned link = PCI_CAPABILITY_LIST, next;
	int n = 0;

	if (len < 2 || dev->host)
		return -EINVAL;
	if (off + len > PCI_CONFIG_SIZE)
		return -ENOSPC;
	/* Append, so the guest walks capabilities in the order they were added. */
	while ((next = dev->config[link]) != 0) {
		if (next < PCI_CAP_FIRST || next > PCI_CONFIG_SIZE - 2 || ++n > CAP_CHAIN_MAX)
			return -EINVAL; /* the owner wrote a broken chain */
		link = next + PCI_CAP_LIST_NEXT;
	}
	dev->config[link] = (uint8_t)off;
	dev->config[off + PCI_CAP_LIST_ID] = cap_id;
	dev->config[off + PCI_CAP_LIST_NEXT] = 0;
	pci_set16(dev->config, PCI_STATUS,
		  pci_get16(dev->config, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	dev->cap_next = (uint16_t)(off + len);
	return (int)off;
}

/* Where BAR i should be decoded now, if anywhere. */
static bool bar_target(const struct pci_device *dev, int i, uint64_t *addr)
{
	const struct pci_bar *b = &dev->bars[i];
	uint16_t cmd = pci_get16(dev->config, PCI_COMMAND);
	uint32_t lo = pci_get32(dev->config, BAR_REG(i));
	uint64_t a;

	switch (b->type) {
	case PCI_BAR_IO:
		if (!(cmd & PCI_COMMAND_IO))
			return false;
		a = lo & PCI_BASE_ADDRESS_IO_MASK;
		if (a + b->size > IO_SPACE_END)
			return false;
		break;
	case PCI_BAR_MEM32:
		if (!(cmd & PCI_COMMAND_MEMORY))
			return false;
		a = lo & PCI_BASE_ADDRESS_MEM_MASK;
		break;
	case PCI_BAR_MEM64:
		if (!(cmd & PCI_COMMAND_MEMORY))
			return false;
		a = (uint64_t)pci_get32(dev->config, BAR_REG(i + 1)) << 32 |
		    (lo & PCI_BASE_ADDRESS_MEM_MASK);
		if (a + (b->size - 1) < a)
			return false;
		break;
	default:
		return false;
	}
	/* Address 0 is "unassigned" to every OS; never decode it. */
	if (!a)
		return false;
	*addr = a;
	return true;
}

static void update_bar(struct pci_host *h, struct pci_device *dev, int i)
{
	struct pci_bar *b = &dev->bars[i];
	struct bus *bus = b->type == PCI_BAR_IO ? h->pio : h->mmio;
	uint64_t addr = 0;
	bool want = bar_target(dev, i, &addr);
	int ret;

	if (b->mapped && (!want || addr != b->addr)) {
		bus_unregister(bus, b->addr);
		b->mapped = false;
		if (dev->bar_update)
			dev->bar_update(dev, i, b->addr, false);
	}
	if (want && !b->mapped) {
		ret = bus_register(bus, addr, b->size, b->handler, b->opaque, dev->name);
		if (ret) {
			/* A guest may park a BAR on top of another; it just does not decode there.
			 */
			pr_debug("pci %02x.0 %s: BAR%d at %#llx not mapped: %s", dev->slot,
				 dev->name, i, (unsigned long long)addr, strerror(-ret));
			return;
		}
		b->mapped = true;
		b->addr = addr;
		if (dev->bar_update)
			dev->bar_update(dev, i, addr, true);
	}
}

static void update_bars(struct pci_host *h, struct pci_device *dev)
{
	for (int i = 0; i < PCI_NR_BARS; i++) {
		enum pci_bar_type t = dev->bars[i].type;

		if (t == PCI_BAR_IO || t == PCI_BAR_MEM32 || t == PCI_BAR_MEM64)
			update_bar(h, dev, i);
	}
}

static uint32_t config_get(const uint8_t *cfg, unsigned off, unsigned len)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < len; i++)
		v |= (uint32_t)cfg[off + i] << (8 * i);
	return v;
}

/* A guest write of len bytes (within one dword) at off. */
static void config_write(struct pci_host *h, struct pci_device *dev, unsigned off,
			 const uint8_t *data, unsigned len)
{
	uint32_t old = config_get(dev->config, off, len);

	for (unsigned i = 0; i < len; i++) {
		unsigned o = off + i;
		uint8_t c = dev->config[o];

		c = (uint8_t)((c & ~dev->wmask[o]) | (data[i] & dev->wmask[o]));
		c &= (uint8_t) ~(data[i] & dev->w1cmask[o]);
		dev->config[o] = c;
	}
	/* Decoding follows the command register and the BARs. */
	if ((off < PCI_COMMAND + 2 && off + len > PCI_COMMAND) ||
	    (off < PCI_BASE_ADDRESS_5 + 4 && off + len > PCI_BASE_ADDRESS_0))
		update_bars(h, dev);
	if (dev->config_write)
		dev->config_write(dev, off, len, old);
}

static struct pci_device *addressed(struct pci_host *h)
{
	uint32_t a = h->config_address;
	unsigned bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;

	if (!(a & CONFIG_ENABLE) || bus || fn)
		return NULL;
	return h->slots[slot];
}

static int config_addr_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_host *h = opaque;

	/* Only dword accesses reach the address latch; narrower ones belong to other PC ports. */
	if (offset != 0 || len != 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return 0;
	}
	pthread_mutex_lock(&h->lock);
	if (is_write)
		h->config_address = config_get(data, 0, 4) & CONFIG_ADDR_MASK;
	else
		pci_set32(data, 0, h->config_address);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static int config_data_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_host *h = opaque;
	struct pci_device *dev;
	unsigned off;

	pthread_mutex_lock(&h->lock);
	dev = addressed(h);
	off = (h->config_address & 0xfc) + (unsigned)offset;
	if (!dev) {
		if (!is_write)
			memset(data, 0xff, len); /* no device: master abort */
	} else if (is_write) {
		config_write(h, dev, off, data, len);
	} else {
		if (dev->config_read)
			dev->config_read(dev, off, len);
		memcpy(data, &dev->config[off], len);
	}
	pthread_mutex_unlock(&h->lock);
	return 0;
}

int pci_host_init(struct pci_host *h, struct bus *pio, struct bus *mmio)
{
	int ret;

	memset(h, 0, sizeof(*h));
	h->pio = pio;
	h->mmio = mmio;
	h->mmio_next = LAYOUT_PCI_MMIO_BASE;
	h->io_next = PCI_IO_WINDOW_BASE;
	ret = pthread_mutex_init(&h->lock, NULL);
	if (ret)
		return -ret;

	pci_device_init(&h->bridge, "pci-host", PCI_HOST_VENDOR_ID, PCI_HOST_DEVICE_ID,
			PCI_HOST_CLASS);
	h->bridge.host = h;
	h->bridge.slot = 0;
	h->slots[0] = &h->bridge;

	ret = bus_register(pio, PORT_PCI_CONFIG_ADDR, 4, config_addr_io, h, "pci-config-addr");
	if (!ret) {
		ret = bus_register(pio, PORT_PCI_CONFIG_DATA, 4, config_data_io, h,
				   "pci-config-data");
		if (ret)
			bus_unregister(pio, PORT_PCI_CONFIG_ADDR);
	}
	if (ret)
		pthread_mutex_destroy(&h->lock);
	return ret;
}

void pci_host_destroy(struct pci_host *h)
{
	pthread_mutex_destroy(&h->lock);
}

/* Firmware's job: give each BAR a naturally aligned address in its window. */
static int assign_bars(struct pci_host *h, struct pci_device *dev, uint16_t *decode)
{
	uint64_t mmio = h->mmio_next, io = h->io_next, addr[PCI_NR_BARS] = {0};
	uint64_t mmio_end = LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE;
	uint64_t io_end = PCI_IO_WINDOW_BASE + PCI_IO_WINDOW_SIZE;

	*decode = 0;
	for (int i = 0; i < PCI_NR_BARS; i++) {
		const struct pci_bar *b = &dev->bars[i];

		if (b->type == PCI_BAR_IO) {
			addr[i] = align_up(io, b->size);
			if (addr[i] + b->size > io_end)
				return -ENOSPC;
			io = addr[i] + b->size;
			*decode |= PCI_COMMAND_IO;
		} else if (b->type == PCI_BAR_MEM32 || b->type == PCI_BAR_MEM64) {
			addr[i] = align_up(mmio, b->size > MEM_BAR_ALIGN ? b->size : MEM_BAR_ALIGN);
			if (addr[i] + b->size > mmio_end)
				return -ENOSPC;
			mmio = addr[i] + b->size;
			*decode |= PCI_COMMAND_MEMORY;
		}
	}
	/* Nothing is written until every BAR fitted. */
	for (int i = 0; i < PCI_NR_BARS; i++) {
		if (!addr[i])
			continue;
		pci_set32(
		    dev->config, BAR_REG(i),
		    (pci_get32(dev->config, BAR_REG(i)) & ~pci_get32(dev->wmask, BAR_REG(i))) |
			(uint32_t)addr[i]);
		if (dev->bars[i].type == PCI_BAR_MEM64)
			pci_set32(dev->config, BAR_REG(i + 1), (uint32_t)(addr[i] >> 32));
	}
	h->mmio_next = mmio;
	h->io_next = io;
	return 0;
}

int pci_register_device(struct pci_host *h, struct pci_device *dev, int slot)
{
	uint16_t vendor = pci_get16(dev->config, PCI_VENDOR_ID), decode;
	int ret;

	if (slot < -1 || slot >= PCI_NR_SLOTS || vendor == 0 || vendor == 0xffff || dev->host)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	if (slot < 0) {
		for (slot = 1; slot < PCI_NR_SLOTS && h->slots[slot]; slot++)
			;
		if (slot == PCI_NR_SLOTS) {
			ret = -ENOSPC;
			goto out;
		}
	} else if (h->slots[slot]) {
		ret = -EBUSY;
		goto out;
	}
	ret = assign_bars(h, dev, &decode);
	if (ret)
		goto out;
	pci_set16(dev->config, PCI_COMMAND, pci_get16(dev->config, PCI_COMMAND) | decode);
	dev->host = h;
	dev->slot = slot;
	h->slots[slot] = dev;
	update_bars(h, dev);
	pr_debug("pci %02x.0: %s %04x:%04x", slot, dev->name, vendor,
		 pci_get16(dev->config, PCI_DEVICE_ID));
out:
	pthread_mutex_unlock(&h->lock);
	return ret;
}

void pci_device_get_config(struct pci_device *dev, uint8_t config[PCI_CONFIG_SIZE])
{
	if (dev->host)
		pthread_mutex_lock(&dev->host->lock);
	memcpy(config, dev->config, PCI_CONFIG_SIZE);
	if (dev->host)
		pthread_mutex_unlock(&dev->host->lock);
}

void pci_device_set_config(struct pci_device *dev, const uint8_t config[PCI_CONFIG_SIZE])
{
	struct pci_host *h = dev->host;
	uint8_t old[PCI_CONFIG_SIZE];

	if (!h) {
		memcpy(dev->config, config, PCI_CONFIG_SIZE);
		return;
	}
	pthread_mutex_lock(&h->lock);
	memcpy(old, dev->config, PCI_CONFIG_SIZE);
	memcpy(dev->config, config, PCI_CONFIG_SIZE);
	update_bars(h, dev);
	/* Let the device re-derive what it caches, through its usual path. */
	if (dev->config_write)
		for (unsigned off = 0; off < PCI_CONFIG_SIZE; off += 4)
			dev->config_write(dev, off, 4, pci_get32(old, off));
	pthread_mutex_unlock(&h->lock);
}

void pci_host_get_state(struct pci_host *h, struct pci_host_state *st)
{
	pthread_mutex_lock(&h->lock);
	st->config_address = h->config_address;
	pthread_mutex_unlock(&h->lock);
}

void pci_host_set_state(struct pci_host *h, const struct pci_host_state *st)
{
	pthread_mutex_lock(&h->lock);
	h->config_address = st->config_address & CONFIG_ADDR_MASK;
	pthread_mutex_unlock(&h->lock);
}

/* What sits in each slot, as vendor | device << 16 (all-ones when empty); host lock held. */
static void slot_ids(const struct pci_host *h, fdt32_t ids[PCI_NR_SLOTS])
{
	for (int i = 0; i < PCI_NR_SLOTS; i++) {
		const struct pci_device *d = h->slots[i];

		ids[i] = cpu_to_fdt32(d ? pci_get32(d->config, PCI_VENDOR_ID) : 0xffffffffu);
	}
}

int pci_host_save(struct pci_host *h, void *fdt)
{
	uint8_t bridge[PCI_CONFIG_SIZE];
	fdt32_t ids[PCI_NR_SLOTS];
	uint32_t addr;
	int ret;

	pthread_mutex_lock(&h->lock);
	addr = h->config_address;
	memcpy(bridge, h->bridge.config, PCI_CONFIG_SIZE);
	slot_ids(h, ids);
	pthread_mutex_unlock(&h->lock);

	if ((ret = state_put_u32(fdt, "config-address", addr)) ||
	    (ret = state_put_bytes(fdt, "bridge-config", bridge, sizeof(bridge))) ||
	    (ret = state_put_bytes(fdt, "slot-ids", ids, sizeof(ids))))
		return ret;
	return 0;
}

int pci_host_load(struct pci_host *h, const void *fdt, int node)
{
	uint8_t bridge[PCI_CONFIG_SIZE];
	fdt32_t ids[PCI_NR_SLOTS], here[PCI_NR_SLOTS];
	const struct pci_device *b = &h->bridge;
	uint32_t addr;
	int ret = 0;

	if (state_get_u32(fdt, node, "config-address", &addr) ||
	    state_get_bytes(fdt, node, "bridge-config", bridge, sizeof(bridge)) ||
	    state_get_bytes(fdt, node, "slot-ids", ids, sizeof(ids)) || addr & ~CONFIG_ADDR_MASK)
		return -EINVAL;

	pthread_mutex_lock(&h->lock);
	slot_ids(h, here);
	if (memcmp(ids, here, sizeof(ids)))
		ret = -EINVAL;
	/* Read-only fields (IDs, class, header type) must be this bridge's. */
	for (unsigned i = 0; i < PCI_CONFIG_SIZE && !ret; i++)
		if ((bridge[i] ^ b->config[i]) & ~(b->wmask[i] | b->w1cmask[i]))
			ret = -EINVAL;
	if (!ret) {
		h->config_address = addr;
		memcpy(h->bridge.config, bridge, PCI_CONFIG_SIZE);
		update_bars(h, &h->bridge); /* no BARs today; should it gain one, it follows */
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}
