// SPDX-License-Identifier: MIT
/*
 * KVM vCPU and VM state on real KVM: distinctive values saved from one VM
 * come back field by field in a fresh one; a guest stopped after an `out`
 * resumes in a fresh VM at the next instruction with its SSE counter; the
 * clock continues or catches up as asked; malformed trees are refused with
 * -EINVAL before KVM is touched.  Skipped without /dev/kvm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"
#include "cpuid.h"
#include "kvm_state.h"
#include "state.h"

#define MEM_SIZE  (1u << 20)
#define TREE_SIZE (256u << 10)
#define CPUID_CAP 256
#define CODE_GPA  0x1000
#define PORT_OUT  0xe9
#define PORT_DONE 0xea
#define PORT_IN	  0xeb

#define MSR_IA32_TSC		0x10
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_CR_PAT		0x277
#define MSR_IA32_TSC_DEADLINE	0x6e0
#define MSR_STAR		0xc0000081
#define MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01

#define CR4_OSFXSR  (1u << 9)
#define CR4_OSXSAVE (1u << 18)
#define APIC_TPR    0x80
#define APIC_SVR    0xf0
#define APIC_LVTT   0x320
#define APIC_LVT0   0x350
#define XMM_OFFSET  160 /* legacy XSAVE area: XMM0 */
#define YMMH_OFFSET 576 /* standard-format AVX component: YMM0 upper halves */
#define XSTATE_BV   512

struct tvm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
};

static uint8_t tree[TREE_SIZE], edited[TREE_SIZE];

static int tvm_open(struct tvm *t)
{
	struct kvm_userspace_memory_region r;
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};

	memset(t, 0, sizeof(*t));
	t->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (t->kvm < 0)
		return -1;
	t->vm = ioctl(t->kvm, KVM_CREATE_VM, 0);
	assert_true(t->vm >= 0);
	ioctl(t->vm, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){0xfffbc000});
	ioctl(t->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	assert_int_equal(ioctl(t->vm, KVM_CREATE_IRQCHIP, 0), 0);
	assert_int_equal(ioctl(t->vm, KVM_CREATE_PIT2, &pit), 0);
	t->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(t->mem != MAP_FAILED);
	r = (struct kvm_userspace_memory_region){
	    .slot = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)(uintptr_t)t->mem};
	assert_int_equal(ioctl(t->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	t->vcpu = ioctl(t->vm, KVM_CREATE_VCPU, 0);
	assert_true(t->vcpu >= 0);
	t->run_size = (size_t)ioctl(t->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	t->run = mmap(NULL, t->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->vcpu, 0);
	assert_true(t->run != MAP_FAILED);
	return 0;
}

static void tvm_close(struct tvm *t)
{
	munmap(t->run, t->run_size);
	munmap(t->mem, MEM_SIZE);
	close(t->vcpu);
	close(t->vm);
	close(t->kvm);
}

/* What vcpu_init does: the host's CPUID through cpuid_fixup, plus the TSC-deadline timer. */
static void set_cpuid(struct tvm *t)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_CAP * sizeof(c->entries[0]));
	struct kvm_cpuid_entry2 *leaf1;

	assert_non_null(c);
	c->nent = CPUID_CAP - 8;
	assert_int_equal(ioctl(t->kvm, KVM_GET_SUPPORTED_CPUID, c), 0);
	assert_int_equal(cpuid_fixup(c, CPUID_CAP, 0, 1, 0), 0);
	leaf1 = cpuid_find(c, 1, 0);
	assert_non_null(leaf1);
	if (ioctl(t->kvm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
		leaf1->ecx |= 1u << 24;
	assert_int_equal(ioctl(t->vcpu, KVM_SET_CPUID2, c), 0);
	free(c);
}

static struct kvm_cpuid2 *get_cpuid(int vcpu)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_CAP * sizeof(c->entries[0]));

	assert_non_null(c);
	c->nent = CPUID_CAP;
	assert_int_equal(ioctl(vcpu, KVM_GET_CPUID2, c), 0);
	return c;
}

static uint64_t get_msr(int vcpu, uint32_t index)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = {.hdr.nmsrs = 1, .e.index = index};

	assert_int_equal(ioctl(vcpu, KVM_GET_MSRS, &m), 1);
	return m.e.data;
}

static void set_msr(int vcpu, uint32_t index, uint64_t value)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = {.hdr.nmsrs = 1, .e.index = index, .e.data = value};

	assert_int_equal(ioctl(vcpu, KVM_SET_MSRS, &m), 1);
}

static uint32_t *lapic_reg(struct kvm_lapic_state *l, unsigned off)
{
	return (uint32_t *)&l->regs[off];
}

