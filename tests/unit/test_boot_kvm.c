// SPDX-License-Identifier: MIT
/*
 * The boot state on real KVM: a synthetic bzImage and PVH ELF whose entry
 * code reads the boot structure it was handed and reports it with `out`.
 * Proves KVM accepts boot_entry_regs() after cpuid_fixup() and that the
 * guest starts in the promised mode.  Skipped without /dev/kvm.
 */
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
#include <sys/mman.h>
#include <unistd.h>

#include "boot.h"
#include "boot_images.h"
#include "cpuid.h"
#include "guest_mem.h"
#include "layout.h"
#include "pvh.h"

#define MIB	     (1ULL << 20)
#define REPORT_PORT  0xe9
#define KVM_TSS	     0xfffbd000ULL /* 3 pages in the hole above the LAPIC */
#define KVM_IDENTITY 0xfffbc000ULL
#define CPUID_CAP    256

struct kvm_vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	struct guest_mem mem;
};

static int vm_open(struct kvm_vm *v)
{
	struct kvm_userspace_memory_region r;
	int i;

	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0)
		return -1;
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	assert_true(v->vm >= 0);
	/* Needed on Intel without unrestricted guest; harmless elsewhere. */
	ioctl(v->vm, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){KVM_IDENTITY});
	ioctl(v->vm, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS);
	assert_int_equal(guest_mem_init(&v->mem, 64 * MIB), 0);
	for (i = 0; i < v->mem.nr_regions; i++) {
		r = (struct kvm_userspace_memory_region){
		    .slot = (uint32_t)i,
		    .guest_phys_addr = v->mem.regions[i].gpa,
		    .memory_size = v->mem.regions[i].size,
		    .userspace_addr = (uint64_t)(uintptr_t)v->mem.regions[i].host};
		assert_int_equal(ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	}
	return 0;
}

static void vcpu_start(struct kvm_vm *v, const struct boot_entry *e)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_CAP * sizeof(c->entries[0]));
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	assert_non_null(c);
	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	assert_true(v->vcpu >= 0);
	v->run_size = (size_t)ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	assert_true(v->run != MAP_FAILED);
	c->nent = CPUID_CAP - 8;
	assert_int_equal(ioctl(v->kvm, KVM_GET_SUPPORTED_CPUID, c), 0);
	assert_int_equal(cpuid_fixup(c, CPUID_CAP, 0, 1, 1000000), 0);
	/* The documented order: CPUID first, since KVM checks EFER.LME against it. */
	assert_int_equal(ioctl(v->vcpu, KVM_SET_CPUID2, c), 0);
	assert_int_equal(ioctl(v->vcpu, KVM_GET_SREGS, &sregs), 0);
	boot_entry_regs(e, &regs, &sregs);
	assert_int_equal(ioctl(v->vcpu, KVM_SET_SREGS, &sregs), 0);
	assert_int_equal(ioctl(v->vcpu, KVM_SET_REGS, &regs), 0);
	free(c);
}

/* Run until the next exit; return the 32-bit value written to REPORT_PORT. */
static uint32_t run_to_report(struct kvm_vm *v)
{
	uint32_t val;

	assert_int_equal(ioctl(v->vcpu, KVM_RUN, 0), 0);
	if (v->run->exit_reason != KVM_EXIT_IO) {
		struct kvm_regs regs;

		ioctl(v->vcpu, KVM_GET_REGS, &regs);
		fail_msg("exit reason %u at rip %#llx", v->run->exit_reason,
			 (unsigned long long)regs.rip);
	}
	assert_int_equal(v->run->io.direction, KVM_EXIT_IO_OUT);
	assert_int_equal(v->run->io.port, REPORT_PORT);
	assert_int_equal(v->run->io.size, 4);
	memcpy(&val, (uint8_t *)v->run + v->run->io.data_offset, 4);
	return val;
}

static void vm_close(struct kvm_vm *v)
{
	munmap(v->run, v->run_size);
	close(v->vcpu);
	close(v->vm);
	close(v->kvm);
	guest_mem_destroy(&v->mem);
}

static void test_linux64_entry(void **state)
{
	static const uint8_t code[] = {
	    0x8b, 0x86,	       0x02, 0x02, 0x00, 0x00, /* mov eax, [rsi + 0x202]: "HdrS" */
	    0xe7, REPORT_PORT,			       /* out 0xe9, eax */
	    0x48, 0x89,	       0xf0,		       /* mov rax, rsi */
	    0xe7, REPORT_PORT,			       /* out 0xe9, eax */
	    0xf4,				       /* hlt */
	};
	static uint8_t img[TEST_BZ_SIZE];
	struct kvm_sregs sregs;
	struct boot_entry e;
	struct kvm_vm v;

	(void)state;
	if (vm_open(&v)) {
		skip();
		return;
	}
	test_make_bzimage(img, code, sizeof(code));
	assert_int_equal(boot_load_buffers(&v.mem, img, TEST_BZ_SIZE, NULL, 0, "", 1, &e, "bz"), 0);
	vcpu_start(&v, &e);
	assert_int_equal(run_to_report(&v), 0x53726448); /* "HdrS" read through the page tables */
	assert_int_equal(ioctl(v.vcpu, KVM_GET_SREGS, &sregs), 0);
	assert_true(sregs.efer & (1 << 10)); /* LMA */
	assert_int_equal(sregs.cs.l, 1);
	assert_int_equal(run_to_report(&v), LAYOUT_ZERO_PAGE);
	vm_close(&v);
}

static void test_pvh_entry(void **state)
{
	static const uint8_t code[] = {
	    0x8b, 0x03,	       /* mov eax, [ebx]: start info magic */
	    0xe7, REPORT_PORT, /* out 0xe9, eax */
	    0x89, 0xd8,	       /* mov eax, ebx */
	    0xe7, REPORT_PORT, /* out 0xe9, eax */
	    0xf4,	       /* hlt */
	};
	static uint8_t img[TEST_PVH_SIZE];
	struct kvm_sregs sregs;
	struct boot_entry e;
	struct kvm_vm v;

	(void)state;
	if (vm_open(&v)) {
		skip();
		return;
	}
	test_make_pvh64(img, code, sizeof(code));
	assert_int_equal(boot_load_buffers(&v.mem, img, TEST_PVH_SIZE, NULL, 0, "", 1, &e, "pvh"),
			 0);
	vcpu_start(&v, &e);
	assert_int_equal(run_to_report(&v), HVM_START_MAGIC);
	assert_int_equal(ioctl(v.vcpu, KVM_GET_SREGS, &sregs), 0);
	assert_int_equal(sregs.efer & (1 << 10), 0);
	assert_int_equal(sregs.cr0 & 0x80000001, 1);
	assert_int_equal(sregs.cs.db, 1);
	assert_int_equal(run_to_report(&v), LAYOUT_START_INFO);
	vm_close(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_linux64_entry),
	    cmocka_unit_test(test_pvh_entry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
