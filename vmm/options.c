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
    "       vmm restore SNAPSHOT [--disk ...] [--net ...] [--console ...] [--control PATH]\n"
    "       vmm run --incoming HOST:PORT [--disk ...] [--net ...] [--control PATH]\n"
    "       vmm standby --listen HOST:PORT [--disk ...] [--net ...] [--control PATH]\n"
    "       vmm ctl SOCKET status | snapshot FILE [--stop] | quit\n"
    "       vmm ctl SOCKET migrate HOST:PORT [--downtime-ms N] [--bandwidth MIB_S]\n"
    "                                       [--max-passes N] [--force]\n"
    "       vmm --version | --help\n"
    "\n"
    "Run a virtual machine on KVM with its serial console on stdio.\n"
    "\n"
    "  -k, --kernel FILE    Linux bzImage, or a PVH ELF (bare-metal image or vmlinux)\n"
    "  -i, --initrd FILE    initial ramdisk\n"
    "  -c, --cmdline TEXT   kernel command line (Linux: add console=ttyS0 for output)\n"
    "  -m, --mem SIZE       guest RAM, e.g. 512M, 2G (bare number: MiB; default 256M)\n"
    "  -n, --cpus N         number of vCPUs (default 1)\n"
    "  -d, --disk PATH[,readonly][,serial=ID]\n"
    "                       virtio-blk disk on a raw image (repeatable, up to 8)\n"
    "      --net tap=NAME[,mac=XX:XX:XX:XX:XX:XX]\n"
    "                       virtio-net on a tap device (repeatable, up to 4)\n"
    "      --console hvc[,path=FILE|,socket=PATH]\n"
    "                       virtio-console hvc0 on stdio (input goes to it), a file or a unix "
    "socket\n"
    "      --rng            virtio-rng fed by getrandom()\n"
    "      --control PATH   control socket for vmm ctl (status, snapshot, migrate, quit)\n"
    "      --replicate-to HOST:PORT\n"
    "                       protect the VM with a standby (vmm standby --listen) there\n"
    "      --epoch-ms N     checkpoint interval (default 20)\n"
    "      --failover-timeout-ms N\n"
    "                       silence after which the peer is declared dead (default 500)\n"
    "      --witness etcd=URL[,URL...]  --vm-name NAME  [--witness-ttl-ms N]\n"
    "                       an etcd lease decides which side may run the guest (no split\n"
    "                       brain when the link is cut); default TTL 2000 ms\n"
    "      --incoming HOST:PORT\n"
    "                       wait for a live migration instead of booting (no --kernel)\n"
    "      --reboot=exit|restart\n"
    "                       what a guest reboot does (default exit, status 0)\n"
    "  -v, --verbose        more log output (repeat for debug)\n"
    "  -h, --help           this text\n"
    "\n"
    "restore continues a snapshot; devices come from the snapshot unless given\n"
    "(the same number and kind; e.g. the same disk at another path).\n"
    "\n"
    "Exit status: 0 guest powered off (or rebooted with --reboot=exit), 1 guest crashed\n"
    "or VMM error, 2 bad command line or input file, 128+N stopped by signal N.\n"
    "With a terminal on stdin, type Ctrl-A x to stop the VM.\n";

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
		case 'K':
			shift = 10;
			break;
		case 'M':
			shift = 20;
			break;
		case 'G':
			shift = 30;
			break;
		case 'T':
			shift = 40;
			break;
		default:
			return -EINVAL;
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

enum {
	OPT_REBOOT = 0x100,
	OPT_VERSION,
	OPT_NET,
	OPT_CONSOLE,
	OPT_RNG,
	OPT_CONTROL,
	OPT_INCOMING,
	OPT_REPLICATE_TO,
	OPT_EPOCH_MS,
	OPT_FAILOVER_TIMEOUT,
	OPT_LISTEN,
	OPT_WITNESS,
	OPT_VM_NAME,
	OPT_WITNESS_TTL,
};

