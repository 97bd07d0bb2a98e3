/* SPDX-License-Identifier: MIT */
/*
 * Live migration, pre-copy, over the state stream (stream.h) on TCP.
 *
 * Source (`vmm ctl SOCK migrate HOST:PORT ...`): a migration thread sends
 * the header and CONFIG, turns on dirty logging, sends every non-zero page
 * while the guest runs, then passes of the pages dirtied meanwhile (KVM's
 * log merged with the VMM's).  When the pages left would go in under the
 * downtime target at the measured rate and one more pass would not at
 * least halve them (or they would take under 1 ms), or after max_passes
 * with force,
 * it pauses the vCPUs and parks the event loop, sends the last pages, the
 * STATE and END, and waits for the destination's answer.  On "loaded"
 * it answers "go" and the source VM ends (status 0); on any failure before
 * that (destination gone, refused, no convergence without force) the guest
 * resumes on the source as if nothing happened.  The destination
 * acknowledges every MEMORY pass once it is in guest memory, so the source
 * never stops the guest while a pass is still queued in socket buffers.
 * Disks are assumed on shared storage: the destination opens the same
 * images.
 *
 * Destination (`vmm run --incoming HOST:PORT`): accepts one connection,
 * builds the VM from CONFIG, reads the rest, loads the state with the
 * elapsed time added to the guest clocks, answers "loaded" and runs only
 * once the source says "go": two copies never run.  If the connection
 * breaks between the two, the destination does not run either (the
 * source may have stopped): the one window where the guest runs nowhere.
 */
#ifndef VMM_MIGRATE_H
#define VMM_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "options.h"

struct vm;

#define MIGRATE_DEFAULT_DOWNTIME_MS 30
#define MIGRATE_DEFAULT_MAX_PASSES  30
#define MIGRATE_ACK_STARTED	    'S' /* destination: loaded, runs on MIGRATE_ACK_GO */
#define MIGRATE_ACK_FAILED	    'F' /* destination: could not load; the source keeps the VM */
#define MIGRATE_ACK_GO		    'G' /* source: stopped for good, the guest is yours */

struct migrate_params {
	char dest[256];
	unsigned downtime_ms;
	unsigned max_passes;
	uint64_t bandwidth; /* bytes/s, 0: unlimited */
	bool force;	    /* stop after max_passes even above the downtime target */
};

/* Progress as `status` shows it (all zero when no migration ran). */
struct migrate_progress {
	bool active;
	unsigned pass;
	uint64_t remaining_pages;
	uint64_t rate; /* bytes/s over the last pass */
	uint64_t expected_downtime_ms;
	uint64_t bytes;
};

/*
 * Parse the control command's arguments (after "migrate") into p.  0, or
 * -EINVAL with the reason in err.
 */
int migrate_parse(int argc, char **argv, struct migrate_params *p, char *err, size_t errlen);

/*
 * Start migrating on a thread of its own; progress and the outcome are
 * written to reply_fd as control lines, and reply_fd is closed at the
 * end.  On the loop thread.  0, or -EBUSY if a migration is running (the
 * caller still owns reply_fd then).
 */
int migrate_start(struct vm *vm, const struct migrate_params *p, int reply_fd);

/* Snapshot of the current (or last) migration's progress. */
void migrate_get_progress(struct vm *vm, struct migrate_progress *out);

/* Wait for a migration thread to end (VM teardown).  Safe if none ran. */
void migrate_join(struct vm *vm);

/*
 * The destination: listen on opts->incoming, accept one source, build vm
 * from its CONFIG and load the rest; answer the source and announce the
 * guest's MACs.  Then the caller runs vm.  0, or the exit status to end
 * with (2: bad stream, 1: other failure; the VM is destroyed, nothing ran).
 */
int migrate_receive(struct vm_options *opts, struct vm *vm);

#endif