/* The whole machine (VM node "kvm-vm", vCPU node "cpu@0") into tree. */
static void save_tree(struct tvm *t)
{
	assert_int_equal(state_tree_begin(tree, sizeof(tree)), 0);
	assert_int_equal(fdt_begin_node(tree, "kvm-vm"), 0);
	assert_int_equal(kvm_vm_state_save(t->vm, tree), 0);
	assert_int_equal(fdt_end_node(tree), 0);
	assert_int_equal(fdt_begin_node(tree, "cpu@0"), 0);
	assert_int_equal(kvm_vcpu_state_save(t->vcpu, t->kvm, NULL, tree), 0);
	assert_int_equal(fdt_end_node(tree), 0);
	assert_int_equal(state_tree_end(tree), 0);
	assert_int_equal(fdt_check_full(tree, sizeof(tree)), 0);
}

static int node_of(const void *fdt, const char *name)
{
	int node = state_find_node(fdt, 0, name);

	assert_true(node > 0);
	return node;
}

static void load_tree(struct tvm *t, const void *fdt, unsigned flags)
{
	assert_int_equal(kvm_vm_state_load(t->vm, fdt, node_of(fdt, "kvm-vm"), flags), 0);
	assert_int_equal(kvm_vcpu_state_load(t->vcpu, t->kvm, fdt, node_of(fdt, "cpu@0"), flags),
			 0);
}

static uint64_t tsc_khz(struct tvm *t)
{
	int khz = ioctl(t->vcpu, KVM_GET_TSC_KHZ, 0);

	assert_true(khz > 0);
	return (uint64_t)khz;
}

/*
 * Set the guest TSC; false (with a note) where KVM accepts the write but the
 * guest TSC stays the host's, as on the nested PVM-style KVM here, which has
 * no TSC offsetting.  TSC checks are then skipped.
 */
static bool tsc_sticks(struct tvm *t, uint64_t value)
{
	uint64_t tsc;

	set_msr(t->vcpu, MSR_IA32_TSC, value);
	tsc = get_msr(t->vcpu, MSR_IA32_TSC);
	if (tsc >= value && tsc - value < 1000 * tsc_khz(t))
		return true;
	print_message("note: this KVM ignores guest TSC writes; TSC checks skipped\n");
	return false;
}

/* ---- Field by field ---- */

struct expect {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint64_t xcr0;
	uint8_t xmm3[16], ymmh3[16];
	bool avx, deadline, tsc_set;
	uint64_t tsc, tsc_deadline;
};

static void set_vcpu_values(struct tvm *t, struct expect *x)
{
	struct kvm_xcrs xcrs;
	struct kvm_xsave xsave;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_HALTED};
	struct kvm_debugregs dbg;
	struct kvm_cpuid2 *c;
	struct kvm_cpuid_entry2 *leaf;
	uint64_t bv;
	int i;

	set_cpuid(t);
	c = get_cpuid(t->vcpu);
	leaf = cpuid_find(c, 0xd, 0);
	x->avx = leaf && (leaf->eax & 7) == 7;
	leaf = cpuid_find(c, 1, 0);
	x->deadline = leaf && (leaf->ecx & (1u << 24));
	free(c);

	assert_int_equal(ioctl(t->vcpu, KVM_GET_SREGS, &x->sregs), 0);
	x->sregs.cr2 = 0xdeadb000;
	x->sregs.cr4 |= CR4_OSFXSR | CR4_OSXSAVE;
	x->sregs.gdt.base = 0x5000;
	x->sregs.gdt.limit = 0x27;
	x->sregs.idt.base = 0x6000;
	x->sregs.idt.limit = 0x7ff;
	assert_int_equal(ioctl(t->vcpu, KVM_SET_SREGS, &x->sregs), 0);
	assert_int_equal(ioctl(t->vcpu, KVM_GET_SREGS, &x->sregs), 0);

	memset(&x->regs, 0, sizeof(x->regs));
	x->regs.rax = 0x1111111111111111;
	x->regs.rbx = 0x2222222222222222;
	x->regs.rsi = 0x3333333333333333;
	x->regs.r15 = 0xf0f0f0f0f0f0f0f0;
	x->regs.rsp = 0x7ff0;
	x->regs.rip = 0x1234;
	x->regs.rflags = 0x446; /* DF, ZF, PF, reserved bit 1 */
	assert_int_equal(ioctl(t->vcpu, KVM_SET_REGS, &x->regs), 0);

	x->xcr0 = x->avx ? 7 : 3;
	memset(&xcrs, 0, sizeof(xcrs));
	xcrs.nr_xcrs = 1;
	xcrs.xcrs[0].xcr = 0;
	xcrs.xcrs[0].value = x->xcr0;
	assert_int_equal(ioctl(t->vcpu, KVM_SET_XCRS, &xcrs), 0);

	assert_int_equal(ioctl(t->vcpu, KVM_GET_XSAVE, &xsave), 0);
	for (i = 0; i < 16; i++) {
		x->xmm3[i] = (uint8_t)(0xa0 + i);
		x->ymmh3[i] = (uint8_t)(0x50 + i);
	}
	memcpy((uint8_t *)xsave.region + XMM_OFFSET + 3 * 16, x->xmm3, 16);
	memcpy(&bv, (uint8_t *)xsave.region + XSTATE_BV, 8);
	bv |= 2;
	if (x->avx) {
		memcpy((uint8_t *)xsave.region + YMMH_OFFSET + 3 * 16, x->ymmh3, 16);
		bv |= 4;
	}
	memcpy((uint8_t *)xsave.region + XSTATE_BV, &bv, 8);
	assert_int_equal(ioctl(t->vcpu, KVM_SET_XSAVE, &xsave), 0);

	x->tsc = 1ull << 40;
	x->tsc_set = tsc_sticks(t, x->tsc);
	set_msr(t->vcpu, MSR_IA32_SYSENTER_CS, 0x10);
	set_msr(t->vcpu, MSR_IA32_SYSENTER_ESP, 0xffff800012345678);
	set_msr(t->vcpu, MSR_STAR, 0x0023001000000000);
	set_msr(t->vcpu, MSR_IA32_CR_PAT, 0x0000000600070406);
	set_msr(t->vcpu, MSR_KVM_WALL_CLOCK_NEW, 0x9000);
	set_msr(t->vcpu, MSR_KVM_SYSTEM_TIME_NEW, 0x8001);

	assert_int_equal(ioctl(t->vcpu, KVM_GET_LAPIC, &lapic), 0);
	*lapic_reg(&lapic, APIC_SVR) = 0x1ff;
	*lapic_reg(&lapic, APIC_TPR) = 0x30;
	*lapic_reg(&lapic, APIC_LVT0) = 0x700;
	*lapic_reg(&lapic, APIC_LVTT) = x->deadline ? 0x400ef : 0x100ef; /* deadline, or masked */
	assert_int_equal(ioctl(t->vcpu, KVM_SET_LAPIC, &lapic), 0);
	if (x->deadline) {
		x->tsc_deadline = x->tsc + (1ull << 45);
		set_msr(t->vcpu, MSR_IA32_TSC_DEADLINE, x->tsc_deadline);
	}

	assert_int_equal(ioctl(t->vcpu, KVM_GET_VCPU_EVENTS, &ev), 0);
	ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	ev.nmi.pending = 1;
	ev.nmi.masked = 1;
	ev.interrupt.shadow = KVM_X86_SHADOW_INT_MOV_SS;
	assert_int_equal(ioctl(t->vcpu, KVM_SET_VCPU_EVENTS, &ev), 0);

	assert_int_equal(ioctl(t->vcpu, KVM_SET_MP_STATE, &mp), 0);

	memset(&dbg, 0, sizeof(dbg));
	dbg.db[0] = 0x1000;
	dbg.db[3] = 0x4000;
	dbg.dr6 = 0xffff0ff1;
	dbg.dr7 = 0x405;
	assert_int_equal(ioctl(t->vcpu, KVM_SET_DEBUGREGS, &dbg), 0);
	/* CR8 mirrors the TPR set above. */
	assert_int_equal(ioctl(t->vcpu, KVM_GET_SREGS, &x->sregs), 0);
}

