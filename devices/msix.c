// SPDX-License-Identifier: MIT
/* MSI-X capability, table and PBA; vectors delivered through irqfd (or a callback in tests). */
#include "msix.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define ENTRY_ADDR_LO 0
#define ENTRY_ADDR_HI 4
#define ENTRY_DATA    8
#define ENTRY_CTRL    12

int msix_init(struct msix *m, struct pci_device *dev, unsigned nr, int bar, uint32_t table_off,
	      uint32_t pba_off, struct msi_router *router,
	      void (*signal)(void *opaque, uint64_t addr, uint32_t data), void *signal_opaque)
{
	int cap;

	if (nr == 0 || nr > MSIX_MAX_VECTORS || bar < 0 || bar >= PCI_NR_BARS || (table_off & 7) ||
	    (pba_off & 7))
		return -EINVAL;
	cap = pci_add_capability(dev, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
	if (cap < 0)
		return cap;
	memset(m, 0, sizeof(*m));
	m->nr = nr;
	m->cap = cap;
	m->table_off = table_off;
	m->pba_off = pba_off;
	m->router = router;
	m->signal = signal;
	m->signal_opaque = signal_opaque;
	for (unsigned i = 0; i < MSIX_MAX_VECTORS; i++) {
		m->v[i].efd = m->v[i].gsi = -1;
		m->v[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
	}
	pci_set16(dev->config, cap + PCI_MSIX_FLAGS, (uint16_t)(nr - 1));
	pci_set32(dev->config, cap + PCI_MSIX_TABLE, table_off | (uint32_t)bar);
	pci_set32(dev->config, cap + PCI_MSIX_PBA, pba_off | (uint32_t)bar);
	pci_set16(dev->wmask, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	return 0;
}

void msix_destroy(struct msix *m)
{
	for (unsigned i = 0; i < m->nr; i++) {
		struct msix_vector *v = &m->v[i];

		if (v->efd >= 0) {
			if (v->gsi >= 0 && m->router)
				msi_irqfd(m->router, v->efd, (uint32_t)v->gsi, false);
			close(v->efd);
		}
		if (v->gsi >= 0 && m->router)
			msi_route_remove(m->router, (uint32_t)v->gsi);
		v->efd = v->gsi = -1;
	}
}

static uint64_t entry_addr(const struct msix_vector *v)
{
	return (uint64_t)v->addr_hi << 32 | v->addr_lo;
}

static bool masked(const struct msix *m, const struct msix_vector *v)
{
	return m->fmask || (v->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

static void fire(struct msix *m, unsigned i)
{
	struct msix_vector *v = &m->v[i];
	uint64_t one = 1;

	if (v->efd >= 0) {
		/* Only fails when the counter would overflow: an interrupt is pending anyway. */
		if (write(v->efd, &one, sizeof(one)) < 0) {
		}
	} else if (!m->router && m->signal) {
		m->signal(m->signal_opaque, entry_addr(v), v->data);
	}
}

static void sync_route(struct msix *m, struct msix_vector *v)
{
	int ret;

	v->route_stale = false;
	if (v->gsi < 0 || !m->router)
		return;
	ret = msi_route_update(m->router, (uint32_t)v->gsi, entry_addr(v), v->data);
	if (ret)
		pr_warn("MSI-X route %d: %s", v->gsi, strerror(-ret));
}

/* Something may have been unmasked: deliver what is pending and now allowed. */
static void deliver_pending(struct msix *m)
{
	if (!m->enabled || m->fmask || !m->pba)
		return;
	for (unsigned i = 0; i < m->nr; i++) {
		struct msix_vector *v = &m->v[i];

		if (!(m->pba & (1ULL << i)) || masked(m, v))
			continue;
		m->pba &= ~(1ULL << i);
		if (v->route_stale)
			sync_route(m, v);
		fire(m, i);
	}
}

static void table_write(struct msix *m, unsigned i, unsigned field, uint32_t val)
{
	struct msix_vector *v = &m->v[i];
	bool was_masked = v->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT;

	switch (field) {
	case ENTRY_ADDR_LO:
		v->addr_lo = val;
		break;
	case ENTRY_ADDR_HI:
		v->addr_hi = val;
		break;
	case ENTRY_DATA:
		v->data = val;
		break;
	case ENTRY_CTRL:
		v->ctrl = val & PCI_MSIX_ENTRY_CTRL_MASKBIT;
		if (was_masked && !(v->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT)) {
			if (v->route_stale)
				sync_route(m, v);
			deliver_pending(m);
		}
		return;
	}
	/* Software should mask before reprogramming; older Linux does not, so follow at once. */
	if (masked(m, v))
		v->route_stale = true;
	else
		sync_route(m, v);
}

static uint32_t table_read(const struct msix *m, unsigned i, unsigned field)
{
	const struct msix_vector *v = &m->v[i];

	switch (field) {
	case ENTRY_ADDR_LO:
		return v->addr_lo;
	case ENTRY_ADDR_HI:
		return v->addr_hi;
	case ENTRY_DATA:
		return v->data;
	default:
		return v->ctrl;
	}
}

/* One naturally aligned dword of the BAR. */
static void dword_access(struct msix *m, uint64_t off, uint8_t *data, bool is_write)
{
	uint64_t table_end = m->table_off + (uint64_t)m->nr * MSIX_ENTRY_SIZE;
	uint32_t val = 0;

	if (off >= m->table_off && off < table_end) {
		unsigned i = (unsigned)((off - m->table_off) / MSIX_ENTRY_SIZE);
		unsigned field = (unsigned)((off - m->table_off) % MSIX_ENTRY_SIZE);

		if (is_write) {
			table_write(m, i, field, pci_get32(data, 0));
			return;
		}
		val = table_read(m, i, field);
	} else if (off == m->pba_off && !is_write) {
		val = (uint32_t)m->pba;
	} else if (off == m->pba_off + 4 && !is_write) {
		val = (uint32_t)(m->pba >> 32);
	}
	if (!is_write)
		pci_set32(data, 0, val);
}

void msix_bar_access(struct msix *m, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	if ((len != 4 && len != 8) || (offset & (len - 1))) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	dword_access(m, offset, data, is_write);
	if (len == 8)
		dword_access(m, offset + 4, data + 4, is_write);
}

void msix_config_changed(struct msix *m, const uint8_t *config)
{
	uint16_t flags = pci_get16(config, (unsigned)m->cap + PCI_MSIX_FLAGS);

	m->enabled = flags & PCI_MSIX_FLAGS_ENABLE;
	m->fmask = flags & PCI_MSIX_FLAGS_MASKALL;
	for (unsigned i = 0; i < m->nr; i++)
		if (m->v[i].route_stale && !masked(m, &m->v[i]))
			sync_route(m, &m->v[i]);
	deliver_pending(m);
}

int msix_use_vector(struct msix *m, unsigned i)
{
	struct msix_vector *v;
	uint32_t gsi;
	int efd, ret;

	if (i >= m->nr)
		return -EINVAL;
	v = &m->v[i];
	if (!m->router || v->efd >= 0)
		return 0;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return -errno;
	ret = msi_route_add(m->router, entry_addr(v), v->data, &gsi);
	if (ret) {
		close(efd);
		return ret;
	}
	ret = msi_irqfd(m->router, efd, gsi, true);
	if (ret) {
		msi_route_remove(m->router, gsi);
		close(efd);
		return ret;
	}
	v->efd = efd;
	v->gsi = (int)gsi;
	v->route_stale = false;
	return 0;
}

void msix_notify(struct msix *m, unsigned i)
{
	if (i >= m->nr || !m->enabled)
		return;
	if (masked(m, &m->v[i])) {
		m->pba |= 1ULL << i;
		return;
	}
	fire(m, i);
}

void msix_get_table(const struct msix *m, uint8_t *table)
{
	for (unsigned i = 0; i < m->nr; i++) {
		uint8_t *e = table + i * MSIX_ENTRY_SIZE;

		pci_set32(e, ENTRY_ADDR_LO, m->v[i].addr_lo);
		pci_set32(e, ENTRY_ADDR_HI, m->v[i].addr_hi);
		pci_set32(e, ENTRY_DATA, m->v[i].data);
		pci_set32(e, ENTRY_CTRL, m->v[i].ctrl);
	}
}

int msix_set_table(struct msix *m, const uint8_t *table, uint64_t pba)
{
	unsigned i;

	if (m->nr < 64 && (pba >> m->nr))
		return -EINVAL;
	for (i = 0; i < m->nr; i++)
		if (pci_get32(table + i * MSIX_ENTRY_SIZE, ENTRY_CTRL) &
		    ~PCI_MSIX_ENTRY_CTRL_MASKBIT)
			return -EINVAL;
	for (i = 0; i < m->nr; i++) {
		const uint8_t *e = table + i * MSIX_ENTRY_SIZE;
		struct msix_vector *v = &m->v[i];

		v->addr_lo = pci_get32(e, ENTRY_ADDR_LO);
		v->addr_hi = pci_get32(e, ENTRY_ADDR_HI);
		v->data = pci_get32(e, ENTRY_DATA);
		v->ctrl = pci_get32(e, ENTRY_CTRL);
		sync_route(m, v);
	}
	m->pba = pba;
	return 0;
}
