// SPDX-License-Identifier: MIT
/*
 * The tap backend on real tap interfaces: creation, what it reports, frames
 * both ways through a packet socket, and the messages a user sees when the
 * tap cannot be created or attached.  Needs /dev/net/tun (a failure when
 * missing) and root (skipped otherwise); the taps are made here and vanish
 * with their fds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

static char tapname[16];

static int group_setup(void **state)
{
	(void)state;
	snprintf(tapname, sizeof(tapname), "vmmtt%d", (int)getpid() % 100000);
	return 0;
}

/* The interface-creating tests need /dev/net/tun and root. */
static void need_tap(void)
{
	if (access("/dev/net/tun", F_OK)) {
		print_error("this test needs /dev/net/tun (modprobe tun)\n");
		fail();
	}
	if (geteuid()) {
		print_message("skipped: creating a tap needs root (CAP_NET_ADMIN)\n");
		skip();
	}
}

static void test_bad_names(void **state)
{
	struct tap_info info;
	char err[256];

	(void)state;
	assert_int_equal(tap_open("", &info, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "1 to 15 characters"));
	assert_int_equal(tap_open("0123456789abcdef", &info, err, sizeof(err)), -EINVAL);
	assert_int_equal(tap_set_up("0123456789abcdef"), -EINVAL);
}

static void test_open_creates(void **state)
{
	struct tap_info info;
	char err[256];
	int fd, hdr = 0;

	(void)state;
	need_tap();
	assert_int_equal(if_nametoindex(tapname), 0);
	fd = tap_open(tapname, &info, err, sizeof(err));
	if (fd < 0)
		fail_msg("tap_open: %s", err);
	assert_true(info.created);
	assert_string_equal(info.name, tapname);
	assert_true(info.vnet_hdr);
	assert_true(info.offloads & TUN_F_CSUM);
	assert_true(info.offloads & TUN_F_TSO4);
	assert_true(info.offloads & TUN_F_TSO6);
	assert_int_equal(info.mtu, 1500);
	assert_true(if_nametoindex(tapname) > 0);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(ioctl(fd, TUNGETVNETHDRSZ, &hdr), 0);
	assert_int_equal(hdr, TAP_VNET_HDR_LEN);
	/* Offloads start off and can be switched on and off. */
	assert_int_equal(tap_set_offload(fd, TUN_F_CSUM | TUN_F_TSO4), 0);
	assert_int_equal(tap_set_offload(fd, 0), 0);
	assert_int_equal(tap_set_offload(fd, 0x8000), -EINVAL);
	assert_int_equal(tap_set_up(tapname), 0);
	close(fd);
	/* Not persistent: gone with its fd. */
	assert_int_equal(if_nametoindex(tapname), 0);
}