static void set_vm_values(struct tvm *t)
{
	struct kvm_pit_state2 pit;
	struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_IOAPIC};
	struct kvm_clock_data clock = {.clock = 123000000000ull};

	assert_int_equal(ioctl(t->vm, KVM_GET_PIT2, &pit), 0);
	pit.channels[0].count = 0x1234;
	pit.channels[0].mode = 2;
	assert_int_equal(ioctl(t->vm, KVM_SET_PIT2, &pit), 0);

	assert_int_equal(ioctl(t->vm, KVM_GET_IRQCHIP, &chip), 0);
	chip.chip.ioapic.redirtbl[3].bits = (1ull << 56) | (1u << 16) | 0x33; /* masked */
	assert_int_equal(ioctl(t->vm, KVM_SET_IRQCHIP, &chip), 0);

	chip = (struct kvm_irqchip){.chip_id = KVM_IRQCHIP_PIC_MASTER};
	assert_int_equal(ioctl(t->vm, KVM_GET_IRQCHIP, &chip), 0);
	chip.chip.pic.imr = 0xfa;
	assert_int_equal(ioctl(t->vm, KVM_SET_IRQCHIP, &chip), 0);
	chip = (struct kvm_irqchip){.chip_id = KVM_IRQCHIP_PIC_SLAVE};
	assert_int_equal(ioctl(t->vm, KVM_GET_IRQCHIP, &chip), 0);
	chip.chip.pic.imr = 0x3f;
	assert_int_equal(ioctl(t->vm, KVM_SET_IRQCHIP, &chip), 0);

	assert_int_equal(ioctl(t->vm, KVM_SET_CLOCK, &clock), 0);
}

