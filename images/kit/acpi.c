// SPDX-License-Identifier: MIT
/*
 * Just enough ACPI to count CPUs: RSDP, XSDT or RSDT, MADT; every table's
 * checksum is checked.
 */
#include "kit.h"

#define SCAN_START 0xe0000
#define SCAN_END   0x100000
#define TABLE_MAX  (1u << 20) /* sanity bound on a table's length */

struct rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length; /* revision >= 2 from here on */
	uint64_t xsdt;
	uint8_t ext_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

struct sdt_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	uint32_t creator_id;
	uint32_t creator_revision;
} __attribute__((packed));

#define MADT_ENTRIES_OFFSET (sizeof(struct sdt_header) + 8) /* lapic address, flags */
#define MADT_LAPIC	    0
#define MADT_X2APIC	    9
#define MADT_ENABLED	    1u

static uint8_t sum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (len--)
		s += *b++;
	return s;
}

static bool rsdp_valid(const struct rsdp *r)
{
	if (memcmp(r->signature, "RSD PTR ", 8) || sum(r, 20))
		return false;
	return r->revision < 2 ||
	       (r->length >= sizeof(*r) && r->length < 4096 && !sum(r, r->length));
}

static const struct rsdp *find_rsdp(struct acpi_cpus *out, unsigned flags)
{
	const struct hvm_start_info *si = kit_start_info();
	uint64_t a;

	if (!(flags & ACPI_SCAN_ONLY) && si && si->rsdp_paddr &&
	    si->rsdp_paddr < kit_mapped_limit() &&
	    rsdp_valid((const void *)(uintptr_t)si->rsdp_paddr)) {
		out->rsdp_from_start_info = true;
		return (const void *)(uintptr_t)si->rsdp_paddr;
	}
	for (a = SCAN_START; a < SCAN_END; a += 16) {
		if (rsdp_valid((const void *)(uintptr_t)a))
			return (const void *)(uintptr_t)a;
	}
	return NULL;
}

static const struct sdt_header *table(uint64_t paddr)
{
	const struct sdt_header *h = (const void *)(uintptr_t)paddr;

	if (!paddr || paddr + TABLE_MAX > kit_mapped_limit())
		return NULL;
	if (h->length < sizeof(*h) || h->length > TABLE_MAX || sum(h, h->length))
		return NULL;
	return h;
}

static const struct sdt_header *find_madt(const struct rsdp *r, struct acpi_cpus *out)
{
	const struct sdt_header *root;
	bool xsdt = r->revision >= 2 && r->xsdt;
	size_t esize = xsdt ? 8 : 4, i, n;

	root = table(xsdt ? r->xsdt : r->rsdt);
	if (!root || memcmp(root->signature, xsdt ? "XSDT" : "RSDT", 4)) {
		out->error = xsdt ? "bad XSDT" : "bad RSDT";
		return NULL;
	}
	n = (root->length - sizeof(*root)) / esize;
	for (i = 0; i < n; i++) {
		const uint8_t *e = (const uint8_t *)(root + 1) + i * esize;
		uint64_t paddr = 0;
		const struct sdt_header *t;

		memcpy(&paddr, e, esize);
		t = table(paddr);
		if (t && !memcmp(t->signature, "APIC", 4))
			return t;
	}
	out->error = "no valid MADT";
	return NULL;
}

int acpi_count_cpus(struct acpi_cpus *out, unsigned flags)
{
	const struct rsdp *r;
	const struct sdt_header *madt;
	const uint8_t *p, *end;

	memset(out, 0, sizeof(*out));
	r = find_rsdp(out, flags);
	if (!r) {
		out->error = "no RSDP";
		return -1;
	}
	out->rsdp = (uintptr_t)r;
	out->revision = r->revision;
	madt = find_madt(r, out);
	if (!madt)
		return -1;
	out->madt = (uintptr_t)madt;
	p = (const uint8_t *)madt + MADT_ENTRIES_OFFSET;
	end = (const uint8_t *)madt + madt->length;
	while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
		uint32_t flags;

		if (p[0] == MADT_LAPIC && p[1] >= 8) {
			memcpy(&flags, p + 4, 4);
			out->lapic += flags & MADT_ENABLED;
		} else if (p[0] == MADT_X2APIC && p[1] >= 16) {
			memcpy(&flags, p + 8, 4);
			out->x2apic += flags & MADT_ENABLED;
		}
		p += p[1];
	}
	if (p != end) {
		out->error = "malformed MADT entry";
		return -1;
	}
	return 0;
}
