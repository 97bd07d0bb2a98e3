#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run each libFuzzer binary given as an argument for ${FUZZ_SECONDS:-20} s.
# Corpus: build/fuzz/corpus/NAME (kept between runs), seeded read-only from
# tests/fuzz/seeds/NAME if present; dictionary tests/fuzz/NAME.dict if present.
# Crashes land in build/fuzz/artifacts/NAME/.  Prints "fuzz NAME: ok" or the
# failure with the end of the log, then "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-20}
passed=0 failed=0
for bin in "$@"; do
	name=$(basename "$bin")
	bin=$(realpath "$bin" 2>/dev/null || echo "$bin")
	corpus=$root/build/fuzz/corpus/$name
	artifacts=$root/build/fuzz/artifacts/$name/
	log=$root/build/fuzz/$name.log
	mkdir -p "$corpus" "$artifacts"
	args=(-max_total_time="$secs" -timeout=25 -artifact_prefix="$artifacts")
	[ -f "$root/tests/fuzz/$name.dict" ] && args+=(-dict="$root/tests/fuzz/$name.dict")
	dirs=("$corpus")
	[ -d "$root/tests/fuzz/seeds/$name" ] && dirs+=("$root/tests/fuzz/seeds/$name")
	if [ -x "$bin" ] && "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1; then
		echo "fuzz $name: ok ($(grep -o 'Done [0-9]* runs' "$log" | tail -n 1))"
		passed=$((passed + 1))
	else
		echo "fuzz $name: FAILED (log: $log)"
		tail -n 40 "$log" 2>/dev/null
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
