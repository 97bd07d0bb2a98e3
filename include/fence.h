/* SPDX-License-Identifier: MIT */
/*
 * Fencing with a witness (witness.h): the side that runs the guest holds the
 * VM's etcd lease, renews it on a thread of its own, and stops the guest at
 * once (and lets no more output out) when it loses the lease or can no
 * longer prove it holds it.  Without --witness every call is a no-op that
 * says "allowed": the documented default, in which a cut replication link
 * lets both sides run.
 */
#ifndef VMM_FENCE_H
#define VMM_FENCE_H

#include <pthread.h>
#include <stdbool.h>

#include "options.h"

struct vm;
struct witness;

struct fence {
	struct witness *w; /* NULL: no witness configured */
	struct vm *vm;
	unsigned ttl_ms;
	pthread_t renewer;
	bool renewing;
	pthread_mutex_t lock;
	pthread_mutex_t wlock; /* the witness's connection: one call at a time */
	pthread_cond_t cond;
	bool quit;
	bool lost; /* the lease is gone: the guest must not run here */
};

/* Open the witness of the options (--witness, --vm-name); no-op without.  0 or -errno (printed). */
int fence_open(struct fence *f, const struct vm_options *opts, const char *role);

/* Acquire the lease (waiting up to wait_ms for another holder's to expire), then keep it. */
int fence_acquire(struct fence *f, struct vm *vm, unsigned wait_ms);

/* May this side run the guest and let output out now?  Any thread, cheap. */
bool fence_allowed(struct fence *f);

/* How long a takeover must be ready to wait for the other side's lease. */
unsigned fence_takeover_wait_ms(const struct fence *f);

/*
 * Which replication session may take over (witness side record
 * "protected-by"): the primary names its session once its standby holds a
 * checkpoint, and clears it before it lets output out unprotected, so a
 * standby whose copy went stale can never resume it.  Without a witness:
 * 0.  Else 0, -ENOLCK (not the holder), or an unreachable error.
 */
int fence_set_session(struct fence *f, uint64_t session);
int fence_clear_session(struct fence *f);
/* The standby, holding the lease: is its session the one named?  0, -ESTALE, or an error. */
int fence_check_session(struct fence *f, uint64_t session);

/* Stop renewing; hand the lease back if release (a clean end: the other side may go at once). */
void fence_close(struct fence *f, bool release);

#endif
