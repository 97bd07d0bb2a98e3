// SPDX-License-Identifier: MIT
/* RSDP, XSDT, FADT, MADT and DSDT for a hardware-reduced ACPI machine. */
#include "acpi.h"
#include "aml.h"
#include "layout.h"

#include <errno.h>
#include <string.h>

#define ACPI_OEM_ID	  "VMMKVM"
#define ACPI_OEM_TABLE_ID "VMMTINY "
#define ACPI_CREATOR_ID	  "VMM "

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum; /* over the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_addr;
	uint32_t length;
	uint64_t xsdt_addr;
	uint8_t ext_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));

/* Generic Address Structure */
struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} __attribute__((packed));

#define ACPI_GAS_SYSTEM_IO   1
#define ACPI_GAS_ACCESS_BYTE 1

/* FADT, ACPI 6.0 layout (276 bytes). */
struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	char hypervisor_vendor[8];
} __attribute__((packed));

_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP size");
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT size");

#define FADT_WBINVD	     (1u << 0)
#define FADT_PWR_BUTTON	     (1u << 4) /* no fixed-feature power button */
#define FADT_SLP_BUTTON	     (1u << 5)
#define FADT_RESET_REG_SUP   (1u << 10)
#define FADT_HW_REDUCED_ACPI (1u << 20)
#define BOOT_ARCH_8042	     (1u << 1) /* i8042 present: reset through port 0x64 */
#define BOOT_ARCH_NO_VGA     (1u << 2)
#define BOOT_ARCH_NO_CMOS    (1u << 5) /* no RTC device: Linux must not register one */
#define I8042_RESET_VALUE    0xfe

struct madt_header {
	struct acpi_header h;
	uint32_t lapic_addr;
	uint32_t flags;
} __attribute__((packed));

struct madt_lapic {
	uint8_t type, length, processor_uid, apic_id;
	uint32_t flags;
} __attribute__((packed));

struct madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));

struct madt_iso {
	uint8_t type, length, bus, source;
	uint32_t gsi;
	uint16_t flags;
} __attribute__((packed));

struct madt_lapic_nmi {
	uint8_t type, length, processor_uid;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));

#define MADT_PCAT_COMPAT 1 /* KVM's in-kernel irqchip includes the 8259s */
#define MADT_LAPIC	 0
#define MADT_IOAPIC	 1
#define MADT_ISO	 2
#define MADT_LAPIC_NMI	 4
#define MADT_ENABLED	 1
#define MADT_ALL_CPUS	 0xff

#define ACPI_ALIGN     16
#define ACPI_TABLE_MAX 4096 /* MADT for ACPI_MAX_CPUS is about 2 KiB, the DSDT 300 bytes */

uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return (uint8_t)-sum;
}

static void header(struct acpi_header *h, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = 1;
	h->checksum = 0;
	h->checksum = acpi_checksum(h, len);
}

/* Tables are appended one after another; *next is where the next one goes. */
static int put(struct guest_mem *mem, uint64_t *next, const void *table, size_t len, uint64_t *addr)
{
	uint64_t at = (*next + ACPI_ALIGN - 1) & ~(uint64_t)(ACPI_ALIGN - 1);

	if (at + len > LAYOUT_ACPI + LAYOUT_ACPI_MAX)
		return -ENOSPC;
	if (guest_mem_write(mem, at, table, len))
		return -EFAULT;
	*addr = at;
	*next = at + len;
	return 0;
}

