/* SPDX-License-Identifier: MIT */
/*
 * Guest CPUID: KVM_GET_SUPPORTED_CPUID adjusted per vCPU so that the guest
 * sees ncpus single-threaded cores in one socket, with APIC IDs 0..ncpus-1
 * (matching the MADT), the hypervisor bit, and a timing leaf.
 *
 * Leaf 0x40000010 (the de-facto "VMware timing" leaf, also offered by
 * QEMU's vmware-cpuid-freq): eax = TSC frequency in kHz, ebx = local APIC
 * bus frequency in kHz (1000000: 1 GHz, what KVM's APIC timer uses).  The
 * KVM signature leaf 0x40000000 is raised to cover it, so a guest can pace
 * itself with rdtsc without calibrating.
 */
#ifndef VMM_CPUID_H
#define VMM_CPUID_H

#include <linux/kvm.h>
#include <stdint.h>

#define CPUID_LEAF_KVM_SIGNATURE 0x40000000
#define CPUID_LEAF_TIMING	 0x40000010
#define CPUID_APIC_BUS_KHZ	 1000000

/*
 * Adjust cpuid (a KVM_GET_SUPPORTED_CPUID result; the array has room for
 * cap entries) for vCPU cpu_index of ncpus: leaf 1 (APIC ID, logical count,
 * HTT, hypervisor bit), leaf 4 (cores, cache sharing), leaves 0xB/0x1F
 * (x2APIC topology), AMD leaves 0x80000001/8/1D/1E, and the KVM leaves.
 * Call once on a fresh copy per vCPU.  0, -EINVAL (bad index or count),
 * or -E2BIG (cap too small for the added leaves).
 */
int cpuid_fixup(struct kvm_cpuid2 *cpuid, unsigned cap, unsigned cpu_index, unsigned ncpus,
		uint32_t tsc_khz);

/* The entry for function/index (index ignored where KVM says it does not matter), or NULL. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *cpuid, uint32_t function, uint32_t index);

#endif
