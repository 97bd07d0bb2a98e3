// SPDX-License-Identifier: MIT
/* Per-vCPU CPUID: topology, APIC IDs, hypervisor and timing leaves. */
#include "cpuid.h"
#include "acpi.h"

#include <errno.h>
#include <string.h>

#define LEAF1_ECX_HYPERVISOR (1u << 31)
#define LEAF1_EDX_HTT	     (1u << 28)
#define EXT1_ECX_CMP_LEGACY  (1u << 1)
#define TOPO_LEVEL_SMT	     1
#define TOPO_LEVEL_CORE	     2

struct topo {
	unsigned index, ncpus;
	unsigned core_bits; /* bits of the APIC ID that number cores: ceil(log2(ncpus)) */
};

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index)
{
	uint32_t i;

	for (i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function != function)
			continue;
		if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index)
			return e;
	}
	return NULL;
}

static void remove_function(struct kvm_cpuid2 *cpuid, uint32_t function)
{
	uint32_t i = 0;

	while (i < cpuid->nent) {
		if (cpuid->entries[i].function == function) {
			memmove(&cpuid->entries[i], &cpuid->entries[i + 1],
				(cpuid->nent - i - 1) * sizeof(cpuid->entries[0]));
			cpuid->nent--;
		} else {
			i++;
		}
	}
}

static int add(struct kvm_cpuid2 *cpuid, unsigned cap, const struct kvm_cpuid_entry2 *e)
{
	if (cpuid->nent >= cap)
		return -E2BIG;
	cpuid->entries[cpuid->nent++] = *e;
	return 0;
}

static void fix_leaf1(struct kvm_cpuid2 *cpuid, const struct topo *t)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(cpuid, 1, 0);

	if (!e)
		return;
	e->ebx = (e->ebx & 0x0000ffff) | (t->index << 24) | ((1u << t->core_bits) << 16);
	e->ecx |= LEAF1_ECX_HYPERVISOR;
	if (t->ncpus > 1)
		e->edx |= LEAF1_EDX_HTT;
	else
		e->edx &= ~LEAF1_EDX_HTT;
}

/* Intel leaf 4 / AMD leaf 0x8000001D: per-core L1/L2, L3 shared by the whole socket. */
static void fix_cache_leaf(struct kvm_cpuid2 *cpuid, uint32_t function, const struct topo *t,
			   int with_cores)
{
	uint32_t i, sharing, level;

	for (i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function != function || (e->eax & 0x1f) == 0)
			continue;
		level = (e->eax >> 5) & 7;
		sharing = level >= 3 ? (1u << t->core_bits) - 1 : 0;
		e->eax = (e->eax & 0x3fff) | (sharing << 14);
		if (with_cores)
			e->eax |= ((1u << t->core_bits) - 1) << 26;
	}
}

static int fix_topology_leaf(struct kvm_cpuid2 *cpuid, unsigned cap, uint32_t function,
			     const struct topo *t)
{
	struct kvm_cpuid_entry2 e = {.function = function,
				     .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
	int ret;

	remove_function(cpuid, function);
	/* One thread per core: the SMT level holds 1 and shifts no bits. */
	e.index = 0;
	e.eax = 0;
	e.ebx = 1;
	e.ecx = (TOPO_LEVEL_SMT << 8) | 0;
	e.edx = t->index;
	ret = add(cpuid, cap, &e);
	if (ret)
		return ret;
	e.index = 1;
	e.eax = t->core_bits;
	e.ebx = t->ncpus;
	e.ecx = (TOPO_LEVEL_CORE << 8) | 1;
	ret = add(cpuid, cap, &e);
	if (ret)
		return ret;
	/* Level type 0 ends the enumeration. */
	e.index = 2;
	e.eax = 0;
	e.ebx = 0;
	e.ecx = 2;
	return add(cpuid, cap, &e);
}

static int is_amd(struct kvm_cpuid2 *cpuid)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(cpuid, 0, 0);
	char vendor[12];

	if (!e)
		return 0;
	memcpy(vendor, &e->ebx, 4);
	memcpy(vendor + 4, &e->edx, 4);
	memcpy(vendor + 8, &e->ecx, 4);
	return !memcmp(vendor, "AuthenticAMD", 12) || !memcmp(vendor, "HygonGenuine", 12);
}

