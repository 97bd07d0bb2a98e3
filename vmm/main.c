// SPDX-License-Identifier: MIT
/* vmm: parse the command line, run the VM, turn how it ended into an exit status. */
#include "log.h"
#include "options.h"
#include "vm.h"

#include <signal.h>
#include <stdio.h>

static int run_vm(const struct vm_options *opts)
{
	enum vm_stop_reason reason;
	struct vm vm;
	int status;

	for (;;) {
		if (vm_create(&vm, opts))
			return vm.input_error ? 2 : 1;
		reason = vm_run(&vm);
		status = vm.exit_status;
		vm_destroy(&vm);
		if (reason != VM_STOP_RESET || opts->reboot != REBOOT_RESTART)
			break;
		pr_info("guest reset: restarting");
	}
	switch (reason) {
	case VM_STOP_POWEROFF:
		pr_info("guest powered off");
		break;
	case VM_STOP_RESET:
		pr_info("guest reset");
		break;
	default:
		break;
	}
	return status;
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
	case VMM_CMD_RUN:
		break;
	}
	log_verbosity = opts.verbosity;
	return run_vm(&opts);
}
