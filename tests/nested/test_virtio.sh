#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Debian's stock kernel, with its own virtio_pci, virtio_blk, virtio_net,
# virtio_console and virtio_rng modules, finds and uses every virtio device
# vmm offers. One L1 host, one L2 boot (the vmlinux through PVH) that does it all:
#
#   discovery  the five PCI functions (1af4:1041 net, 1042 blk x2, 1043
#              console, 1044 rng) are bound to virtio-pci with >= 2 MSI-X
#              vectors each, their virtio devices to virtio_net/_blk/_console/
#              _rng, and every virtqueue vector has fired by the end
#   blk        mkfs.ext4 (e2fsprogs) on the disk with serial data0, a 4 MiB
#              random file written, read back after a remount, powered off;
#              then in L1, after vmm exited, e2fsck -fn finds the image clean and
#              debugfs dumps the file with the same sha256
#   ro disk    the disk with serial ro0 shows ro=1 and VIRTIO_BLK_F_RO, a write
#              fails, its contents read in L2 match L1's and the image is unchanged
#   net        eth0 on a tap in L1 (10.0.2.2 <-> 10.0.2.1): 3 pings answered,
#              4 MiB over TCP each way (busybox nc) with matching sha256
#   rng        /dev/hwrng is virtio_rng.0, yields 2 x 256 random-looking bytes
#   hvc        a login shell (busybox login -f root) on hvc0, reached through
#              --console hvc,socket= from L1: its .profile reports /dev/hvc0 and
#              a command typed there comes back evaluated
set -eu
. "$(dirname "$0")/lib.sh"

nested_init virtio
nested_require_linux_guest

# ------------------------------------------------------------------ L2 script
cat >"$NESTED_WORK/virtio.sh" <<'L2'
# Runs in L2 as init's run= script; every result is one "L2: ..." line on ttyS0.
fails=0
say() { echo "L2: $*"; }
bad() { echo "L2: FAIL $*"; fails=$((fails + 1)); }
sha() { sha256sum "$1" | cut -d' ' -f1; }
base() { b=$(readlink "$1" 2>/dev/null) && echo "${b##*/}" || echo none; }

# hvc0 first: a login shell that L1 talks to while the rest runs.
i=0
while [ ! -c /dev/hvc0 ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd
echo 'root:x:0:' >/etc/group
echo hvc0 >/etc/securetty
echo 'echo "hvc: login shell ready on $(tty)"' >/root/.profile
hvc=
if [ -c /dev/hvc0 ]; then
	setsid sh -c 'exec login -f root <>/dev/hvc0 >&0 2>&0' &
	hvc=$!
	say "hvc: login started on /dev/hvc0"
else
	bad "no /dev/hvc0"
fi

# Discovery: PCI functions and their virtio devices, with the drivers bound.
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] || continue
	n=$(cat "$d"/msi_irqs/* 2>/dev/null | grep -c '^msix$')
	say "pci ${d##*/} 1af4:$(sed 's/^0x//' "$d/device") driver=$(base "$d/driver") msix=$n"
done
for d in /sys/bus/virtio/devices/*; do
	say "virtio ${d##*/} id=$(cat "$d/device") driver=$(base "$d/driver")"
done
say "kernel: $(dmesg | grep -m1 'Run /init' | cut -c2-13 | tr -d ' ') s to /init"

