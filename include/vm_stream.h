/* SPDX-License-Identifier: MIT */
/*
 * A whole VM through the state stream (stream.h): what a snapshot file
 * holds and what a migration sends, and the receiving side both share.
 *
 * Sending: header, CONFIG, MEMORY (all non-zero pages), STATE, END, taken
 * with the VM paused and its devices quiet.  Receiving: header and CONFIG
 * first (they say what VM to build), then the VM is created, then the
 * rest is read into it; the VM runs only if everything arrived intact
 * and loaded, so a bad stream never leaves anything half-restored running.
 */
#ifndef VMM_VM_STREAM_H
#define VMM_VM_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"
#include "stream.h"

struct vm;

/*
 * Write the whole VM to fd.  The caller has paused the VM (vm_pause) and
 * runs on the event-loop thread (so no device works meanwhile).  0 or
 * -errno (printed).
 */
int vm_stream_send(struct vm *vm, int fd, struct stream_stats *st);

/* The two ends of vm_stream_send, for a migration that sends memory passes in between. */
int vm_stream_send_begin(struct vm *vm, int fd, struct stream_stats *st); /* header, CONFIG */

/*
 * VM paused and loop parked: the pages in dirty (NULL: all non-zero pages),
 * STATE and END, with the disks quiesced meanwhile.
 */
int vm_stream_send_end(struct vm *vm, int fd, const uint64_t *dirty, struct stream_stats *st);

/*
 * Snapshot to path: pause, write path.tmp, resume (unless stop: the
 * caller then stops the VM), fsync, rename.  A failed snapshot leaves
 * nothing at path and the VM running.  On the
 * event-loop thread.  0 or -errno with one line in err.
 */
int vm_snapshot(struct vm *vm, const char *path, bool stop, struct stream_stats *st, char *err,
		size_t errlen);

/*
 * Read the header and CONFIG from fd and complete opts from them
 * (vm_config_apply).  0, or -EINVAL/-EPIPE/-errno with one line in err.
 */
int vm_stream_recv_config(int fd, struct vm_options *opts, struct stream_stats *st, char *err,
			  size_t errlen);

/*
 * Read MEMORY sections, STATE and END into vm (created from those
 * options, not started) and load the state.  flags: KVM_STATE_CLOCK_*.
 * With ack_passes (a live migration), one byte VM_STREAM_ACK_PASS goes back
 * on fd after each MEMORY section is in guest memory, so the sender knows
 * when its pass has really landed.  0, or -errno with the reason printed;
 * the VM must then be destroyed.
 */
int vm_stream_recv_state(int fd, struct vm *vm, unsigned flags, bool ack_passes,
			 struct stream_stats *st);

#define VM_STREAM_ACK_PASS 'P'

#endif
