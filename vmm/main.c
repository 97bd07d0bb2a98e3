// SPDX-License-Identifier: MIT
/* vmm: parse the command line, run the VM, turn how it ended into an exit status. */
#include "control.h"
#include "log.h"
#include "migrate.h"
#include "replicate.h"
#include "options.h"
#include "vm.h"
#include "vm_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* How the VM ended, for the log; returns its exit status. */
static int report_stop(enum vm_stop_reason reason, int status)
{
	switch (reason) {
	case VM_STOP_POWEROFF:
		pr_info("guest powered off");
		break;
	case VM_STOP_RESET:
		pr_info("guest reset");
		break;
	case VM_STOP_MIGRATED:
		pr_info("the guest runs on the migration's destination now");
		break;
	case VM_STOP_FENCED:
		pr_err("stopped: this host no longer holds the guest's witness lease");
		break;
	default:
		break;
	}
	return status;
}

/* --replicate-to: protection starts once the vCPUs run. */
static void start_replication(struct vm *vm)
{
	struct repl_params p;
	int ret;

	replicate_params_from_options(vm->opts, &p);
	ret = replicate_start(vm, &p);
	if (ret)
		pr_err("--replicate-to %s: %s; running UNPROTECTED", p.peer, strerror(-ret));
}

static int run_vm(const struct vm_options *opts)
{
	enum vm_stop_reason reason;
	struct vm vm;
	int status;

	for (;;) {
		if (vm_create(&vm, opts))
			return vm.input_error ? 2 : 1;
		vm.on_stop = replicate_stop;
		if (opts->replicate_to)
			vm.on_start = start_replication;
		/* With a witness, the guest runs only where the lease is held. */
		if (fence_acquire(&vm.fence, &vm, fence_takeover_wait_ms(&vm.fence))) {
			vm.stop_reason = VM_STOP_FENCED;
			vm_destroy(&vm);
			return 1;
		}
		reason = vm_run(&vm);
		status = vm.exit_status;
		vm_destroy(&vm);
		if (reason != VM_STOP_RESET || opts->reboot != REBOOT_RESTART)
			break;
		pr_info("guest reset: restarting");
	}
	return report_stop(reason, status);
}

/*
 * Continue a snapshot (or an incoming migration): its header and
 * configuration say what VM to build; memory and state are loaded before
 * any vCPU runs.  A bad file is input (status 2) and nothing runs.
 */
static int restore_vm(struct vm_options *opts)
{
	enum vm_stop_reason reason;
	struct vm vm;
	char err[512];
	int fd, ret, status;

	if (opts->incoming) {
		status = migrate_receive(opts, &vm);
		if (status)
			return status;
		goto run;
	}
	fd = open(opts->restore_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_err("%s: %s", opts->restore_path, strerror(errno));
		return 2;
	}
	if (vm_stream_recv_config(fd, opts, NULL, err, sizeof(err))) {
		pr_err("%s: %s", opts->restore_path, err);
		close(fd);
		return 2;
	}
	if (vm_create(&vm, opts)) {
		close(fd);
		return vm.input_error ? 2 : 1;
	}
	ret = vm_stream_recv_state(fd, &vm, 0, false, NULL);
	close(fd);
	if (ret) {
		pr_err("%s: cannot restore (%s); nothing was run", opts->restore_path,
		       ret == -EINVAL || ret == -EPIPE ? "bad snapshot" : strerror(-ret));
		vm_destroy(&vm);
		return ret == -EINVAL || ret == -EPIPE ? 2 : 1;
	}
	pr_info("restored %s", opts->restore_path);
run:
	/* After a migration the source hands the lease back as it ends: wait for it. */
	if (fence_acquire(&vm.fence, &vm, fence_takeover_wait_ms(&vm.fence))) {
		vm.stop_reason = VM_STOP_FENCED;
		vm_destroy(&vm);
		return 1;
	}
	vm.on_stop = replicate_stop; /* `ctl replicate-to` may protect it later */
	reason = vm_run(&vm);
	status = vm.exit_status;
	vm_destroy(&vm);
	return report_stop(reason, status);
}

int main(int argc, char **argv)
{
	struct vm_options opts;
	enum vmm_command cmd;
	char err[256];

	/* A closed stdout must not kill the VM; writes just fail. */
	signal(SIGPIPE, SIG_IGN);
	if (options_parse(argc, argv, &cmd, &opts, err, sizeof(err))) {
		pr_err("%s", err);
		return 2;
	}
	switch (cmd) {
	case VMM_CMD_HELP:
		fputs(options_usage, stdout);
		return 0;
	case VMM_CMD_VERSION:
		printf("vmm %s\n", VMM_VERSION);
		return 0;
	case VMM_CMD_CTL:
		return control_client(opts.control_path, opts.ctl_argc, opts.ctl_argv);
	case VMM_CMD_STANDBY:
		log_verbosity = opts.verbosity;
		return standby_main(&opts);
	case VMM_CMD_RESTORE:
		log_verbosity = opts.verbosity;
		return restore_vm(&opts);
	case VMM_CMD_RUN:
		break;
	}
	log_verbosity = opts.verbosity;
	if (opts.incoming)
		return restore_vm(&opts);
	return run_vm(&opts);
}