/* A whole number of milliseconds in [min, max]. */
static int parse_ms(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/*
 * Split "a,b=c,d" in place-free fashion: returns the next comma-separated
 * item of *s in item (at most size-1 bytes) and advances *s.  -E2BIG if an
 * item is too long.
 */
static int next_item(const char **s, char *item, size_t size)
{
	size_t n = strcspn(*s, ",");

	if (n >= size)
		return -E2BIG;
	memcpy(item, *s, n);
	item[n] = '\0';
	*s += n;
	if (**s == ',')
		(*s)++;
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;
	int i;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &end) != 6 ||
	    strlen(s) != 17)
		return -EINVAL;
	for (i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	/* A multicast MAC cannot be a NIC's address. */
	if (mac[0] & 1)
		return -EINVAL;
	return 0;
}

static int parse_disk(const char *arg, struct vm_options *opts, char *err, size_t errlen)
{
	struct disk_option *d;
	char item[256];
	const char *s = arg;
	size_t n = strcspn(arg, ",");

	if (opts->nr_disks >= OPTIONS_MAX_DISKS)
		return fail(err, errlen, "--disk: at most %d disks", OPTIONS_MAX_DISKS);
	if (n == 0)
		return fail(err, errlen, "--disk: '%s' has no file name", arg);
	d = &opts->disks[opts->nr_disks];
	memset(d, 0, sizeof(*d));
	if (n >= sizeof(d->path))
		return fail(err, errlen, "--disk: file name too long");
	memcpy(d->path, arg, n);
	d->path[n] = '\0';
	s += n;
	if (*s == ',')
		s++;
	snprintf(d->serial, sizeof(d->serial), "vmm-disk%u", opts->nr_disks);
	while (*s) {
		if (next_item(&s, item, sizeof(item)))
			return fail(err, errlen, "--disk: option too long in '%s'", arg);
		if (!strcmp(item, "readonly") || !strcmp(item, "ro")) {
			d->readonly = true;
		} else if (!strncmp(item, "serial=", 7)) {
			if (strlen(item + 7) == 0 || strlen(item + 7) > 20)
				return fail(err, errlen,
					    "--disk: serial must be 1 to 20 characters");
			snprintf(d->serial, sizeof(d->serial), "%s", item + 7);
		} else {
			return fail(err, errlen,
				    "--disk: unknown option '%s' (readonly, serial=ID)", item);
		}
	}
	opts->nr_disks++;
	return 0;
}

static int parse_net(const char *arg, struct vm_options *opts, char *err, size_t errlen)
{
	struct net_option *nopt;
	char item[64];
	const char *s = arg;

	if (opts->nr_nets >= OPTIONS_MAX_NETS)
		return fail(err, errlen, "--net: at most %d network devices", OPTIONS_MAX_NETS);
	nopt = &opts->nets[opts->nr_nets];
	memset(nopt, 0, sizeof(*nopt));
	while (*s) {
		if (next_item(&s, item, sizeof(item)))
			return fail(err, errlen, "--net: option too long in '%s'", arg);
		if (!strncmp(item, "tap=", 4)) {
			if (strlen(item + 4) == 0 || strlen(item + 4) >= sizeof(nopt->tap))
				return fail(err, errlen,
					    "--net: tap name must be 1 to %zu characters",
					    sizeof(nopt->tap) - 1);
			snprintf(nopt->tap, sizeof(nopt->tap), "%s", item + 4);
		} else if (!strncmp(item, "mac=", 4)) {
			if (parse_mac(item + 4, nopt->mac))
				return fail(
				    err, errlen,
				    "--net: '%s' is not a unicast MAC like 52:54:00:12:34:56",
				    item + 4);
			nopt->mac_set = true;
		} else {
			return fail(err, errlen, "--net: unknown option '%s' (tap=NAME, mac=MAC)",
				    item);
		}
	}
	if (!nopt->tap[0])
		return fail(err, errlen, "--net: tap=NAME is required");
	opts->nr_nets++;
	return 0;
}

static int parse_console(const char *arg, struct vm_options *opts, char *err, size_t errlen)
{
	if (!strcmp(arg, "hvc")) {
		opts->hvc = HVC_STDIO;
	} else if (!strncmp(arg, "hvc,path=", 9) && arg[9]) {
		opts->hvc = HVC_FILE;
		opts->hvc_path = arg + 9;
	} else if (!strncmp(arg, "hvc,socket=", 11) && arg[11]) {
		opts->hvc = HVC_SOCKET;
		opts->hvc_path = arg + 11;
	} else {
		return fail(err, errlen,
			    "--console: '%s' is not hvc, hvc,path=FILE or hvc,socket=PATH", arg);
	}
	return 0;
}

