/* SPDX-License-Identifier: MIT */
/*
 * Continuous replication to a standby (Remus-style checkpoints with output
 * commit).  docs/REPLICATION.md has the whole protocol; in short:
 *
 * Primary (`vmm run ... --replicate-to HOST:PORT`, or `vmm ctl SOCK
 * replicate-to HOST:PORT` on a running VM): one replication thread
 * connects, sends CONFIG and syncs RAM while the guest runs (like a live
 * migration), then every epoch_ms pauses the vCPUs and the event loop,
 * takes the dirty pages (copied into staging), the disk writes of the
 * epoch and the state tree, resumes the guest and sends the epoch.  An
 * acknowledgement thread reads the standby's ACKs and releases that
 * epoch's held output (console, frames, disk completions).  Standby
 * silent for failover_timeout_ms: the primary drops it, releases
 * everything and runs on unprotected.
 *
 * Standby (`vmm standby --listen HOST:PORT ...`): builds the same VM
 * without running it, applies each epoch only when it arrived whole, and
 * acknowledges it.  Primary silent (or its connection closed) for the
 * timeout: the standby loads the last committed checkpoint, releases the
 * disk completions held in it, announces the guest's MACs and runs the
 * guest.  A guest that ends on the primary (power off) ends the standby
 * too (SHUTDOWN); a damaged stream from a live primary makes the standby
 * quit rather than take over (the primary runs on, unprotected).
 *
 * Messages from the standby: struct repl_msg, 16 bytes little-endian.
 */
#ifndef VMM_REPLICATE_H
#define VMM_REPLICATE_H

#include <stdbool.h>
#include <stdint.h>

#include "options.h"

struct vm;

#define REPL_DEFAULT_EPOCH_MS		 20
#define REPL_DEFAULT_FAILOVER_TIMEOUT_MS 500
#define REPL_MAX_UNACKED		 4 /* epochs in flight before the primary waits */

#define REPL_PAUSE_PARTS 4 /* stop, dirty log, copy, state: see repl_status */

enum repl_msg_type {
	REPL_MSG_ACK = 1,	/* epoch committed */
	REPL_MSG_HEARTBEAT = 2, /* the standby is alive (epoch: last committed) */
	REPL_MSG_ENDED = 3,	/* SHUTDOWN read: the standby ends without resuming */
};

struct repl_msg {
	uint32_t magic; /* REPL_MSG_MAGIC */
	uint32_t type;
	uint64_t epoch;
};
#define REPL_MSG_MAGIC 0x4c504552 /* "REPL" */

struct repl_status {
	bool active;	 /* replication configured and running */
	bool protected_; /* a standby holds a committed checkpoint */
	bool syncing;
	uint64_t epoch;	 /* last epoch captured */
	uint64_t acked;	 /* last epoch acknowledged */
	uint64_t epochs; /* epochs sent */
	uint64_t bytes;	 /* sent on the replication link */
	uint64_t pause_p50_us, pause_p99_us, pause_max_us;
	uint64_t last_pages; /* dirty pages of the last epoch */
	uint64_t last_ahead; /* of those, copied ahead of its pause (the guest running) */
	/*
	 * Mean of the pause's parts, as the epoch thread sees them: stopping the
	 * vCPUs and the loop, the dirty logs, copying the pages, the state tree
	 * and the disk writes.  The vCPUs' wake-up is the rest of pause_*.
	 */
	uint64_t pause_part_us[REPL_PAUSE_PARTS];
	uint64_t held_bytes; /* output waiting for an ACK */
	uint64_t hold_max_us;
	char peer[256];
	char note[128]; /* why unprotected, when it is */
};

struct repl_params {
	char peer[256];
	unsigned epoch_ms;
	unsigned failover_timeout_ms;
};

/* Fill p from the options (--replicate-to, --epoch-ms, --failover-timeout-ms). */
void replicate_params_from_options(const struct vm_options *o, struct repl_params *p);

/*
 * Primary: start protecting vm (running) with a standby at p->peer.
 * 0, -EBUSY (already replicating), -errno.  Any thread but a vCPU's.
 */
int replicate_start(struct vm *vm, const struct repl_params *p);

/* Status for `ctl status` (role primary). */
void replicate_get_status(struct vm *vm, struct repl_status *s);

/*
 * The VM is ending (vm->on_stop): tell the standby whether to take over
 * (no, if the guest itself powered off or reset), release held output,
 * stop the threads.
 */
void replicate_stop(struct vm *vm);

/* Standby: the whole life of `vmm standby`; returns the exit status. */
int standby_main(struct vm_options *opts);

struct standby_status {
	char phase[16]; /* syncing, protecting, taking over, active, ended */
	bool active;	/* the guest runs here (after a takeover) */
	uint64_t committed;
	uint64_t bytes;
	uint64_t since_rx_ms; /* since the primary was last heard */
};

void standby_get_status(struct vm *vm, struct standby_status *s);

/* `ctl failover`: take over now from the last committed checkpoint. */
void standby_request_failover(struct vm *vm);

/* Timeouts while the standby is being filled (not latency-bound; a big RAM takes a while). */
#define REPL_SYNC_TIMEOUT_MS 10000

/*
 * How long a primary whose guest ended (or that hands the guest over) waits
 * for a standby that still answers but is slow through its backlog to
 * confirm; a silent one is given up after the failover timeout.
 */
#define REPL_SHUTDOWN_WAIT_MS 30000

#endif
