#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Replication on host KVM with the bare-metal guests: a primary and a
# standby on loopback, the primary killed with SIGKILL at random moments.
# Every trial checks what the outside world saw: the console sequence
# (primary's output, then the standby's) has no gap and no repeat, and a
# disk log guest's acknowledged blocks are all on the standby's disk.
#   REPL_TRIALS   counter failover trials (default 20; make soak runs hundreds)
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh

VMM=${VMM:-build/vmm-asan}
IMG=images/out
TRIALS=${REPL_TRIALS:-20}
# A killed process is noticed at once (its connection closes); the timeout only has to
# ride out a loaded machine's stalls without declaring a live peer dead.
TIMEOUT=${REPL_TIMEOUT_MS:-1000}
WORK=$(mktemp -d /tmp/vmm-repl.XXXXXX)
PORT=$((20000 + ($$ % 500) * 20))
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null; rm -rf "$WORK"' EXIT

if [ ! -c /dev/kvm ]; then
	fail "kvm-available" "/dev/kvm is missing: the replication suite must run"
	summary replication
	exit 1
fi

next_port() { PORT=$((PORT + 1)); }
seq_of() { cat "$@" | grep -aoE "$PATTERN" | grep -oE '[0-9]+$'; }
contiguous() { # FILE N: exactly 0..N-1 in order
	[ "$(wc -l <"$1")" -eq "$2" ] && diff -q "$1" <(seq 0 $(($2 - 1))) >/dev/null
}
wait_for() { # FILE REGEX SECONDS
	local i
	for i in $(seq $(($3 * 20))); do grep -qaE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}

# start_pair NAME STANDBY_ARGS -- PRIMARY_ARGS: sets spid, ppid
start_pair() {
	local name=$1 sargs=() pargs=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do sargs+=("$1"); shift; done
	shift
	pargs=("$@")
	next_port
	"$VMM" standby --listen 127.0.0.1:$PORT --failover-timeout-ms $TIMEOUT -v "${sargs[@]}" \
		</dev/null >"$WORK/$name.sb" 2>"$WORK/$name.sb.err" &
	spid=$!
	"$VMM" run --replicate-to 127.0.0.1:$PORT --epoch-ms 10 --failover-timeout-ms $TIMEOUT -v \
		"${pargs[@]}" </dev/null >"$WORK/$name.pr" 2>"$WORK/$name.pr.err" &
	ppid=$!
	pids+=("$spid" "$ppid")
}

# --- counter: kill -9 the primary at random moments ----------------------------------
PATTERN='counter: [0-9]+'
COUNT=700
ok=0 early=0
failed_trials=""
for t in $(seq "$TRIALS"); do
	start_pair "c$t" -- --kernel $IMG/counter.elf --cmdline "interval_ms=3 count=$COUNT"
	# Mostly after protection, sometimes while the first sync may still run.
	delay_ms=$(( (RANDOM % 10) == 0 ? RANDOM % 60 : 300 + RANDOM % 1000 ))
	sleep "$(printf '0.%03d' "$delay_ms")"
	kill -9 $ppid
	wait $ppid 2>/dev/null
	timeout 30 tail --pid=$spid -f /dev/null
	# A primary killed before it even connected leaves the standby waiting for one.
	kill -9 $spid 2>/dev/null
	wait $spid
	src=$?
	seq_of "$WORK/c$t.pr" "$WORK/c$t.sb" >"$WORK/c$t.seq"
	if [ $src -eq 0 ] && contiguous "$WORK/c$t.seq" $COUNT && grep -q "took over" "$WORK/c$t.sb.err"; then
		ok=$((ok + 1))
	elif { { [ $src -eq 1 ] && grep -qE "before the first checkpoint|ends early" "$WORK/c$t.sb.err"; } ||
		{ [ $src -eq 137 ] && ! grep -q "syncing" "$WORK/c$t.sb.err"; }; } &&
		[ ! -s "$WORK/c$t.sb" ] && contiguous "$WORK/c$t.seq" "$(wc -l <"$WORK/c$t.seq")"; then
		early=$((early + 1)) # killed before protection: nothing to resume, nothing wrong shown
	else
		failed_trials+=" $t(kill@${delay_ms}ms,standby=$src,lines=$(wc -l <"$WORK/c$t.seq"))"
		cp "$WORK/c$t."* /tmp/ 2>/dev/null
	fi
