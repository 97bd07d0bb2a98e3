#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Timings of the nested setup (not a test): L1 boot to its agent under TCG,
# kvm-amd load, and vmm booting the L2 guest (bzImage and PVH vmlinux, with
# and without "quiet"), each repeated; prints median, min and max. A failed
# L2 boot is counted, its output kept in work/measure/fail-N.log, and skipped.
#   tests/nested/measure.sh [L1_BOOTS=3] [L2_BOOTS=3]
# Other load on the machine shows up in these numbers: look at the spread.
set -eu
. "$(dirname "$0")/lib.sh"

l1_boots=${1:-3}
l2_boots=${2:-3}
nested_init measure
nested_require_vmm
echo 'echo "L2: cpus online=$(cat /sys/devices/system/cpu/online)"' >"$NESTED_WORK/cpus.sh"
nested_l2_initrd "$NESTED_WORK/l2.gz" --add "$NESTED_WORK/cpus.sh:/cpus.sh"
nested_build_l1 --add "$NESTED_KERNEL:/l2/vmlinuz" --add "$NESTED_WORK/l2.gz:/l2/initrd.gz"

# stats NAME VALUES...: one line with median, min, max.
stats() {
	local name=$1
	shift
	[ $# -gt 0 ] || { echo "$name: no data"; return 0; }
	printf '%s\n' "$@" | sort -n | awk -v name="$name" '{ v[NR] = $1 }
		END { printf "%-44s median %7.2f s  min %7.2f  max %7.2f  (n=%d)\n", name,
			(NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR], NR }'
}

fails=0
ready=() kvm=()
for i in $(seq "$l1_boots"); do
	nested_host_start h
	nested_ready h 240 || nested_fail "L1 boot $i failed"
	ready+=("$(nested_elapsed h)")
	kvm+=("$(nested_marker h '^L1: kvm ready' | sed 's/.*ready in \([0-9.]*\)s.*/\1/')")
	[ "$i" = "$l1_boots" ] || nested_stop h 30
done
stats "L1: QEMU start -> agent ready" "${ready[@]}"
stats "L1: insmod irqbypass ccp kvm kvm-amd" "${kvm[@]}"

nested_share h "$NESTED_VMLINUX" vmlinux
nested_exec h 'cp /share/vmlinux /l2/vmlinux' || nested_fail "cannot copy vmlinux"
for kernel in vmlinuz vmlinux; do
	for quiet in "" " quiet"; do
		init=() marker=() total=()
		for i in $(seq "$l2_boots"); do
			nested_vmm_spawn h l2 run --kernel "/l2/$kernel" --initrd /l2/initrd.gz \
				--cmdline "console=ttyS0 run=/cpus.sh$quiet" --mem 512M --cpus 2
			nested_job_wait h l2 300 || nested_fail "L2 boot failed: $(tail "$(nested_job_out h l2)")"
			out=$(nested_job_out h l2)
			if ! grep -q 'VMM: exit 0$' "$out"; then
				fails=$((fails + 1))
				cp "$out" "$NESTED_WORK/fail-$fails.log"
				echo "L2 $kernel${quiet:+ quiet} boot $i failed: $(grep -m1 'vmm: ' "$out")"
				continue
			fi
			init+=("$(nested_ts "$out" 'INIT: start')")
			marker+=("$(nested_ts "$out" 'L2: cpus')")
			total+=("$(nested_ts "$out" 'VMM: exit')")
		done
		stats "L2 $kernel${quiet:+ quiet}: vmm start -> INIT: start" "${init[@]}"
		stats "L2 $kernel${quiet:+ quiet}: vmm start -> script marker" "${marker[@]}"
		stats "L2 $kernel${quiet:+ quiet}: vmm start -> vmm exit" "${total[@]}"
	done
done
echo "L2 boots failed: $fails"
nested_stop h 30 || true
