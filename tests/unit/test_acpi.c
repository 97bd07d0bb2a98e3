// SPDX-License-Identifier: MIT
/* ACPI tables (checked byte by byte against the spec's offsets) and the AML encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acpi.h"
#include "aml.h"
#include "guest_mem.h"
#include "layout.h"

#define MIB (1ULL << 20)

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* The table at gpa: signature checked, checksum checked, length returned. */
static const uint8_t *table(struct guest_mem *m, uint64_t gpa, const char *sig, uint32_t *len)
{
	const uint8_t *t = guest_mem_ptr(m, gpa, 36);

	assert_non_null(t);
	assert_memory_equal(t, sig, 4);
	*len = rd32(t + 4);
	assert_true(gpa >= LAYOUT_ACPI && gpa + *len <= LAYOUT_ACPI + LAYOUT_ACPI_MAX);
	t = guest_mem_ptr(m, gpa, *len);
	assert_non_null(t);
	assert_int_equal(sum(t, *len), 0);
	return t;
}

static const uint8_t *memmem_or_null(const uint8_t *h, size_t hl, const void *n, size_t nl)
{
	return memmem(h, hl, n, nl);
}

/* Decode a PkgLength at p; returns its value, *size its own length. */
static uint32_t pkglen(const uint8_t *p, unsigned *size)
{
	unsigned extra = p[0] >> 6, i;
	uint32_t v;

	if (!extra) {
		*size = 1;
		return p[0] & 0x3f;
	}
	v = p[0] & 0x0f;
	for (i = 1; i <= extra; i++)
		v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	*size = extra + 1;
	return v;
}

struct tables {
	const uint8_t *fadt, *madt, *dsdt;
	uint32_t fadt_len, madt_len, dsdt_len;
};

static void walk(struct guest_mem *m, struct tables *t)
{
	const uint8_t *rsdp = guest_mem_ptr(m, LAYOUT_ACPI, 36), *xsdt;
	uint32_t xlen, i;

	assert_non_null(rsdp);
	assert_memory_equal(rsdp, "RSD PTR ", 8);
	assert_int_equal(sum(rsdp, 20), 0);
	assert_int_equal(sum(rsdp, 36), 0);
	assert_int_equal(rsdp[15], 2);
	assert_int_equal(rd32(rsdp + 20), 36);
	xsdt = table(m, rd64(rsdp + 24), "XSDT", &xlen);
	assert_int_equal(xlen, 36 + 2 * 8);
	memset(t, 0, sizeof(*t));
	for (i = 36; i < xlen; i += 8) {
		uint64_t a = rd64(xsdt + i);
		const uint8_t *p = guest_mem_ptr(m, a, 4);

		assert_non_null(p);
		if (!memcmp(p, "FACP", 4))
			t->fadt = table(m, a, "FACP", &t->fadt_len);
		else if (!memcmp(p, "APIC", 4))
			t->madt = table(m, a, "APIC", &t->madt_len);
		else
			fail_msg("unexpected table %.4s", (const char *)p);
	}
	assert_non_null(t->fadt);
	assert_non_null(t->madt);
	t->dsdt = table(m, rd64(t->fadt + 140), "DSDT", &t->dsdt_len);
}

