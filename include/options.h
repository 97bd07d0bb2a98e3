/* SPDX-License-Identifier: MIT */
/*
 * The command line.  Parsing is pure (no files opened, nothing printed) so
 * it can be unit-tested; on error it returns -EINVAL and leaves one line of
 * explanation in the caller's buffer, which main prints and exits 2 for.
 */
#ifndef VMM_OPTIONS_H
#define VMM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OPTIONS_MAX_CPUS    254 /* xAPIC IDs 0..253; the IOAPIC takes the next ID */
#define OPTIONS_MIN_MEM	    (2ULL << 20)
#define OPTIONS_MAX_MEM	    (1ULL << 40)
#define OPTIONS_DEFAULT_MEM (256ULL << 20)

enum vmm_command {
	VMM_CMD_RUN,
	VMM_CMD_HELP,	 /* print usage to stdout, exit 0 */
	VMM_CMD_VERSION, /* print version to stdout, exit 0 */
	VMM_CMD_RESTORE, /* restore_path: continue a snapshot */
	VMM_CMD_CTL,	 /* control_path + ctl_argv: one command to a running vmm */
	VMM_CMD_STANDBY, /* listen: wait for a primary, keep its checkpoints, take over */
};

enum reboot_action {
	REBOOT_EXIT,	/* a guest reboot ends vmm with status 0 */
	REBOOT_RESTART, /* a guest reboot rebuilds the VM and boots again */
};

#define OPTIONS_MAX_DISKS 8
#define OPTIONS_MAX_NETS  4

/* --disk PATH[,readonly][,serial=ID] */
struct disk_option {
	char path[4096];
	bool readonly;
	char serial[21]; /* virtio-blk serial (GET_ID): up to 20 bytes; default "vmm-disk<N>" */
};

/* --net tap=NAME[,mac=52:54:00:12:34:56] */
struct net_option {
	char tap[16]; /* IFNAMSIZ */
	uint8_t mac[6];
	bool mac_set; /* else the device generates a locally administered MAC */
};

/* --console hvc[,path=FILE|,socket=PATH]: virtio-console hvc0 on stdio, a file or a unix socket */
enum hvc_backend { HVC_NONE, HVC_STDIO, HVC_FILE, HVC_SOCKET };

struct vm_options {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	uint64_t mem_size; /* bytes */
	unsigned ncpus;
	enum reboot_action reboot;
	int verbosity; /* log level; -v raises it */
	struct disk_option disks[OPTIONS_MAX_DISKS];
	unsigned nr_disks;
	struct net_option nets[OPTIONS_MAX_NETS];
	unsigned nr_nets;
	enum hvc_backend hvc;
	const char *hvc_path;	  /* HVC_FILE / HVC_SOCKET */
	char hvc_path_buf[4096];  /* hvc_path's storage when it comes from a saved configuration */
	bool rng;		  /* --rng: virtio-rng from getrandom() */
	const char *control_path; /* --control (run, restore) or the socket of ctl */
	const char *restore_path; /* restore SNAPSHOT */
	const char *incoming;	  /* run --incoming HOST:PORT: the VM comes from a migration */
	const char *replicate_to; /* --replicate-to HOST:PORT */
	const char *listen;	  /* standby --listen HOST:PORT */
	unsigned epoch_ms;	  /* --epoch-ms (0: default) */
	unsigned failover_timeout_ms; /* --failover-timeout-ms (0: default) */
	const char *witness;	      /* --witness etcd=URL[,URL...]: the endpoints */
	const char *vm_name;	      /* --vm-name: the witness key's name */
	unsigned witness_ttl_ms;      /* --witness-ttl-ms (0: default) */
	int ctl_argc;		      /* ctl: the command and its arguments */
	char **ctl_argv;
};

/*
 * Parse argv ("vmm", "run"|"restore"|"ctl", options...).  Fills cmd and opts; on a bad
 * command line returns -EINVAL with a message in err (no "vmm: " prefix).
 */
int options_parse(int argc, char **argv, enum vmm_command *cmd, struct vm_options *opts, char *err,
		  size_t errlen);

/*
 * Parse a memory size: a number with an optional K, M, G or T suffix (also
 * KiB/MiB/...; binary units, case-insensitive).  A bare number is MiB, as
 * with QEMU's -m.  Returns 0 or -EINVAL (garbage, zero, overflow).
 */
int options_parse_size(const char *s, uint64_t *bytes);

/* The usage text printed by --help. */
extern const char options_usage[];

#endif
