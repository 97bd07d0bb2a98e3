/* SPDX-License-Identifier: MIT */
/*
 * The bare-metal guest kit: everything a test guest calls.  A guest defines
 * int main(const char *cmdline); it runs in ring 3 with every I/O port open,
 * the first KIT_MAP_GIB GiB identity mapped (user, writable), SSE on and
 * interrupts off.  main's return value is passed to poweroff().
 *
 * Output goes to COM1; each printf() call leaves as one uninterrupted
 * sequence of bytes, lines end in "\n" only.
 */
#ifndef KIT_H
#define KIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pvh.h"

/* Exit statuses, by convention of every kit guest. */
#define KIT_EXIT_OK    0 /* test passed */
#define KIT_EXIT_FAIL  1 /* the guest's own check failed */
#define KIT_EXIT_USAGE 2 /* bad cmdline or machine (no RAM, no ACPI) */
#define KIT_EXIT_FAULT 3 /* CPU exception (printed by the kit) */

#define PAGE_SIZE 4096UL

int main(const char *cmdline);

/* ---- port I/O and CPU ---- */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* r[0..3] = eax, ebx, ecx, edx of CPUID(leaf, subleaf). */
static inline void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(subleaf));
}

/* ---- serial console (COM1, polled 8250) ---- */

/* Write len bytes as they are, waiting for THRE before each. */
void serial_write(const char *buf, size_t len);
void serial_puts(const char *s);

/* ---- formatting: %d %i %u %x %X %p %s %c %%, l/ll/z, width, '0' and '-' ---- */

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Formats into a 512-byte buffer (longer output is cut) and writes it out. */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- string ---- */

