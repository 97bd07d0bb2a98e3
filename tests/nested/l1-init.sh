#!/bin/sh
# SPDX-License-Identifier: MIT
#
# /l1.sh: what an L1 host of the nested harness runs (init's run= script).
# Mounts the harness's 9p share at /share, loads KVM (timed), runs the test's
# baked-in /l1-user.sh if there is one (in the background, console output),
# then serves commands from /share/cmd until /share/cmd/.stop appears.
#
# Command protocol (the host side is tests/nested/lib.sh): the harness writes
# cmd/JOB.sh (atomically, by rename); the agent renames it to JOB.run, runs it
# with cwd / and output in JOB.out, in a session of its own whose id (the
# shell's pid, so kill -SIG -PID reaches all its processes) goes to JOB.pid and,
# when it ends, its exit status to JOB.rc (atomically, by rename).
# Busybox's sh runs its own applets before anything on PATH, so jobs get
# functions that make ip, tc and bridge mean iproute2's where it was copied in.

now() { cut -d' ' -f1 /proc/uptime; }

echo "L1: start uptime=$(now)"
mkdir -p /share
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 share /share; then
	echo "L1: FAIL cannot mount the 9p share"
	exit 1
fi

t0=$(now)
while read -r mod; do
	insmod "/lib/modules/$mod" || echo "L1: insmod $mod failed"
done </etc/modules.lazy
t1=$(now)
if [ -c /dev/kvm ]; then
	echo "L1: kvm ready in $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")s uptime=$t1"
else
	echo "L1: FAIL no /dev/kvm after loading $(tr '\n' ' ' </etc/modules.lazy)"
fi

[ -f /l1-user.sh ] && sh /l1-user.sh &

: >/etc/l1-tools
for t in ip tc bridge; do
	[ ! -x "/usr/local/sbin/$t" ] || echo "$t() { /usr/local/sbin/$t \"\$@\"; }" >>/etc/l1-tools
done

cd /share/cmd || exit 1
echo "L1: agent ready uptime=$(now)"
while [ ! -e .stop ]; do
	for f in *.sh; do
		[ -e "$f" ] || continue
		job=${f%.sh}
		mv "$f" "$job.run" || continue
		(
			cd / && setsid sh -c 'echo $$ >"/share/cmd/$1.pid"; . /etc/l1-tools; . "/share/cmd/$1.run"' \
				- "$job" >"/share/cmd/$job.out" 2>&1 </dev/null
			echo $? >"/share/cmd/$job.rc.tmp"
			mv "/share/cmd/$job.rc.tmp" "/share/cmd/$job.rc"
		) &
	done
	usleep 100000
done
echo "L1: agent stop"
