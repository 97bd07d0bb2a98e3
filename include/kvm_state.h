/* SPDX-License-Identifier: MIT */
/*
 * KVM's side of whole-VM state: what the kernel holds for each vCPU (registers,
 * FPU/XSAVE, MSRs, local APIC, pending events, CPUID) and for the VM (PIC,
 * IOAPIC, PIT, kvmclock), saved into and loaded from the state tree
 * (state.h).  Snapshot, migration and replication call these; guest memory
 * and the VMM's own devices are saved elsewhere.
 *
 * Every node carries "version" (KVM_STATE_VERSION) and each variable-sized
 * property an explicit count ("nr-msrs", "nr-cpuid", "xsave-size").  Raw KVM
 * structures are stored as they come from the ioctls (x86-64 host order); the
 * u32/u64 helpers' properties are big-endian.
 *
 * Time.  kvmclock is saved with the host's CLOCK_REALTIME at that moment, and
 * each vCPU's TSC (MSR_IA32_TSC, in the MSR list) with its own CLOCK_REALTIME
 * and TSC frequency.  By default a load continues both from the saved values:
 * the guest does not see the time it spent saved (snapshot/restore: no jump,
 * however long the file sat on disk; the guest's NTP corrects its wall clock).
 * With KVM_STATE_CLOCK_ELAPSED the load adds the wall time since the save to
 * kvmclock (KVM_SET_CLOCK with KVM_CLOCK_REALTIME) and to every TSC, so the
 * guest sees the pause as time that passed (live migration, failover; needs
 * CLOCK_REALTIME synchronised between the hosts; never steps backwards).  The
 * TSC is restored through KVM_SET_MSRS: host-initiated TSC writes that land
 * within a second of each other are matched by KVM into one TSC generation, so
 * the vCPUs stay in step, and the guest TSC never goes below the saved value.
 * (A KVM without TSC offsetting, like the nested PVM-style one here, accepts
 * the write and keeps the host's TSC, which is monotonic on one host anyway.)
 * The guest TSC frequency is restored with KVM_SET_TSC_KHZ when the new host's
 * differs (fails if the host cannot scale).
 */
#ifndef VMM_KVM_STATE_H
#define VMM_KVM_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVM_STATE_VERSION 1

/* Load flag: advance kvmclock and the TSCs by the wall time since the save. */
#define KVM_STATE_CLOCK_ELAPSED (1u << 0)

/*
 * Finish what the last exit left for KVM to complete (the register write of
 * an IN, the RIP step of an OUT or MMIO): KVM_RUN with immediate_exit set,
 * which completes it and returns EINTR without entering the guest.  Call on a
 * vCPU stopped after an I/O or MMIO exit, before kvm_vcpu_state_save, or the
 * saved state repeats the instruction.  0; -EAGAIN if completing took another
 * exit (an MMIO access split in two): handle run's exit and call again; -errno.
 */
int kvm_vcpu_complete_io(int vcpu_fd, struct kvm_run *run);

/*
 * What a save would ask KVM for that does not change while a vCPU runs:
 * its CPUID (fixed once it has run), TSC frequency, the host's MSR list and
 * capabilities.  Each ioctl costs 10-30 us on a nested host, and an epoch's
 * pause has no time for them.  Zeroed: not known yet, filled by the first
 * save.  A load changes CPUID and TSC frequency: forget the facts then.
 */
struct kvm_vcpu_facts {
	bool known;
	int xsave2;  /* KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) */
	bool sregs2; /* KVM_CAP_SREGS2 */
	int tsc_khz; /* KVM_GET_TSC_KHZ, 0 if unknown */
	struct kvm_cpuid2 *cpuid;
	struct kvm_msr_list *msrs;
};
void kvm_vcpu_facts_forget(struct kvm_vcpu_facts *facts);

