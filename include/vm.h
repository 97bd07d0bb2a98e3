/* SPDX-License-Identifier: MIT */
/*
 * The VM object: KVM handles, guest memory, buses, devices, vCPUs and the
 * event loop.  It is the only state the monitor keeps.
 *
 * Threads: one per vCPU (vcpu.c) plus the caller of vm_run(), which runs the
 * event loop.  vm_pause()/vm_resume() stop and restart every vCPU outside
 * KVM_RUN; snapshot, migration and replication build on that one function.
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "boot.h"
#include "bus.h"
#include "console.h"
#include "control.h"
#include "event_loop.h"
#include "fence.h"
#include "guest_mem.h"
#include "hvc_port.h"
#include "i8042.h"
#include "msi.h"
#include "options.h"
#include "output_buffer.h"
#include "pci.h"
#include "power.h"
#include "uart8250.h"

enum vm_stop_reason {
	VM_STOP_NONE,
	VM_STOP_POWEROFF, /* guest powered off: status 0 */
	VM_STOP_RESET,	  /* guest asked for a reset: exit 0 or restart */
	VM_STOP_CRASH,	  /* triple fault, internal error: status 1 */
	VM_STOP_SIGNAL,	  /* SIGINT/SIGTERM/SIGHUP or Ctrl-A x: status 128+N */
	VM_STOP_ERROR,	  /* the VMM itself failed: status 1 */
	VM_STOP_MIGRATED, /* the guest runs elsewhere now: status 0 */
	VM_STOP_FENCED,	  /* the witness lease is lost: another host runs it; status 1 */
};

struct migration;
struct replication;
struct standby;
struct vcpu;
struct vm;

/* The opaque of a virtio-net output hook: which VM, which card. */
struct vm_net_out {
	struct vm *vm;
	unsigned index;
};
struct virtio_blk;
struct virtio_console;
struct virtio_env;
struct virtio_net;
struct virtio_rng;

struct vm {
	const struct vm_options *opts;
	int kvm_fd;
	int vm_fd;
	int run_size;	  /* bytes of each vCPU's kvm_run mapping */
	uint32_t tsc_khz; /* guest TSC frequency */

	struct guest_mem mem;
	struct boot_entry entry;
	struct bus pio;
	struct bus mmio;
	struct event_loop loop;
	struct console console;

	struct uart8250 com1;
	struct i8042 i8042;
	struct pci_host pci;
	struct power power;
	bool has_com1, has_i8042, has_pci; /* which devices to destroy */
	struct msi_router msi;		   /* GSI routing: irqchip pins + MSI routes */
	bool has_msi;
	/* Virtio devices (vm_virtio.c), in PCI slot order: disks, nets, console, rng. */
	struct virtio_blk *blks[OPTIONS_MAX_DISKS];
	unsigned nr_blks;
	struct virtio_net *nets[OPTIONS_MAX_NETS];
	unsigned nr_nets;
	struct virtio_console *hvc; /* --console hvc */
	struct hvc_port hvc_port;   /* its file or socket end (not stdio) */
	struct virtio_rng *rng;	    /* --rng */

	unsigned ncpus;
	struct vcpu *vcpus;
	struct control control;	     /* --control */
	struct migration *migration; /* the last migration started from here (migrate.c) */
	struct replication *repl;    /* protection by a standby (primary.c) */
	struct standby *standby;     /* this process is a standby (standby.c) */
	struct fence fence;	     /* the witness lease, if --witness (fence.c) */

	/* Guest output (vm_output.c): direct, or held per epoch once replication starts. */
	struct output_buffer out;
	bool out_buffered; /* atomic: output goes through out */
	struct vm_net_out net_out[OPTIONS_MAX_NETS];
	uint64_t net_dropped; /* released frames the tap refused */

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;
	enum vm_stop_reason stop_reason;
	int exit_status;
	bool stopping;	      /* vCPUs leave their loop */
	bool pause_requested; /* vCPUs park until vm_resume() */
	unsigned nr_parked;   /* also read with __atomic, without the lock */
	/* vm_pause_share_work(), all __atomic: the parked vCPUs' part in a pause */
	void (*park_work)(void *arg);
	void *park_work_arg;
	unsigned park_work_gen, park_work_open, park_work_busy;
	uint64_t pause_start_ns;   /* CLOCK_MONOTONIC when vm_pause began */
	uint64_t pause_longest_ns; /* this pause so far: the longest vCPU stop */
	uint64_t last_pause_ns;	   /* the last finished pause, as the guest saw it */
	uint64_t pauses;	   /* finished pauses */
	int signal_fd;
	int rx_space_fd;    /* eventfd: the UART has room for more console input */
	bool stdin_watched; /* stdin is in the loop's epoll set */

