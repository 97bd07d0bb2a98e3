// SPDX-License-Identifier: MIT
/* The port-I/O and MMIO buses: a sorted array of ranges, searched by bisection. */
#include "bus.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *bus, const char *name)
{
	int ret;

	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	ret = pthread_rwlock_init(&bus->lock, NULL);
	return -ret;
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	bus->ranges = NULL;
	bus->nr_ranges = bus->cap = 0;
	pthread_rwlock_destroy(&bus->lock);
}

/* Index of the first range whose base is above addr (0..nr_ranges). */
static int upper_bound(const struct bus *bus, uint64_t addr)
{
	int lo = 0, hi = bus->nr_ranges;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (bus->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The range holding addr, or NULL. */
static struct bus_range *find(const struct bus *bus, uint64_t addr)
{
	int i = upper_bound(bus, addr) - 1;

	if (i < 0 || addr - bus->ranges[i].base >= bus->ranges[i].len)
		return NULL;
	return &bus->ranges[i];
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn handler, void *opaque,
		 const char *name)
{
	uint64_t last = base + (len - 1);
	int pos, ret = 0;

	if (len == 0 || last < base || !handler)
		return -EINVAL;

	pthread_rwlock_wrlock(&bus->lock);
	pos = upper_bound(bus, base);
	/* Sorted and disjoint: only the neighbours can overlap. */
	if (pos > 0 && base - bus->ranges[pos - 1].base < bus->ranges[pos - 1].len) {
		ret = -EEXIST;
		goto out;
	}
	if (pos < bus->nr_ranges && bus->ranges[pos].base <= last) {
		ret = -EEXIST;
		goto out;
	}
	if (bus->nr_ranges == bus->cap) {
		int cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *r = realloc(bus->ranges, (size_t)cap * sizeof(*r));

		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos],
		(size_t)(bus->nr_ranges - pos) * sizeof(bus->ranges[0]));
	bus->ranges[pos] = (struct bus_range){
	    .base = base, .len = len, .handler = handler, .opaque = opaque, .name = name};
	bus->nr_ranges++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	int pos, ret = -ENOENT;

	pthread_rwlock_wrlock(&bus->lock);
	pos = upper_bound(bus, base) - 1;
	if (pos >= 0 && bus->ranges[pos].base == base) {
		memmove(&bus->ranges[pos], &bus->ranges[pos + 1],
			(size_t)(bus->nr_ranges - pos - 1) * sizeof(bus->ranges[0]));
		bus->nr_ranges--;
		ret = 0;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

/* First failure of a range: say so once, so a misbehaving guest cannot flood the log. */
static void warn_once(struct bus *bus, uint64_t base, bus_handler_fn handler, void *opaque,
		      uint64_t addr, bool is_write, int err)
{
	struct bus_range *r;
	const char *name = NULL;
	bool say = false;

	pthread_rwlock_rdlock(&bus->lock);
	r = find(bus, base);
	/* Readers share the lock, so the flag is flipped atomically. */
	if (r && r->base == base && r->handler == handler && r->opaque == opaque &&
	    !__atomic_exchange_n(&r->warned, true, __ATOMIC_RELAXED)) {
		say = true;
		name = r->name;
	}
	pthread_rwlock_unlock(&bus->lock);
	if (say)
		pr_warn("%s: %s %s at %#llx failed: %s (further errors not shown)", bus->name,
			name ? name : "?", is_write ? "write" : "read", (unsigned long long)addr,
			strerror(-err));
}

int bus_access(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	struct bus_range *r;
	bus_handler_fn handler = NULL;
	void *opaque = NULL;
	uint64_t base = 0;
	int ret;

	if (len != 1 && len != 2 && len != 4 && len != 8) {
		ret = -EINVAL;
		goto fail;
	}
	pthread_rwlock_rdlock(&bus->lock);
	r = find(bus, addr);
	/* The whole access must fit: handlers trust offset + len. */
	if (r && len <= r->len - (addr - r->base)) {
		handler = r->handler;
		opaque = r->opaque;
		base = r->base;
	}
	pthread_rwlock_unlock(&bus->lock);
	if (!handler) {
		ret = -ENODEV;
		goto fail;
	}

	ret = handler(opaque, addr - base, data, len, is_write);
	if (ret == 0)
		return 0;
	warn_once(bus, base, handler, opaque, addr, is_write, ret);
fail:
	if (!is_write && len <= 8)
		memset(data, 0xff, len);
	return ret;
}
