// SPDX-License-Identifier: MIT
/*
 * The MSI router: the table it hands KVM keeps KVM's default irqchip routes
 * and adds, moves and drops MSI routes; GSIs are reused.  With /dev/kvm the
 * same table goes through KVM_SET_GSI_ROUTING and an irqfd binds to it
 * (skipped without KVM).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "msi.h"

#define MAXE (40 + MSI_MAX_ROUTES)

static struct kvm_irq_routing_entry table[MAXE];

static const struct kvm_irq_routing_entry *find(unsigned n, uint32_t gsi, uint32_t type,
						uint32_t chip)
{
	for (unsigned i = 0; i < n; i++)
		if (table[i].gsi == gsi && table[i].type == type &&
		    (type != KVM_IRQ_ROUTING_IRQCHIP || table[i].u.irqchip.irqchip == chip))
			return &table[i];
	return NULL;
}

static void test_defaults(void **state)
{
	struct msi_router r;
	unsigned n;

	(void)state;
	assert_int_equal(msi_router_init(&r, -1), 0);
	n = msi_router_table(&r, table, MAXE);
	/* KVM's x86 defaults: 16 PIC pins and 24 IOAPIC pins. */
	assert_int_equal(n, 40);
	for (uint32_t gsi = 0; gsi < 24; gsi++) {
		const struct kvm_irq_routing_entry *e =
		    find(n, gsi, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQCHIP_IOAPIC);

		assert_non_null(e);
		assert_int_equal(e->u.irqchip.pin, gsi);
		e = find(n, gsi, KVM_IRQ_ROUTING_IRQCHIP,
			 gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
		if (gsi < 16) {
			assert_non_null(e);
			assert_int_equal(e->u.irqchip.pin, gsi % 8);
		} else {
			assert_null(e);
		}
	}
	msi_router_destroy(&r);
}

static void test_add_update_remove(void **state)
{
	struct msi_router r;
	uint32_t a, b, c;
	const struct kvm_irq_routing_entry *e;
	unsigned n, updates;

	(void)state;
	assert_int_equal(msi_router_init(&r, -1), 0);
	assert_int_equal(msi_route_add(&r, 0xfee00000, 0x41, &a), 0);
	assert_int_equal(msi_route_add(&r, 0x1fee01000ULL, 0x42, &b), 0);
	assert_true(a >= MSI_GSI_BASE && b >= MSI_GSI_BASE && a != b);
	n = msi_router_table(&r, table, MAXE);
	assert_int_equal(n, 42);
	e = find(n, b, KVM_IRQ_ROUTING_MSI, 0);
	assert_non_null(e);
	assert_int_equal(e->u.msi.address_lo, 0xfee01000);
	assert_int_equal(e->u.msi.address_hi, 1);
	assert_int_equal(e->u.msi.data, 0x42);

	assert_int_equal(msi_route_update(&r, a, 0xfee02000, 0x43), 0);
	e = find(msi_router_table(&r, table, MAXE), a, KVM_IRQ_ROUTING_MSI, 0);
	assert_int_equal(e->u.msi.address_lo, 0xfee02000);
	assert_int_equal(e->u.msi.data, 0x43);
	/* An unchanged message does not rewrite the table. */
	updates = r.nr_updates;
	assert_int_equal(msi_route_update(&r, a, 0xfee02000, 0x43), 0);
	assert_int_equal(r.nr_updates, updates);

	/* Irqchip GSIs and unknown GSIs are not ours to change. */
	assert_int_equal(msi_route_update(&r, 4, 0xfee00000, 1), -ENOENT);
	assert_int_equal(msi_route_update(&r, 5000, 0xfee00000, 1), -ENOENT);
	assert_int_equal(msi_route_remove(&r, 4), -ENOENT);

	assert_int_equal(msi_route_remove(&r, a), 0);
	assert_int_equal(msi_route_remove(&r, a), -ENOENT);
	n = msi_router_table(&r, table, MAXE);
	assert_int_equal(n, 41);
	assert_null(find(n, a, KVM_IRQ_ROUTING_MSI, 0));
	/* The freed GSI is given out again. */
	assert_int_equal(msi_route_add(&r, 0xfee00000, 0x44, &c), 0);
	assert_int_equal(c, a);
	msi_router_destroy(&r);
}

static void test_full(void **state)
{
	struct msi_router r;
	uint32_t gsi;

	(void)state;
	assert_int_equal(msi_router_init(&r, -1), 0);
	for (unsigned i = 0; i < MSI_MAX_ROUTES; i++)
		assert_int_equal(msi_route_add(&r, 0xfee00000, i, &gsi), 0);
	assert_int_equal(msi_route_add(&r, 0xfee00000, 0, &gsi), -ENOSPC);
	assert_int_equal(msi_router_table(&r, table, MAXE), 40 + MSI_MAX_ROUTES);
	msi_router_destroy(&r);
}

static void test_kvm(void **state)
{
	struct msi_router r;
	uint32_t gsi;
	int kvm, vm, efd;

	(void)state;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		skip();
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);
	/* Routing needs the in-kernel irqchip first. */
	assert_int_equal(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	assert_int_equal(msi_router_init(&r, vm), 0);
	assert_int_equal(msi_route_add(&r, 0xfee00000, 0x4041, &gsi), 0);
	efd = eventfd(0, EFD_CLOEXEC);
	assert_true(efd >= 0);
	assert_int_equal(msi_irqfd(&r, efd, gsi, true), 0);
	assert_int_equal(msi_route_update(&r, gsi, 0xfee01000, 0x4042), 0);
	assert_int_equal(msi_irqfd(&r, efd, gsi, false), 0);
	assert_int_equal(msi_route_remove(&r, gsi), 0);
	msi_router_destroy(&r);
	close(efd);
	close(vm);
	close(kvm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_add_update_remove),
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_kvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