	bool input_error; /* vm_create failed on user input: exit status 2 */

	/* Hooks of the replication engine: after the vCPUs started, when the VM stops. */
	void (*on_start)(struct vm *vm);
	void (*on_stop)(struct vm *vm);
};

/*
 * Build the VM described by opts: memory, kernel, devices, vCPUs (not yet
 * running).  Without opts->kernel (a restore) RAM stays empty and the
 * vCPUs get no boot registers: the caller loads a saved state.  On failure the reason was printed
 * (one line), the VM is released and -errno returned; vm->input_error tells bad input (status 2)
 * from a host/KVM failure (status 1).
 */
int vm_create(struct vm *vm, const struct vm_options *opts);

/* Guest output: console bytes (OUTPUT_CONSOLE or OUTPUT_HVC) to where they go, now or at commit. */
void vm_output_init(struct vm *vm);
void vm_output(struct vm *vm, enum output_kind kind, const uint8_t *buf, size_t len);

/* From now on all output (console, hvc, net frames) goes through vm->out.  Once, before holding. */
void vm_output_buffered(struct vm *vm);

/* Start the vCPUs and run the event loop until the VM stops.  Returns the exit reason. */
enum vm_stop_reason vm_run(struct vm *vm);

/* vm_run in two halves: start the vCPU threads (then on_start); 0 or -errno (stop requested). */
int vm_start(struct vm *vm);
/* Run the loop until the VM stops, join the vCPU threads, then on_stop.  On the main thread. */
enum vm_stop_reason vm_loop(struct vm *vm);

/* Record why the VM stops (first caller wins) and wake everyone.  Any thread. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int exit_status);

/*
 * Park every vCPU outside KVM_RUN; returns 0 once all are parked, or
 * -ECANCELED if the VM is stopping (then some may still run: capture
 * nothing; vm_resume() all the same).  Not from a vCPU thread.
 */
int vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/*
 * vm_pause() and the event loop parked too (no device work runs), the two
 * stopping side by side: 0, or -ECANCELED with both let go again.  Undo
 * with event_loop_unpark() and vm_resume().
 */
int vm_pause_with_loop(struct vm *vm);
/*
 * While paused: run fn(arg) here and on every parked vCPU thread still
 * polling for the resume (they would only spin), and return once all those
 * calls have returned.  fn must share its work out itself (an atomic cursor)
 * and be done when any one call returns having found nothing left.
 */
void vm_pause_share_work(struct vm *vm, void (*fn)(void *), void *arg);

/*
 * How long the guest stood still in the last finished pause: from
 * vm_pause() to the last vCPU back on its way into KVM_RUN (so the time a
 * woken vCPU thread waits for a CPU counts).  Sets *count to the number of
 * finished pauses, so a caller can tell a new one; 0 before any.
 */
uint64_t vm_last_pause_ns(struct vm *vm, uint64_t *count);

void vm_destroy(struct vm *vm);

/* What a virtio device on this VM needs: memory, PCI, event loop, MSI router, vm fd. */
void vm_virtio_env(struct vm *vm, struct virtio_env *env);

/*
 * Create the virtio devices the options ask for (vm_virtio.c), after the
 * PCI host and event loop exist.  0 or -errno, the reason printed; a
 * missing or unusable disk, tap or console path sets vm->input_error.
 */
int vm_virtio_create(struct vm *vm);

/* Stop and release them (before the PCI host and the loop go). */
void vm_virtio_destroy(struct vm *vm);

/*
 * Console input for the guest: to hvc0 when it is on stdio, else to the
 * COM1 UART.  Returns the bytes taken (fewer when the device is full;
 * rx_space_fd is written when it has room again).
 */
size_t vm_console_input(struct vm *vm, const uint8_t *buf, size_t len);

#endif
