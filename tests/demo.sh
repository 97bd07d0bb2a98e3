#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make demo: a guest survives the death of its host.
#
# A standby and a primary run on this machine (loopback stands in for the
# link between two hosts).  The primary boots the bundled `counter` guest,
# which prints an increasing number every 100 ms, and checkpoints it to the
# standby every 20 ms; console output leaves the primary only once the
# standby has the checkpoint it belongs to.  After a few seconds the demo
# kills the primary with SIGKILL; the standby notices, resumes the guest
# from the last checkpoint, and the count goes on with no gap and no repeat.
set -u
cd "$(dirname "$0")/.."
secs=${DEMO_SECONDS:-3}
port=${DEMO_PORT:-7100}
work=$(mktemp -d /tmp/vmm-demo.XXXXXX)
trap 'kill -9 $primary $standby 2>/dev/null; rm -rf "$work"' EXIT

label() { # prefix each line, unbuffered
	while IFS= read -r line; do printf '%-9s %s\n' "[$1]" "$line"; done
}

echo "demo: standby listening on 127.0.0.1:$port"
build/vmm standby --listen 127.0.0.1:$port -v </dev/null 2> >(label standby >&2) \
	> >(tee "$work/standby.out" | label standby) &
standby=$!
sleep 0.3
echo "demo: primary boots images/out/counter.elf, replicating to it every 20 ms"
build/vmm run --kernel images/out/counter.elf --cmdline "interval_ms=100" \
	--replicate-to 127.0.0.1:$port --epoch-ms 20 --failover-timeout-ms 300 \
	--control "$work/primary.sock" -v </dev/null 2> >(label primary >&2) \
	> >(tee "$work/primary.out" | label primary) &
primary=$!
sleep "$secs"
build/vmm ctl "$work/primary.sock" status | grep -E 'protection|replication' | label primary
echo "demo: kill -9 the primary (host failure)"
kill -9 $primary
wait $primary 2>/dev/null
sleep "${DEMO_AFTER:-2}"
kill -TERM $standby
wait $standby 2>/dev/null
sleep 0.2

seq_file=$work/seq
cat "$work/primary.out" "$work/standby.out" | grep -aoE 'counter: [0-9]+' | awk '{print $2}' >"$seq_file"
n=$(wc -l <"$seq_file")
before=$(grep -caE 'counter: [0-9]+' "$work/primary.out")
after=$(grep -caE 'counter: [0-9]+' "$work/standby.out")
if [ "$after" -gt 0 ] && [ "$n" -gt 0 ] && diff -q "$seq_file" <(seq 0 $((n - 1))) >/dev/null; then
	echo "demo: ok: the count went 0..$((n - 1)): $before lines from the primary, $after from the standby after the failover, no gap, no repeat"
	exit 0
fi
echo "demo: FAILED: $before lines from the primary, $after from the standby; sequence:" \
	"$(tr '\n' ' ' <"$seq_file" | head -c 600)"
exit 1
