// SPDX-License-Identifier: MIT
/* CPUID fix-ups on synthetic Intel/AMD tables, and on the host's KVM table if there is one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cpuid.h"

#define CAP 64

static struct kvm_cpuid2 *alloc_cpuid(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CAP * sizeof(struct kvm_cpuid_entry2));

	assert_non_null(c);
	return c;
}

static void put(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, uint32_t flags, uint32_t eax,
		uint32_t ebx, uint32_t ecx, uint32_t edx)
{
	c->entries[c->nent++] = (struct kvm_cpuid_entry2){.function = fn,
							  .index = idx,
							  .flags = flags,
							  .eax = eax,
							  .ebx = ebx,
							  .ecx = ecx,
							  .edx = edx};
}

static void vendor(struct kvm_cpuid2 *c, uint32_t max, const char *v)
{
	uint32_t w[3];

	memcpy(w, v, 12);
	put(c, 0, 0, 0, max, w[0], w[2], w[1]);
}

/* What KVM_GET_SUPPORTED_CPUID returns on an Intel host, trimmed. */
static struct kvm_cpuid2 *intel_table(void)
{
	struct kvm_cpuid2 *c = alloc_cpuid();
	const uint32_t sig = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;

	vendor(c, 0x1f, "GenuineIntel");
	put(c, 1, 0, 0, 0x000906ea, 0x00ff0800, 0x7ffafbff, 0xbfebfbff & ~(1u << 28));
	put(c, 4, 0, sig, 0x1c004121, 0x01c0003f, 0x3f, 0);   /* L1d, host: 8 cores */
	put(c, 4, 1, sig, 0x1c004122, 0x01c0003f, 0x3f, 0);   /* L1i */
	put(c, 4, 2, sig, 0x1c004143, 0x00c0003f, 0x3ff, 0);  /* L2 */
	put(c, 4, 3, sig, 0x1c03c163, 0x03c0003f, 0x3fff, 6); /* L3 shared by 16 */
	put(c, 4, 4, sig, 0, 0, 0, 0);
	put(c, 0xb, 0, sig, 1, 2, 0x100, 7); /* host garbage */
	put(c, 0xb, 1, sig, 4, 16, 0x201, 7);
	put(c, 0x1f, 0, sig, 1, 2, 0x100, 7);
	put(c, 0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
	put(c, 0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
	put(c, 0x80000000, 0, 0, 0x80000008, 0, 0, 0);
	put(c, 0x80000008, 0, 0, 0x3027, 0, 0, 0);
	return c;
}

static void check_topology_leaf(struct kvm_cpuid2 *c, uint32_t fn, unsigned idx, unsigned n,
				unsigned bits)
{
	struct kvm_cpuid_entry2 *e;

	e = cpuid_find(c, fn, 0);
	assert_non_null(e);
	assert_int_equal(e->eax, 0);
	assert_int_equal(e->ebx, 1);
	assert_int_equal(e->ecx, 0x100);
	assert_int_equal(e->edx, idx);
	e = cpuid_find(c, fn, 1);
	assert_non_null(e);
	assert_int_equal(e->eax, bits);
	assert_int_equal(e->ebx, n);
	assert_int_equal(e->ecx, 0x201);
	assert_int_equal(e->edx, idx);
	e = cpuid_find(c, fn, 2);
	assert_non_null(e);
	assert_int_equal((e->ecx >> 8) & 0xff, 0);
	assert_int_equal(e->edx, idx);
}

static void test_intel_two_cpus(void **state)
{
	struct kvm_cpuid2 *c = intel_table();
	struct kvm_cpuid_entry2 *e;

	(void)state;
	assert_int_equal(cpuid_fixup(c, CAP, 1, 2, 2500000), 0);
	e = cpuid_find(c, 1, 0);
	assert_int_equal(e->ebx >> 24, 1);
	assert_int_equal((e->ebx >> 16) & 0xff, 2);
	assert_int_equal(e->ebx & 0xffff, 0x0800); /* CLFLUSH size kept */
	assert_true(e->ecx & (1u << 31));
	assert_true(e->edx & (1u << 28));

	e = cpuid_find(c, 4, 0);
	assert_int_equal(e->eax >> 26, 1);
	assert_int_equal((e->eax >> 14) & 0xfff, 0);
	assert_int_equal(e->eax & 0x3fff, 0x0121);
	e = cpuid_find(c, 4, 3);
	assert_int_equal(e->eax >> 26, 1);
	assert_int_equal((e->eax >> 14) & 0xfff, 1);
	e = cpuid_find(c, 4, 4);
	assert_int_equal(e->eax, 0);

	check_topology_leaf(c, 0xb, 1, 2, 1);
	check_topology_leaf(c, 0x1f, 1, 2, 1);

	e = cpuid_find(c, CPUID_LEAF_KVM_SIGNATURE, 0);
	assert_int_equal(e->eax, CPUID_LEAF_TIMING);
	assert_int_equal(e->ebx, 0x4b4d564b);
	e = cpuid_find(c, CPUID_LEAF_TIMING, 0);
	assert_non_null(e);
	assert_int_equal(e->eax, 2500000);
	assert_int_equal(e->ebx, 1000000);
	/* Intel: AMD leaves untouched. */
	assert_int_equal(cpuid_find(c, 0x80000008, 0)->ecx, 0);
	free(c);
}

static void test_single_cpu(void **state)
{
	struct kvm_cpuid2 *c = intel_table();
	struct kvm_cpuid_entry2 *e;

	(void)state;
	cpuid_find(c, 1, 0)->edx |= 1u << 28;
	assert_int_equal(cpuid_fixup(c, CAP, 0, 1, 1000000), 0);
	e = cpuid_find(c, 1, 0);
	assert_int_equal(e->ebx >> 24, 0);
	assert_int_equal((e->ebx >> 16) & 0xff, 1);
	assert_false(e->edx & (1u << 28));
	assert_int_equal(cpuid_find(c, 4, 3)->eax >> 14, 0);
	check_topology_leaf(c, 0xb, 0, 1, 0);
	free(c);
}

static void test_three_cpus_round_up(void **state)
{
	struct kvm_cpuid2 *c = intel_table();

	(void)state;
	assert_int_equal(cpuid_fixup(c, CAP, 2, 3, 0), 0);
	assert_int_equal((cpuid_find(c, 1, 0)->ebx >> 16) & 0xff, 4);
	assert_int_equal(cpuid_find(c, 4, 0)->eax >> 26, 3);
	check_topology_leaf(c, 0xb, 2, 3, 2);
	free(c);
}

static void test_amd(void **state)
{
	struct kvm_cpuid2 *c = alloc_cpuid();
	struct kvm_cpuid_entry2 *e;

	(void)state;
	vendor(c, 0x10, "AuthenticAMD");
	put(c, 1, 0, 0, 0x00830f10, 0x00100800, 0, 0);
	put(c, 0x80000001, 0, 0, 0, 0, 0, 0);
	put(c, 0x80000008, 0, 0, 0x3030, 0, 0x7007, 0);
	put(c, 0x8000001d, 3, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0x0003c163, 0, 0, 0);
	put(c, 0x8000001e, 0, 0, 0, 0, 0, 0);
	assert_int_equal(cpuid_fixup(c, CAP, 1, 2, 0), 0);
	assert_true(cpuid_find(c, 0x80000001, 0)->ecx & 2);
	e = cpuid_find(c, 0x80000008, 0);
	assert_int_equal(e->ecx & 0xff, 1);
	assert_int_equal((e->ecx >> 12) & 0xf, 1);
	assert_int_equal((cpuid_find(c, 0x8000001d, 3)->eax >> 14) & 0xfff, 1);
	e = cpuid_find(c, 0x8000001e, 0);
	assert_int_equal(e->eax, 1);
	assert_int_equal(e->ebx & 0xff, 1);
	check_topology_leaf(c, 0xb, 1, 2, 1);
	/* No KVM signature in the input: one is added. */
	e = cpuid_find(c, CPUID_LEAF_KVM_SIGNATURE, 0);
	assert_non_null(e);
	assert_memory_equal(&e->ebx, "KVMK", 4);
	assert_int_equal(e->eax, CPUID_LEAF_TIMING);
	free(c);
}

static void test_errors(void **state)
{
	struct kvm_cpuid2 *c = intel_table();
	unsigned n = c->nent;

	(void)state;
	assert_int_equal(cpuid_fixup(c, CAP, 2, 2, 0), -EINVAL);
	assert_int_equal(cpuid_fixup(c, CAP, 0, 0, 0), -EINVAL);
	assert_int_equal(cpuid_fixup(c, CAP, 0, 255, 0), -EINVAL);
	assert_int_equal(cpuid_fixup(c, n - 1, 0, 1, 0), -EINVAL);
	/* Leaf 0xB grows from 2 to 3 entries, 0x1F from 1 to 3, plus the timing leaf. */
	assert_int_equal(cpuid_fixup(c, n, 0, 1, 0), -E2BIG);
	free(c);
	c = intel_table();
	assert_int_equal(cpuid_fixup(c, n + 4, 0, 1, 0), 0);
	free(c);
}

/* The host's real table, and KVM must accept the result. */
static void test_host_kvm(void **state)
{
	struct kvm_cpuid2 *c;
	int kvm, vm, vcpu;
	unsigned i;

	(void)state;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		skip();
		return;
	}
	c = calloc(1, sizeof(*c) + 256 * sizeof(struct kvm_cpuid_entry2));
	assert_non_null(c);
	c->nent = 240;
	assert_int_equal(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c), 0);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	assert_true(vcpu >= 0);
	assert_int_equal(cpuid_fixup(c, 256, 0, 2, 1234567), 0);
	assert_non_null(cpuid_find(c, CPUID_LEAF_TIMING, 0));
	for (i = 0; i < c->nent; i++)
		assert_false(c->entries[i].function == 0xb && c->entries[i].index > 2);
	assert_int_equal(ioctl(vcpu, KVM_SET_CPUID2, c), 0);
	close(vcpu);
	close(vm);
	close(kvm);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_intel_two_cpus),
	    cmocka_unit_test(test_single_cpu),
	    cmocka_unit_test(test_three_cpus_round_up),
	    cmocka_unit_test(test_amd),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_host_kvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
