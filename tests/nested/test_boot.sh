#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# vmm boots Debian's stock kernel with 2 vCPUs inside an L1 host (QEMU TCG,
# kvm-amd): the L2 guest reaches its script, sees 2 CPUs online, powers off,
# and vmm exits 0. Reports L1 boot, kvm-amd load and L2 boot times.
#   test_boot.sh          the bzImage (64-bit boot protocol)
#   test_boot.sh pvh      the vmlinux extracted from it (PVH entry)
set -eu
. "$(dirname "$0")/lib.sh"

kind=${1:-bzimage}
nested_init "boot-$kind"
nested_require_vmm
cat >"$NESTED_WORK/cpus.sh" <<'L2'
echo "L2: cpus online=$(cat /sys/devices/system/cpu/online) nproc=$(nproc)"
L2
nested_l2_initrd "$NESTED_WORK/l2.gz" --add "$NESTED_WORK/cpus.sh:/cpus.sh"
case "$kind" in
bzimage) nested_build_l1 --add "$NESTED_KERNEL:/l2/kernel" --add "$NESTED_WORK/l2.gz:/l2/initrd.gz" ;;
pvh)
	[ -f "$NESTED_VMLINUX" ] || nested_fail "$NESTED_VMLINUX missing: images/linux/build.sh could not extract it"
	# 66 MB: it comes over the 9p share rather than through the L1 initramfs.
	nested_build_l1 --add "$NESTED_WORK/l2.gz:/l2/initrd.gz"
	;;
*) nested_fail "unknown kind $kind" ;;
esac

nested_host_start h
nested_ready h 240 || nested_fail "L1 host did not come up (status $?)"
echo "L1: agent ready $(nested_elapsed h) s after QEMU start; $(nested_marker h '^L1: kvm ready')"
nested_exec h 'test -c /dev/kvm' || nested_fail "no /dev/kvm in L1"
if [ "$kind" = pvh ]; then
	nested_share h "$NESTED_VMLINUX" vmlinux
	t=$(date +%s%N)
	nested_exec h 'cp /share/vmlinux /l2/kernel' || nested_fail "cannot copy vmlinux into L1"
	echo "L1: vmlinux copied from the share in $((($(date +%s%N) - t) / 1000000)) ms"
fi

nested_vmm_spawn h l2 run --kernel /l2/kernel --initrd /l2/initrd.gz \
	--cmdline "console=ttyS0 run=/cpus.sh" --mem 512M --cpus 2
rc=0
# Normally 10-30 s; a guest that panics or hangs fails the test in 2 minutes.
nested_job_wait h l2 120 || rc=$?
out=$(nested_job_out h l2)
cp "$out" "$NESTED_WORK/l2.log"
[ "$rc" = 0 ] || nested_fail "running vmm in L1 failed (status $rc): $(tail -n 20 "$out")"
grep -q 'L2: cpus' "$out" || nested_fail "no L2 marker; L2 output in $out: $(tail -n 20 "$out")"
grep -q 'L2: cpus online=0-1 nproc=2' "$out" ||
	nested_fail "L2 does not see 2 CPUs: $(grep 'L2: cpus' "$out")"
grep -q 'VMM: exit 0$' "$out" || nested_fail "vmm did not exit 0: $(grep 'VMM: exit' "$out")"
echo "L2 ($kind): first kernel line at $(nested_ts "$out" 'Linux version') s, INIT: start at" \
	"$(nested_ts "$out" 'INIT: start') s, marker at $(nested_ts "$out" 'L2: cpus') s, vmm exit at" \
	"$(nested_ts "$out" 'VMM: exit') s after vmm start"
nested_stop h 30 || true