static void check_vcpu_values(struct tvm *t, const struct expect *x, struct kvm_cpuid2 *want)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_xsave xsave;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	struct kvm_cpuid2 *c = get_cpuid(t->vcpu);
	uint64_t tsc, max_ticks = 10 * 1000 * tsc_khz(t);

	assert_int_equal(c->nent, want->nent);
	assert_memory_equal(c->entries, want->entries, c->nent * sizeof(c->entries[0]));
	free(c);

	assert_int_equal(ioctl(t->vcpu, KVM_GET_REGS, &regs), 0);
	assert_memory_equal(&regs, &x->regs, sizeof(regs));
	assert_int_equal(ioctl(t->vcpu, KVM_GET_SREGS, &sregs), 0);
	assert_memory_equal(&sregs, &x->sregs, sizeof(sregs));

	assert_int_equal(ioctl(t->vcpu, KVM_GET_XCRS, &xcrs), 0);
	assert_true(xcrs.nr_xcrs >= 1);
	assert_int_equal(xcrs.xcrs[0].xcr, 0);
	assert_int_equal(xcrs.xcrs[0].value, x->xcr0);
	assert_int_equal(ioctl(t->vcpu, KVM_GET_XSAVE, &xsave), 0);
	assert_memory_equal((uint8_t *)xsave.region + XMM_OFFSET + 3 * 16, x->xmm3, 16);
	if (x->avx)
		assert_memory_equal((uint8_t *)xsave.region + YMMH_OFFSET + 3 * 16, x->ymmh3, 16);

	tsc = get_msr(t->vcpu, MSR_IA32_TSC);
	assert_true(!x->tsc_set || (tsc >= x->tsc && tsc < x->tsc + max_ticks));
	assert_int_equal(get_msr(t->vcpu, MSR_IA32_SYSENTER_CS), 0x10);
	assert_int_equal(get_msr(t->vcpu, MSR_IA32_SYSENTER_ESP), 0xffff800012345678);
	assert_int_equal(get_msr(t->vcpu, MSR_STAR), 0x0023001000000000);
	assert_int_equal(get_msr(t->vcpu, MSR_IA32_CR_PAT), 0x0000000600070406);
	assert_int_equal(get_msr(t->vcpu, MSR_KVM_WALL_CLOCK_NEW), 0x9000);
	assert_int_equal(get_msr(t->vcpu, MSR_KVM_SYSTEM_TIME_NEW), 0x8001);
	if (x->deadline)
		assert_int_equal(get_msr(t->vcpu, MSR_IA32_TSC_DEADLINE), x->tsc_deadline);

	assert_int_equal(ioctl(t->vcpu, KVM_GET_LAPIC, &lapic), 0);
	assert_int_equal(*lapic_reg(&lapic, APIC_SVR), 0x1ff);
	assert_int_equal(*lapic_reg(&lapic, APIC_TPR), 0x30);
	assert_int_equal(*lapic_reg(&lapic, APIC_LVT0), 0x700);
	assert_int_equal(*lapic_reg(&lapic, APIC_LVTT), x->deadline ? 0x400ef : 0x100ef);

	assert_int_equal(ioctl(t->vcpu, KVM_GET_VCPU_EVENTS, &ev), 0);
	assert_int_equal(ev.nmi.pending, 1);
	assert_int_equal(ev.nmi.masked, 1);
	assert_int_equal(ev.interrupt.shadow, KVM_X86_SHADOW_INT_MOV_SS);
	assert_int_equal(ioctl(t->vcpu, KVM_GET_MP_STATE, &mp), 0);
	assert_int_equal(mp.mp_state, KVM_MP_STATE_HALTED);
	assert_int_equal(ioctl(t->vcpu, KVM_GET_DEBUGREGS, &dbg), 0);
	assert_int_equal(dbg.db[0], 0x1000);
	assert_int_equal(dbg.db[3], 0x4000);
	assert_int_equal(dbg.dr6, 0xffff0ff1);
	assert_int_equal(dbg.dr7, 0x405);
}

static void check_vm_values(struct tvm *t)
{
	struct kvm_pit_state2 pit;
	struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_IOAPIC};
	struct kvm_clock_data clock;

	assert_int_equal(ioctl(t->vm, KVM_GET_PIT2, &pit), 0);
	assert_int_equal(pit.channels[0].count, 0x1234);
	assert_int_equal(pit.channels[0].mode, 2);
	assert_int_equal(ioctl(t->vm, KVM_GET_IRQCHIP, &chip), 0);
	assert_int_equal(chip.chip.ioapic.redirtbl[3].bits, (1ull << 56) | (1u << 16) | 0x33);
	chip = (struct kvm_irqchip){.chip_id = KVM_IRQCHIP_PIC_MASTER};
	assert_int_equal(ioctl(t->vm, KVM_GET_IRQCHIP, &chip), 0);
	assert_int_equal(chip.chip.pic.imr, 0xfa);
	chip = (struct kvm_irqchip){.chip_id = KVM_IRQCHIP_PIC_SLAVE};
	assert_int_equal(ioctl(t->vm, KVM_GET_IRQCHIP, &chip), 0);
	assert_int_equal(chip.chip.pic.imr, 0x3f);
	assert_int_equal(ioctl(t->vm, KVM_GET_CLOCK, &clock), 0);
	assert_true(clock.clock >= 123000000000ull && clock.clock < 125000000000ull);
}

