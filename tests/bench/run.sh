#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: measure, print a table, keep it under tests/bench/results/.
#   BENCH_QUICK=1   one repetition of everything, short intervals (a smoke run)
#   BENCH_ONLY=boot,migrate,replication,virtio   run only these benchmarks
set -eu
cd "$(dirname "$0")/../.."
mkdir -p tests/bench/results
stamp=$(date +%Y%m%d-%H%M%S)
only=${BENCH_ONLY:-boot,migrate,replication,virtio}
# The benchmarks run one binary from start to end, even if build/vmm is rebuilt meanwhile.
vmm=$(mktemp /tmp/vmm-bench.XXXXXX)
trap 'rm -f "$vmm"' EXIT
cp build/vmm "$vmm" && chmod 755 "$vmm"
status=0
for name in boot migrate replication virtio; do
	case ",$only," in *",$name,"*) ;; *) continue ;; esac
	out="tests/bench/results/$name-$stamp.txt"
	if [ -f "tests/bench/${name}_bench.py" ]; then
		python3 "tests/bench/${name}_bench.py" --vmm "$vmm" --out "$out" "$@" || status=1
	else # the nested ones are bash, on tests/nested/lib.sh
		bash "tests/bench/${name}_bench.sh" --vmm "$vmm" --out "$out" "$@" || status=1
	fi
	[ -f "$out" ] && cp "$out" "tests/bench/results/$name-latest.txt"
done
exit $status
