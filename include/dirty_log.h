/* SPDX-License-Identifier: MIT */
/*
 * Which guest pages changed: KVM's dirty log (guest writes, per memory
 * slot) merged with the VMM's own (guest_mem.dirty: device writes KVM does
 * not see), into one bitmap with a bit per page of guest RAM (the memfd's
 * page index, as in the state stream).
 *
 * With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 KVM_GET_DIRTY_LOG leaves pages
 * writable and KVM_CLEAR_DIRTY_LOG re-protects exactly the pages taken, so
 * a page written after the collect is caught by the next one.  Without it
 * KVM_GET_DIRTY_LOG does both at once.
 *
 * Thread: one user at a time (the migration or replication thread).
 */
#ifndef VMM_DIRTY_LOG_H
#define VMM_DIRTY_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_mem.h"

struct dirty_log {
	int vm_fd;
	struct guest_mem *mem;
	bool enabled;
	bool manual_protect;
	uint64_t *scratch; /* one slot's KVM bitmap */
};

/* Bitmap words for mem: (pages + 63) / 64. */
uint64_t dirty_log_words(const struct guest_mem *mem);

/*
 * Turn on KVM dirty logging on every slot of the VM and start from a clean
 * slate (everything written before is the caller's business: it sends all
 * of RAM first).  0 or -errno (printed).
 */
int dirty_log_start(struct dirty_log *d, int vm_fd, struct guest_mem *mem);

/*
 * OR every page dirtied since the last collect (KVM's and the VMM's) into
 * out (dirty_log_words() words) and forget them.  Returns the number of
 * pages newly set in out, or -errno.
 */
int64_t dirty_log_collect(struct dirty_log *d, uint64_t *out);

/*
 * dirty_log_collect for KVM's log alone (the guest's own writes), leaving
 * the VMM's for the next dirty_log_collect.  For copying pages ahead of a
 * pause while the guest runs: a page the guest writes after this returns is
 * in the next collect, and the VMM's writes (whose marks may trail them) all
 * wait for the pause.  Returns pages newly set in out, or -errno.
 */
int64_t dirty_log_collect_guest(struct dirty_log *d, uint64_t *out);

/* Turn KVM dirty logging off again.  Safe on a log that never started. */
void dirty_log_stop(struct dirty_log *d);

#endif