static void test_round_trip_fields(void **state)
{
	struct tvm src, dst;
	struct expect x;
	struct kvm_cpuid2 *want;

	(void)state;
	if (tvm_open(&src)) {
		skip();
		return;
	}
	set_vcpu_values(&src, &x);
	set_vm_values(&src);
	want = get_cpuid(src.vcpu);
	save_tree(&src);
	tvm_close(&src);

	assert_int_equal(tvm_open(&dst), 0);
	load_tree(&dst, tree, 0);
	check_vm_values(&dst);
	check_vcpu_values(&dst, &x, want);
	free(want);
	tvm_close(&dst);
}

/* The vCPU node of one capture, put into tree (or edited, the scratch buffer). */
static void put_capture(uint8_t *buf, const struct kvm_vcpu_capture *c,
			const struct kvm_vcpu_facts *f)
{
	assert_int_equal(state_tree_begin(buf, TREE_SIZE), 0);
	assert_int_equal(fdt_begin_node(buf, "cpu@0"), 0);
	assert_int_equal(kvm_vcpu_state_put(c, f, buf), 0);
	assert_int_equal(fdt_end_node(buf), 0);
	assert_int_equal(state_tree_end(buf), 0);
	assert_int_equal(fdt_check_full(buf, TREE_SIZE), 0);
}

/*
 * A save in two halves (a checkpoint's vCPU reads its own registers while
 * the pause copies pages): what is put is the vCPU as it was when captured,
 * not as it is at the put; put twice, the same bytes; the node checks and
 * loads; a second capture into the same buffers sees the new values.
 */
static void test_capture_then_put(void **state)
{
	struct kvm_vcpu_facts facts = {0};
	struct kvm_vcpu_capture c = {0};
	struct kvm_regs regs;
	struct tvm t;

	(void)state;
	if (tvm_open(&t)) {
		skip();
		return;
	}
	set_cpuid(&t);
	assert_int_equal(ioctl(t.vcpu, KVM_GET_REGS, &regs), 0);
	regs.rax = 0x1111;
	regs.rbx = 0x2222;
	assert_int_equal(ioctl(t.vcpu, KVM_SET_REGS, &regs), 0);
	assert_int_equal(kvm_vcpu_state_capture(t.vcpu, t.kvm, &facts, &c), 0);
	assert_true(facts.known);
	assert_true(c.nr_msrs > 0 && c.xsave_size >= 4096);
	regs.rax = 0x3333;
	assert_int_equal(ioctl(t.vcpu, KVM_SET_REGS, &regs), 0);

	put_capture(tree, &c, &facts);
	put_capture(edited, &c, &facts);
	assert_int_equal(fdt_totalsize(tree), fdt_totalsize(edited));
	assert_memory_equal(tree, edited, fdt_totalsize(tree));
	assert_int_equal(kvm_vcpu_state_check(tree, node_of(tree, "cpu@0")), 0);
	assert_int_equal(kvm_vcpu_state_load(t.vcpu, t.kvm, tree, node_of(tree, "cpu@0"), 0), 0);
	assert_int_equal(ioctl(t.vcpu, KVM_GET_REGS, &regs), 0);
	assert_int_equal(regs.rax, 0x1111);
	assert_int_equal(regs.rbx, 0x2222);

	regs.rax = 0x4444;
	assert_int_equal(ioctl(t.vcpu, KVM_SET_REGS, &regs), 0);
	assert_int_equal(kvm_vcpu_state_capture(t.vcpu, t.kvm, &facts, &c), 0);
	assert_int_equal(c.regs.rax, 0x4444);
	kvm_vcpu_capture_free(&c);
	kvm_vcpu_facts_forget(&facts);
	tvm_close(&t);
}

/* ---- A guest that ran ---- */

/*
 * 32-bit protected mode; the counter lives in ebx and, across each `out`, on
 * the stack (SSE would do better, but this KVM's ring-0 emulator refuses it):
 *   ebx = 1
 *   loop: push ebx; out 0xe9, bl; pop edx; ebx = edx + 1; if (ebx != 5) goto loop
 *   in al, 0xeb; out 0xea, al; jmp $
 */
static const uint8_t counter_guest[] = {
    0xbb, 0x01,	     0x00, 0x00, 0x00, /* mov ebx, 1 */
    0x53,			       /* loop: push ebx */
    0x89, 0xd8,			       /* mov eax, ebx */
    0xe6, PORT_OUT,		       /* out 0xe9, al */
    0x5a,			       /* pop edx */
    0x8d, 0x5a,	     0x01,	       /* lea ebx, [edx + 1] */
    0x83, 0xfb,	     0x05,	       /* cmp ebx, 5 */
    0x75, 0xf2,			       /* jne loop */
    0xe4, PORT_IN,		       /* in al, 0xeb */
    0xe6, PORT_DONE,		       /* out 0xea, al */
    0xeb, 0xfe,			       /* jmp $ */
};
#define AFTER_FIRST_OUT (CODE_GPA + 10)
#define IN_VALUE	0x5a