void *memset(void *s, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- boot information ---- */

/* The loader's start_info, or NULL if ebx did not point at a valid one. */
const struct hvm_start_info *kit_start_info(void);
/* The kernel command line ("" if none). */
const char *kit_cmdline(void);
/* First byte past the loaded image, its bss and stacks (page aligned). */
uint64_t kit_image_end(void);
/* End of the identity map: 64 GiB with 1 GiB pages, else 4 GiB. */
uint64_t kit_mapped_limit(void);
/*
 * True if [base, base+len) lies in one RAM entry of the memmap, below the
 * mapped limit, and overlaps neither the image nor a boot module.
 */
bool kit_ram_usable(uint64_t base, uint64_t len);

/* ---- command line: space-separated key=value tokens, the last one wins ---- */

/* Pointer to the value of key in cmdline and its length, or NULL. */
const char *cmdline_find(const char *cmdline, const char *key, size_t *len);
/*
 * Decimal or 0x-hex value of key in the boot cmdline, def if absent; a
 * malformed value prints a warning and yields def.
 */
uint64_t cmdline_get_u64(const char *key, uint64_t def);
/* Copies key's value (NUL-terminated, cut to size) into buf; false if absent. */
bool cmdline_get_str(const char *key, char *buf, size_t size);
/* Parses a whole string as decimal or 0x-hex; false if malformed. */
bool parse_u64(const char *s, size_t len, uint64_t *out);

/* ---- time (TSC) ---- */

/*
 * TSC ticks per millisecond: the cmdline key tsc_khz=, else CPUID 0x15,
 * else the hypervisor leaf 0x40000010, else CPUID 0x16, else 2 GHz with a
 * warning line.  Cached.
 */
uint64_t tsc_khz(void);
/* Where tsc_khz() came from: "cmdline", "cpuid15", "hypervisor", "cpuid16", "assumed". */
const char *tsc_khz_source(void);
void tsc_delay_us(uint64_t us);

/*
 * A fixed-rate schedule on the TSC that never bursts to catch up: if the
 * guest stood still for a whole period or more (paused, migrated, TSC
 * stepped), the schedule restarts from now.
 */
struct tsc_period {
	uint64_t ticks;
	uint64_t next;
};
void tsc_period_start(struct tsc_period *p, uint64_t ticks);
/* Spins until the next deadline; returns how many whole periods were missed. */
uint64_t tsc_period_wait(struct tsc_period *p);

/* ---- power ---- */

/*
 * Writes ACPI_SLEEP_S5_VALUE to port 0x600 (our VMM's ACPI sleep control),
 * then code to port 0xf4 (QEMU isa-debug-exit: QEMU exits with
 * (code << 1) | 1), then spins.
 */
__attribute__((noreturn)) void poweroff(int code);
/* Writes 0xfe to port 0x64 (i8042 reset); triple-faults if still running. */
__attribute__((noreturn)) void reboot(void);
/* Clears the IDT (it is user-writable) and faults: shutdown, or reset. */
__attribute__((noreturn)) void triple_fault(void);

/* ---- ACPI ---- */

struct acpi_cpus {
	uint64_t rsdp;
	bool rsdp_from_start_info; /* else found by scanning 0xe0000-0xfffff */
	uint8_t revision;	   /* RSDP revision: >= 2 means XSDT */
	uint64_t madt;
	unsigned lapic;	 /* enabled type-0 (local APIC) entries */
	unsigned x2apic; /* enabled type-9 (local x2APIC) entries */
	const char *error;
};

#define ACPI_SCAN_ONLY 1u /* ignore start_info.rsdp_paddr (tests the fallback) */

/* Finds the MADT and counts enabled CPUs; 0, or -1 with out->error set. */
int acpi_count_cpus(struct acpi_cpus *out, unsigned flags);

/* ---- PCI: bus 0, function 0 of each slot, configuration mechanism 1 (0xcf8/0xcfc) ---- */

#define PCI_SLOTS	  32
#define PCI_CAP_ID_VENDOR 0x09
#define PCI_CAP_ID_MSIX	  0x11

uint32_t pci_read32(unsigned slot, unsigned off);
uint16_t pci_read16(unsigned slot, unsigned off);
uint8_t pci_read8(unsigned slot, unsigned off);
void pci_write32(unsigned slot, unsigned off, uint32_t v);
void pci_write16(unsigned slot, unsigned off, uint16_t v);
/* Slot of the n-th (from 0) function with this vendor and device ID, or -1. */
int pci_find(uint16_t vendor, uint16_t device, unsigned n);
/* Address of memory BAR bar (both widths), 0 if it is unassigned or an I/O BAR. */
uint64_t pci_bar_addr(unsigned slot, unsigned bar);
/* Offset of the first capability with id after offset `after` (0: from the start), or 0. */
unsigned pci_next_cap(unsigned slot, uint8_t id, unsigned after);

/* ---- virtio over modern PCI: a polling ring-3 driver (no interrupts) ---- */

#define VIRTIO_ID_NET	  1
#define VIRTIO_ID_BLOCK	  2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG	  4

#define VIRTIO_F_VERSION_1	    32
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX	    29

#define VIRTIO_S_ACKNOWLEDGE 1
#define VIRTIO_S_DRIVER	     2
#define VIRTIO_S_DRIVER_OK   4
#define VIRTIO_S_FEATURES_OK 8
#define VIRTIO_S_NEEDS_RESET 64
#define VIRTIO_S_FAILED	     128

#define VIRTQ_F_NEXT  1
#define VIRTQ_F_WRITE 2

#define VIRTIO_KIT_QUEUES    4	 /* queues a kit driver can set up per device */
#define VIRTIO_KIT_QUEUE_MAX 256 /* entries per queue */

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtio_queue {
	uint16_t size; /* 0: not set up */
	uint16_t free_head, nr_free;
	uint16_t avail_idx; /* next avail slot we fill */
	uint16_t last_used; /* next used entry we consume */
	volatile struct virtq_desc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[size], used_event */
	volatile uint32_t *used;  /* flags|idx, then {id, len} pairs */
	volatile uint16_t *notify;
};

struct virtio_device {
	unsigned slot;
	uint16_t device_id;
	volatile uint8_t *common, *isr, *device, *notify;
	uint32_t notify_mult, device_len;
	uint64_t features; /* negotiated */
	struct virtio_queue q[VIRTIO_KIT_QUEUES];
};

/* One buffer of a request; the device reads out-buffers and fills in-buffers. */
struct virtio_buf {
	void *addr;
	uint32_t len;
};

/*
 * Find the n-th (from 0) modern virtio-pci device with this virtio device
 * ID and map its common, notify, ISR and device structures.  0, or -1 if
 * there is none (or it lacks a structure).  virtio_find is n = 0.
 */
int virtio_find_nth(uint16_t device_id, unsigned n, struct virtio_device *dev);
int virtio_find(uint16_t device_id, struct virtio_device *dev);
/*
 * Reset, ACKNOWLEDGE, DRIVER, accept (features & offered) | VERSION_1,
 * FEATURES_OK and check the device kept it.  0 or -1 (see virtio_error()).
 */
int virtio_init(struct virtio_device *dev, uint64_t features);
/*
 * Set up queue q with size entries (0: the device's maximum, capped at
 * VIRTIO_KIT_QUEUE_MAX) in RAM from virtio_alloc, no MSI-X vector, and
 * enable it.  Between virtio_init and virtio_driver_ok.  0 or -1.
 */
int virtio_queue_setup(struct virtio_device *dev, unsigned q, uint16_t size);
/* DRIVER_OK: the device is live.  0, or -1 if the device reports NEEDS_RESET or FAILED. */
int virtio_driver_ok(struct virtio_device *dev);
/*
 * Chain n_out device-readable then n_in device-writable buffers, publish
 * the chain and notify.  Returns the head descriptor (what
 * virtio_wait_used returns for it) or -1 if the queue lacks free slots.
 */
int virtio_submit(struct virtio_device *dev, unsigned q, const struct virtio_buf *bufs,
		  unsigned n_out, unsigned n_in);
/* virtio_submit in two halves: publish several chains, then notify once. */
int virtio_publish(struct virtio_device *dev, unsigned q, const struct virtio_buf *bufs,
		   unsigned n_out, unsigned n_in);
void virtio_notify(struct virtio_device *dev, unsigned q);
/*
 * Poll q's used ring for the next completion (up to virtio_timeout_ms=
 * from the cmdline, default 2000 ms).  Returns its head and the bytes the
 * device wrote in *len, or -1 on timeout.
 */
int virtio_wait_used(struct virtio_device *dev, unsigned q, uint32_t *len);
/* The same without waiting: -1 at once if nothing is used yet. */
int virtio_poll_used(struct virtio_device *dev, unsigned q, uint32_t *len);
/* The device-specific configuration structure (NULL if the device has none). */
volatile void *virtio_device_cfg(struct virtio_device *dev);
uint8_t virtio_status(struct virtio_device *dev);
/* Why the last virtio_* call failed. */
const char *virtio_error(void);
/*
 * size bytes of zeroed RAM above the image (align: a power of 2), for
 * rings and buffers; never freed.  NULL if the memmap has no room.
 */
void *virtio_alloc(size_t size, size_t align);

#endif
