#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The harness itself, without vmm: two L1 hosts on one segment boot, load
# kvm-amd and have /dev/kvm; commands run with their output and exit status;
# hosts reach each other over the segment; a background job can be killed;
# the QEMU monitor cuts a host's link; a frozen host answers nothing until
# thawed; a killed host is reported as dead (125) and can be started again on
# the same segment; a stopped one powers off; a script baked into the L1
# image runs at boot.
set -eu
. "$(dirname "$0")/lib.sh"

nested_init harness
echo 'echo "USER: script ran on $(hostname)"' >"$NESTED_WORK/user.sh"
nested_build_l1 --no-vmm --script "$NESTED_WORK/user.sh"
nested_segment lan a b
nested_host_start a
nested_host_start b
for h in a b; do
	nested_ready "$h" 240 || nested_fail "$h: no agent (status $?)"
	echo "$h: agent ready after $(nested_elapsed "$h") s; $(nested_marker "$h" '^L1: kvm ready')"
done

nested_exec a 'test -c /dev/kvm' || nested_fail "a: no /dev/kvm"
nested_wait b '^USER: script ran on b' 30 || nested_fail "b: the baked-in script did not run"
rc=0
out=$(nested_exec a 'echo out; echo err >&2; exit 3') || rc=$?
[ "$rc" = 3 ] || nested_fail "exec status: want 3, got $rc"
[ "$out" = "$(printf 'out\nerr')" ] || nested_fail "exec output: got '$out'"

# No IPv6: its unsolicited multicasts would disturb the frame count below.
# a puts eth0 and a tap (where a guest NIC would go) on a bridge, as hosts
# running replicated guests will.
noipv6='sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1'
nested_exec a "$noipv6 && ip tuntap add tap0 mode tap && ip link add br0 type bridge &&
	ip link set eth0 master br0 && ip link set tap0 master br0 &&
	ip link set eth0 up && ip link set tap0 up && ip link set br0 up &&
	ip addr add 10.0.0.1/24 dev br0" || nested_fail "a: cannot set up tap0 and br0"
nested_exec b "$noipv6 && ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0" >/dev/null
mac_b=$(nested_mac b lan)
[ "$(nested_exec b 'cat /sys/class/net/eth0/address')" = "$mac_b" ] ||
	nested_fail "b's eth0 does not have MAC $mac_b"
nested_exec a 'ping -c 3 -W 5 10.0.0.2' >/dev/null || nested_fail "a cannot ping b over the segment"
# A hub must not echo a frame back to its sender: a promiscuous NIC that sends
# 3 ARP requests for nobody must not get 3 frames back (b's own ARP refresh of
# a may arrive meanwhile, hence not 0).
rx=$(nested_exec a 'ip link set eth0 promisc on; s=/sys/class/net/eth0/statistics
	a=$(cat $s/rx_packets); arping -c 3 -w 4 -I eth0 10.0.0.99 >/dev/null; sleep 1
	echo $(($(cat $s/rx_packets) - a)) $(cat $s/tx_packets)')
[ "${rx%% *}" -lt 3 ] || nested_fail "a received its own frames back (rx delta, tx: $rx)"

nested_monitor a 'set_link lan off' >/dev/null
nested_exec a 'ping -c 1 -W 2 10.0.0.2' >/dev/null && nested_fail "ping went through a link set off"
nested_monitor a 'set_link lan on' >/dev/null
nested_exec a 'ping -c 2 -W 5 10.0.0.2' >/dev/null || nested_fail "no ping after set_link on"
nested_monitor a 'info status' | grep -q 'VM status: running' || nested_fail "monitor: no status"

nested_freeze b
rc=0
nested_exec b --timeout 3 true || rc=$?
[ "$rc" = 124 ] || nested_fail "exec on a frozen host: want 124, got $rc"
nested_thaw b
nested_exec b true || nested_fail "b does not answer after thaw"

nested_spawn a sleeper 'echo started; sleep 600; echo not reached'
for _ in $(seq 100); do
	grep -q started "$(nested_job_out a sleeper)" 2>/dev/null && break
	sleep 0.1
done
nested_job_kill a sleeper KILL
rc=0
nested_job_wait a sleeper 20 || rc=$?
[ "$rc" = 137 ] || nested_fail "killed job: want status 137, got $rc"
nested_exec a 'pidof sleep' && nested_fail "the killed job's sleep survived"

t=$(date +%s%N)
nested_kill b
rc=0
nested_exec b true || rc=$?
[ "$rc" = 125 ] || nested_fail "exec on a dead host: want 125, got $rc"
echo "b: killed, reported dead after $((($(date +%s%N) - t) / 1000000)) ms"
nested_exec a 'ping -c 1 -W 2 10.0.0.2' >/dev/null && nested_fail "b still answers after kill -9"

nested_host_start b
nested_ready b 240 || nested_fail "b: no agent after restart (status $?)"
nested_exec b "$noipv6 && ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0" >/dev/null
nested_exec a 'ping -c 2 -W 5 10.0.0.2' >/dev/null || nested_fail "restarted b is not on the segment"
nested_kill b

nested_stop a 30 || nested_fail "a did not power off"
grep -q '^L1: agent stop' "$(nested_console a)" || nested_fail "a: no clean agent stop"
echo "harness ok"
