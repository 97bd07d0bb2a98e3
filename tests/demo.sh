#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make demo: boot the bundled `counter` guest and let it count for a few seconds.
# (The replication work turns this into the failover demo: primary, standby, kill.)
set -u
cd "$(dirname "$0")/.."
secs=${DEMO_SECONDS:-3}
echo "demo: booting images/out/counter.elf on KVM for ${secs} s (serial console below)"
build/vmm run --kernel images/out/counter.elf --cmdline "interval_ms=100" </dev/null &
pid=$!
sleep "$secs"
kill -TERM $pid
wait $pid
rc=$?
echo "demo: vmm stopped by SIGTERM, exit status $rc (143 = stopped cleanly by signal 15)"
[ $rc -eq 143 ]