static void test_fadt(void **state)
{
	struct guest_mem m;
	struct tables t;
	uint64_t rsdp;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 16 * MIB), 0);
	assert_int_equal(acpi_build(&m, 1, &rsdp), 0);
	assert_int_equal(rsdp, LAYOUT_ACPI);
	walk(&m, &t);
	assert_int_equal(t.fadt_len, 276);
	assert_int_equal(t.fadt[8], 6);		      /* revision */
	assert_int_equal(rd32(t.fadt + 40), 0);	      /* 32-bit DSDT unused: X_DSDT only */
	assert_true(rd32(t.fadt + 112) & (1u << 20)); /* HW_REDUCED_ACPI */
	assert_true(rd32(t.fadt + 112) & (1u << 10)); /* RESET_REG_SUP */
	/* RESET_REG: system I/O, 8 bits, port 0x64, value 0xfe. */
	assert_int_equal(t.fadt[116], 1);
	assert_int_equal(t.fadt[117], 8);
	assert_int_equal(rd64(t.fadt + 120), PORT_I8042_CMD);
	assert_int_equal(t.fadt[128], 0xfe);
	/* SLEEP_CONTROL_REG and SLEEP_STATUS_REG. */
	assert_int_equal(t.fadt[244], 1);
	assert_int_equal(t.fadt[245], 8);
	assert_int_equal(rd64(t.fadt + 248), PORT_ACPI_SLEEP_CTL);
	assert_int_equal(t.fadt[256], 1);
	assert_int_equal(rd64(t.fadt + 260), PORT_ACPI_SLEEP_STS);
	guest_mem_destroy(&m);
}

static void check_madt(unsigned ncpus)
{
	unsigned lapics = 0, ioapics = 0, isos = 0;
	struct guest_mem m;
	struct tables t;
	uint64_t rsdp;
	uint32_t off;

	assert_int_equal(guest_mem_init(&m, 16 * MIB), 0);
	assert_int_equal(acpi_build(&m, ncpus, &rsdp), 0);
	walk(&m, &t);
	assert_int_equal(rd32(t.madt + 36), LAYOUT_LAPIC);
	for (off = 44; off < t.madt_len; off += t.madt[off + 1]) {
		const uint8_t *e = t.madt + off;

		assert_true(e[1] >= 2 && off + e[1] <= t.madt_len);
		switch (e[0]) {
		case 0: /* local APIC: uid, APIC ID, enabled */
			assert_int_equal(e[3], lapics);
			assert_int_equal(rd32(e + 4) & 1, 1);
			lapics++;
			break;
		case 1:
			assert_int_equal(e[2], ncpus);
			assert_int_equal(rd32(e + 4), LAYOUT_IOAPIC);
			assert_int_equal(rd32(e + 8), 0);
			ioapics++;
			break;
		case 2:
			assert_int_equal(e[3], 0);
			assert_int_equal(rd32(e + 4), 2);
			isos++;
			break;
		}
	}
	assert_int_equal(off, t.madt_len);
	assert_int_equal(lapics, ncpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 1);
	guest_mem_destroy(&m);
}

static void test_madt(void **state)
{
	(void)state;
	check_madt(1);
	check_madt(2);
	check_madt(ACPI_MAX_CPUS);
}

static void test_bad_ncpus(void **state)
{
	struct guest_mem m;
	uint64_t rsdp;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 16 * MIB), 0);
	assert_int_equal(acpi_build(&m, 0, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&m, ACPI_MAX_CPUS + 1, &rsdp), -EINVAL);
	guest_mem_destroy(&m);
}

static void test_dsdt_content(void **state)
{
	static const uint8_t s5[] = {'_', 'S', '5', '_', 0x12};
	static const uint8_t pci_hid[] = {'_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03};
	static const uint8_t com_hid[] = {'_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01};
	static const uint8_t com_io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08};
	static const uint8_t com_irq[] = {0x22, 0x10, 0x00};
	static const uint8_t bus[] = {0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00,
				      0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x01};
	static const uint8_t mem32[] = {0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe};
	struct guest_mem m;
	struct tables t;
	const uint8_t *p, *body;
	unsigned size;
	uint32_t len;
	uint64_t rsdp;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 16 * MIB), 0);
	assert_int_equal(acpi_build(&m, 2, &rsdp), 0);
	walk(&m, &t);
	assert_int_equal(t.dsdt[8], 2);
	body = t.dsdt + 36;
	/* Name(\_S5_, Package(4) {5, ...}) */
	assert_int_equal(body[0], 0x08);
	assert_int_equal(body[1], '\\');
	p = memmem_or_null(body, t.dsdt_len - 36, s5, sizeof(s5));
	assert_non_null(p);
	assert_int_equal(p[6], 4);    /* NumElements */
	assert_int_equal(p[7], 0x0a); /* BytePrefix */
	assert_int_equal(p[8], ACPI_SLP_TYP_S5);
	/* Scope(\_SB_) spans exactly to the end of the table. */
	p = memmem_or_null(body, t.dsdt_len - 36, "\x10", 1);
	assert_non_null(p);
	len = pkglen(p + 1, &size);
	assert_int_equal((size_t)(p + 1 - t.dsdt) + len, t.dsdt_len);
	assert_memory_equal(p + 1 + size, "\\_SB_", 5);

	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, pci_hid, sizeof(pci_hid)));
	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, "_SEG", 4));
	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, "_BBN", 4));
	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, bus, sizeof(bus)));
	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, mem32, sizeof(mem32)));
	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, com_hid, sizeof(com_hid)));
	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, com_io, sizeof(com_io)));
	assert_non_null(memmem_or_null(body, t.dsdt_len - 36, com_irq, sizeof(com_irq)));
	guest_mem_destroy(&m);
}