/* Run to the next exit, which must be byte I/O; return port << 8 | value (0 for `in`). */
static unsigned run_to_io(struct tvm *t, int direction)
{
	struct kvm_regs regs;
	uint8_t *data;

	assert_int_equal(ioctl(t->vcpu, KVM_RUN, 0), 0);
	if (t->run->exit_reason != KVM_EXIT_IO) {
		ioctl(t->vcpu, KVM_GET_REGS, &regs);
		fail_msg("exit reason %u at rip %#llx", t->run->exit_reason,
			 (unsigned long long)regs.rip);
	}
	assert_int_equal(t->run->io.direction, direction);
	assert_int_equal(t->run->io.size, 1);
	data = (uint8_t *)t->run + t->run->io.data_offset;
	if (direction == KVM_EXIT_IO_IN) {
		*data = IN_VALUE;
		return (unsigned)t->run->io.port << 8;
	}
	return (unsigned)t->run->io.port << 8 | *data;
}

static unsigned run_to_out(struct tvm *t)
{
	return run_to_io(t, KVM_EXIT_IO_OUT);
}

/* Save t after letting KVM finish the pending I/O, load into a fresh VM with t's RAM. */
static void migrate(struct tvm *t, struct tvm *to)
{
	assert_int_equal(kvm_vcpu_complete_io(t->vcpu, t->run), 0);
	save_tree(t);
	assert_int_equal(tvm_open(to), 0);
	memcpy(to->mem, t->mem, MEM_SIZE); /* guest RAM travels separately */
	tvm_close(t);
	load_tree(to, tree, 0);
}

static void test_running_guest_resumes(void **state)
{
	struct boot_entry e = {.mode = BOOT_MODE_PVH32, .rip = CODE_GPA};
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct tvm a, b, c;

	(void)state;
	if (tvm_open(&a)) {
		skip();
		return;
	}
	set_cpuid(&a);
	memcpy(a.mem + CODE_GPA, counter_guest, sizeof(counter_guest));
	assert_int_equal(ioctl(a.vcpu, KVM_GET_SREGS, &sregs), 0);
	boot_entry_regs(&e, &regs, &sregs);
	regs.rsp = 0x8000;
	assert_int_equal(ioctl(a.vcpu, KVM_SET_SREGS, &sregs), 0);
	assert_int_equal(ioctl(a.vcpu, KVM_SET_REGS, &regs), 0);

	assert_int_equal(run_to_out(&a), PORT_OUT << 8 | 1);
	/* After completion the state is between instructions: RIP past the `out`. */
	assert_int_equal(kvm_vcpu_complete_io(a.vcpu, a.run), 0);
	assert_int_equal(ioctl(a.vcpu, KVM_GET_REGS, &regs), 0);
	assert_int_equal(regs.rip, AFTER_FIRST_OUT);

	/* The counter continues from the stack and registers in a fresh VM... */
	migrate(&a, &b);
	assert_int_equal(run_to_out(&b), PORT_OUT << 8 | 2);
	assert_int_equal(run_to_out(&b), PORT_OUT << 8 | 3);
	assert_int_equal(run_to_out(&b), PORT_OUT << 8 | 4);
	/* ...and an `in` answered before the next move lands in al over there. */
	assert_int_equal(run_to_io(&b, KVM_EXIT_IO_IN), PORT_IN << 8);
	migrate(&b, &c);
	assert_int_equal(run_to_out(&c), PORT_DONE << 8 | IN_VALUE);
	tvm_close(&c);
}

/* ---- Time ---- */

static void clock_case(unsigned flags)
{
	struct kvm_clock_data clock = {.clock = 50000000000ull};
	uint64_t tsc0 = 1ull << 36, tsc, khz;
	bool tsc_set;
	const uint64_t pause_ns = 300000000; /* 0.3 s between save and load */
	struct tvm src, dst;

	if (tvm_open(&src)) {
		skip();
		return;
	}
	set_cpuid(&src);
	assert_int_equal(ioctl(src.vm, KVM_SET_CLOCK, &clock), 0);
	set_msr(src.vcpu, MSR_IA32_TSC, tsc0);
	tsc_set = tsc_sticks(&src, tsc0);
	save_tree(&src);
	khz = tsc_khz(&src);
	tvm_close(&src);
	usleep(pause_ns / 1000);

	assert_int_equal(tvm_open(&dst), 0);
	load_tree(&dst, tree, flags);
	assert_int_equal(ioctl(dst.vm, KVM_GET_CLOCK, &clock), 0);
	tsc = get_msr(dst.vcpu, MSR_IA32_TSC);
	if (flags & KVM_STATE_CLOCK_ELAPSED) {
		assert_true(clock.clock >= 50000000000ull + pause_ns);
		assert_true(!tsc_set || tsc >= tsc0 + pause_ns / 1000 * khz / 1000);
	} else {
		/* Continues from the saved value: the pause is not seen. */
		assert_true(clock.clock >= 50000000000ull);
		assert_true(clock.clock < 50000000000ull + pause_ns / 2);
		assert_true(!tsc_set ||
			    (tsc >= tsc0 && tsc < tsc0 + pause_ns / 2 / 1000 * khz / 1000));
	}
	assert_true(clock.clock < 50000000000ull + 5 * pause_ns);
	tvm_close(&dst);
}