# Block: the two disks by serial.
data= ro=
for b in /sys/block/vd*; do
	[ -e "$b" ] || continue
	s=$(cat "$b/serial" 2>/dev/null)
	say "blk ${b##*/} serial=$s ro=$(cat "$b/ro") sectors=$(cat "$b/size") vdev=$(base "$b/device")"
	case "$s" in data0) data=${b##*/} ;; ro0) ro=${b##*/} ;; esac
done
if [ -n "$data" ]; then
	dd if=/dev/urandom of=/tmp/file.bin bs=65536 count=64 2>/dev/null
	want=$(sha /tmp/file.bin)
	if /usr/sbin/mkfs.ext4 -q -F -L virtiotest "/dev/$data" >/tmp/mkfs.out 2>&1 &&
		mount -t ext4 "/dev/$data" /mnt; then
		cp /tmp/file.bin /mnt/file.bin
		sync
		umount /mnt
		echo 3 >/proc/sys/vm/drop_caches
		mount -t ext4 -o ro "/dev/$data" /mnt
		got=$(sha /mnt/file.bin)
		umount /mnt
		sync
		say "blk file: written $want read back $got"
	else
		bad "mkfs.ext4 or mount of /dev/$data: $(cat /tmp/mkfs.out)"
	fi
else
	bad "no disk with serial data0"
fi
if [ -n "$ro" ]; then
	rosum=$(sha "/dev/$ro")
	f=$(cat "/sys/block/$ro/device/features" 2>/dev/null | cut -c6)
	if dd if=/dev/zero of="/dev/$ro" bs=4096 count=1 oflag=direct 2>/tmp/dd.err; then
		w="accepted"
	else
		w="refused ($(grep -v records /tmp/dd.err | head -n1))"
	fi
	say "ro disk: sha256 $rosum feature_ro=$f write $w sha256-after $(sha "/dev/$ro")"
else
	bad "no disk with serial ro0"
fi

# Network: eth0 on the tap; L1 is 10.0.2.1 and listens on 5001 (in) and 5002 (out).
say "net eth0 driver=$(base /sys/class/net/eth0/device/driver) mac=$(cat /sys/class/net/eth0/address)"
ip addr add 10.0.2.2/24 dev eth0
ip link set eth0 up
ping -c 3 -W 3 10.0.2.1 >/tmp/ping.out 2>&1
say "net ping: $(grep 'packets transmitted' /tmp/ping.out)"
dd if=/dev/urandom of=/tmp/up.bin bs=65536 count=64 2>/dev/null
mkfifo /tmp/never
nc 10.0.2.1 5001 </tmp/up.bin
say "net tcp sent: $(wc -c </tmp/up.bin) bytes sha256 $(sha /tmp/up.bin)"
timeout 60 nc 10.0.2.1 5002 <>/tmp/never >/tmp/down.bin
say "net tcp received: $(wc -c </tmp/down.bin) bytes sha256 $(sha /tmp/down.bin)"

# Entropy.
say "rng current=$(cat /sys/class/misc/hw_random/rng_current) available=$(cat /sys/class/misc/hw_random/rng_available)"
head -c 256 /dev/hwrng >/tmp/r1
head -c 256 /dev/hwrng >/tmp/r2
distinct=$(od -An -v -tx1 /tmp/r1 | tr ' ' '\n' | grep . | sort -u | wc -l)
say "rng read: $(wc -c </tmp/r1)+$(wc -c </tmp/r2) bytes, $distinct distinct byte values, $(sha /tmp/r1) $(sha /tmp/r2)"

# Interrupts per virtqueue vector (summed over CPUs): the devices used MSI-X.
say "irqs: $(awk '/virtio/ { n = 0; for (i = 2; $i ~ /^[0-9]+$/; i++) n += $i; printf "%s=%d ", $NF, n }' /proc/interrupts)"

# Anything the drivers complained about.
dmesg | grep -iE 'virtio|vd[a-z]|hvc|ext4|EXT4|I/O error' | grep -iE 'error|fail|warn|bad|refus|invalid' | head -n 10 |
	while IFS= read -r l; do say "dmesg: $l"; done

# The hvc session ends when L1 typed exit.
if [ -n "$hvc" ]; then
	i=0
	while kill -0 "$hvc" 2>/dev/null && [ $i -lt 300 ]; do usleep 100000; i=$((i + 1)); done
	if kill -0 "$hvc" 2>/dev/null; then
		bad "hvc login shell still running after 30 s"
		kill -9 "$hvc"
	else
		say "hvc: login shell exited"
	fi
fi
say "done fails=$fails"
exit "$fails"
L2

# ------------------------------------------------------------------ hvc client
# L1 has no socat or python: a tiny unix-socket "chat" for the hvc0 socket.
cat >"$NESTED_WORK/hvc-chat.c" <<'C'
/* hvc-chat SOCKET SECONDS [-e TEXT | -s LINE]...
 * Connects to the unix socket (retrying until it exists), copies what it
 * receives to stdout, and runs the steps in order: -e waits for TEXT after the
 * previous match, -s sends LINE and a newline. 0 when all steps are done, 1 on
 * timeout, a closed connection or an error. The whole run has SECONDS. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];
static size_t len, mark;

static int die(const char *what, const char *arg)
{
	fprintf(stderr, "hvc-chat: %s %s\n", what, arg);
	return 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	time_t end;
	int fd, i;

	if (argc < 3 || strlen(argv[1]) >= sizeof(a.sun_path))
		return die("usage:", "SOCKET SECONDS [-e TEXT | -s LINE]...");
	strcpy(a.sun_path, argv[1]);
	end = time(NULL) + atoi(argv[2]);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		if (time(NULL) >= end)
			return die("cannot connect to", argv[1]);
		usleep(100000);
	}
	for (i = 3; i + 1 < argc; i += 2) {
		const char *arg = argv[i + 1];

		if (!strcmp(argv[i], "-s")) {
			size_t n = strlen(arg);
			if (write(fd, arg, n) != (ssize_t)n || write(fd, "\n", 1) != 1)
				return die("write failed:", strerror(errno));
			continue;
		}
		if (strcmp(argv[i], "-e"))
			return die("unknown step", argv[i]);
		while (!memmem(buf + mark, len - mark, arg, strlen(arg))) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			long left = (long)(end - time(NULL));
			ssize_t n;

			if (left <= 0)
				return die("timeout waiting for", arg);
			if (poll(&p, 1, (int)left * 1000) <= 0)
				continue;
			if (len == sizeof(buf))
				return die("too much output waiting for", arg);
			n = read(fd, buf + len, sizeof(buf) - len);
			if (n <= 0)
				return die("connection closed waiting for", arg);
			fwrite(buf + len, 1, (size_t)n, stdout);
			fflush(stdout);
			len += (size_t)n;
		}
		mark = (size_t)((char *)memmem(buf + mark, len - mark, arg, strlen(arg)) - buf) + strlen(arg);
	}
	return 0;
}
C
cc -O2 -Wall -Wextra -Werror -o "$NESTED_WORK/hvc-chat" "$NESTED_WORK/hvc-chat.c" ||
	nested_fail "cannot build the hvc socket client"

# ------------------------------------------------------------------ images
nested_l2_initrd "$NESTED_WORK/l2.cpio" --extra-modules "ext4 crc32c_generic" \
	--add "$NESTED_WORK/virtio.sh:/virtio.sh" \
	--add-bin /usr/sbin/mke2fs:/usr/sbin/mkfs.ext4 --add /etc/mke2fs.conf:/etc/mke2fs.conf
nested_build_l1 --add "$NESTED_WORK/l2.cpio:/l2/initrd.cpio" \
	--add-bin /usr/sbin/e2fsck:/usr/sbin/e2fsck --add-bin /usr/sbin/debugfs:/usr/sbin/debugfs \
	--add-bin "$NESTED_WORK/hvc-chat:/usr/bin/hvc-chat"

nested_host_start h
nested_ready h 240 || nested_fail "L1 host did not come up (status $?)"
echo "L1: agent ready $(nested_elapsed h) s after QEMU start"
nested_share h "$NESTED_VMLINUX" vmlinux

# L1: kernel, disks, a file to send, the tap with 10.0.2.1, the TCP listeners.
out=$(nested_exec h 'set -e
cp /share/vmlinux /l2/kernel
truncate -s 64M /tmp/disk.img
dd if=/dev/urandom of=/tmp/ro.img bs=65536 count=64 2>/dev/null
dd if=/dev/urandom of=/tmp/down.bin bs=65536 count=64 2>/dev/null
echo "ro.img $(sha256sum </tmp/ro.img | cut -d" " -f1)"
echo "down.bin $(sha256sum </tmp/down.bin | cut -d" " -f1)"
ip tuntap add tap0 mode tap
ip addr add 10.0.2.1/24 dev tap0
ip link set tap0 up
mkfifo /tmp/never') || nested_fail "L1 set-up failed: $out"
ro_sum=$(echo "$out" | awk '$1 == "ro.img" { print $2 }')
down_sum=$(echo "$out" | awk '$1 == "down.bin" { print $2 }')
[ ${#ro_sum} = 64 ] && [ ${#down_sum} = 64 ] || nested_fail "L1 set-up printed no checksums: $out"
echo "L1: disks, tap0 10.0.2.1/24 and test files ready"
nested_spawn h rx 'nc -l -p 5001 <>/tmp/never >/tmp/up.bin'
nested_spawn h tx 'nc -l -p 5002 </tmp/down.bin'

nested_vmm_spawn h l2 run --kernel /l2/kernel --initrd /l2/initrd.cpio \
	--cmdline "console=ttyS0 run=/virtio.sh quiet" --mem 512M --cpus 2 \
	--disk /tmp/disk.img,serial=data0 --disk /tmp/ro.img,readonly,serial=ro0 \
	--net tap=tap0,mac=52:54:00:12:34:56 --console hvc,socket=/tmp/hvc.sock --rng
# shellcheck disable=SC2016 # $((...)) and $(tty) are for the L2 shell
nested_spawn h hvc '/usr/bin/hvc-chat /tmp/hvc.sock 150 -e "login shell ready on /dev/hvc0" \
	-s "echo \"hvc-marker-\$((6*7)) on \$(tty) as \$(id -un)\"" -e "hvc-marker-42 on /dev/hvc0 as root" -s exit'

rc=0
nested_job_wait h l2 180 || rc=$?
l2=$(nested_job_out h l2)
cp "$l2" "$NESTED_WORK/l2.log"
[ "$rc" = 0 ] || nested_fail "running vmm in L1 failed (status $rc): $(tail -n 30 "$l2")"
echo "L2: INIT: start at $(nested_ts "$l2" 'INIT: start') s, done at $(nested_ts "$l2" 'L2: done') s after vmm start"
grep -q 'VMM: exit 0$' "$l2" || nested_fail "vmm did not exit 0: $(tail -n 30 "$l2")"
grep -q 'L2: done' "$l2" || nested_fail "the L2 script did not finish: $(tail -n 30 "$l2")"
lines=$(tr -d '\r' <"$l2" | sed -n 's/^\[[ 0-9.]*\] L2: //p')
echo "$lines" | sed 's/^/  L2: /'
# The first L2 result line matching an ERE; fails when there is none.
line() { echo "$lines" | grep -m1 -E "$1"; }
bads=$(echo "$lines" | grep '^FAIL' || true)
[ -z "$bads" ] || nested_fail "L2 reported failures: $bads"
if grep -E '^\[[ 0-9.]*\] vmm: .*(error|warn|fail)' "$l2" | grep -v 'hvc socket' >&2; then
	nested_fail "vmm logged errors or warnings (above)"
fi

# Discovery: five functions on virtio-pci with MSI-X, five virtio devices bound.
for id in 1041:1 1042:2 1043:1 1044:1; do
	n=$(echo "$lines" | grep -cE "^pci [0-9a-f:.]+ 1af4:${id%:*} driver=virtio-pci msix=([2-9]|[1-9][0-9])\$" || true)
	[ "$n" = "${id#*:}" ] ||
		nested_fail "want ${id#*:} PCI function(s) 1af4:${id%:*} on virtio-pci with >= 2 MSI-X vectors, found $n"
done
for id in 0x0001:virtio_net:1 0x0002:virtio_blk:2 0x0003:virtio_console:1 0x0004:virtio_rng:1; do
	IFS=: read -r dev drv cnt <<<"$id"
	n=$(echo "$lines" | grep -cE "^virtio virtio[0-9]+ id=$dev driver=$drv\$" || true)
	[ "$n" = "$cnt" ] || nested_fail "want $cnt virtio device(s) $dev bound to $drv, found $n"
done
# Every virtqueue's own vector fired (the config vectors need not).
irqs=$(line '^irqs: ') || nested_fail "L2 printed no interrupt counts"
irqs=${irqs#irqs: }
nvq=0
for v in $irqs; do
	case "$v" in
	*-config=*) ;;
	*=0) nested_fail "no interrupt on ${v%=*} after the traffic: $irqs" ;;
	*) nvq=$((nvq + 1)) ;;
	esac
done
[ "$nvq" -ge 7 ] || nested_fail "want interrupts on >= 7 virtqueue vectors (blk x2, net rx/tx, console rx/tx, rng): $irqs"
echo "ok: 5 virtio-pci functions with MSI-X, bound to virtio_net, virtio_blk x2, virtio_console, virtio_rng;" \
	"interrupts on all $nvq virtqueue vectors"

# Block, seen from L2.
l=$(line '^blk file:') || nested_fail "L2 printed no ext4 file result"
read -r _ _ _ l2_want _ _ l2_got <<<"$l"
[ ${#l2_want} = 64 ] && [ "$l2_want" = "$l2_got" ] || nested_fail "ext4 file read back differs in L2: $l"
# Block, seen from L1 after vmm exited: a clean file system with the same file.
out=$(nested_exec h '/usr/sbin/e2fsck -fn /tmp/disk.img 2>&1; echo "e2fsck rc=$?"
/usr/sbin/debugfs -R "dump /file.bin /tmp/file.out" /tmp/disk.img 2>/dev/null
echo "file $(wc -c </tmp/file.out) $(sha256sum </tmp/file.out | cut -d" " -f1)"
echo "ro.img-after $(sha256sum </tmp/ro.img | cut -d" " -f1)"')
echo "$out" | sed 's/^/  L1: /'
echo "$out" | grep -q '^e2fsck rc=0$' || nested_fail "e2fsck -fn on the disk image is not clean"
echo "$out" | grep -q 'virtiotest: .* files' || nested_fail "e2fsck did not check the virtiotest file system"
echo "$out" | grep -qx "file 4194304 $l2_want" || nested_fail "file in the image differs from L2's $l2_want"
echo "ok: mkfs.ext4 in L2; e2fsck -fn clean in L1; the 4 MiB file's sha256 matches in L1 ($l2_want)"
l=$(line '^ro disk:') || nested_fail "L2 printed no read-only disk result"
echo "$l" | grep -qE "sha256 $ro_sum feature_ro=1 write refused .* sha256-after $ro_sum\$" ||
	nested_fail "read-only disk: want ro=1, the feature bit, a refused write and sha256 $ro_sum: $l"
line '^blk [a-z]+ serial=ro0 ro=1 ' >/dev/null || nested_fail "ro disk does not show ro=1: $(line 'serial=ro0')"
echo "$out" | grep -qx "ro.img-after $ro_sum" || nested_fail "ro.img changed in L1"
echo "ok: the read-only disk reads the same as in L1, refuses writes, and is unchanged"

# Network.
line '^net eth0 driver=virtio_net mac=52:54:00:12:34:56$' >/dev/null ||
	nested_fail "eth0 is not virtio_net with the MAC given: $(line '^net eth0')"
line '^net ping: 3 packets transmitted, 3 packets received' >/dev/null ||
	nested_fail "ping L1 from L2: $(line '^net ping')"
nested_job_wait h rx 30 || nested_fail "L1's TCP receiver did not finish (status $?)"
nested_job_wait h tx 30 || nested_fail "L1's TCP sender did not finish (status $?)"
up=$(nested_exec h 'echo "$(wc -c </tmp/up.bin) bytes sha256 $(sha256sum </tmp/up.bin | cut -d" " -f1)"')
line "^net tcp sent: 4194304 bytes sha256 [0-9a-f]{64}\$" >/dev/null && line "^net tcp sent: $up\$" >/dev/null ||
	nested_fail "TCP L2 -> L1: L1 got '$up', L2 sent '$(line '^net tcp sent')'"
line "^net tcp received: 4194304 bytes sha256 $down_sum\$" >/dev/null ||
	nested_fail "TCP L1 -> L2: L1 sent 4194304 $down_sum, L2 got '$(line '^net tcp received')'"
echo "ok: 3/3 pings to L1 over the tap; 4 MiB each way over TCP with matching sha256"

# Entropy.
line '^rng current=virtio_rng\.0 ' >/dev/null || nested_fail "hwrng is not virtio_rng: $(line '^rng current')"
l=$(line '^rng read:') || nested_fail "L2 printed no /dev/hwrng result"
read -r _ _ n _ distinct _ _ _ s1 s2 <<<"$l"
[ "$n" = 256+256 ] && [ "$distinct" -ge 100 ] && [ "$s1" != "$s2" ] ||
	nested_fail "/dev/hwrng: want 2 different reads of 256 bytes with >= 100 distinct values: $l"
echo "ok: /dev/hwrng is virtio_rng.0: 512 bytes, $distinct distinct values in the first 256"

# Console.
rc=0
nested_job_wait h hvc 30 || rc=$?
# The job's output reaches the share a moment after the job ends: wait until it has the end.
for _ in $(seq 50); do
	grep -q 'login shell exited' "$(nested_job_out h hvc)" 2>/dev/null && break
	sleep 0.1
done
hvc_out=$(tr -d '\r' <"$(nested_job_out h hvc)")
cp "$(nested_job_out h hvc)" "$NESTED_WORK/hvc.log"
[ "$rc" = 0 ] || nested_fail "hvc0 login shell over the socket (status $rc): $hvc_out"
line '^hvc: login shell exited$' >/dev/null || nested_fail "the hvc0 login shell did not exit"
echo "$hvc_out" | grep -q '^hvc: login shell ready on /dev/hvc0' ||
	nested_fail "the login shell's .profile did not report /dev/hvc0: $hvc_out"
echo "$hvc_out" | grep -q '^hvc-marker-42 on /dev/hvc0 as root$' ||
	nested_fail "the command typed on hvc0 did not come back evaluated: $hvc_out"
echo "ok: hvc0 login shell: .profile ran on /dev/hvc0, 'echo hvc-marker-\$((6*7))' came back as $(echo "$hvc_out" | grep -o 'hvc-marker-42 on /dev/hvc0 as root' | head -n1)"
nested_stop h 30 || true