static const struct option run_options[] = {
    {"kernel", required_argument, NULL, 'k'},
    {"initrd", required_argument, NULL, 'i'},
    {"cmdline", required_argument, NULL, 'c'},
    {"mem", required_argument, NULL, 'm'},
    {"cpus", required_argument, NULL, 'n'},
    {"reboot", required_argument, NULL, OPT_REBOOT},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"disk", required_argument, NULL, 'd'},
    {"net", required_argument, NULL, OPT_NET},
    {"console", required_argument, NULL, OPT_CONSOLE},
    {"rng", no_argument, NULL, OPT_RNG},
    {"control", required_argument, NULL, OPT_CONTROL},
    {"incoming", required_argument, NULL, OPT_INCOMING},
    {"replicate-to", required_argument, NULL, OPT_REPLICATE_TO},
    {"epoch-ms", required_argument, NULL, OPT_EPOCH_MS},
    {"failover-timeout-ms", required_argument, NULL, OPT_FAILOVER_TIMEOUT},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"witness", required_argument, NULL, OPT_WITNESS},
    {"vm-name", required_argument, NULL, OPT_VM_NAME},
    {"witness-ttl-ms", required_argument, NULL, OPT_WITNESS_TTL},
    {NULL, 0, NULL, 0},
};

static int parse_run(int argc, char **argv, enum vmm_command *cmd, struct vm_options *opts,
		     char *err, size_t errlen)
{
	int c;

	optind = 1; /* argv[0] is "run" here */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:i:c:m:n:d:vh", run_options, NULL)) != -1) {
		switch (c) {
		case 'k':
			opts->kernel = optarg;
			break;
		case 'i':
			opts->initrd = optarg;
			break;
		case 'c':
			opts->cmdline = optarg;
			break;
		case 'm':
			if (options_parse_size(optarg, &opts->mem_size))
				return fail(err, errlen,
					    "--mem: '%s' is not a size (e.g. 512M, 2G)", optarg);
			if (opts->mem_size < OPTIONS_MIN_MEM || opts->mem_size > OPTIONS_MAX_MEM)
				return fail(err, errlen, "--mem: %s is out of range (2M to 1T)",
					    optarg);
			if (opts->mem_size % 4096)
				return fail(err, errlen, "--mem: %s is not a multiple of 4K",
					    optarg);
			break;
		case 'n':
			if (parse_cpus(optarg, &opts->ncpus))
				return fail(err, errlen,
					    "--cpus: '%s' is not a number from 1 to %d", optarg,
					    OPTIONS_MAX_CPUS);
			break;
		case OPT_REBOOT:
			if (!strcmp(optarg, "exit"))
				opts->reboot = REBOOT_EXIT;
			else if (!strcmp(optarg, "restart"))
				opts->reboot = REBOOT_RESTART;
			else
				return fail(err, errlen,
					    "--reboot: '%s' is not 'exit' or 'restart'", optarg);
			break;
		case 'd':
			if (parse_disk(optarg, opts, err, errlen))
				return -EINVAL;
			break;
		case OPT_NET:
			if (parse_net(optarg, opts, err, errlen))
				return -EINVAL;
			break;
		case OPT_CONSOLE:
			if (parse_console(optarg, opts, err, errlen))
				return -EINVAL;
			break;
		case OPT_RNG:
			opts->rng = true;
			break;
		case OPT_INCOMING:
			opts->incoming = optarg;
			break;
		case OPT_REPLICATE_TO:
			opts->replicate_to = optarg;
			break;
		case OPT_LISTEN:
			opts->listen = optarg;
			break;
		case OPT_WITNESS:
			if (strncmp(optarg, "etcd=", 5) || !optarg[5])
				return fail(err, errlen, "--witness: '%s' is not etcd=URL[,URL...]",
					    optarg);
			opts->witness = optarg + 5;
			break;
		case OPT_VM_NAME:
			if (!optarg[0] || strlen(optarg) > 64 || strchr(optarg, '/'))
				return fail(err, errlen,
					    "--vm-name: '%s' must be 1-64 characters, no '/'",
					    optarg);
			opts->vm_name = optarg;
			break;
		case OPT_WITNESS_TTL:
			if (parse_ms(optarg, 1000, 3600000, &opts->witness_ttl_ms))
				return fail(err, errlen,
					    "--witness-ttl-ms: '%s' is not 1000 to 3600000",
					    optarg);
			break;
		case OPT_EPOCH_MS:
			if (parse_ms(optarg, 1, 10000, &opts->epoch_ms))
				return fail(err, errlen, "--epoch-ms: '%s' is not 1 to 10000",
					    optarg);
			break;
		case OPT_FAILOVER_TIMEOUT:
			if (parse_ms(optarg, 10, 600000, &opts->failover_timeout_ms))
				return fail(err, errlen,
					    "--failover-timeout-ms: '%s' is not 10 to 600000",
					    optarg);
			break;
		case OPT_CONTROL:
			if (!optarg[0])
				return fail(err, errlen, "--control needs a socket path");
			opts->control_path = optarg;
			break;
		case 'v':
			opts->verbosity++;
			break;
		case 'h':
			*cmd = VMM_CMD_HELP;
			return 0;
		case OPT_VERSION:
			*cmd = VMM_CMD_VERSION;
			return 0;
		case ':':
			return fail(err, errlen, "option '%s' needs a value", argv[optind - 1]);
		default:
			return fail(err, errlen, "unknown option '%s' (see vmm run --help)",
				    argv[optind - 1]);
		}
	}
	if (opts->witness && !opts->vm_name)
		return fail(err, errlen, "--witness needs --vm-name (the name both sides share)");
	if (opts->listen && *cmd != VMM_CMD_STANDBY)
		return fail(err, errlen, "--listen is for vmm standby");
	if (*cmd == VMM_CMD_STANDBY)
		return optind < argc ? fail(err, errlen, "unexpected argument '%s'", argv[optind])
				     : 0;
	if (*cmd == VMM_CMD_RESTORE || opts->incoming) {
		/* The machine is the snapshot's: only its devices' backends may be given. */
		if (opts->kernel || opts->initrd || opts->cmdline ||
		    opts->mem_size != OPTIONS_DEFAULT_MEM || opts->ncpus != 1)
			return fail(
			    err, errlen,
			    "%s: --kernel, --initrd, --cmdline, --mem and --cpus come from the %s",
			    opts->incoming ? "--incoming" : "restore",
			    opts->incoming ? "migration" : "snapshot");
	}
	if (*cmd == VMM_CMD_RESTORE && opts->incoming)
		return fail(err, errlen, "restore does not take --incoming");
	if (*cmd == VMM_CMD_RESTORE) {
		if (optind + 1 != argc)
			return fail(err, errlen, "restore: give exactly one snapshot file");
		opts->restore_path = argv[optind];
		return 0;
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s' (see vmm run --help)",
			    argv[optind]);
	if (!opts->kernel && !opts->incoming)
		return fail(err, errlen, "run: --kernel is required (see vmm run --help)");
	return 0;
}

