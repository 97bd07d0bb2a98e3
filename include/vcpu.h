/* SPDX-License-Identifier: MIT */
/*
 * vCPUs: creation (CPUID, boot registers), the thread that runs KVM_RUN and
 * dispatches exits to the buses, and the kick that gets a vCPU out of the
 * guest (immediate_exit + a signal) so it can park or stop.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include "kvm_state.h"

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	bool io_pending; /* the last exit was I/O or MMIO that KVM completes on the next KVM_RUN */
	struct kvm_vcpu_facts facts; /* for state saves: what KVM would tell every time */
	/* A checkpoint's read of this vCPU's KVM state, taken by whichever thread claims it
	 * first (vcpu_capture_claim): its own while parked, or the saver. */
	struct kvm_vcpu_capture capture;
	unsigned capture_state; /* __atomic: VCPU_CAPTURE_* */
	int capture_ret;	/* the capture's result, once DONE */
};

enum { VCPU_CAPTURE_IDLE, VCPU_CAPTURE_WANTED, VCPU_CAPTURE_BUSY, VCPU_CAPTURE_DONE };

/* Create vCPU index in vm: KVM fd, run mapping, CPUID; the BSP (index 0) also gets the boot
 * registers. */
int vcpu_init(struct vcpu *vcpu, struct vm *vm, unsigned index);

/* Start the vCPU thread. */
int vcpu_start(struct vcpu *vcpu);

/* Make the vCPU leave KVM_RUN soon (it then checks pause/stop).  Any thread. */
void vcpu_kick(struct vcpu *vcpu);

/* Wait for the thread to leave (vm->stopping set); the vCPU's state stays readable. */
void vcpu_join(struct vcpu *vcpu);

/*
 * If this vCPU's capture is WANTED, claim it (BUSY), read the vCPU's KVM
 * state into vcpu->capture and mark it DONE; true if this call did it.  The
 * vCPU must be stopped outside KVM_RUN (parked or joined).  Any thread: the
 * claim makes exactly one of them read.
 */
bool vcpu_capture_claim(struct vcpu *vcpu);

/* Join the thread (after vm->stopping is set and the vCPU kicked) and release the vCPU. */
void vcpu_destroy(struct vcpu *vcpu);

/* Print the registers to stderr (crash reports). */
void vcpu_dump(struct vcpu *vcpu, const char *why);

/* Install the kick signal handler; once per process, before any vCPU starts. */
int vcpu_setup_signals(void);

#endif
