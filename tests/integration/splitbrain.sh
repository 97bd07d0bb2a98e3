#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Cut links between "hosts" made of network namespaces: host A runs the
# primary, host B the standby, joined by a veth pair (the replication
# link); etcd runs in the root namespace, reached from A and from B over
# links of their own.  The counter guest's console is what the outside
# world sees.
#
#   no witness, replication link cut   both sides run the guest: split brain
#                                      (the documented default, logged at start)
#   witness, replication link cut      the standby cannot take the lease while
#                                      the primary renews it: it does not take
#                                      over; the primary runs on unprotected
#   witness, primary cut off entirely  the primary cannot renew, fences itself;
#                                      the standby takes the lease and takes over
#   slow, lossy link (netem, else tbf) replication keeps going, nothing lost
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh
. tests/integration/hosts.sh

VMM=${VMM:-build/vmm-asan}
VMM=$(realpath "$VMM")
IMG=$(realpath images/out)
WORK=$(mktemp -d /tmp/vmm-split.XXXXXX)
TAG=$(printf '%04x' $(($$ % 65536)))
etcd_pid=
pids=()
cleanup() {
	kill -9 "${pids[@]}" 2>/dev/null
	[ -n "$etcd_pid" ] && kill -9 "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null
	hosts_destroy
	ip link del ea$TAG 2>/dev/null
	ip link del eb$TAG 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

for tool in ip tc etcd; do
	command -v $tool >/dev/null || { fail "prerequisites" "$tool is missing (scripts/install-deps.sh)"; summary splitbrain; exit 1; }
done
if [ ! -c /dev/kvm ]; then
	fail "kvm-available" "/dev/kvm is missing"
	summary splitbrain
	exit 1
fi

# --- the hosts ---------------------------------------------------------------------------
hosts_make $TAG || { fail "netns" "cannot create namespaces (root needed)"; summary splitbrain; exit 1; }
# Links to the witness in the root namespace.
ip link add ea$TAG type veth peer name xa$TAG netns $NSA
ip link add eb$TAG type veth peer name xb$TAG netns $NSB
ip addr add 10.78.1.1/24 dev ea$TAG
ip addr add 10.78.2.1/24 dev eb$TAG
ip link set ea$TAG up
ip link set eb$TAG up
ip -n $NSA addr add 10.78.1.2/24 dev xa$TAG
ip -n $NSB addr add 10.78.2.2/24 dev xb$TAG
ip -n $NSA link set xa$TAG up
ip -n $NSB link set xb$TAG up

port=$((23000 + $$ % 1000))
etcd --name split --data-dir "$WORK/etcd" \
	--listen-client-urls "http://10.78.1.1:$port,http://10.78.2.1:$port" \
	--advertise-client-urls "http://10.78.1.1:$port" \
	--listen-peer-urls "http://127.0.0.1:$((port + 1))" \
	--initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
	--initial-cluster "split=http://127.0.0.1:$((port + 1))" \
	--heartbeat-interval 100 --election-timeout 500 >"$WORK/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do
	curl -s -m 1 -X POST -d '{}' "http://10.78.1.1:$port/v3/maintenance/status" >/dev/null 2>&1 && break
	sleep 0.1
done
WA="--witness etcd=http://10.78.1.1:$port --witness-ttl-ms 2000"
WB="--witness etcd=http://10.78.2.1:$port --witness-ttl-ms 2000"

seq_of() { cat "$@" | grep -aoE 'counter: [0-9]+' | awk '{print $2}'; }
wait_for() { # FILE REGEX SECONDS
	for _ in $(seq $(($3 * 20))); do grep -qaE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}

# pair NAME COUNT PRIMARY_EXTRA STANDBY_EXTRA: start both, wait for protection
pair() {
	local name=$1 count=$2
	rport=$((rport + 1))
	# ip netns exec, not a shell function: $! must be the VMM itself, for kill -9
	ip netns exec $NSB "$VMM" standby --listen 10.77.0.2:$rport --failover-timeout-ms 800 -v $4 \
		</dev/null >"$WORK/$name.sb" 2>"$WORK/$name.sb.err" &
	spid=$!
	ip netns exec $NSA "$VMM" run --kernel $IMG/counter.elf --cmdline "interval_ms=5 count=$count" \
		--replicate-to 10.77.0.2:$rport --epoch-ms 10 --failover-timeout-ms 800 -v $3 \
		</dev/null >"$WORK/$name.pr" 2>"$WORK/$name.pr.err" &
	ppid=$!
	pids+=($spid $ppid)
	wait_for "$WORK/$name.sb.err" 'protecting' 20
}
rport=7700

# --- 1. no witness: a cut link lets both sides run -------------------------------------------
pair nowit 800 "" ""
sleep 0.3
ip -n $NSA link set ra$TAG down
wait_for "$WORK/nowit.sb.err" 'took over' 8
took=$?
wait_for "$WORK/nowit.pr.err" 'UNPROTECTED' 8
unprot=$?
sleep 0.5
kill -0 $ppid 2>/dev/null && kill -0 $spid 2>/dev/null
both=$?
kill -9 $ppid $spid 2>/dev/null
wait $ppid $spid 2>/dev/null
ip -n $NSA link set ra$TAG up
if [ $took -eq 0 ] && [ $unprot -eq 0 ] && [ $both -eq 0 ] && grep -q "no --witness" "$WORK/nowit.pr.err"; then
	pass "no witness, link cut: as documented both sides run the guest (split brain), and the primary warned at start"
else
	fail "no witness, link cut" "standby took over=$took primary unprotected=$unprot both alive=$both; $(tail -2 "$WORK/nowit.pr.err")"
fi

# --- 2. witness, replication link cut: no takeover -------------------------------------------
pair cut 600 "$WA --vm-name cut$TAG" "$WB --vm-name cut$TAG"
sleep 0.3
ip -n $NSA link set ra$TAG down
wait $spid
src=$?
wait $ppid
prc=$?
ip -n $NSA link set ra$TAG up
seq_of "$WORK/cut.pr" >"$WORK/cut.seq"
if [ $src -eq 1 ] && grep -q "not taking over" "$WORK/cut.sb.err" && [ ! -s "$WORK/cut.sb" ] &&
	[ $prc -eq 0 ] && diff -q "$WORK/cut.seq" <(seq 0 599) >/dev/null; then
	pass "witness, replication link cut: the standby finds the lease held and does not take over; the primary runs on to the end (0..599 whole)"
else
	fail "witness, link cut" "standby rc=$src primary rc=$prc lines=$(wc -l <"$WORK/cut.seq"); standby: $(tail -2 "$WORK/cut.sb.err")"
fi

# --- 3. witness, primary cut off from everything: it fences, the standby takes over ------------
pair iso 900 "$WA --vm-name iso$TAG" "$WB --vm-name iso$TAG"
sleep 0.3
t0=$(date +%s%N)
ip -n $NSA link set ra$TAG down
ip -n $NSA link set xa$TAG down
wait $ppid
prc=$?
t_fenced=$((($(date +%s%N) - t0) / 1000000))
wait_for "$WORK/iso.sb.err" 'took over' 15
t_took=$((($(date +%s%N) - t0) / 1000000))
wait $spid
src=$?
seq_of "$WORK/iso.pr" "$WORK/iso.sb" >"$WORK/iso.seq"
# An epoch may end mid-line: the standby's first line is the one after the primary's last.
last_primary=$(seq_of "$WORK/iso.pr" | tail -1)
first_standby=$(grep -A1 -x "${last_primary:-none}" "$WORK/iso.seq" | sed -n 2p)
if [ $prc -eq 1 ] && grep -q "witness lease" "$WORK/iso.pr.err" && [ $src -eq 0 ] &&
	diff -q "$WORK/iso.seq" <(seq 0 899) >/dev/null && [ -s "$WORK/iso.sb" ]; then
	pass "witness, primary isolated: it stops itself after ${t_fenced} ms, the standby takes the lease and takes over after ${t_took} ms; 0..899 whole, no line twice (primary's last $last_primary, standby's first $first_standby)"
else
	fail "witness, primary isolated" "primary rc=$prc (${t_fenced} ms) standby rc=$src lines=$(wc -l <"$WORK/iso.seq") dups=$(sort -n "$WORK/iso.seq" | uniq -d | head -3 | tr '\n' ' '); primary: $(tail -2 "$WORK/iso.pr.err"); standby: $(tail -2 "$WORK/iso.sb.err")"
fi
ip -n $NSA link set ra$TAG up
ip -n $NSA link set xa$TAG up

# --- 4. a slow, lossy link: 20 ms delay, 5% loss (netem), or a thin one (tbf) -------------------
# Kernels without sch_netem (like some CI hosts) still shape with tbf: a 1 Mbit/s link,
# slow enough that the standby is still working through a backlog when the guest ends.
link="20 ms delay and 5% loss"
if ! tc -n $NSA qdisc add dev ra$TAG root netem delay 20ms loss 5% 2>"$WORK/tc.err"; then
	link="a 1 Mbit/s bottleneck (no sch_netem in this kernel)"
	tc -n $NSA qdisc add dev ra$TAG root tbf rate 1mbit burst 32kbit latency 400ms 2>>"$WORK/tc.err"
fi
tcrc=$?
pair slow 500 "" ""
wait $ppid
prc=$?
timeout 10 tail --pid=$spid -f /dev/null
wait $spid
src=$?
seq_of "$WORK/slow.pr" >"$WORK/slow.seq"
if [ $tcrc -ne 0 ]; then
	fail "netem link" "tc netem failed: $(cat "$WORK/tc.err") (module sch_netem?)"
elif [ $prc -eq 0 ] && [ $src -eq 0 ] && diff -q "$WORK/slow.seq" <(seq 0 499) >/dev/null &&
	! grep -q "UNPROTECTED" "$WORK/slow.pr.err" && ! grep -q "releasing the held output" "$WORK/slow.pr.err"; then
	pass "link with $link: replication keeps going, the guest finishes (0..499 whole), the standby reads its backlog, confirms the end and ends with it"
else
	fail "netem link" "primary rc=$prc standby rc=$src lines=$(wc -l <"$WORK/slow.seq"); $(tail -2 "$WORK/slow.pr.err")"
fi
tc -n $NSA qdisc del dev ra$TAG root 2>/dev/null

summary splitbrain