int acpi_dsdt_aml(uint8_t *buf, size_t cap, size_t *len)
{
	struct aml a;

	aml_init(&a, buf, cap);

	/* Sleep type for the hardware-reduced SLEEP_CONTROL_REG: Linux writes SLP_TYPa. */
	aml_name(&a, "\\_S5_");
	aml_package(&a, 4);
	aml_integer(&a, ACPI_SLP_TYP_S5);
	aml_integer(&a, 0);
	aml_integer(&a, 0);
	aml_integer(&a, 0);
	aml_end(&a);

	aml_scope(&a, "\\_SB_");

	/* With ACPI present Linux only scans PCI buses that a root bridge declares. */
	aml_device(&a, "PCI0");
	aml_name(&a, "_HID");
	aml_integer(&a, aml_eisaid("PNP0A03"));
	aml_name(&a, "_UID");
	aml_integer(&a, 0);
	aml_name(&a, "_SEG");
	aml_integer(&a, 0);
	aml_name(&a, "_BBN");
	aml_integer(&a, 0);
	aml_name(&a, "_CRS");
	aml_buffer(&a);
	aml_res_word_bus(&a, 0x00, 0xff);
	aml_res_io(&a, PORT_PCI_CONFIG_ADDR, PORT_PCI_CONFIG_ADDR, 1, 8);
	aml_res_word_io(&a, 0x0000, PORT_PCI_CONFIG_ADDR - 1);
	aml_res_word_io(&a, 0x0d00, 0xffff);
	aml_res_dword_mem(&a, (uint32_t)LAYOUT_PCI_MMIO_BASE,
			  (uint32_t)(LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE - 1));
	aml_res_end(&a);
	aml_end(&a); /* _CRS */
	aml_end(&a); /* PCI0 */

	aml_device(&a, "COM1");
	aml_name(&a, "_HID");
	aml_integer(&a, aml_eisaid("PNP0501"));
	aml_name(&a, "_UID");
	aml_integer(&a, 1);
	aml_name(&a, "_CRS");
	aml_buffer(&a);
	aml_res_io(&a, PORT_COM1, PORT_COM1, 1, 8);
	aml_res_irq(&a, PORT_COM1_IRQ);
	aml_res_end(&a);
	aml_end(&a); /* _CRS */
	aml_end(&a); /* COM1 */

	aml_end(&a); /* \_SB_ */
	return aml_finish(&a, len);
}

static int build_dsdt(struct guest_mem *mem, uint64_t *next, uint64_t *addr)
{
	uint8_t buf[ACPI_TABLE_MAX];
	struct acpi_header *h = (struct acpi_header *)buf;
	size_t len;
	int ret;

	ret = acpi_dsdt_aml(buf + sizeof(*h), sizeof(buf) - sizeof(*h), &len);
	if (ret)
		return ret;
	memset(h, 0, sizeof(*h));
	/* Revision 2: AML integers are 64-bit. */
	header(h, "DSDT", (uint32_t)(sizeof(*h) + len), 2);
	return put(mem, next, buf, sizeof(*h) + len, addr);
}

static int build_madt(struct guest_mem *mem, uint64_t *next, unsigned ncpus, uint64_t *addr)
{
	uint8_t buf[ACPI_TABLE_MAX];
	struct madt_header *m = (struct madt_header *)buf;
	size_t off = sizeof(*m);
	unsigned i;

	memset(buf, 0, sizeof(buf));
	m->lapic_addr = (uint32_t)LAYOUT_LAPIC;
	m->flags = MADT_PCAT_COMPAT;
	for (i = 0; i < ncpus; i++) {
		struct madt_lapic l = {.type = MADT_LAPIC,
				       .length = sizeof(l),
				       .processor_uid = (uint8_t)i,
				       .apic_id = (uint8_t)i,
				       .flags = MADT_ENABLED};

		memcpy(buf + off, &l, sizeof(l));
		off += sizeof(l);
	}
	struct madt_ioapic io = {.type = MADT_IOAPIC,
				 .length = sizeof(io),
				 .id = (uint8_t)ncpus,
				 .address = (uint32_t)LAYOUT_IOAPIC,
				 .gsi_base = 0};
	memcpy(buf + off, &io, sizeof(io));
	off += sizeof(io);
	/* The PIT's IRQ0 arrives on IOAPIC pin 2, as on every PC. */
	struct madt_iso iso = {
	    .type = MADT_ISO, .length = sizeof(iso), .bus = 0, .source = 0, .gsi = 2, .flags = 0};
	memcpy(buf + off, &iso, sizeof(iso));
	off += sizeof(iso);
	struct madt_lapic_nmi nmi = {.type = MADT_LAPIC_NMI,
				     .length = sizeof(nmi),
				     .processor_uid = MADT_ALL_CPUS,
				     .flags = 0,
				     .lint = 1};
	memcpy(buf + off, &nmi, sizeof(nmi));
	off += sizeof(nmi);
	header(&m->h, "APIC", (uint32_t)off, 4);
	return put(mem, next, buf, off, addr);
}

