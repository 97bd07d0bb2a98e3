#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The nested suite: every tests/nested/test_*.sh, one at a time (each uses
# both cores). Prints "PASS name" or "FAIL name: reason" per test, the test's
# own report lines indented, and "nested: N passed, N failed"; exits non-zero
# on any failure. A missing QEMU, KVM in L1 or vmm binary is a failure.
# NESTED_TEST_TIMEOUT (default 300 s) bounds each test; logs in work/NAME.log.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
mkdir -p "$here/work"

tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=("$here"/test_*.sh)
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	name=${name#test_}
	log=$here/work/$name.log
	start=$SECONDS
	timeout -k 15 "${NESTED_TEST_TIMEOUT:-300}" "$t" >"$log" 2>&1
	rc=$?
	sed 's/^/    /' "$log" | grep -v '^    nested: FAIL' | tail -n 40
	if [ $rc = 0 ]; then
		pass "$name ($((SECONDS - start)) s)"
	else
		reason=$(grep -m1 '^nested: FAIL' "$log" | sed 's/^nested: FAIL: //')
		[ $rc != 124 ] || reason="timed out after ${NESTED_TEST_TIMEOUT:-300} s"
		fail "$name" "${reason:-exit status $rc} (log: $log)"
	fi
done
summary nested