static void test_clock_continues(void **state)
{
	(void)state;
	clock_case(0);
}

static void test_clock_elapsed(void **state)
{
	(void)state;
	clock_case(KVM_STATE_CLOCK_ELAPSED);
}

/* ---- Malformed trees ---- */

enum edit_kind { EDIT_DROP, EDIT_REPLACE, EDIT_TRUNCATE };

struct edit {
	const char *node, *prop;
	enum edit_kind kind;
	uint32_t u32; /* EDIT_REPLACE: the new value (a u32); EDIT_TRUNCATE: bytes to cut */
	int len;      /* EDIT_REPLACE with len > 4: that many zero bytes instead */
};

/* Copy tree into edited, applying one edit to one property. */
static void rewrite(const struct edit *ed)
{
	static uint8_t zeros[8192];
	int node, prop, len;
	const char *name, *pname;
	const void *data;
	fdt32_t v32;
	bool found = false;

	assert_int_equal(state_tree_begin(edited, sizeof(edited)), 0);
	fdt_for_each_subnode(node, tree, 0)
	{
		name = fdt_get_name(tree, node, NULL);
		assert_int_equal(fdt_begin_node(edited, name), 0);
		fdt_for_each_property_offset(prop, tree, node)
		{
			data = fdt_getprop_by_offset(tree, prop, &pname, &len);
			if (strcmp(name, ed->node) || strcmp(pname, ed->prop)) {
				assert_int_equal(state_put_bytes(edited, pname, data, (size_t)len),
						 0);
				continue;
			}
			found = true;
			if (ed->kind == EDIT_TRUNCATE) {
				assert_true(len >= (int)ed->u32);
				assert_int_equal(
				    state_put_bytes(edited, pname, data, (size_t)len - ed->u32), 0);
			} else if (ed->kind == EDIT_REPLACE && ed->len > 4) {
				assert_true(ed->len <= (int)sizeof(zeros));
				assert_int_equal(
				    state_put_bytes(edited, pname, zeros, (size_t)ed->len), 0);
			} else if (ed->kind == EDIT_REPLACE) {
				v32 = cpu_to_fdt32(ed->u32);
				assert_int_equal(state_put_bytes(edited, pname, &v32, sizeof(v32)),
						 0);
			}
		}
		assert_int_equal(fdt_end_node(edited), 0);
	}
	assert_int_equal(state_tree_end(edited), 0);
	assert_int_equal(fdt_check_full(edited, sizeof(edited)), 0);
	if (!found)
		fail_msg("no property %s in node %s", ed->prop, ed->node);
}

/* The special registers are "sregs2" where KVM has it, "sregs" elsewhere. */
static const char *sregs_name(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int has = kvm >= 0 ? ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) : 0;

	if (kvm >= 0)
		close(kvm);
	return has > 0 ? "sregs2" : "sregs";
}

static bool make_good_tree(void)
{
	struct tvm src;

	if (tvm_open(&src))
		return false;
	set_cpuid(&src);
	save_tree(&src);
	tvm_close(&src);
	return true;
}

/* Each edit makes the load fail with -EINVAL and leaves the fresh VM as it was. */
static void expect_refused(const struct edit *edits, size_t n)
{
	struct kvm_regs before, after;
	struct kvm_pit_state2 pit_before, pit_after;
	struct kvm_cpuid2 *c;
	struct tvm dst;
	size_t i;
	int node;

	if (!make_good_tree()) {
		skip();
		return;
	}
	for (i = 0; i < n; i++) {
		rewrite(&edits[i]);
		assert_int_equal(tvm_open(&dst), 0);
		assert_int_equal(ioctl(dst.vcpu, KVM_GET_REGS, &before), 0);
		assert_int_equal(ioctl(dst.vm, KVM_GET_PIT2, &pit_before), 0);
		node = node_of(edited, edits[i].node);
		if (!strcmp(edits[i].node, "cpu@0")) {
			assert_int_equal(kvm_vcpu_state_check(edited, node), -EINVAL);
			assert_int_equal(kvm_vcpu_state_load(dst.vcpu, dst.kvm, edited, node, 0),
					 -EINVAL);
		} else {
			assert_int_equal(kvm_vm_state_check(edited, node), -EINVAL);
			assert_int_equal(kvm_vm_state_load(dst.vm, edited, node, 0), -EINVAL);
		}
		/* Untouched: no CPUID set, same registers, same PIT. */
		c = calloc(1, sizeof(*c) + CPUID_CAP * sizeof(c->entries[0]));
		assert_non_null(c);
		c->nent = CPUID_CAP;
		assert_int_equal(ioctl(dst.vcpu, KVM_GET_CPUID2, c), 0);
		assert_int_equal(c->nent, 0);
		free(c);
		assert_int_equal(ioctl(dst.vcpu, KVM_GET_REGS, &after), 0);
		assert_memory_equal(&before, &after, sizeof(before));
		assert_int_equal(ioctl(dst.vm, KVM_GET_PIT2, &pit_after), 0);
		assert_int_equal(pit_after.channels[0].count, pit_before.channels[0].count);
		assert_int_equal(pit_after.channels[0].mode, pit_before.channels[0].mode);
		tvm_close(&dst);
	}
}

