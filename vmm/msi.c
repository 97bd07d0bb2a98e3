// SPDX-License-Identifier: MIT
/* KVM's GSI routing table kept whole (irqchip defaults + MSI routes), and irqfds. */
#include "msi.h"
#include "log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define PIC_GSIS    16
#define MAX_ENTRIES (MSI_IRQCHIP_GSIS + PIC_GSIS + MSI_MAX_ROUTES)

static unsigned build_table(const struct msi_router *r, struct kvm_irq_routing_entry *e,
			    unsigned max)
{
	unsigned n = 0, gsi, i;

	/* What KVM_CREATE_IRQCHIP installs on x86: PIC and IOAPIC for 0-15, IOAPIC for 16-23. */
	for (gsi = 0; gsi < MSI_IRQCHIP_GSIS; gsi++) {
		if (gsi < PIC_GSIS && n < max)
			e[n++] = (struct kvm_irq_routing_entry){
			    .gsi = gsi,
			    .type = KVM_IRQ_ROUTING_IRQCHIP,
			    .u.irqchip = {.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
							     : KVM_IRQCHIP_PIC_SLAVE,
					  .pin = gsi % 8}};
		if (n < max)
			e[n++] = (struct kvm_irq_routing_entry){
			    .gsi = gsi,
			    .type = KVM_IRQ_ROUTING_IRQCHIP,
			    .u.irqchip = {.irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi}};
	}
	for (i = 0; i < MSI_MAX_ROUTES && n < max; i++) {
		const struct msi_route *m = &r->routes[i];

		if (!m->used)
			continue;
		e[n++] = (struct kvm_irq_routing_entry){
		    .gsi = MSI_GSI_BASE + i,
		    .type = KVM_IRQ_ROUTING_MSI,
		    .u.msi = {.address_lo = (uint32_t)m->addr,
			      .address_hi = (uint32_t)(m->addr >> 32),
			      .data = m->data}};
	}
	return n;
}

/* Hand the whole table to KVM; lock held. */
static int commit(struct msi_router *r)
{
	struct kvm_irq_routing *t;
	int ret = 0;

	r->nr_updates++;
	if (r->vm_fd < 0)
		return 0;
	t = calloc(1, sizeof(*t) + MAX_ENTRIES * sizeof(t->entries[0]));
	if (!t)
		return -ENOMEM;
	t->nr = build_table(r, t->entries, MAX_ENTRIES);
	if (ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, t) < 0) {
		ret = -errno;
		pr_warn("KVM_SET_GSI_ROUTING (%u entries): %s", t->nr, strerror(errno));
	}
	free(t);
	return ret;
}

int msi_router_init(struct msi_router *r, int vm_fd)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->vm_fd = vm_fd;
	if (vm_fd >= 0 && ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING) <= 0)
		return -ENOTSUP;
	ret = pthread_mutex_init(&r->lock, NULL);
	if (ret)
		return -ret;
	/* Installing the defaults now proves KVM takes our table before any device needs it. */
	ret = commit(r);
	if (ret)
		pthread_mutex_destroy(&r->lock);
	return ret;
}

void msi_router_destroy(struct msi_router *r)
{
	pthread_mutex_destroy(&r->lock);
}

static struct msi_route *lookup(struct msi_router *r, uint32_t gsi)
{
	if (gsi < MSI_GSI_BASE || gsi - MSI_GSI_BASE >= MSI_MAX_ROUTES)
		return NULL;
	if (!r->routes[gsi - MSI_GSI_BASE].used)
		return NULL;
	return &r->routes[gsi - MSI_GSI_BASE];
}

int msi_route_add(struct msi_router *r, uint64_t addr, uint32_t data, uint32_t *gsi)
{
	unsigned i;
	int ret;

	pthread_mutex_lock(&r->lock);
	for (i = 0; i < MSI_MAX_ROUTES && r->routes[i].used; i++)
		;
	if (i == MSI_MAX_ROUTES) {
		pthread_mutex_unlock(&r->lock);
		return -ENOSPC;
	}
	r->routes[i] = (struct msi_route){.used = true, .addr = addr, .data = data};
	ret = commit(r);
	if (ret)
		r->routes[i].used = false;
	else
		*gsi = MSI_GSI_BASE + i;
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int msi_route_update(struct msi_router *r, uint32_t gsi, uint64_t addr, uint32_t data)
{
	struct msi_route *m, old;
	int ret = -ENOENT;

	pthread_mutex_lock(&r->lock);
	m = lookup(r, gsi);
	if (m) {
		ret = 0;
		if (m->addr != addr || m->data != data) {
			old = *m;
			m->addr = addr;
			m->data = data;
			ret = commit(r);
			if (ret)
				*m = old;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int msi_route_remove(struct msi_router *r, uint32_t gsi)
{
	struct msi_route *m;
	int ret = -ENOENT;

	pthread_mutex_lock(&r->lock);
	m = lookup(r, gsi);
	if (m) {
		m->used = false;
		/* KVM keeps a stale route if this fails: harmless, nothing raises it any more. */
		commit(r);
		ret = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int msi_irqfd(struct msi_router *r, int efd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd irqfd = {
	    .fd = (uint32_t)efd,
	    .gsi = gsi,
	    .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	if (r->vm_fd < 0)
		return 0;
	if (ioctl(r->vm_fd, KVM_IRQFD, &irqfd) < 0)
		return -errno;
	return 0;
}

unsigned msi_router_table(struct msi_router *r, void *entries, unsigned max)
{
	unsigned n;

	pthread_mutex_lock(&r->lock);
	n = build_table(r, entries, max);
	pthread_mutex_unlock(&r->lock);
	return n;
}
