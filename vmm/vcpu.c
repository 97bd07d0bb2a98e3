// SPDX-License-Identifier: MIT
/* vCPU creation, the KVM_RUN loop and exit dispatch. */
#include "vcpu.h"
#include "cpuid.h"
#include "kvm_state.h"
#include "log.h"
#include "mono_time.h"
#include "vm.h"

#include <errno.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define VCPU_KICK_SIGNAL  SIGUSR1
#define CPUID_MAX_ENTRIES 256

static void kick_handler(int sig)
{
	(void)sig; /* only here to make KVM_RUN return -EINTR */
}

int vcpu_setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: KVM_RUN must come back with EINTR. */
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	return 0;
}

static int setup_cpuid(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct kvm_cpuid2 *cpuid;
	int ret;

	cpuid = calloc(1, sizeof(*cpuid) + CPUID_MAX_ENTRIES * sizeof(cpuid->entries[0]));
	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = CPUID_MAX_ENTRIES - 8; /* room for the leaves cpuid_fixup adds */
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
		ret = -errno;
		pr_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		goto out;
	}
	ret = cpuid_fixup(cpuid, CPUID_MAX_ENTRIES, vcpu->index, vm->ncpus, vm->tsc_khz);
	if (ret) {
		pr_err("vCPU %u: cannot build CPUID: %s", vcpu->index, strerror(-ret));
		goto out;
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0) {
		ret = -errno;
		pr_err("vCPU %u: KVM_SET_CPUID2: %s", vcpu->index, strerror(errno));
	}
out:
	free(cpuid);
	return ret;
}

/*
 * Wire LINT0 as ExtINT and LINT1 as NMI, as PC firmware does, so the legacy
 * PIC and NMIs reach the BSP.
 */
static int setup_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;
	uint32_t *lvt0 = (uint32_t *)&lapic.regs[0x350];
	uint32_t *lvt1 = (uint32_t *)&lapic.regs[0x360];

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	*lvt0 = (*lvt0 & ~0x700u & ~0x10000u) | (7u << 8); /* ExtINT, unmasked */
	*lvt1 = (*lvt1 & ~0x700u & ~0x10000u) | (4u << 8); /* NMI, unmasked */
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

static int setup_boot_regs(struct vcpu *vcpu)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	boot_entry_regs(&vcpu->vm->entry, &regs, &sregs);
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;    /* x87 reset value */
	fpu.mxcsr = 0x1f80; /* SSE exceptions masked */
	if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

int vcpu_init(struct vcpu *vcpu, struct vm *vm, unsigned index)
{
	int ret;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->index = index;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0) {
		ret = -errno;
		pr_err("vCPU %u: KVM_CREATE_VCPU: %s", index, strerror(errno));
		return ret;
	}
	vcpu->run =
	    mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		ret = -errno;
		vcpu->run = NULL;
		pr_err("vCPU %u: mmap kvm_run: %s", index, strerror(errno));
		return ret;
	}
	/* KVM_GET_TSC_KHZ is a vCPU ioctl: the first vCPU tells the rate for the CPUID leaf. */
	if (!vm->tsc_khz) {
		int khz = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);

		vm->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	}
	ret = setup_cpuid(vcpu);
	if (ret)
		return ret;
	ret = setup_lapic(vcpu);
	if (ret) {
		pr_err("vCPU %u: local APIC set-up: %s", index, strerror(-ret));
		return ret;
	}
	/* Application processors wait in the kernel for INIT/SIPI from the BSP. */
	if (index == 0 && vm->opts->kernel) {
		ret = setup_boot_regs(vcpu);
		if (ret)
			pr_err("vCPU 0: boot registers: %s", strerror(-ret));
	}
	return ret;
}

void vcpu_dump(struct vcpu *vcpu, const char *why)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
		pr_err("vCPU %u: %s (registers unavailable: %s)", vcpu->index, why,
		       strerror(errno));
		return;
	}
	pr_err("vCPU %u: %s", vcpu->index, why);
	pr_err(" rip=%016llx rsp=%016llx rflags=%016llx", r.rip, r.rsp, r.rflags);
	pr_err(" rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx", r.rax, r.rbx, r.rcx, r.rdx);
	pr_err(" rsi=%016llx rdi=%016llx rbp=%016llx", r.rsi, r.rdi, r.rbp);
	pr_err(" r8=%016llx r9=%016llx r10=%016llx r11=%016llx", r.r8, r.r9, r.r10, r.r11);
	pr_err(" r12=%016llx r13=%016llx r14=%016llx r15=%016llx", r.r12, r.r13, r.r14, r.r15);
	pr_err(" cs=%04x(%016llx) ss=%04x ds=%04x es=%04x", s.cs.selector, s.cs.base, s.ss.selector,
	       s.ds.selector, s.es.selector);
	pr_err(" cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%016llx", s.cr0, s.cr2, s.cr3,
	       s.cr4, s.efer);
	pr_err(" gdt=%016llx/%x idt=%016llx/%x", s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
}

