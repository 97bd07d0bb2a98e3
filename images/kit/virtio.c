// SPDX-License-Identifier: MIT
/*
 * A polling virtio 1.x driver over modern PCI, in ring 3: capabilities,
 * initialisation, split queues in RAM above the image, submission and
 * completion.  No interrupts: MSI-X stays off and every vector is
 * NO_VECTOR; the driver asks for no interrupts in the avail ring too.
 */
#include "kit.h"

#define VIRTIO_VENDOR	0x1af4
#define VIRTIO_PCI_BASE 0x1040
#define PCI_COMMAND	0x04
#define CMD_MEMORY	0x2
#define CMD_MASTER	0x4
#define NO_VECTOR	0xffff
#define AVAIL_F_NO_INTR 1
#define DEFAULT_TIMEOUT 2000

/* Capability types and fields (virtio 1.2, 4.1.4). */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR	   3
#define CAP_DEVICE 4
#define CAP_TYPE   3
#define CAP_BAR	   4
#define CAP_OFF	   8
#define CAP_LEN	   12
#define CAP_MULT   16

/* Common configuration registers. */
#define C_DFSELECT 0x00
#define C_DF	   0x04
#define C_GFSELECT 0x08
#define C_GF	   0x0c
#define C_MSIX	   0x10
#define C_NUMQ	   0x12
#define C_STATUS   0x14
#define C_QSELECT  0x16
#define C_QSIZE	   0x18
#define C_QMSIX	   0x1a
#define C_QENABLE  0x1c
#define C_QNOFF	   0x1e
#define C_QDESC	   0x20
#define C_QAVAIL   0x28
#define C_QUSED	   0x30

static const char *last_error = "";

const char *virtio_error(void)
{
	return last_error;
}

static int fail(const char *why)
{
	last_error = why;
	return -1;
}

