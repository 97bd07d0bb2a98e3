/* SPDX-License-Identifier: MIT */
/*
 * Disks under replication, the primary's side: every write the guest makes
 * is done on the primary's image at once and also journaled into the
 * epoch in progress, which carries it to the standby's replica; the
 * guest's completions of write-type requests are held until the standby
 * has acknowledged their epoch (output commit).
 *
 * release_lock: a release writes guest RAM and changes the held list, so
 * it must not fall between an epoch's dirty-page capture and its state
 * save; the checkpoint holds release_lock across both.
 */
#ifndef VMM_REPL_DISK_H
#define VMM_REPL_DISK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "epoch.h"

struct vm;

struct repl_disk {
	struct vm *vm;
	pthread_mutex_t lock;	      /* the journal */
	pthread_mutex_t release_lock; /* see above */
	struct epoch journal;	      /* disk fields only: writes since the last checkpoint */
	int error;		      /* a journal entry could not be kept: replication fails */
	bool journaling, holding;
};

int repl_disk_init(struct repl_disk *d, struct vm *vm);

/* With the guest paused and the disks quiesced: start journaling every disk's writes. */
void repl_disk_start(struct repl_disk *d);

/*
 * At the checkpoint (guest paused, disks quiesced): move the journal into
 * e and tag later completions with next_epoch (holding from the first
 * checkpoint on).  -ENOMEM if an entry was lost since the last one.
 */
int repl_disk_take(struct repl_disk *d, struct epoch *e, uint64_t next_epoch);

/* The standby has epoch upto: the guest may see its disk completions. */
void repl_disk_release(struct repl_disk *d, uint64_t upto);

/* No standby any more: complete everything held, hold nothing more. */
void repl_disk_unhold(struct repl_disk *d);

/* Stop journaling (VM stopped) and free. */
void repl_disk_destroy(struct repl_disk *d);

#endif
