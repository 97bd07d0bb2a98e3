#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The nested suite: every tests/nested/test_*.sh, one at a time (each uses
# both cores). Prints "PASS name" or "FAIL name: reason" per test, the test's
# own report lines indented, and "nested: N passed, N failed"; exits non-zero
# on any failure. A missing QEMU, KVM in L1 or vmm binary is a failure.
# NESTED_TEST_TIMEOUT (default 300 s) bounds each test; logs in work/NAME.log.
# NESTED_RETRIES=N (default 0) runs a failed test up to N more times; the
# failed attempts stay visible ("retry NAME: reason") and in work/NAME.try*.log.
# The nested stack itself is not perfectly reliable (see README.md), so
# retries are an option, off by default, with one exception:
# NESTED_STACK_RETRIES (default 2) more tries for a failure with the stack's
# own signature (an L2 vCPU's triple fault, which QEMU as the L2 VMM shows
# too, an L1 kernel's stack-guard panic, or an L1 kernel that stopped
# scheduling: a soft lockup, which panics L1 at once, with its stack), shown
# as "retry NAME".
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
	retries=${NESTED_RETRIES:-0}
	for try in $(seq 0 $((retries + ${NESTED_STACK_RETRIES:-2}))); do
		timeout -k 15 "${NESTED_TEST_TIMEOUT:-300}" "$t" >"$log" 2>&1
		rc=$?
		sed 's/^/    /' "$log" | grep -v '^    nested: FAIL' | tail -n 40
		[ $rc != 0 ] || break
		reason=$(grep -m1 '^nested: FAIL' "$log" | sed 's/^nested: FAIL: //')
		[ $rc != 124 ] || reason="timed out after ${NESTED_TEST_TIMEOUT:-300} s"
		reason="${reason:-exit status $rc}"
		# Beyond NESTED_RETRIES, only the stack's signature earns another try.
		if [ "$try" -ge "$retries" ] &&
			! grep -qsE 'triple fault \(KVM_EXIT_SHUTDOWN\)|stack guard page was hit|BUG: soft lockup' \
				"$log" "$here/work/$name"/hosts/*/console.log \
				"$here/work/$name"/hosts/*/share/cmd/*.out; then
			break
		fi
		if [ "$try" -lt $((retries + ${NESTED_STACK_RETRIES:-2})) ]; then
			cp "$log" "$here/work/$name.try$try.log"
			echo "retry $name: $reason (log: $here/work/$name.try$try.log)"
		fi
	done
	if [ $rc = 0 ]; then
		note=""
		[ "$try" = 0 ] || note=", attempt $((try + 1))"
		pass "$name ($((SECONDS - start)) s$note)"
	else
		fail "$name" "$reason (log: $log)"
	fi
done
summary nested