done
if [ -z "$failed_trials" ]; then
	pass "counter, primary killed at random moments: $ok/$TRIALS took over with the sequence 0..$((COUNT - 1)) whole (no gap, no repeat), $early killed before the first checkpoint"
else
	fail "counter failover trials" "failed:$failed_trials (files copied to /tmp/c<trial>.*)"
fi

# --- disk: every block acknowledged to the outside is on the standby's disk ------------
PATTERN='acked block=[0-9]+'
truncate -s 8M "$WORK/p.img" "$WORK/s.img"
start_pair disk --disk "$WORK/s.img" -- --kernel $IMG/virtio_blk.elf --disk "$WORK/p.img" \
	--cmdline "mode=log sectors=2048 interval_ms=2"
wait_for "$WORK/disk.pr" 'acked block=40' 20
kill -9 $ppid
wait $ppid 2>/dev/null
timeout 60 tail --pid=$spid -f /dev/null
wait $spid
src=$?
seq_of "$WORK/disk.pr" "$WORK/disk.sb" >"$WORK/disk.seq"
fnv=$(python3 -c 'import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], "rb").read(2048 * 512):
    h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)
print("0x%016x" % h)' "$WORK/s.img")
before=$(grep -c acked "$WORK/disk.pr")
if [ $src -eq 0 ] && contiguous "$WORK/disk.seq" 256 && [ "$before" -ge 40 ] &&
	grep -q "^virtio_blk: ok mode=log bytes=1048576 fnv=$fnv$" "$WORK/disk.sb"; then
	pass "disk log guest, primary killed after $before acknowledged writes: blocks 0..255 acknowledged once each, the standby's image holds them all (fnv $fnv)"
else
	fail "disk failover" "standby=$src, acked before=$before, seq lines=$(wc -l <"$WORK/disk.seq"), image fnv=$fnv, standby said: $(grep virtio_blk: "$WORK/disk.sb" | tail -2)"
fi

# --- the standby dies: the primary carries on, unprotected, and says so ------------------
PATTERN='counter: [0-9]+'
start_pair sbdie -- --kernel $IMG/counter.elf --cmdline "interval_ms=3 count=600" \
	--control "$WORK/sbdie.sock"
wait_for "$WORK/sbdie.sb.err" 'protecting' 20
sleep 0.3
kill -9 $spid
wait $spid 2>/dev/null
sleep 1
status=$("$VMM" ctl "$WORK/sbdie.sock" status 2>&1)
wait $ppid
prc=$?
seq_of "$WORK/sbdie.pr" >"$WORK/sbdie.seq"
if [ $prc -eq 0 ] && contiguous "$WORK/sbdie.seq" 600 && grep -q "UNPROTECTED" "$WORK/sbdie.pr.err" &&
	grep -q "protection: unprotected" <<<"$status"; then
	pass "standby killed: the primary runs on to the end (0..599 whole), logs and reports that it is unprotected"
else
	fail "standby death" "primary rc=$prc, lines=$(wc -l <"$WORK/sbdie.seq"), status: $status; log: $(tail -3 "$WORK/sbdie.pr.err")"
fi

# --- a guest that powers off on the primary is not brought back by the standby ------------
start_pair off -- --kernel $IMG/counter.elf --cmdline "interval_ms=3 count=150"
wait $ppid
prc=$?
timeout 10 tail --pid=$spid -f /dev/null
wait $spid
src=$?
seq_of "$WORK/off.pr" >"$WORK/off.seq"
if [ $prc -eq 0 ] && [ $src -eq 0 ] && contiguous "$WORK/off.seq" 150 && [ ! -s "$WORK/off.sb" ] &&
	grep -q "nothing to take over" "$WORK/off.sb.err"; then
	pass "guest powers off on the primary: all its output released, the standby ends (0) without resuming it"
