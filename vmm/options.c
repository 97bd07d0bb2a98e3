// SPDX-License-Identifier: MIT
/* Command-line parsing for `vmm run` and the global flags. */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char options_usage[] =
	"usage: vmm run --kernel FILE [options]\n"
	"       vmm --version | --help\n"
	"\n"
	"Run a virtual machine on KVM with its serial console on stdio.\n"
	"\n"
	"  -k, --kernel FILE    Linux bzImage, or a PVH ELF (bare-metal image or vmlinux)\n"
	"  -i, --initrd FILE    initial ramdisk\n"
	"  -c, --cmdline TEXT   kernel command line (Linux: add console=ttyS0 for output)\n"
	"  -m, --mem SIZE       guest RAM, e.g. 512M, 2G (bare number: MiB; default 256M)\n"
	"  -n, --cpus N         number of vCPUs (default 1)\n"
	"      --reboot=exit|restart\n"
	"                       what a guest reboot does (default exit, status 0)\n"
	"  -v, --verbose        more log output (repeat for debug)\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 guest powered off (or rebooted with --reboot=exit), 1 guest crashed\n"
	"or VMM error, 2 bad command line or input file, 128+N stopped by signal N.\n"
	"With a terminal on stdin, type Ctrl-A x to stop the VM.\n";

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int options_parse_size(const char *s, uint64_t *bytes)
{
	unsigned long long value;
	unsigned shift = 20;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	value = strtoull(s, &end, 10);
	if (errno || value == 0)
		return -EINVAL;
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		case 'T': shift = 40; break;
		default: return -EINVAL;
		}
		end++;
		if (strcasecmp(end, "") && strcasecmp(end, "B") && strcasecmp(end, "iB"))
			return -EINVAL;
	}
	if (value > (UINT64_MAX >> shift))
		return -EINVAL;
	*bytes = (uint64_t)value << shift;
	return 0;
}

static int parse_cpus(const char *s, unsigned *ncpus)
{
	unsigned long value;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	value = strtoul(s, &end, 10);
	if (errno || *end || value < 1 || value > OPTIONS_MAX_CPUS)
		return -EINVAL;
	*ncpus = (unsigned)value;
	return 0;
}

enum { OPT_REBOOT = 0x100, OPT_VERSION };

static const struct option run_options[] = {
	{"kernel", required_argument, NULL, 'k'}, {"initrd", required_argument, NULL, 'i'},
	{"cmdline", required_argument, NULL, 'c'}, {"mem", required_argument, NULL, 'm'},
	{"cpus", required_argument, NULL, 'n'},    {"reboot", required_argument, NULL, OPT_REBOOT},
	{"verbose", no_argument, NULL, 'v'},       {"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, OPT_VERSION}, {NULL, 0, NULL, 0},
};

static int parse_run(int argc, char **argv, enum vmm_command *cmd, struct vm_options *opts,
		     char *err, size_t errlen)
{
	int c;

	optind = 1; /* argv[0] is "run" here */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:i:c:m:n:vh", run_options, NULL)) != -1) {
		switch (c) {
		case 'k': opts->kernel = optarg; break;
		case 'i': opts->initrd = optarg; break;
		case 'c': opts->cmdline = optarg; break;
		case 'm':
			if (options_parse_size(optarg, &opts->mem_size))
				return fail(err, errlen, "--mem: '%s' is not a size (e.g. 512M, 2G)",
					    optarg);
			if (opts->mem_size < OPTIONS_MIN_MEM || opts->mem_size > OPTIONS_MAX_MEM)
				return fail(err, errlen, "--mem: %s is out of range (2M to 1T)", optarg);
			if (opts->mem_size % 4096)
				return fail(err, errlen, "--mem: %s is not a multiple of 4K", optarg);
			break;
		case 'n':
			if (parse_cpus(optarg, &opts->ncpus))
				return fail(err, errlen, "--cpus: '%s' is not a number from 1 to %d",
					    optarg, OPTIONS_MAX_CPUS);
			break;
		case OPT_REBOOT:
			if (!strcmp(optarg, "exit"))
				opts->reboot = REBOOT_EXIT;
			else if (!strcmp(optarg, "restart"))
				opts->reboot = REBOOT_RESTART;
			else
				return fail(err, errlen, "--reboot: '%s' is not 'exit' or 'restart'",
					    optarg);
			break;
		case 'v': opts->verbosity++; break;
		case 'h': *cmd = VMM_CMD_HELP; return 0;
		case OPT_VERSION: *cmd = VMM_CMD_VERSION; return 0;
		case ':':
			return fail(err, errlen, "option '%s' needs a value", argv[optind - 1]);
		default:
			return fail(err, errlen, "unknown option '%s' (see vmm run --help)",
				    argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s' (see vmm run --help)",
			    argv[optind]);
	if (!opts->kernel)
		return fail(err, errlen, "run: --kernel is required (see vmm run --help)");
	return 0;
}

int options_parse(int argc, char **argv, enum vmm_command *cmd, struct vm_options *opts,
		  char *err, size_t errlen)
{
	memset(opts, 0, sizeof(*opts));
	opts->mem_size = OPTIONS_DEFAULT_MEM;
	opts->ncpus = 1;
	opts->reboot = REBOOT_EXIT;
	opts->verbosity = 1; /* LOG_WARN */
	*cmd = VMM_CMD_RUN;
	err[0] = '\0';

	if (argc < 2)
		return fail(err, errlen, "no command given (try vmm --help)");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		*cmd = VMM_CMD_HELP;
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		*cmd = VMM_CMD_VERSION;
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return parse_run(argc - 1, argv + 1, cmd, opts, err, errlen);
	return fail(err, errlen, "unknown command '%s' (try vmm --help)", argv[1]);
}
