#!/bin/sh
# SPDX-License-Identifier: MIT
#
# /init of the guest initramfs built by images/linux/build.sh.
# Kernel command line:
#   run=/path   script to run after boot (default: an interactive shell)
#   hostname=N  set the hostname
# Markers on the console, for tests to wait on:
#   INIT: start | INIT: modules loaded (N) | INIT: run /path | INIT: done rc=N
# After the script (or the shell) exits, the guest powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console if the initramfs was built without root.
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "INIT: start"

loaded=0
while read -r mod; do
	if insmod "/lib/modules/$mod" 2>/tmp/insmod.err; then
		loaded=$((loaded + 1))
	else
		echo "INIT: insmod $mod failed: $(cat /tmp/insmod.err)"
	fi
done </etc/modules.load
echo "INIT: modules loaded ($loaded)"

run=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	run=*) run=${arg#run=} ;;
	hostname=*) hostname "${arg#hostname=}" ;;
	esac
done
ip link set lo up 2>/dev/null

if [ -n "$run" ]; then
	echo "INIT: run $run"
	sh "$run"
	rc=$?
else
	echo "INIT: shell"
	setsid cttyhack sh -l
	rc=$?
fi
echo "INIT: done rc=$rc"
sync
poweroff -f