static void handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint32_t i;

	/* String I/O (rep ins/outs) arrives as count items back to back. */
	for (i = 0; i < run->io.count; i++, data += run->io.size) {
		if (bus_access(&vcpu->vm->pio, run->io.port, data, run->io.size, is_write) ==
		    -ENODEV)
			pr_debug("unclaimed port %s 0x%x size %u", is_write ? "write" : "read",
				 run->io.port, run->io.size);
	}
}

static void handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	if (run->mmio.len > sizeof(run->mmio.data))
		return;
	if (bus_access(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
		       run->mmio.is_write) == -ENODEV)
		pr_debug("unclaimed MMIO %s 0x%llx len %u", run->mmio.is_write ? "write" : "read",
			 run->mmio.phys_addr, run->mmio.len);
}

static void crash(struct vcpu *vcpu, const char *why)
{
	vcpu_dump(vcpu, why);
	vm_request_stop(vcpu->vm, VM_STOP_CRASH, 1);
}

/* Returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	char why[96];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(vcpu);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(vcpu);
		return true;
	case KVM_EXIT_HLT:
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return true;
	case KVM_EXIT_SHUTDOWN:
		crash(vcpu, "triple fault (KVM_EXIT_SHUTDOWN)");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			vm_request_stop(vcpu->vm, VM_STOP_POWEROFF, 0);
			return false;
		case KVM_SYSTEM_EVENT_RESET:
			vm_request_stop(vcpu->vm, VM_STOP_RESET, 0);
			return false;
		default:
			snprintf(why, sizeof(why), "system event %u", run->system_event.type);
			crash(vcpu, why);
			return false;
		}
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why), "VM entry failed (hardware reason 0x%llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		crash(vcpu, why);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(why, sizeof(why), "KVM internal error (suberror %u)",
			 run->internal.suberror);
		crash(vcpu, why);
		return false;
	default:
		snprintf(why, sizeof(why), "unexpected exit reason %u", run->exit_reason);
		crash(vcpu, why);
		return false;
	}
}

/*
 * A checkpoint pause is short (well under a millisecond of work): a vCPU
 * thread asleep on the condition variable comes back through the scheduler,
 * from an idle CPU or behind whatever ran meanwhile, which can take longer
 * than the pause itself.  So, like KVM's halt polling, watch for the resume
 * for a while first, yielding so that a thread that shares this CPU (the
 * checkpoint itself, on a busy host) goes first.
 */
#define PARK_POLL_NS 1000000ULL

/* The pause's own work, shared out (vm_pause_share_work): join in once per sharing. */
static void help_with_pause_work(struct vm *vm, unsigned *seen)
{
	unsigned gen = __atomic_load_n(&vm->park_work_gen, __ATOMIC_SEQ_CST);

	if (gen == *seen)
		return;
	*seen = gen;
	__atomic_add_fetch(&vm->park_work_busy, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&vm->park_work_open, __ATOMIC_SEQ_CST) &&
	    __atomic_load_n(&vm->park_work_gen, __ATOMIC_SEQ_CST) == gen) {
		void (*fn)(void *) = __atomic_load_n(&vm->park_work, __ATOMIC_SEQ_CST);

		fn(__atomic_load_n(&vm->park_work_arg, __ATOMIC_SEQ_CST));
	}
	__atomic_sub_fetch(&vm->park_work_busy, 1, __ATOMIC_SEQ_CST);
}

