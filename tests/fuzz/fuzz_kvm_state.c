// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the input is a state tree as it would arrive from a
 * snapshot file or a migration peer.  Whatever passes fdt_check_full (as every
 * receiver checks first) goes through kvm_vcpu_state_check and
 * kvm_vm_state_check on every node: the validation the load functions run
 * before they touch KVM.  Nothing may crash or read outside the tree, and a
 * node that passes must have every property a load reads, at its size.
 * Seed: a tree saved from a real VM (tests/fuzz/seeds/fuzz_kvm_state).
 */
#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_state.h"
#include "log.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A node that passed the vCPU check: the loads' own reads must all succeed. */
static void recheck_vcpu(const void *fdt, int node)
{
	static const char *const names[] = {"regs", "xcrs", "lapic", "events", "debugregs"};
	uint32_t v;
	size_t i;

	if (state_get_u32(fdt, node, "version", &v) || v != KVM_STATE_VERSION)
		abort();
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!fdt_getprop(fdt, node, names[i], NULL))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *fdt;
	int node;

	log_verbosity = -1;
	if (size > (1u << 22))
		return 0;
	/* libfdt wants an 8-byte-aligned tree: copy like a receiver's buffer would be. */
	fdt = malloc(size ? size : 1);
	if (!fdt)
		abort();
	memcpy(fdt, data, size);
	if (state_tree_check(fdt, size) == 0) {
		fdt_for_each_subnode(node, fdt, 0)
		{
			if (kvm_vcpu_state_check(fdt, node) == 0)
				recheck_vcpu(fdt, node);
			kvm_vm_state_check(fdt, node);
		}
	}
	free(fdt);
	return 0;
}