else
	fail "poweroff under replication" "primary=$prc standby=$src lines=$(wc -l <"$WORK/off.seq") standby out: $(head -c 200 "$WORK/off.sb") err: $(tail -2 "$WORK/off.sb.err")"
fi

# --- ctl failover, then re-protection by a new standby ---------------------------------
start_pair fo --control "$WORK/fo-s.sock" -- --kernel $IMG/counter.elf \
	--cmdline "interval_ms=3 count=900" --control "$WORK/fo-p.sock"
wait_for "$WORK/fo.sb.err" 'protecting' 20
"$VMM" ctl "$WORK/fo-s.sock" status >"$WORK/fo.status" 2>&1
"$VMM" ctl "$WORK/fo-p.sock" quit >/dev/null 2>&1 # stop the old primary first, as an operator would
wait $ppid
"$VMM" ctl "$WORK/fo-s.sock" failover >>"$WORK/fo.status" 2>&1
wait_for "$WORK/fo.sb.err" 'took over' 10
next_port
"$VMM" standby --listen 127.0.0.1:$PORT --failover-timeout-ms $TIMEOUT -v </dev/null >"$WORK/fo2.sb" 2>"$WORK/fo2.sb.err" &
s2=$!
pids+=("$s2")
"$VMM" ctl "$WORK/fo-s.sock" replicate-to 127.0.0.1:$PORT --epoch-ms 10 >>"$WORK/fo.status" 2>&1
wait_for "$WORK/fo2.sb.err" 'protecting' 20
reprotected=$?
"$VMM" ctl "$WORK/fo-s.sock" status >>"$WORK/fo.status" 2>&1
wait $spid
src=$?
timeout 10 tail --pid=$s2 -f /dev/null
seq_of "$WORK/fo.pr" "$WORK/fo.sb" >"$WORK/fo.seq"
if [ $src -eq 0 ] && [ $reprotected -eq 0 ] && grep -q "role: standby" "$WORK/fo.status" &&
	grep -q "protection: protected by 127.0.0.1:$PORT" "$WORK/fo.status" &&
	contiguous "$WORK/fo.seq" 900; then
	pass "ctl failover on the standby takes over; ctl replicate-to protects the survivor again with a new standby; sequence whole"
else
	fail "failover and re-protection" "survivor rc=$src reprotected=$reprotected lines=$(wc -l <"$WORK/fo.seq"); status: $(cat "$WORK/fo.status" | head -c 900)"
fi

# --- bad input ---------------------------------------------------------------------------
"$VMM" standby </dev/null >/dev/null 2>"$WORK/bad1"
rc1=$?
"$VMM" run --kernel $IMG/hello.elf --replicate-to nowhere </dev/null >"$WORK/bad2.out" 2>"$WORK/bad2"
rc2=$?
"$VMM" run --kernel $IMG/hello.elf --epoch-ms 0 </dev/null >/dev/null 2>"$WORK/bad3"
rc3=$?
if [ $rc1 -eq 2 ] && grep -q -- "--listen" "$WORK/bad1" && [ $rc3 -eq 2 ] && grep -q "epoch-ms" "$WORK/bad3" &&
	[ $rc2 -eq 0 ] && grep -q "UNPROTECTED" "$WORK/bad2"; then
	pass "bad replication options: standby without --listen and --epoch-ms 0 exit 2; a bad standby address runs the guest unprotected and says so"
else
	fail "bad replication options" "rc=$rc1/$rc2/$rc3: $(cat "$WORK/bad1" "$WORK/bad2" "$WORK/bad3" | head -c 600)"
fi

summary replication