static void fix_amd(struct kvm_cpuid2 *cpuid, const struct topo *t)
{
	struct kvm_cpuid_entry2 *e;

	e = cpuid_find(cpuid, 0x80000001, 0);
	if (e && t->ncpus > 1)
		e->ecx |= EXT1_ECX_CMP_LEGACY;
	e = cpuid_find(cpuid, 0x80000008, 0);
	if (e)
		e->ecx = (e->ecx & ~0xf0ffu) | (t->core_bits << 12) | (t->ncpus - 1);
	fix_cache_leaf(cpuid, 0x8000001d, t, 0);
	e = cpuid_find(cpuid, 0x8000001e, 0);
	if (e) {
		e->eax = t->index; /* extended APIC ID */
		e->ebx = t->index; /* core ID; one thread per core */
		e->ecx = 0;	   /* node 0, one node per socket */
	}
}

static int fix_kvm_leaves(struct kvm_cpuid2 *cpuid, unsigned cap, uint32_t tsc_khz)
{
	struct kvm_cpuid_entry2 *sig = cpuid_find(cpuid, CPUID_LEAF_KVM_SIGNATURE, 0);
	struct kvm_cpuid_entry2 timing = {
	    .function = CPUID_LEAF_TIMING, .eax = tsc_khz, .ebx = CPUID_APIC_BUS_KHZ};
	int ret;

	if (!sig) {
		struct kvm_cpuid_entry2 e = {.function = CPUID_LEAF_KVM_SIGNATURE};

		memcpy(&e.ebx, "KVMK", 4);
		memcpy(&e.ecx, "VMKV", 4);
		memcpy(&e.edx, "M\0\0\0", 4);
		ret = add(cpuid, cap, &e);
		if (ret)
			return ret;
		sig = &cpuid->entries[cpuid->nent - 1];
	}
	if (sig->eax < CPUID_LEAF_TIMING)
		sig->eax = CPUID_LEAF_TIMING;
	remove_function(cpuid, CPUID_LEAF_TIMING);
	return add(cpuid, cap, &timing);
}

int cpuid_fixup(struct kvm_cpuid2 *cpuid, unsigned cap, unsigned cpu_index, unsigned ncpus,
		uint32_t tsc_khz)
{
	struct kvm_cpuid_entry2 *leaf0;
	struct topo t = {.index = cpu_index, .ncpus = ncpus, .core_bits = 0};
	int ret = 0;

	if (ncpus < 1 || ncpus > ACPI_MAX_CPUS || cpu_index >= ncpus || cpuid->nent > cap)
		return -EINVAL;
	while ((1u << t.core_bits) < ncpus)
		t.core_bits++;

	fix_leaf1(cpuid, &t);
	fix_cache_leaf(cpuid, 4, &t, 1);
	leaf0 = cpuid_find(cpuid, 0, 0);
	if (leaf0 && leaf0->eax >= 0xb)
		ret = fix_topology_leaf(cpuid, cap, 0xb, &t);
	/* Leaf 0x1F supersedes 0xB where the host has it; keep the two consistent. */
	leaf0 = cpuid_find(cpuid, 0, 0);
	if (!ret && leaf0 && leaf0->eax >= 0x1f && cpuid_find(cpuid, 0x1f, 0))
		ret = fix_topology_leaf(cpuid, cap, 0x1f, &t);
	if (!ret && is_amd(cpuid))
		fix_amd(cpuid, &t);
	if (!ret)
		ret = fix_kvm_leaves(cpuid, cap, tsc_khz);
	return ret;
}
