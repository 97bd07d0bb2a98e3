#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make check: every suite CI runs, in order; ends with one summary line.
# Unit (cmocka, ASan+UBSan), fuzz (short libFuzzer runs), integration (host
# KVM, bare-metal guests), replication (primary/standby failover trials on
# host KVM), nested (real Linux guest under QEMU TCG).
set -u
cd "$(dirname "$0")/.."
passed=0 failed=0 names=()
run_suite() {
	local name=$1
	shift
	echo "=== $name ==="
	local start=$SECONDS
	if "$@"; then
		passed=$((passed + 1))
		echo "=== $name: ok ($((SECONDS - start)) s) ==="
	else
		failed=$((failed + 1))
		names+=("$name")
		echo "=== $name: FAILED ($((SECONDS - start)) s) ==="
	fi
}
run_suite unit tests/run-unit.sh build/unit/test_*
run_suite fuzz make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-15}"
run_suite integration tests/integration/run.sh
run_suite replication tests/integration/replication.sh
run_suite splitbrain tests/integration/splitbrain.sh
run_suite witness tests/integration/witness_etcd.sh
run_suite nested tests/nested/run.sh
[ $failed -eq 0 ] || echo "failed suites: ${names[*]}"
echo "check: $passed passed, $failed failed"
[ $failed -eq 0 ]
