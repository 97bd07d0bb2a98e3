#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The split-brain witness against a real etcd: start Debian's etcd on
# loopback (random free ports, data in a temp dir, short election timeout so
# a 1 s lease is allowed), hold one key with etcdctl's own lease, then run
# build/unit/test_witness_etcd against it (it kills etcd in its last case).
# Installs nothing: scripts/install-deps.sh brings etcd-server and
# etcd-client.  Prints PASS/FAIL lines and "N passed, N failed".
#   WITNESS_TTL_MS  lease TTL for the test (default 1000)
set -u
cd "$(dirname "$0")/../.."

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
summary() {
	echo "witness_etcd: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

for tool in etcd etcdctl python3; do
	if ! command -v "$tool" >/dev/null; then
		fail "$tool is not installed (scripts/install-deps.sh installs etcd-server, etcd-client)"
		summary
		exit 1
	fi
done

bin=build/unit/test_witness_etcd
if ! make -s "$bin" >/tmp/witness_etcd_make.$$ 2>&1; then
	grep -E "error:|warning:" /tmp/witness_etcd_make.$$ | head -20
	rm -f /tmp/witness_etcd_make.$$
	fail "build $bin"
	summary
	exit 1
fi
rm -f /tmp/witness_etcd_make.$$

tmp=$(mktemp -d /tmp/witness_etcd.XXXXXX)
etcd_pid=
cleanup() {
	if [ -n "$etcd_pid" ]; then
		kill "$etcd_pid" 2>/dev/null
		for _ in $(seq 50); do
			kill -0 "$etcd_pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

read -r cport pport < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
client=http://127.0.0.1:$cport
peer=http://127.0.0.1:$pport

# Lease minimum in etcd is 1.5 election timeouts rounded up to seconds:
# 500 ms gives 1 s leases.
etcd --name witness-test --data-dir "$tmp/data" \
	--listen-client-urls "$client" --advertise-client-urls "$client" \
	--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
	--initial-cluster "witness-test=$peer" --initial-cluster-state new \
	--heartbeat-interval 100 --election-timeout 500 \
	>"$tmp/etcd.log" 2>&1 &
etcd_pid=$!
disown "$etcd_pid" # no "Killed" notice when the last case SIGKILLs it

ctl="etcdctl --endpoints=$client --dial-timeout=2s --command-timeout=3s"
t0=$(date +%s%N)
up=0
for _ in $(seq 100); do
	if $ctl endpoint health >/dev/null 2>&1; then
		up=1
		break
	fi
	kill -0 "$etcd_pid" 2>/dev/null || break
	sleep 0.1
done
if [ $up -eq 0 ]; then
	tail -20 "$tmp/etcd.log"
	fail "etcd did not come up on $client"
	summary
	exit 1
fi
version=$(etcd --version | sed -n 's/^etcd Version: //p')
pass "etcd $version up on $client in $((($(date +%s%N) - t0) / 1000000)) ms"

# An outside holder: etcdctl's own lease and put, read back by our parser.
ext=wt-ext-$$
lease=$($ctl lease grant 60 | awk '{print $2}')
if [ -n "$lease" ] && $ctl put --lease="$lease" "/vmm/$ext/active" etcdctl-holder >/dev/null; then
	pass "etcdctl holds /vmm/$ext/active under lease $lease"
else
	fail "etcdctl could not put /vmm/$ext/active"
fi

t0=$(date +%s%N)
out=$(WITNESS_ETCD=$client WITNESS_ETCD_PID=$etcd_pid WITNESS_EXT_VM=$ext \
	WITNESS_ETCDCTL="$ctl" WITNESS_TTL_MS=${WITNESS_TTL_MS:-1000} "$bin" 2>&1)
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
printf '%s\n' "$out" | grep -E '^  |vmm:' || true
while read -r line; do
	case "$line" in
	"[       OK ] "*) pass "${line#\[       OK \] }" ;;
	"[  FAILED  ] "*" test(s), listed below:"*) ;;
	"[  FAILED  ] "*) fail "${line#\[  FAILED  \] }" ;;
	"[  SKIPPED ] "*" test(s), listed below:"*) ;;
	"[  SKIPPED ] "*) fail "${line#\[  SKIPPED \] } (skipped)" ;;
	esac
done < <(printf '%s\n' "$out" | sed -n '/^\[==========\] [0-9]* test(s) run/q;p')
if [ $rc -ne 0 ]; then
	printf '%s\n' "$out" | grep -vE '^\[ (RUN|      OK) ' | head -40
	fail "$bin exited with status $rc"
fi
echo "test_witness_etcd ran in $ms ms"
summary