static void mb(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static uint8_t rd8(volatile uint8_t *base, unsigned off)
{
	return *(volatile uint8_t *)(base + off);
}

static uint16_t rd16(volatile uint8_t *base, unsigned off)
{
	return *(volatile uint16_t *)(base + off);
}

static uint32_t rd32(volatile uint8_t *base, unsigned off)
{
	return *(volatile uint32_t *)(base + off);
}

static void wr8(volatile uint8_t *base, unsigned off, uint8_t v)
{
	*(volatile uint8_t *)(base + off) = v;
}

static void wr16(volatile uint8_t *base, unsigned off, uint16_t v)
{
	*(volatile uint16_t *)(base + off) = v;
}

static void wr32(volatile uint8_t *base, unsigned off, uint32_t v)
{
	*(volatile uint32_t *)(base + off) = v;
}

/* 64-bit registers as two 32-bit halves, which every device must accept. */
static void wr64(volatile uint8_t *base, unsigned off, uint64_t v)
{
	wr32(base, off, (uint32_t)v);
	wr32(base, off + 4, (uint32_t)(v >> 32));
}

static uint64_t alloc_next;

void *virtio_alloc(size_t size, size_t align)
{
	uint64_t base;

	if (!alloc_next)
		alloc_next = kit_image_end();
	if (!align || (align & (align - 1)))
		return NULL;
	base = (alloc_next + align - 1) & ~(uint64_t)(align - 1);
	if (!size || !kit_ram_usable(base, size))
		return NULL;
	alloc_next = base + size;
	memset((void *)(uintptr_t)base, 0, size);
	return (void *)(uintptr_t)base;
}

/* The structure of one type, checked to lie inside its memory BAR; NULL if absent. */
static volatile uint8_t *map_cap(unsigned slot, uint8_t type, uint32_t min_len, uint32_t *len,
				 unsigned *cap_at)
{
	for (unsigned pos = pci_next_cap(slot, PCI_CAP_ID_VENDOR, 0); pos;
	     pos = pci_next_cap(slot, PCI_CAP_ID_VENDOR, pos)) {
		uint8_t bar = pci_read8(slot, pos + CAP_BAR);
		uint32_t off = pci_read32(slot, pos + CAP_OFF);
		uint32_t l = pci_read32(slot, pos + CAP_LEN);
		uint64_t addr;

		if (pci_read8(slot, pos + CAP_TYPE) != type || bar > 5 || l < min_len)
			continue;
		addr = pci_bar_addr(slot, bar);
		if (!addr || addr + off + l > kit_mapped_limit())
			continue;
		if (len)
			*len = l;
		if (cap_at)
			*cap_at = pos;
		return (volatile uint8_t *)(uintptr_t)(addr + off);
	}
	return NULL;
}

int virtio_find_nth(uint16_t device_id, unsigned n, struct virtio_device *dev)
{
	unsigned notify_cap = 0;
	uint32_t len;
	int slot;

	memset(dev, 0, sizeof(*dev));
	slot = pci_find(VIRTIO_VENDOR, (uint16_t)(VIRTIO_PCI_BASE + device_id), n);
	if (slot < 0)
		return fail("no such device on PCI bus 0");
	dev->slot = (unsigned)slot;
	dev->device_id = device_id;
	/* Firmware (the VMM) assigned the BARs; make sure decoding and DMA are on. */
	pci_write16(dev->slot, PCI_COMMAND,
		    pci_read16(dev->slot, PCI_COMMAND) | CMD_MEMORY | CMD_MASTER);
	dev->common = map_cap(dev->slot, CAP_COMMON, 0x38, NULL, NULL);
	dev->notify = map_cap(dev->slot, CAP_NOTIFY, 2, &len, &notify_cap);
	dev->isr = map_cap(dev->slot, CAP_ISR, 1, NULL, NULL);
	dev->device = map_cap(dev->slot, CAP_DEVICE, 0, &dev->device_len, NULL);
	if (!dev->common || !dev->notify || !dev->isr)
		return fail("a virtio structure is missing");
	dev->notify_mult = pci_read32(dev->slot, notify_cap + CAP_MULT);
	return 0;
}

int virtio_find(uint16_t device_id, struct virtio_device *dev)
{
	return virtio_find_nth(device_id, 0, dev);
}

uint8_t virtio_status(struct virtio_device *dev)
{
	return rd8(dev->common, C_STATUS);
}

static void set_status(struct virtio_device *dev, uint8_t bits)
{
	wr8(dev->common, C_STATUS, virtio_status(dev) | bits);
}

int virtio_init(struct virtio_device *dev, uint64_t features)
{
	uint64_t offered;

	wr8(dev->common, C_STATUS, 0);
	while (virtio_status(dev) != 0)
		cpu_relax();
	for (unsigned q = 0; q < VIRTIO_KIT_QUEUES; q++)
		dev->q[q].size = 0;
	wr16(dev->common, C_MSIX, NO_VECTOR);
	set_status(dev, VIRTIO_S_ACKNOWLEDGE);
	set_status(dev, VIRTIO_S_DRIVER);
	wr32(dev->common, C_DFSELECT, 0);
	offered = rd32(dev->common, C_DF);
	wr32(dev->common, C_DFSELECT, 1);
	offered |= (uint64_t)rd32(dev->common, C_DF) << 32;
	if (!(offered & (1ULL << VIRTIO_F_VERSION_1))) {
		set_status(dev, VIRTIO_S_FAILED);
		return fail("device does not offer VERSION_1");
	}
	dev->features = (features & offered) | 1ULL << VIRTIO_F_VERSION_1;
	wr32(dev->common, C_GFSELECT, 0);
	wr32(dev->common, C_GF, (uint32_t)dev->features);
	wr32(dev->common, C_GFSELECT, 1);
	wr32(dev->common, C_GF, (uint32_t)(dev->features >> 32));
	set_status(dev, VIRTIO_S_FEATURES_OK);
	if (!(virtio_status(dev) & VIRTIO_S_FEATURES_OK)) {
		set_status(dev, VIRTIO_S_FAILED);
		return fail("device refused FEATURES_OK");
	}
	return 0;
}

int virtio_queue_setup(struct virtio_device *dev, unsigned q, uint16_t size)
{
	struct virtio_queue *vq;
	uint16_t max;

	if (q >= VIRTIO_KIT_QUEUES || q >= rd16(dev->common, C_NUMQ))
		return fail("no such queue");
	vq = &dev->q[q];
	wr16(dev->common, C_QSELECT, (uint16_t)q);
	max = rd16(dev->common, C_QSIZE);
	if (!max)
		return fail("queue not available");
	if (!size)
		size = max < VIRTIO_KIT_QUEUE_MAX ? max : VIRTIO_KIT_QUEUE_MAX;
	if (size > max || size > VIRTIO_KIT_QUEUE_MAX || (size & (size - 1)))
		return fail("bad queue size");
	vq->desc = virtio_alloc(16UL * size, PAGE_SIZE);
	vq->avail = virtio_alloc(6 + 2UL * size, PAGE_SIZE);
	vq->used = virtio_alloc(6 + 8UL * size, PAGE_SIZE);
	if (!vq->desc || !vq->avail || !vq->used)
		return fail("no RAM for the rings");
	/* Free list threaded through the descriptors' next fields. */
	for (uint16_t i = 0; i < size; i++)
		vq->desc[i].next = (uint16_t)(i + 1);
	vq->free_head = 0;
	vq->nr_free = size;
	vq->avail_idx = vq->last_used = 0;
	vq->avail[0] = AVAIL_F_NO_INTR;
	vq->notify = (volatile uint16_t *)(dev->notify +
					   (uint64_t)rd16(dev->common, C_QNOFF) * dev->notify_mult);
	wr16(dev->common, C_QSIZE, size);
	wr16(dev->common, C_QMSIX, NO_VECTOR);
	wr64(dev->common, C_QDESC, (uintptr_t)vq->desc);
	wr64(dev->common, C_QAVAIL, (uintptr_t)vq->avail);
	wr64(dev->common, C_QUSED, (uintptr_t)vq->used);
	wr16(dev->common, C_QENABLE, 1);
	if (rd16(dev->common, C_QENABLE) != 1 || (virtio_status(dev) & VIRTIO_S_NEEDS_RESET))
		return fail("device refused the queue");
	vq->size = size;
	return 0;
}

int virtio_driver_ok(struct virtio_device *dev)
{
	set_status(dev, VIRTIO_S_DRIVER_OK);
	if (virtio_status(dev) & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED))
		return fail("device needs a reset after DRIVER_OK");
	return 0;
}

