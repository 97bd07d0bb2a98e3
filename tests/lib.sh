# SPDX-License-Identifier: MIT
# Shared helpers for the shell-driven suites: pass/fail bookkeeping and a summary line.
# shellcheck shell=bash

T_PASSED=0
T_FAILED=0
T_FAILED_NAMES=()
T_FAILED_LINES=()

pass() {
	T_PASSED=$((T_PASSED + 1))
	echo "PASS $1"
}

fail() {
	T_FAILED=$((T_FAILED + 1))
	T_FAILED_NAMES+=("$1")
	T_FAILED_LINES+=("$1: ${2:0:400}")
	echo "FAIL $1: $2"
}

# summary SUITE: repeat the failures (the end of a long log is what a CI summary shows), print
# "SUITE: N passed, N failed" and return non-zero on any failure.
summary() {
	local line
	for line in "${T_FAILED_LINES[@]}"; do echo "  failed: $line"; done
	echo "$1: $T_PASSED passed, $T_FAILED failed"
	[ "$T_FAILED" -eq 0 ]
}