/* If ACPICA's iasl is installed, it must disassemble our DSDT cleanly. */
static void test_dsdt_iasl(void **state)
{
	char dir[] = "/tmp/vmm-acpi-XXXXXX", cmd[256], path[128];
	struct guest_mem m;
	struct tables t;
	uint64_t rsdp;
	FILE *fp;
	char dsl[16384];
	size_t n;

	(void)state;
	if (system("command -v iasl >/dev/null 2>&1") != 0) {
		skip();
		return;
	}
	assert_non_null(mkdtemp(dir));
	assert_int_equal(guest_mem_init(&m, 16 * MIB), 0);
	assert_int_equal(acpi_build(&m, 2, &rsdp), 0);
	walk(&m, &t);
	snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(t.dsdt, 1, t.dsdt_len, fp), t.dsdt_len);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -d dsdt.dat >iasl.log 2>&1", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/dsdt.dsl", dir);
	fp = fopen(path, "r");
	assert_non_null(fp);
	n = fread(dsl, 1, sizeof(dsl) - 1, fp);
	dsl[n] = '\0';
	fclose(fp);
	assert_non_null(strstr(dsl, "Name (\\_S5, Package (0x04)"));
	assert_non_null(strstr(dsl, "EisaId (\"PNP0A03\")"));
	assert_non_null(strstr(dsl, "EisaId (\"PNP0501\")"));
	assert_non_null(strstr(dsl, "WordBusNumber (ResourceProducer"));
	assert_non_null(strstr(dsl, "0xFEBFFFFF"));
	assert_null(strstr(dsl, "Error"));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	guest_mem_destroy(&m);
}

static void test_aml_pkglength(void **state)
{
	static uint8_t buf[8192];
	struct aml a;
	size_t len, i;
	unsigned size;
	/* Bodies around the 1/2/3-byte PkgLength boundaries (body = NumElements + n Zeros). */
	static const struct {
		size_t zeros;
		unsigned want_size;
	} cases[] = {{61, 1}, {62, 2}, {4092, 2}, {4093, 3}};

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t z;

		aml_init(&a, buf, sizeof(buf));
		aml_package(&a, 0);
		for (z = 0; z < cases[i].zeros; z++)
			aml_integer(&a, 0);
		aml_end(&a);
		assert_int_equal(aml_finish(&a, &len), 0);
		assert_int_equal(buf[0], 0x12);
		assert_int_equal(pkglen(buf + 1, &size), len - 1);
		assert_int_equal(size, cases[i].want_size);
	}
}

