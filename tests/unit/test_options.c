// SPDX-License-Identifier: MIT
/* Command-line parsing: every accepted form and every rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "options.h"

static int parse(enum vmm_command *cmd, struct vm_options *o, char *err, int argc, ...)
{
	char *argv[32];
	va_list ap;
	int i;

	va_start(ap, argc);
	for (i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	argv[argc] = NULL;
	va_end(ap);
	return options_parse(argc, argv, cmd, o, err, 256);
}

static void test_run_full(void **state)
{
	enum vmm_command cmd;
	struct vm_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cmd, &o, err, 12, "vmm", "run", "--kernel", "k", "--initrd", "i",
			       "--cmdline", "console=ttyS0", "--mem", "512M", "--cpus", "2"),
			 0);
	assert_int_equal(cmd, VMM_CMD_RUN);
	assert_string_equal(o.kernel, "k");
	assert_string_equal(o.initrd, "i");
	assert_string_equal(o.cmdline, "console=ttyS0");
	assert_int_equal(o.mem_size, 512ULL << 20);
	assert_int_equal(o.ncpus, 2);
	assert_int_equal(o.reboot, REBOOT_EXIT);
}

static void test_defaults_and_short(void **state)
{
	enum vmm_command cmd;
	struct vm_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cmd, &o, err, 4, "vmm", "run", "-k", "img"), 0);
	assert_int_equal(o.mem_size, OPTIONS_DEFAULT_MEM);
	assert_int_equal(o.ncpus, 1);
	assert_null(o.initrd);
	assert_int_equal(parse(&cmd, &o, err, 5, "vmm", "run", "-k", "img", "--reboot=restart"), 0);
	assert_int_equal(o.reboot, REBOOT_RESTART);
	assert_int_equal(
	    parse(&cmd, &o, err, 6, "vmm", "run", "--kernel=img", "-vv", "--mem=1G", "-n4"), 0);
	assert_int_equal(o.verbosity, 3);
	assert_int_equal(o.mem_size, 1ULL << 30);
	assert_int_equal(o.ncpus, 4);
}

static void test_help_version(void **state)
{
	enum vmm_command cmd;
	struct vm_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cmd, &o, err, 2, "vmm", "--version"), 0);
	assert_int_equal(cmd, VMM_CMD_VERSION);
	assert_int_equal(parse(&cmd, &o, err, 2, "vmm", "--help"), 0);
	assert_int_equal(cmd, VMM_CMD_HELP);
	assert_int_equal(parse(&cmd, &o, err, 3, "vmm", "run", "--help"), 0);
	assert_int_equal(cmd, VMM_CMD_HELP);
}

static void expect_error(const char *needle, int argc, ...)
{
	enum vmm_command cmd;
	struct vm_options o;
	char err[256];
	char *argv[32];
	va_list ap;
	int i;

	va_start(ap, argc);
	for (i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	argv[argc] = NULL;
	va_end(ap);
	assert_int_equal(options_parse(argc, argv, &cmd, &o, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("no command", 1, "vmm");
	expect_error("unknown command", 2, "vmm", "fly");
	expect_error("--kernel is required", 2, "vmm", "run");
	expect_error("unknown option '--bogus'", 5, "vmm", "run", "-k", "x", "--bogus");
	expect_error("needs a value", 3, "vmm", "run", "--kernel");
	expect_error("--mem", 5, "vmm", "run", "-k", "x", "--mem=lots");
	expect_error("--mem", 5, "vmm", "run", "-k", "x", "--mem=1K");
	expect_error("--mem", 5, "vmm", "run", "-k", "x", "--mem=5T");
	expect_error("--mem", 5, "vmm", "run", "-k", "x", "--mem=0");
	expect_error("--cpus", 5, "vmm", "run", "-k", "x", "--cpus=0");
	expect_error("--cpus", 5, "vmm", "run", "-k", "x", "--cpus=255");
	expect_error("--cpus", 5, "vmm", "run", "-k", "x", "--cpus=2x");
	expect_error("--cpus", 5, "vmm", "run", "-k", "x", "--cpus=-1");
	expect_error("--reboot", 5, "vmm", "run", "-k", "x", "--reboot=later");
	expect_error("unexpected argument", 5, "vmm", "run", "-k", "x", "extra");
}

static void test_devices(void **state)
{
	enum vmm_command cmd;
	struct vm_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&cmd, &o, err, 15, "vmm", "run", "-k", "k", "--disk", "root.img",
			       "--disk", "data.img,readonly,serial=abc", "--net",
			       "tap=tap0,mac=52:54:00:12:34:56", "--console", "hvc", "--rng", "-d",
			       "x,ro"),
			 0);
	assert_int_equal(o.nr_disks, 3);
	assert_string_equal(o.disks[0].path, "root.img");
	assert_false(o.disks[0].readonly);
	assert_string_equal(o.disks[0].serial, "vmm-disk0");
	assert_string_equal(o.disks[1].path, "data.img");
	assert_true(o.disks[1].readonly);
	assert_string_equal(o.disks[1].serial, "abc");
	assert_true(o.disks[2].readonly);
	assert_int_equal(o.nr_nets, 1);
	assert_string_equal(o.nets[0].tap, "tap0");
	assert_true(o.nets[0].mac_set);
	assert_int_equal(o.nets[0].mac[5], 0x56);
	assert_int_equal(o.hvc, HVC_STDIO);
	assert_true(o.rng);
	assert_int_equal(
	    parse(&cmd, &o, err, 6, "vmm", "run", "-k", "k", "--console", "hvc,socket=/tmp/s"), 0);
	assert_int_equal(o.hvc, HVC_SOCKET);
	assert_string_equal(o.hvc_path, "/tmp/s");
	assert_int_equal(parse(&cmd, &o, err, 6, "vmm", "run", "-k", "k", "--net", "tap=t1"), 0);
	assert_false(o.nets[0].mac_set);
}

static void test_device_errors(void **state)
{
	(void)state;
	expect_error("no file name", 5, "vmm", "run", "-k", "x", "--disk=,readonly");
	expect_error("unknown option 'rw'", 5, "vmm", "run", "-k", "x", "--disk=a.img,rw");
	expect_error("serial", 5, "vmm", "run", "-k", "x",
		     "--disk=a.img,serial=123456789012345678901");
	expect_error("tap=NAME is required", 5, "vmm", "run", "-k", "x",
		     "--net=mac=52:54:00:00:00:01");
	expect_error("not a unicast MAC", 5, "vmm", "run", "-k", "x",
		     "--net=tap=t,mac=01:00:00:00:00:01");
	expect_error("not a unicast MAC", 5, "vmm", "run", "-k", "x",
		     "--net=tap=t,mac=52:54:00:00:00");
	expect_error("not a unicast MAC", 5, "vmm", "run", "-k", "x",
		     "--net=tap=t,mac=52:54:00:00:00:011");
	expect_error("tap name", 5, "vmm", "run", "-k", "x", "--net=tap=averyveryverylongname");
	expect_error("--console", 5, "vmm", "run", "-k", "x", "--console=serial");
	expect_error("at most 8", 22, "vmm", "run", "-k", "x", "-d", "1", "-d", "2", "-d", "3",
		     "-d", "4", "-d", "5", "-d", "6", "-d", "7", "-d", "8", "-d", "9");
}

static void test_restore_ctl_control(void **state)
{
	enum vmm_command cmd;
	struct vm_options o;
	char err[256];

	(void)state;
	assert_int_equal(
	    parse(&cmd, &o, err, 7, "vmm", "run", "-k", "k", "--control", "/run/vm.sock", "-v"), 0);
	assert_string_equal(o.control_path, "/run/vm.sock");
	assert_int_equal(parse(&cmd, &o, err, 7, "vmm", "restore", "vm.snap", "--disk", "d.img",
			       "--control", "c.sock"),
			 0);
	assert_int_equal(cmd, VMM_CMD_RESTORE);
	assert_string_equal(o.restore_path, "vm.snap");
	assert_int_equal(o.nr_disks, 1);
	assert_null(o.kernel);
	/* The machine comes from the snapshot. */
	assert_int_equal(parse(&cmd, &o, err, 5, "vmm", "restore", "vm.snap", "--mem", "1G"),
			 -EINVAL);
	assert_non_null(strstr(err, "from the snapshot"));
	assert_int_equal(parse(&cmd, &o, err, 5, "vmm", "restore", "vm.snap", "-k", "k"), -EINVAL);
	assert_int_equal(parse(&cmd, &o, err, 2, "vmm", "restore"), -EINVAL);
	assert_int_equal(parse(&cmd, &o, err, 4, "vmm", "restore", "a", "b"), -EINVAL);
	assert_int_equal(parse(&cmd, &o, err, 6, "vmm", "ctl", "/s", "snapshot", "f", "--stop"), 0);
	assert_int_equal(cmd, VMM_CMD_CTL);
	assert_string_equal(o.control_path, "/s");
	assert_int_equal(o.ctl_argc, 3);
	assert_string_equal(o.ctl_argv[0], "snapshot");
	assert_string_equal(o.ctl_argv[2], "--stop");
	assert_int_equal(parse(&cmd, &o, err, 3, "vmm", "ctl", "/s"), -EINVAL);
	assert_int_equal(parse(&cmd, &o, err, 5, "vmm", "run", "-k", "k", "--control="), -EINVAL);
}

