/* SPDX-License-Identifier: MIT */
/*
 * The whole VM as two state trees (state.h), the payloads of the stream's
 * CONFIG and STATE sections (stream.h):
 *
 *  CONFIG  the machine: RAM size, vCPU count, and each device with its
 *          backend (disk path, read-only, serial; tap name and MAC;
 *          console kind and path; rng).  Read before a VM exists, to
 *          build the same machine on the other side.
 *  STATE   what runs: "kvm" (PIC, IOAPIC, PIT, kvmclock), "cpu@N" per
 *          vCPU, one node per device ("com1", "i8042", "pci", "power",
 *          "virtio-blk@N", "virtio-net@N", "virtio-console", "virtio-rng").
 *
 * Saving needs the VM paused (vm_pause) with its disks quiesced
 * (vm_state_quiesce); loading a VM that has not started.  Trees are
 * malloc'd; the caller frees them.
 */
#ifndef VMM_VM_STATE_H
#define VMM_VM_STATE_H

#include <stddef.h>

#include "options.h"

struct vm;

#define VM_STATE_VERSION 1

/* Build the CONFIG tree.  0 or -errno. */
int vm_config_save(struct vm *vm, void **tree, size_t *len);

/*
 * Complete opts from a CONFIG tree (already fdt_check_full'ed): RAM size
 * and vCPU count always; disks, nets, console and rng from the tree unless
 * the command line gave them, in which case they must match the tree in
 * number and kind.  0, or -EINVAL with one line in err.
 */
int vm_config_apply(const void *tree, struct vm_options *opts, char *err, size_t errlen);

/* Stop the devices' own threads from touching guest RAM (disks' in-flight requests). */
void vm_state_quiesce(struct vm *vm);
void vm_state_unquiesce(struct vm *vm);

/*
 * Ask every vCPU of a paused VM to read its own KVM state now, on its parked
 * thread, while the caller does other pause work (dirty log, page copy); the
 * next vm_state_save puts those reads in the tree (waiting for any still
 * running, reading itself a vCPU whose thread has not begun).  A pause that
 * ends without vm_state_save calls vm_state_capture_end first.
 */
void vm_state_capture_start(struct vm *vm);
void vm_state_capture_end(struct vm *vm);

/* Build the STATE tree of a paused, quiesced VM (ends any capture).  0 or -errno. */
int vm_state_save(struct vm *vm, void **tree, size_t *len);

/*
 * Load a STATE tree (already fdt_check_full'ed) into a VM built from the
 * matching CONFIG that has not started: KVM's devices, then the vCPUs,
 * then the VMM's devices.  flags: KVM_STATE_CLOCK_* (kvm_state.h).  0, or
 * -EINVAL / -errno with the reason printed; the VM must then not be run.
 */
int vm_state_load(struct vm *vm, const void *tree, unsigned flags);

#endif