int virtio_publish(struct virtio_device *dev, unsigned q, const struct virtio_buf *bufs,
		   unsigned n_out, unsigned n_in)
{
	struct virtio_queue *vq = &dev->q[q];
	unsigned n = n_out + n_in;
	uint16_t head, i;

	if (q >= VIRTIO_KIT_QUEUES || !vq->size)
		return fail("queue not set up");
	if (n == 0 || n > vq->nr_free)
		return fail("no free descriptors");
	head = i = vq->free_head;
	for (unsigned k = 0; k < n; k++) {
		volatile struct virtq_desc *d = &vq->desc[i];

		d->addr = (uintptr_t)bufs[k].addr;
		d->len = bufs[k].len;
		d->flags =
		    (uint16_t)((k >= n_out ? VIRTQ_F_WRITE : 0) | (k + 1 < n ? VIRTQ_F_NEXT : 0));
		i = d->next;
	}
	vq->free_head = i;
	vq->nr_free = (uint16_t)(vq->nr_free - n);
	vq->avail[2 + vq->avail_idx % vq->size] = head;
	/* The ring entry before the index that publishes it. */
	mb();
	vq->avail[1] = ++vq->avail_idx;
	return head;
}

void virtio_notify(struct virtio_device *dev, unsigned q)
{
	/* Published entries before the doorbell. */
	mb();
	*dev->q[q].notify = (uint16_t)q;
}

int virtio_submit(struct virtio_device *dev, unsigned q, const struct virtio_buf *bufs,
		  unsigned n_out, unsigned n_in)
{
	int head = virtio_publish(dev, q, bufs, n_out, n_in);

	if (head >= 0)
		virtio_notify(dev, q);
	return head;
}

static uint64_t timeout_ticks(void)
{
	static uint64_t ticks;

	if (!ticks)
		ticks = cmdline_get_u64("virtio_timeout_ms", DEFAULT_TIMEOUT) * tsc_khz();
	return ticks;
}

int virtio_poll_used(struct virtio_device *dev, unsigned q, uint32_t *len)
{
	struct virtio_queue *vq = &dev->q[q];
	volatile uint32_t *elem;
	uint16_t i, n = 1;
	uint32_t id;

	if (q >= VIRTIO_KIT_QUEUES || !vq->size)
		return fail("queue not set up");
	if (((volatile uint16_t *)vq->used)[1] == vq->last_used)
		return fail("nothing used yet");
	/* The element is read only after the index that published it. */
	mb();
	elem = vq->used + 1 + 2 * (vq->last_used % vq->size);
	id = elem[0];
	if (len)
		*len = elem[1];
	vq->last_used++;
	if (id >= vq->size)
		return fail("device returned a bad descriptor id");
	/* Give the chain back to the free list. */
	for (i = (uint16_t)id; vq->desc[i].flags & VIRTQ_F_NEXT; i = vq->desc[i].next)
		n++;
	vq->desc[i].next = vq->free_head;
	vq->free_head = (uint16_t)id;
	vq->nr_free = (uint16_t)(vq->nr_free + n);
	return (int)id;
}

int virtio_wait_used(struct virtio_device *dev, unsigned q, uint32_t *len)
{
	struct virtio_queue *vq = &dev->q[q];
	uint64_t deadline;

	if (q >= VIRTIO_KIT_QUEUES || !vq->size)
		return fail("queue not set up");
	deadline = rdtsc() + timeout_ticks();
	while (((volatile uint16_t *)vq->used)[1] == vq->last_used) {
		if (rdtsc() > deadline)
			return fail("timed out waiting for the device");
		cpu_relax();
	}
	return virtio_poll_used(dev, q, len);
}

volatile void *virtio_device_cfg(struct virtio_device *dev)
{
	return dev->device;
}