static void test_sizes(void **state)
{
	uint64_t b;

	(void)state;
	assert_int_equal(options_parse_size("512", &b), 0);
	assert_int_equal(b, 512ULL << 20);
	assert_int_equal(options_parse_size("64k", &b), 0);
	assert_int_equal(b, 64ULL << 10);
	assert_int_equal(options_parse_size("2GiB", &b), 0);
	assert_int_equal(b, 2ULL << 30);
	assert_int_equal(options_parse_size("3gb", &b), 0);
	assert_int_equal(b, 3ULL << 30);
	assert_int_equal(options_parse_size("1T", &b), 0);
	assert_int_equal(b, 1ULL << 40);
	assert_int_equal(options_parse_size("", &b), -EINVAL);
	assert_int_equal(options_parse_size("M", &b), -EINVAL);
	assert_int_equal(options_parse_size("12Q", &b), -EINVAL);
	assert_int_equal(options_parse_size("12MX", &b), -EINVAL);
	assert_int_equal(options_parse_size(" 12", &b), -EINVAL);
	assert_int_equal(options_parse_size("99999999999999999999", &b), -EINVAL);
	assert_int_equal(options_parse_size("17179869184G", &b), -EINVAL); /* 2^64 bytes */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_run_full),	 cmocka_unit_test(test_defaults_and_short),
	    cmocka_unit_test(test_help_version), cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_sizes),	 cmocka_unit_test(test_restore_ctl_control),
	    cmocka_unit_test(test_devices),	 cmocka_unit_test(test_device_errors),
	};
	return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