static void test_busy(void **state)
{
	struct tap_info info, again;
	char err[256];
	int fd;

	(void)state;
	need_tap();
	fd = tap_open(tapname, &info, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(tap_open(tapname, &again, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "another process has it open"));
	close(fd);
}

static int packet_socket(const char *ifname)
{
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	assert_true(s >= 0);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

/* Read from fd until a frame (after `off` header bytes) with ethertype 0x88b5 arrives. */
static ssize_t read_test_frame(int fd, uint8_t *buf, size_t len, size_t off)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t r;

	while (poll(&p, 1, 2000) == 1) {
		r = read(fd, buf, len);
		if (r >= (ssize_t)(off + 14) && buf[off + 12] == 0x88 && buf[off + 13] == 0xb5)
			return r;
	}
	return -1;
}

static void test_frames_both_ways(void **state)
{
	struct virtio_net_hdr_v1 hdr = {0};
	struct tap_info info;
	uint8_t frame[100], buf[2048], pkt[12 + 100];
	char err[256];
	int fd, ps;
	size_t i;

	(void)state;
	need_tap();
	fd = tap_open(tapname, &info, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(tap_set_up(tapname), 0);
	ps = packet_socket(tapname);
	memset(frame, 0xff, 6);
	memcpy(frame + 6, "\x52\x54\x00\x11\x22\x33", 6);
	frame[12] = 0x88;
	frame[13] = 0xb5;
	for (i = 14; i < sizeof(frame); i++)
		frame[i] = (uint8_t)i;

	/* Into the tap (what the guest sends), with the virtio-net header in front. */
	memcpy(pkt, &hdr, 12);
	memcpy(pkt + 12, frame, sizeof(frame));
	assert_int_equal(write(fd, pkt, sizeof(pkt)), sizeof(pkt));
	assert_int_equal(read_test_frame(ps, buf, sizeof(buf), 0), sizeof(frame));
	assert_memory_equal(buf, frame, sizeof(frame));

	/* Out of the host (what the guest receives): header, then the frame. */
	frame[20] = 0x5a;
	assert_int_equal(send(ps, frame, sizeof(frame), 0), sizeof(frame));
	assert_int_equal(read_test_frame(fd, buf, sizeof(buf), 12), 12 + sizeof(frame));
	assert_int_equal(buf[1], VIRTIO_NET_HDR_GSO_NONE);
	assert_memory_equal(buf + 12, frame, sizeof(frame));
	close(ps);
	close(fd);
}

/* In a child: drop CAP_NET_ADMIN, open `name`, check the message; exit 0 if it matched. */
static void child_without_cap(const char *name, const char *want)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];
	struct tap_info info;
	char err[256];
	int ret;

	if (syscall(SYS_capget, &h, d))
		_exit(2);
	d[CAP_TO_INDEX(CAP_NET_ADMIN)].effective &= ~CAP_TO_MASK(CAP_NET_ADMIN);
	d[CAP_TO_INDEX(CAP_NET_ADMIN)].permitted &= ~CAP_TO_MASK(CAP_NET_ADMIN);
	if (syscall(SYS_capset, &h, d))
		_exit(3);
	ret = tap_open(name, &info, err, sizeof(err));
	if (ret != -EPERM) {
		fprintf(stderr, "tap_open: %d %s\n", ret, err);
		_exit(4);
	}
	if (strcmp(err, want)) {
		fprintf(stderr, "got:  %s\nwant: %s\n", err, want);
		_exit(5);
	}
	_exit(0);
}

/* 0 if the child found what it wanted. */
static int child_status(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void test_messages_without_cap_net_admin(void **state)
{
	struct tap_info info;
	char want[256], err[256];
	pid_t pid;
	int fd, ret;

	(void)state;
	need_tap();
	/* Missing interface: say how to create it. */
	snprintf(want, sizeof(want),
		 "%s: cannot create (Operation not permitted): create it with `ip tuntap add %s "
		 "mode tap user $USER`",
		 tapname, tapname);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_without_cap(tapname, want);
	assert_int_equal(child_status(pid), 0);
	assert_int_equal(if_nametoindex(tapname), 0);

	/* An existing tap owned by someone else: not ours to attach. */
	fd = tap_open(tapname, &info, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, TUNSETOWNER, 54321), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 1), 0);
	close(fd);
	snprintf(want, sizeof(want),
		 "%s: cannot attach (Operation not permitted): it belongs to another user; "
		 "recreate it with `ip tuntap add %s mode tap user $USER`",
		 tapname, tapname);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_without_cap(tapname, want);
	ret = child_status(pid);
	/* Clean up before judging, so a failure leaves no persistent tap behind. */
	fd = tap_open(tapname, &info, err, sizeof(err));
	assert_true(fd >= 0);
	assert_false(info.created);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 0), 0);
	close(fd);
	assert_int_equal(if_nametoindex(tapname), 0);
	assert_int_equal(ret, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_names),
	    cmocka_unit_test(test_open_creates),
	    cmocka_unit_test(test_busy),
	    cmocka_unit_test(test_frames_both_ways),
	    cmocka_unit_test(test_messages_without_cap_net_admin),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
