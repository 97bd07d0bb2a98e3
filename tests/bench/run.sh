#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: measure, print a table, keep it under tests/bench/results/.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p tests/bench/results
stamp=$(date +%Y%m%d-%H%M%S)
python3 tests/bench/boot_bench.py --out "tests/bench/results/boot-$stamp.txt" "$@"
cp "tests/bench/results/boot-$stamp.txt" tests/bench/results/boot-latest.txt
