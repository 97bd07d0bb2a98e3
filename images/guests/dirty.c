// SPDX-License-Identifier: MIT
/*
 * dirty: writes `rate` distinct pages per millisecond, sweeping a region of
 * `pages` pages in order, and checks the whole region every report_ms.
 *
 * Page i written in sweep g holds i, g and eight words derived from both,
 * one per 512 bytes.  Since the sweep order is fixed, the guest knows the
 * generation every page must hold: a page that a migration or checkpoint
 * left stale (or torn) fails the check.
 *
 * Keys: rate (pages/ms, default 10; 0 = as fast as possible), pages
 * (default 4096), report_ms (default 1000), duration_ms (default 0 =
 * forever).  Slots the guest could not run in (paused) are not made up, so
 * the reported rate is the work it really did per wall-clock millisecond.
 */
#include "kit.h"

#define REGION_ALIGN  (2UL << 20)
#define SPOTS	      8 /* checked words per page, 512 bytes apart */
#define SPOT_STRIDE   (PAGE_SIZE / 8 / SPOTS)
#define UNPACED_BATCH 256
#define MAX_PAGES     (1UL << 28)

struct region {
	uint64_t *base;
	uint64_t pages;
	uint64_t cursor; /* next page to write */
	uint64_t gen;	 /* sweep in progress; pages >= cursor still hold gen - 1 */
};

static uint64_t mix(uint64_t i, uint64_t gen, uint64_t k)
{
	uint64_t z = i * 0x9e3779b97f4a7c15ULL ^ (gen << 20) ^ (k << 56);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void write_page(struct region *r, uint64_t i, uint64_t gen)
{
	volatile uint64_t *p = r->base + i * (PAGE_SIZE / 8);
	unsigned k;

	p[0] = i;
	p[1] = gen;
	p[2] = mix(i, gen, 0);
	for (k = 1; k < SPOTS; k++)
		p[k * SPOT_STRIDE] = mix(i, gen, k);
}

static bool page_ok(const struct region *r, uint64_t i, uint64_t gen)
{
	const volatile uint64_t *p = r->base + i * (PAGE_SIZE / 8);
	unsigned k;

	if (p[0] != i || p[1] != gen || p[2] != mix(i, gen, 0))
		return false;
	for (k = 1; k < SPOTS; k++) {
		if (p[k * SPOT_STRIDE] != mix(i, gen, k))
			return false;
	}
	return true;
}

static void dirty_one(struct region *r)
{
	write_page(r, r->cursor, r->gen);
	if (++r->cursor == r->pages) {
		r->cursor = 0;
		r->gen++;
	}
}

static bool verify(const struct region *r)
{
	uint64_t i;

	for (i = 0; i < r->pages; i++) {
		uint64_t want = i < r->cursor ? r->gen : r->gen - 1;
		const volatile uint64_t *p = r->base + i * (PAGE_SIZE / 8);

		if (!page_ok(r, i, want)) {
			printf(
			    "dirty: mismatch page=%lu expected gen=%lu found index=%lu gen=%lu\n",
			    i, want, p[0], p[1]);
			return false;
		}
	}
	return true;
}

/* Prints the report line; false if the region failed its check. */
static bool report(const struct region *r, uint64_t written, uint64_t ticks)
{
	uint64_t centi = ticks ? written * tsc_khz() * 100 / ticks : 0;
	bool ok = verify(r);

	printf("dirty: rate=%lu.%02lu gen=%lu verify=%s\n", centi / 100, centi % 100, r->gen,
	       ok ? "ok" : "FAIL");
	return ok;
}

int main(const char *cmdline)
{
	uint64_t rate = cmdline_get_u64("rate", 10);
	uint64_t report_ms = cmdline_get_u64("report_ms", 1000);
	uint64_t duration_ms = cmdline_get_u64("duration_ms", 0);
	uint64_t khz = tsc_khz();
	struct region r = {.pages = cmdline_get_u64("pages", 4096), .gen = 1};
	uint64_t base, i, t0, window, written = 0, now;
	struct tsc_period slot;

	(void)cmdline;
	base = (kit_image_end() + REGION_ALIGN - 1) & ~(REGION_ALIGN - 1);
	printf("dirty: start pages=%lu rate=%lu report_ms=%lu duration_ms=%lu base=0x%lx "
	       "tsc_khz=%lu (%s)\n",
	       r.pages, rate, report_ms, duration_ms, base, khz, tsc_khz_source());
	if (!r.pages || r.pages > MAX_PAGES || rate > r.pages || !report_ms) {
		printf("dirty: FAIL bad parameters (need 0 < pages <= %lu, rate <= pages, "
		       "report_ms > 0)\n",
		       MAX_PAGES);
		return KIT_EXIT_USAGE;
	}
	if (!kit_ram_usable(base, r.pages * PAGE_SIZE)) {
		printf("dirty: FAIL region 0x%lx-0x%lx is not free RAM in the memmap\n", base,
		       base + r.pages * PAGE_SIZE);
		return KIT_EXIT_USAGE;
	}
	r.base = (uint64_t *)(uintptr_t)base;
	for (i = 0; i < r.pages; i++)
		write_page(&r, i, 0);

	t0 = window = rdtsc();
	tsc_period_start(&slot, khz);
	for (;;) {
		if (rate) {
			for (i = 0; i < rate; i++)
				dirty_one(&r);
			written += rate;
			tsc_period_wait(&slot);
		} else {
			for (i = 0; i < UNPACED_BATCH; i++)
				dirty_one(&r);
			written += UNPACED_BATCH;
		}
		now = rdtsc();
		if (duration_ms && now - t0 >= duration_ms * khz)
			break;
		if (now - window >= report_ms * khz) {
			if (!report(&r, written, now - window))
				return KIT_EXIT_FAIL;
			written = 0;
			window = rdtsc(); /* the check's own time is not the guest's work */
		}
	}
	return report(&r, written, now - window) ? KIT_EXIT_OK : KIT_EXIT_FAIL;
}
