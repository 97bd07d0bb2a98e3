// SPDX-License-Identifier: MIT
/*
 * TSC frequency and pacing.  Guests have no timer interrupts; every delay
 * spins on rdtsc, which runs natively in ring 3.
 */
#include "kit.h"

#define CPUID_HYPERVISOR (1u << 31) /* CPUID.1:ECX */
#define ASSUMED_KHZ	 2000000

static uint64_t khz;
static const char *source;

extern uint32_t kit_hv_tsc_khz; /* read by ring 0 at entry (boot.S) */

static uint64_t probe_khz(void)
{
	uint32_t r[4], max;
	uint64_t v = cmdline_get_u64("tsc_khz", 0);

	/* Hosts that hide the frequency (QEMU on AMD) can be told it. */
	if (v) {
		source = "cmdline";
		return v;
	}
	if (kit_hv_tsc_khz) {
		source = "hypervisor";
		return kit_hv_tsc_khz;
	}
	cpuid(0, 0, r);
	max = r[0];
	if (max >= 0x15) {
		/* eax/ebx = TSC/crystal ratio, ecx = crystal Hz */
		cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2]) {
			source = "cpuid15";
			return (uint64_t)r[2] * r[1] / r[0] / 1000;
		}
	}
	cpuid(1, 0, r);
	if (r[2] & CPUID_HYPERVISOR) {
		cpuid(0x40000000, 0, r);
		if (r[0] >= 0x40000010 && r[0] < 0x40010000) {
			cpuid(0x40000010, 0, r);
			if (r[0]) {
				source = "hypervisor";
				return r[0];
			}
		}
	}
	if (max >= 0x16) {
		cpuid(0x16, 0, r);
		if (r[0] & 0xffff) {
			source = "cpuid16";
			return (uint64_t)(r[0] & 0xffff) * 1000;
		}
	}
	source = "assumed";
	printf("kit: warning: TSC frequency unknown, assuming 2 GHz\n");
	return ASSUMED_KHZ;
}

uint64_t tsc_khz(void)
{
	if (!khz)
		khz = probe_khz();
	return khz;
}

const char *tsc_khz_source(void)
{
	tsc_khz();
	return source;
}

void tsc_delay_us(uint64_t us)
{
	uint64_t end = rdtsc() + us * tsc_khz() / 1000;

	while ((int64_t)(rdtsc() - end) < 0)
		cpu_relax();
}

void tsc_period_start(struct tsc_period *p, uint64_t ticks)
{
	p->ticks = ticks ? ticks : 1;
	p->next = rdtsc() + p->ticks;
}

uint64_t tsc_period_wait(struct tsc_period *p)
{
	uint64_t now, missed;

	for (;;) {
		now = rdtsc();
		if (now >= p->next)
			break;
		/* The TSC went backwards (restored elsewhere): restart. */
		if (p->next - now > 2 * p->ticks) {
			p->next = now + p->ticks;
			return 0;
		}
		cpu_relax();
	}
	missed = (now - p->next) / p->ticks;
	if (missed)
		p->next = now + p->ticks;
	else
		p->next += p->ticks;
	return missed;
}