bool vcpu_capture_claim(struct vcpu *vcpu)
{
	unsigned wanted = VCPU_CAPTURE_WANTED;

	if (__atomic_load_n(&vcpu->capture_state, __ATOMIC_ACQUIRE) != VCPU_CAPTURE_WANTED ||
	    !__atomic_compare_exchange_n(&vcpu->capture_state, &wanted, VCPU_CAPTURE_BUSY, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return false;
	vcpu->capture_ret =
	    kvm_vcpu_state_capture(vcpu->fd, vcpu->vm->kvm_fd, &vcpu->facts, &vcpu->capture);
	__atomic_store_n(&vcpu->capture_state, VCPU_CAPTURE_DONE, __ATOMIC_RELEASE);
	return true;
}

/* Parked: read our own state if a checkpoint asks, help with its work, until the resume. */
static void poll_for_resume(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	uint64_t until = mono_ns() + PARK_POLL_NS;
	unsigned seen = __atomic_load_n(&vm->park_work_gen, __ATOMIC_SEQ_CST);

	while (__atomic_load_n(&vm->pause_requested, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&vm->stopping, __ATOMIC_ACQUIRE) && mono_ns() < until) {
		vcpu_capture_claim(vcpu);
		help_with_pause_work(vm, &seen);
		mono_relax();
	}
}

/* Park while a pause is requested.  Returns false if the VM is stopping. */
static bool check_pause_and_stop(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	uint64_t stopped_ns;
	bool keep_running;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_requested && !vm->stopping) {
		/*
		 * KVM finishes an I/O exit (IN's register write, the RIP step) only
		 * on the next KVM_RUN: do that now, so the state a pause exposes
		 * is between instructions.
		 */
		if (vcpu->io_pending) {
			pthread_mutex_unlock(&vm->lock);
			/* A split MMIO access may exit once more (-EAGAIN): serve it too. */
			for (int tries = 0; tries < 4; tries++) {
				if (kvm_vcpu_complete_io(vcpu->fd, vcpu->run) != -EAGAIN)
					break; /* done, or failed (printed) */
				handle_exit(vcpu);
			}
			vcpu->io_pending = false;
			pthread_mutex_lock(&vm->lock);
			if (!vm->pause_requested || vm->stopping)
				goto out;
		}
		__atomic_add_fetch(&vm->nr_parked, 1, __ATOMIC_RELEASE); /* vm_pause polls it */
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
		poll_for_resume(vcpu);
		pthread_mutex_lock(&vm->lock);
		while (vm->pause_requested && !vm->stopping)
			pthread_cond_wait(&vm->cond, &vm->lock);
		stopped_ns = mono_ns() - vm->pause_start_ns;
		if (stopped_ns > vm->pause_longest_ns)
			vm->pause_longest_ns = stopped_ns;
		if (__atomic_sub_fetch(&vm->nr_parked, 1, __ATOMIC_RELEASE) == 0) {
			vm->last_pause_ns = vm->pause_longest_ns;
			vm->pauses++;
		}
	}
out:
	keep_running = !vm->stopping;
	pthread_mutex_unlock(&vm->lock);
	return keep_running;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	sigset_t set;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", vcpu->index);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (check_pause_and_stop(vcpu)) {
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				continue;
			}
			pr_err("vCPU %u: KVM_RUN: %s", vcpu->index, strerror(errno));
			vm_request_stop(vcpu->vm, VM_STOP_ERROR, 1);
			break;
		}
		vcpu->io_pending = vcpu->run->exit_reason == KVM_EXIT_IO ||
				   vcpu->run->exit_reason == KVM_EXIT_MMIO;
		if (!handle_exit(vcpu))
			break;
	}
	/* Leave the state between instructions: a final checkpoint may still read it. */
	if (vcpu->io_pending)
		kvm_vcpu_complete_io(vcpu->fd, vcpu->run);
	vcpu->io_pending = false;
	return NULL;
}

int vcpu_start(struct vcpu *vcpu)
{
	int ret = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);

	if (ret)
		return -ret;
	vcpu->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
	if (!vcpu->run)
		return;
	/* Set before the signal: if the vCPU is between checks and KVM_RUN, KVM returns at once. */
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->started)
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *vcpu)
{
	if (vcpu->started) {
		vcpu_kick(vcpu);
		pthread_join(vcpu->thread, NULL);
		vcpu->started = false;
	}
}

void vcpu_destroy(struct vcpu *vcpu)
{
	vcpu_join(vcpu);
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->vm->run_size);
	if (vcpu->fd > 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
	kvm_vcpu_facts_forget(&vcpu->facts);
	kvm_vcpu_capture_free(&vcpu->capture);
}
