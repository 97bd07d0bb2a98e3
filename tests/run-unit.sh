#!/usr/bin/env bash
# Run each cmocka unit-test binary; print its output and one summary line.
set -u
passed=0 failed=0 tests=0 failures=0
for bin in "$@"; do
	out=$("$bin" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	n=$(printf '%s\n' "$out" | grep -c '^\[       OK \]')
	f=$(printf '%s\n' "$out" | grep -c '^\[  FAILED  \] .*[^)]$' || true)
	tests=$((tests + n))
	if [ $rc -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures=$((failures + f)); echo "FAIL $bin (status $rc)"; fi
done
echo "unit: $passed suites passed, $failed failed ($tests tests passed)"
[ $failed -eq 0 ]
