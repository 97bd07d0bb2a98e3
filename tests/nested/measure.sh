#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Timings of the nested setup (not a test): L1 boot to its agent under TCG,
# kvm-amd load, and vmm booting the L2 guest (bzImage and PVH vmlinux, with
# and without "quiet"), each repeated; prints median, min and max. A failed
# L2 boot is counted, its output kept in work/measure/fail-N.log, and skipped.
# With "peer", QEMU (-accel kvm, copied into L1) boots the same L2 the same way:
# -M pc with the bzImage and -M microvm with the vmlinux (PVH).
#   tests/nested/measure.sh [L1_BOOTS=3] [L2_BOOTS=3] [peer]
# Other load on the machine shows up in these numbers: look at the spread.
set -eu
. "$(dirname "$0")/lib.sh"

l1_boots=${1:-3}
l2_boots=${2:-3}
peer=${3:-}
nested_init measure
nested_require_vmm
echo 'echo "L2: cpus online=$(cat /sys/devices/system/cpu/online)"' >"$NESTED_WORK/cpus.sh"
nested_l2_initrd "$NESTED_WORK/l2.gz" --add "$NESTED_WORK/cpus.sh:/cpus.sh"
nested_build_l1 --add "$NESTED_KERNEL:/l2/vmlinuz" --add "$NESTED_WORK/l2.gz:/l2/initrd.gz" \
	${peer:+--with-qemu}

# stats NAME VALUES...: one line with median, min, max.
stats() {
	local name=$1
	shift
	[ $# -gt 0 ] || { echo "$name: no data"; return 0; }
	printf '%s\n' "$@" | sort -n | awk -v name="$name" '{ v[NR] = $1 }
		END { printf "%-50s median %7.2f s  min %7.2f  max %7.2f  (n=%d)\n", name,
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
# l2_series NAME COMMAND: boot L2 l2_boots times with COMMAND (its output
# through stamp ending in "VMM: exit N") and print the times.
l2_series() {
	local name=$1 cmd=$2 i out init=() marker=() total=()
	for i in $(seq "$l2_boots"); do
		nested_spawn h l2 "{ timeout -s KILL 120 $cmd </dev/null; echo \"VMM: exit \$?\"; } 2>&1 | stamp"
		nested_job_wait h l2 150 || nested_fail "the agent did not finish an L2 boot"
		out=$(nested_job_out h l2)
		if ! grep -q 'VMM: exit 0$' "$out"; then
			fails=$((fails + 1))
			cp "$out" "$NESTED_WORK/fail-$fails.log"
			echo "$name boot $i failed: $(grep -m1 -E 'vmm: |qemu|BUG|panic' "$out" ||
				grep -v 'VMM: exit' "$out" | tail -n 1)"
			continue
		fi
		init+=("$(nested_ts "$out" 'INIT: start')")
		marker+=("$(nested_ts "$out" 'L2: cpus')")
		total+=("$(nested_ts "$out" 'VMM: exit')")
	done
	stats "$name: start -> INIT: start" "${init[@]}"
	stats "$name: start -> script marker" "${marker[@]}"
	stats "$name: start -> exit" "${total[@]}"
}

for kernel in vmlinuz vmlinux; do
	for quiet in "" " quiet"; do
		l2_series "L2 vmm $kernel${quiet}" "vmm run --kernel /l2/$kernel --initrd /l2/initrd.gz \
			--cmdline 'console=ttyS0 run=/cpus.sh$quiet' --mem 512M --cpus 2"
	done
done
if [ -n "$peer" ]; then
	qemu="qemu-system-x86_64 -accel kvm -cpu host -m 512 -smp 2 -nodefaults -no-user-config \
		-display none -serial stdio -no-reboot -initrd /l2/initrd.gz -append 'console=ttyS0 run=/cpus.sh'"
	l2_series "L2 QEMU pc vmlinuz" "$qemu -M pc -kernel /l2/vmlinuz"
	l2_series "L2 QEMU microvm vmlinux" "$qemu -M microvm -kernel /l2/vmlinux"
fi
echo "L2 boots failed: $fails"
nested_stop h 30 || true