/*
 * Save vCPU vcpu_fd (stopped outside KVM_RUN, I/O completed) as properties of
 * the node the caller has opened in the sequential-write tree fdt: regs,
 * sregs2 (or sregs without KVM_CAP_SREGS2), xcrs, xsave, the MSRs of
 * KVM_GET_MSR_INDEX_LIST (from kvm_fd) that this vCPU can read, lapic, events,
 * mp-state, debugregs, cpuid, tsc-khz, realtime-ns.  facts (NULL: ask KVM
 * every time) caches what does not change.  0, -ENOSPC, -errno.
 */
int kvm_vcpu_state_save(int vcpu_fd, int kvm_fd, struct kvm_vcpu_facts *facts, void *fdt);

/*
 * A save in two halves, so that the reading (a dozen ioctls, the costly
 * part) can run on the vCPU's own thread while a checkpoint pause does other
 * work: kvm_vcpu_state_capture reads the vCPU (stopped, I/O completed) into
 * c, learning facts on first use; kvm_vcpu_state_put writes what c holds
 * into the open node, exactly as kvm_vcpu_state_save would have.  c's
 * buffers are kept for the next capture; kvm_vcpu_capture_free releases
 * them.  Both 0 or -errno (-ENOSPC from the put).
 */
struct kvm_vcpu_capture {
	struct kvm_regs regs;
	struct kvm_sregs sregs;	  /* without KVM_CAP_SREGS2 */
	struct kvm_sregs2 sregs2; /* with it */
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	void *xsave;
	size_t xsave_size;
	struct kvm_msr_entry *msrs;
	uint32_t nr_msrs, msrs_room;
	uint64_t realtime_ns; /* CLOCK_REALTIME right after the MSRs (and so the TSC) */
};
int kvm_vcpu_state_capture(int vcpu_fd, int kvm_fd, struct kvm_vcpu_facts *facts,
			   struct kvm_vcpu_capture *c);
int kvm_vcpu_state_put(const struct kvm_vcpu_capture *c, const struct kvm_vcpu_facts *facts,
		       void *fdt);
void kvm_vcpu_capture_free(struct kvm_vcpu_capture *c);

/*
 * Validate a vCPU node without touching KVM: version, every property present
 * with its exact size, counts matching arrays, flag and reserved fields that
 * KVM would refuse.  0 or -EINVAL.
 */
int kvm_vcpu_state_check(const void *fdt, int node);

/*
 * Load node into vcpu_fd (a vCPU that has not run, or whose CPUID is the same):
 * kvm_vcpu_state_check first, then CPUID, TSC frequency, sregs, regs, xcrs,
 * xsave, MSRs, LAPIC, TSC deadline again (it only sticks once the LAPIC timer
 * is in deadline mode), events, mp-state, debugregs.  flags: KVM_STATE_CLOCK_*.
 * 0, -EINVAL for a malformed tree (KVM untouched), -errno when KVM refuses
 * (printed with what failed; the vCPU is then partly loaded).
 */
int kvm_vcpu_state_load(int vcpu_fd, int kvm_fd, const void *fdt, int node, unsigned flags);

/*
 * Save the VM's in-kernel devices (vCPUs stopped): pic-master, pic-slave,
 * ioapic, pit2, clock, clock-flags, realtime-ns.  The VM must have an in-kernel
 * irqchip and PIT2.  0, -ENOSPC, -errno.
 */
int kvm_vm_state_save(int vm_fd, void *fdt);

/* Validate a VM node without touching KVM.  0 or -EINVAL. */
int kvm_vm_state_check(const void *fdt, int node);

/*
 * Load node into vm_fd (irqchip and PIT2 created; vCPUs not running): check,
 * then PICs, IOAPIC, PIT, kvmclock.  Load the VM before its vCPUs.  flags:
 * KVM_STATE_CLOCK_*.  0, -EINVAL (KVM untouched), -errno when KVM refuses.
 */
int kvm_vm_state_load(int vm_fd, const void *fdt, int node, unsigned flags);

#endif
