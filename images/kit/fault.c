// SPDX-License-Identifier: MIT
/*
 * Ring 0's only C code: report an exception on COM1 and power off, so that
 * a fault is a visible line and an exit status, never a hang.
 */
#include "kit.h"

struct kit_frame {
	uint64_t vector;
	uint64_t error;
	uint64_t rip;
	uint64_t cs;
	uint64_t rflags;
	uint64_t rsp;
	uint64_t ss;
};

__attribute__((noreturn)) void kit_fault(const struct kit_frame *f);

static const char *const names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE",  "#CP",
};

void kit_fault(const struct kit_frame *f)
{
	static int depth;
	static const struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) no_idt;
	uint64_t cr2;

	/* A fault while reporting one: stop the machine hard. */
	if (depth++)
		__asm__ volatile("lidt %0; int3" : : "m"(no_idt));
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	printf("kit: fault vector=%lu (%s) error=0x%lx rip=0x%lx cs=0x%lx rflags=0x%lx rsp=0x%lx "
	       "cr2=0x%lx\n",
	       f->vector, f->vector < 32 && names[f->vector] ? names[f->vector] : "?", f->error,
	       f->rip, f->cs, f->rflags, f->rsp, cr2);
	poweroff(KIT_EXIT_FAULT);
}