static void test_aml_encodings(void **state)
{
	static const uint8_t want_ints[] = {0x00, 0x01, 0x0a, 0x05, 0x0b, 0x34, 0x12,
					    0x0c, 0x78, 0x56, 0x34, 0x12, 0x0e, 1,
					    0,	  0,	0,    0,    0,	  0,	0x80};
	static const uint8_t want_names[] = {'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0',
					     '\\', 0x2f, 3,   'A', '_', '_', '_', 'B', '_', '_',
					     '_',  'C',	 '_', '_', '_', 'X', '1', '_', '_'};
	static const uint8_t want_buf[] = {0x11, 0x05, 0x0a, 0x02, 0x79, 0x00};
	uint8_t buf[64];
	struct aml a;
	size_t len;

	(void)state;
	aml_init(&a, buf, sizeof(buf));
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 5);
	aml_integer(&a, 0x1234);
	aml_integer(&a, 0x12345678);
	aml_integer(&a, 0x8000000000000001ULL);
	assert_int_equal(aml_finish(&a, &len), 0);
	assert_int_equal(len, sizeof(want_ints));
	assert_memory_equal(buf, want_ints, len);

	aml_init(&a, buf, sizeof(buf));
	aml_namestring(&a, "\\_SB_.PCI0");
	aml_namestring(&a, "\\A.B.C");
	aml_namestring(&a, "X1");
	assert_int_equal(aml_finish(&a, &len), 0);
	assert_int_equal(len, sizeof(want_names));
	assert_memory_equal(buf, want_names, len);

	aml_init(&a, buf, sizeof(buf));
	aml_buffer(&a);
	aml_res_end(&a);
	aml_end(&a);
	assert_int_equal(aml_finish(&a, &len), 0);
	assert_int_equal(len, sizeof(want_buf));
	assert_memory_equal(buf, want_buf, len);

	assert_int_equal(aml_eisaid("PNP0A03"), 0x030ad041);
	assert_int_equal(aml_eisaid("PNP0501"), 0x0105d041);
	assert_int_equal(aml_eisaid("pnp0a03"), 0);
	assert_int_equal(aml_eisaid("PNP0A0"), 0);
	assert_int_equal(aml_eisaid("PNP0A0G"), 0);
}

static void test_aml_errors(void **state)
{
	uint8_t buf[16], big[64];
	struct aml a;
	size_t len;
	unsigned i;

	(void)state;
	static const char *const bad[] = {"1ABC", "ABCDE", "ab", "", "\\", "A..B", "A.", "A-B"};
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_namestring(&a, bad[i]);
		assert_int_equal(aml_finish(&a, &len), -EINVAL);
	}
	aml_init(&a, buf, sizeof(buf));
	aml_end(&a);
	assert_int_equal(aml_finish(&a, &len), -EINVAL);

	aml_init(&a, buf, sizeof(buf));
	aml_package(&a, 1);
	assert_int_equal(aml_finish(&a, &len), -EINVAL);

	aml_init(&a, buf, sizeof(buf));
	for (i = 0; i < 20; i++)
		aml_integer(&a, 0x12345678);
	assert_int_equal(aml_finish(&a, &len), -ENOSPC);
	assert_true(len <= sizeof(buf));

	aml_init(&a, big, sizeof(big));
	for (i = 0; i <= AML_MAX_DEPTH; i++)
		aml_package(&a, 1);
	assert_int_equal(aml_finish(&a, &len), -EINVAL);

	/* No room for the PkgLength when closing. */
	aml_init(&a, buf, 3);
	aml_package(&a, 0);
	aml_integer(&a, 0);
	aml_end(&a);
	assert_int_equal(aml_finish(&a, &len), -ENOSPC);

	aml_init(&a, buf, sizeof(buf));
	aml_res_irq(&a, 16);
	assert_int_equal(aml_finish(&a, &len), -EINVAL);
}

static void test_dsdt_small_buffer(void **state)
{
	uint8_t buf[64];
	size_t len;

	(void)state;
	assert_int_equal(acpi_dsdt_aml(buf, sizeof(buf), &len), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fadt),
	    cmocka_unit_test(test_madt),
	    cmocka_unit_test(test_bad_ncpus),
	    cmocka_unit_test(test_dsdt_content),
	    cmocka_unit_test(test_dsdt_iasl),
	    cmocka_unit_test(test_aml_pkglength),
	    cmocka_unit_test(test_aml_encodings),
	    cmocka_unit_test(test_aml_errors),
	    cmocka_unit_test(test_dsdt_small_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