static void test_good_tree_checks(void **state)
{
	(void)state;
	if (!make_good_tree()) {
		skip();
		return;
	}
	assert_int_equal(kvm_vcpu_state_check(tree, node_of(tree, "cpu@0")), 0);
	assert_int_equal(kvm_vm_state_check(tree, node_of(tree, "kvm-vm")), 0);
	/* A VM node is not a vCPU node and the other way round. */
	assert_int_equal(kvm_vcpu_state_check(tree, node_of(tree, "kvm-vm")), -EINVAL);
	assert_int_equal(kvm_vm_state_check(tree, node_of(tree, "cpu@0")), -EINVAL);
}

static void test_missing_property(void **state)
{
	static const char *const vcpu_props[] = {
	    "version", "regs",	   "sregs*",  "xcrs",	    "xsave",	"xsave-size",
	    "msrs",    "nr-msrs",  "lapic",   "events",	    "mp-state", "debugregs",
	    "cpuid",   "nr-cpuid", "tsc-khz", "realtime-ns"};
	static const char *const vm_props[] = {"version",     "pic-master", "pic-slave",
					       "ioapic",      "pit2",	    "clock",
					       "clock-flags", "realtime-ns"};
	struct edit edits[sizeof(vcpu_props) / sizeof(vcpu_props[0]) +
			  sizeof(vm_props) / sizeof(vm_props[0])];
	size_t i, n = 0;

	(void)state;
	for (i = 0; i < sizeof(vcpu_props) / sizeof(vcpu_props[0]); i++)
		edits[n++] = (struct edit){
		    "cpu@0", strcmp(vcpu_props[i], "sregs*") ? vcpu_props[i] : sregs_name(),
		    EDIT_DROP, 0, 0};
	for (i = 0; i < sizeof(vm_props) / sizeof(vm_props[0]); i++)
		edits[n++] = (struct edit){"kvm-vm", vm_props[i], EDIT_DROP, 0, 0};
	expect_refused(edits, n);
}

static void test_wrong_size(void **state)
{
	const struct edit edits[] = {
	    {"cpu@0", "regs", EDIT_TRUNCATE, 8, 0},	  {"cpu@0", "lapic", EDIT_REPLACE, 0, 1023},
	    {"cpu@0", sregs_name(), EDIT_TRUNCATE, 8, 0}, {"cpu@0", "events", EDIT_TRUNCATE, 4, 0},
	    {"cpu@0", "xsave", EDIT_TRUNCATE, 64, 0},	  {"cpu@0", "cpuid", EDIT_TRUNCATE, 4, 0},
	    {"cpu@0", "realtime-ns", EDIT_REPLACE, 7, 0}, {"kvm-vm", "ioapic", EDIT_TRUNCATE, 1, 0},
	    {"kvm-vm", "pit2", EDIT_REPLACE, 0, 8},	  {"kvm-vm", "clock", EDIT_REPLACE, 1, 0},
	};

	(void)state;
	expect_refused(edits, sizeof(edits) / sizeof(edits[0]));
}

static void test_truncated_msrs(void **state)
{
	static const struct edit edits[] = {
	    {"cpu@0", "msrs", EDIT_TRUNCATE, 4, 0},  /* half an entry */
	    {"cpu@0", "msrs", EDIT_TRUNCATE, 16, 0}, /* one entry fewer than nr-msrs */
	    {"cpu@0", "nr-msrs", EDIT_REPLACE, 2000, 0},
	    {"cpu@0", "nr-cpuid", EDIT_REPLACE, 1, 0},
	    {"cpu@0", "xsave-size", EDIT_REPLACE, 100, 0},
	};

	(void)state;
	expect_refused(edits, sizeof(edits) / sizeof(edits[0]));
}

static void test_bogus_version(void **state)
{
	static const struct edit edits[] = {
	    {"cpu@0", "version", EDIT_REPLACE, 0, 0},
	    {"cpu@0", "version", EDIT_REPLACE, KVM_STATE_VERSION + 1, 0},
	    {"kvm-vm", "version", EDIT_REPLACE, 0xffffffff, 0},
	};

	(void)state;
	expect_refused(edits, sizeof(edits) / sizeof(edits[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_fields), cmocka_unit_test(test_running_guest_resumes),
	    cmocka_unit_test(test_clock_continues),   cmocka_unit_test(test_clock_elapsed),
	    cmocka_unit_test(test_good_tree_checks),  cmocka_unit_test(test_missing_property),
	    cmocka_unit_test(test_wrong_size),	      cmocka_unit_test(test_truncated_msrs),
	    cmocka_unit_test(test_bogus_version),     cmocka_unit_test(test_capture_then_put),
	};

	return cmocka_run_group_tests_name("kvm_state", tests, NULL, NULL);
}