int options_parse(int argc, char **argv, enum vmm_command *cmd, struct vm_options *opts, char *err,
		  size_t errlen)
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
	if (!strcmp(argv[1], "restore")) {
		*cmd = VMM_CMD_RESTORE;
		return parse_run(argc - 1, argv + 1, cmd, opts, err, errlen);
	}
	if (!strcmp(argv[1], "standby")) {
		*cmd = VMM_CMD_STANDBY;
		if (parse_run(argc - 1, argv + 1, cmd, opts, err, errlen))
			return -EINVAL;
		if (*cmd != VMM_CMD_STANDBY)
			return 0; /* --help, --version */
		if (!opts->listen)
			return fail(err, errlen, "standby: --listen HOST:PORT is required");
		if (opts->replicate_to || opts->incoming)
			return fail(err, errlen,
				    "standby: --replicate-to and --incoming do not apply");
		return 0;
	}
	if (!strcmp(argv[1], "ctl")) {
		*cmd = VMM_CMD_CTL;
		if (argc < 4)
			return fail(err, errlen, "usage: vmm ctl SOCKET COMMAND [ARGS]");
		opts->control_path = argv[2];
		opts->ctl_argc = argc - 3;
		opts->ctl_argv = argv + 3;
		return 0;
	}
	return fail(err, errlen, "unknown command '%s' (try vmm --help)", argv[1]);
}