static int build_fadt(struct guest_mem *mem, uint64_t *next, uint64_t dsdt, uint64_t *addr)
{
	struct acpi_fadt f;

	memset(&f, 0, sizeof(f));
	f.flags = FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_RESET_REG_SUP |
		  FADT_HW_REDUCED_ACPI;
	f.iapc_boot_arch = BOOT_ARCH_8042 | BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS;
	f.reset_reg = (struct acpi_gas){.space_id = ACPI_GAS_SYSTEM_IO,
					.bit_width = 8,
					.access_size = ACPI_GAS_ACCESS_BYTE,
					.address = PORT_I8042_CMD};
	f.reset_value = I8042_RESET_VALUE;
	f.x_dsdt = dsdt;
	f.sleep_control_reg = (struct acpi_gas){.space_id = ACPI_GAS_SYSTEM_IO,
						.bit_width = 8,
						.access_size = ACPI_GAS_ACCESS_BYTE,
						.address = PORT_ACPI_SLEEP_CTL};
	f.sleep_status_reg = (struct acpi_gas){.space_id = ACPI_GAS_SYSTEM_IO,
					       .bit_width = 8,
					       .access_size = ACPI_GAS_ACCESS_BYTE,
					       .address = PORT_ACPI_SLEEP_STS};
	memcpy(f.hypervisor_vendor, "VMMKVM\0\0", 8);
	header(&f.h, "FACP", sizeof(f), 6);
	return put(mem, next, &f, sizeof(f), addr);
}

static int build_xsdt(struct guest_mem *mem, uint64_t *next, const uint64_t *tables, unsigned n,
		      uint64_t *addr)
{
	uint8_t buf[sizeof(struct acpi_header) + 8 * 4];
	size_t len = sizeof(struct acpi_header) + 8 * n;

	if (n > 4)
		return -EINVAL;
	memset(buf, 0, sizeof(buf));
	memcpy(buf + sizeof(struct acpi_header), tables, 8 * n);
	header((struct acpi_header *)buf, "XSDT", (uint32_t)len, 1);
	return put(mem, next, buf, len, addr);
}

int acpi_build(struct guest_mem *mem, unsigned ncpus, uint64_t *rsdp_addr)
{
	uint64_t next = LAYOUT_ACPI + sizeof(struct acpi_rsdp);
	uint64_t dsdt, fadt, madt, xsdt, tables[2];
	struct acpi_rsdp rsdp;
	int ret;

	if (ncpus < 1 || ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	ret = build_dsdt(mem, &next, &dsdt);
	if (!ret)
		ret = build_fadt(mem, &next, dsdt, &fadt);
	if (!ret)
		ret = build_madt(mem, &next, ncpus, &madt);
	if (ret)
		return ret;
	tables[0] = fadt;
	tables[1] = madt;
	ret = build_xsdt(mem, &next, tables, 2, &xsdt);
	if (ret)
		return ret;

	memset(&rsdp, 0, sizeof(rsdp));
	memcpy(rsdp.signature, "RSD PTR ", 8);
	memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
	rsdp.revision = 2;
	rsdp.length = sizeof(rsdp);
	rsdp.xsdt_addr = xsdt;
	rsdp.checksum = acpi_checksum(&rsdp, 20);
	rsdp.ext_checksum = acpi_checksum(&rsdp, sizeof(rsdp));
	if (guest_mem_write(mem, LAYOUT_ACPI, &rsdp, sizeof(rsdp)))
		return -EFAULT;
	*rsdp_addr = LAYOUT_ACPI;
	return 0;
}
