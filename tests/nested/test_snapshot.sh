#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Snapshot and restore of a real Linux guest (Debian's kernel through PVH,
# `quiet`) with a virtio disk, network card and console, on one L1 host:
#
#   workload  in L2, seqload (compiled here) writes "seq N rt=REALTIME
#             mono=MONOTONIC" every 100 ms: appended to /seq.txt on an ext4
#             disk (made in L1 with mke2fs) and fsynced, then to hvc0 (a file
#             in L1) and to a TCP connection that a client in L1 holds open;
#             every 10th line also on ttyS0, where L1 stamps it with its clock
#   snapshot  once the guest has written seq 30: `vmm ctl snapshot FILE --stop`;
#             vmm exits 0, the file exists; a copy of the disk image, its
#             journal replayed, holds every line the console had shown (they
#             were fsynced first) and at most one more
#   restore   `vmm restore FILE` with the snapshot's disk and tap, hvc0 in a
#             second file: status says running; the two console files
#             together are seq 1..COUNT with no gap or repeat
#   clock     restore continues the saved clock (docs/STATE_FORMAT.md, Time),
#             so the guest does not see the pause: line to line its realtime
#             and monotonic clocks never step back nor by 2 s or more, also
#             across the snapshot, while L1's clock went on; after the restore
#             the guest's clock runs at L1's rate (offset spread < 0.5 s) and
#             lags L1 by about the time vmm was down
#   disk      after poweroff, e2fsck -fn of the image in L1 is clean and
#             /seq.txt is seq 1..COUNT
#   net       the TCP connection survived: L1's client got seq 1..COUNT once,
#             then the guest's close; after the restore, 3/3 pings to L1
# The network checks come last, so that a broken network still shows how the
# rest went.
set -eu
. "$(dirname "$0")/lib.sh"

COUNT=150 # lines the workload writes, 100 ms apart
SNAP_AT=30 # snapshot once the guest has written this line

nested_init snapshot
nested_require_linux_guest
t_start=$SECONDS

# ------------------------------------------------------------------ workload
nested_build_seqload

# ------------------------------------------------------------------ L2 script
nested_l2_script "$NESTED_WORK/snap.sh" <<'L2'
say "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
ip addr add 10.0.2.2/24 dev eth0
ip link set eth0 up
mount -t ext4 /dev/vda /mnt || { say "FAIL mount /dev/vda"; exit 1; }
ping -c 1 -W 5 10.0.2.1 >/tmp/ping.out 2>&1
say "net ping before: $(grep 'packets transmitted' /tmp/ping.out)"
/bin/seqload run 7001 1 "$count" 100 /mnt/seq.txt
rc=$?
ping -c 3 -W 3 10.0.2.1 >/tmp/ping.out 2>&1
say "net ping after: $(grep 'packets transmitted' /tmp/ping.out)"
umount /mnt || { say "FAIL umount"; rc=1; }
say "done rc=$rc"
exit $rc
L2

# ------------------------------------------------------------------ images
nested_l2_initrd "$NESTED_WORK/l2.cpio" --extra-modules "ext4 crc32c_generic" \
	--add "$NESTED_WORK/snap.sh:/snap.sh" --add-bin "$NESTED_WORK/seqload:/bin/seqload"
nested_build_l1 --add "$NESTED_WORK/l2.cpio:/l2/initrd.cpio" \
	--add-bin /usr/sbin/mke2fs:/usr/sbin/mke2fs --add-bin /usr/sbin/e2fsck:/usr/sbin/e2fsck \
	--add-bin /usr/sbin/debugfs:/usr/sbin/debugfs --add-bin "$NESTED_WORK/seqload:/usr/bin/seqload"

nested_host_start h
nested_ready h 240 || nested_fail "L1 host did not come up (status $?)"
echo "L1: agent ready $(nested_elapsed h) s after QEMU start"
nested_share h "$NESTED_VMLINUX" vmlinux
# L1 kernel warnings (a soft lockup's backtrace) to the console, for nested_fail.
out=$(nested_exec h 'set -e
echo 8 >/proc/sys/kernel/printk
sysctl -qw kernel.softlockup_all_cpu_backtrace=1
cp /share/vmlinux /l2/kernel
truncate -s 64M /tmp/disk.img
/usr/sbin/mke2fs -q -t ext4 -L snaptest /tmp/disk.img
ip tuntap add tap0 mode tap
ip addr add 10.0.2.1/24 dev tap0
ip link set tap0 up') || nested_fail "L1 set-up failed: $out"
echo "L1: ext4 disk, tap0 10.0.2.1/24 ready"

# clock_steps FILE: the largest step and the smallest of the guest's realtime and
# monotonic between consecutive lines, and the steps from seq K to K+1:
# "max-rt min-rt max-mono min-mono rt-at-K mono-at-K"
clock_steps() {
	tr -d '\r' <"$1" | awk -v k="$2" '/^seq [0-9]+ rt=[0-9.]+ mono=[0-9.]+$/ {
		g = substr($3, 4); m = substr($4, 6)
		if (c++) { dg = g - pg; dm = m - pm
			if (c == 2 || dg > xg) xg = dg; if (c == 2 || dg < ng) ng = dg
			if (c == 2 || dm > xm) xm = dm; if (c == 2 || dm < nm) nm = dm
			if ($2 == k + 1) { kg = dg; km = dm } }
		pg = g; pm = m } END { printf "%.3f %.3f %.3f %.3f %.3f %.3f\n", xg, ng, xm, nm, kg, km }'
}
# offsets FILE... : guest realtime - host realtime of the serial "L2: at seq N rt=" lines
# (stamped by the host when they came out of vmm): "N OFFSET" per line
offsets() {
	tr -d '\r' <"$1" | awk '/^\[[0-9.]+\] L2: at seq [0-9]+ rt=/ {
		h = substr($1, 2) + 0; printf "%d %.3f\n", $5, substr($6, 4) - h }'
}

# ------------------------------------------------------------------ run
nested_vmm_spawn_stamped h l2 run --kernel /l2/kernel --initrd /l2/initrd.cpio \
	--cmdline "console=ttyS0 run=/snap.sh quiet seq_count=$COUNT" --mem 256M --cpus 2 \
	--disk /tmp/disk.img,serial=snap0 --net tap=tap0,mac=52:54:00:12:34:56 \
	--console hvc,path=/tmp/hvc1.log --rng --control /tmp/ctl.sock -v
l2=$(nested_job_out h l2)
t_vmm=$SECONDS
nested_wait_out "$l2" 'L2: listening' 120 || nested_fail "the L2 workload did not start (status $?): $(tail -n 20 "$l2")"
echo "L2: workload listening $((SECONDS - t_vmm)) s after vmm start"
nested_spawn h client 'seqload client 10.0.2.2 7001 30'
cli=$(nested_job_out h client)
nested_wait_out "$l2" "L2: at seq $SNAP_AT " 60 || nested_fail "L2 did not reach seq $SNAP_AT (status $?): $(tail -n 10 "$l2")"

# ------------------------------------------------------------------ snapshot
rc=0
ctl=$(nested_exec h 'vmm ctl /tmp/ctl.sock snapshot /tmp/snap.bin --stop') || rc=$?
echo "$ctl" | sed 's/^/  ctl: /'
[ $rc = 0 ] || nested_fail "vmm ctl snapshot --stop failed (status $rc)"
echo "$ctl" | grep -qE '^snapshot: /tmp/snap.bin bytes=[0-9]+ pages=[0-9]+ .*paused-ms=' ||
	nested_fail "ctl printed no snapshot line"
rc=0
nested_job_wait h l2 30 || rc=$?
cp "$l2" "$NESTED_WORK/run.log"
[ $rc = 0 ] || nested_fail "vmm did not end after snapshot --stop (status $rc): $(tail -n 10 "$l2")"
grep -q 'VMM: exit 0$' "$l2" || nested_fail "vmm did not exit 0 after snapshot --stop: $(tail -n 10 "$l2")"
out=$(nested_exec h 'set -e
ls -l /tmp/snap.bin | awk "{ print \"snapshot-size\", \$5 }"
cp /tmp/hvc1.log /share/hvc1.log
cp /tmp/disk.img /tmp/mid.img
/usr/sbin/e2fsck -E journal_only -y /tmp/mid.img >/tmp/mid.fsck 2>&1 || echo "journal replay rc=$?"
/usr/sbin/debugfs -R "cat /seq.txt" /tmp/mid.img >/share/mid.txt 2>/dev/null
rm /tmp/mid.img') || nested_fail "after the snapshot, L1 checks failed: $out"
size=$(echo "$out" | awk '$1 == "snapshot-size" { print $2 }')
[ "${size:-0}" -gt 1048576 ] || nested_fail "snapshot file missing or tiny: $out"
read -r _ k1 _ s1 <<<"$(nested_seq_check "$NESTED_WORK/hosts/h/share/hvc1.log")"
read -r mf ml mn ms <<<"$(nested_seq_check "$NESTED_WORK/hosts/h/share/mid.txt")"
echo "ok: snapshot --stop: $size bytes, vmm exited 0; hvc0 had seq 1..$k1 ($s1)"
[ "$s1" = ok ] && [ "$k1" -ge "$SNAP_AT" ] || nested_fail "console before the snapshot: last seq $k1, $s1"
[ "$mf" = 1 ] && [ "$ms" = ok ] && [ "$ml" -ge "$k1" ] && [ "$ml" -le $((k1 + 1)) ] ||
	nested_fail "disk at the snapshot: seq.txt has $mf..$ml ($mn lines, $ms), want 1..$k1 or 1..$((k1 + 1)) (console showed $k1)"
echo "ok: the disk at the snapshot (journal replayed on a copy) holds seq 1..$ml: every line the console showed was fsynced"

# ------------------------------------------------------------------ restore
# The clock check below needs the guest stopped for over a second; a fast
# snapshot and restore took 0.99 s once.
sleep 1.5
nested_vmm_spawn_stamped h l2b restore /tmp/snap.bin --console hvc,path=/tmp/hvc2.log --control /tmp/ctl2.sock -v
l2b=$(nested_job_out h l2b)
nested_wait_out "$l2b" "L2: at seq $(((k1 / 10 + 2) * 10)) " 60 ||
	nested_fail "the restored guest does not go on (status $?): $(tail -n 20 "$l2b")"
st=$(nested_exec h 'vmm ctl /tmp/ctl2.sock status') || nested_fail "ctl status after the restore: $st"
echo "$st" | grep -q '^state: running$' || nested_fail "status after the restore: $st"
echo "ok: the restored guest runs (ctl status: running) and writes on"
# For the network checks at the end: the restored device's and the tap's counters,
# and whether L1 reaches the guest.
diag=$(nested_exec h --timeout 30 'vmm ctl /tmp/ctl2.sock status | grep "^net"
ip -s link show tap0 | sed -n "3,6p" | tr -s " " | tr "\n" " "; echo
ping -c 2 -W 2 10.0.2.2 | grep transmitted
vmm ctl /tmp/ctl2.sock status | grep "^net"' 2>&1) || true
rc=0
nested_job_wait h l2b 120 || rc=$?
cp "$l2b" "$NESTED_WORK/restore.log"
[ $rc = 0 ] || nested_fail "restored vmm did not finish (status $rc): $(tail -n 20 "$l2b")"
grep -q 'VMM: exit 0$' "$l2b" || nested_fail "restored vmm did not exit 0: $(tail -n 20 "$l2b")"
grep -q 'L2: done rc=0' "$l2b" || nested_fail "the L2 script failed after the restore: $(tail -n 20 "$l2b")"
tr -d '\r' <"$l2" | grep -v 'L2: at seq' | sed -n 's/^\[[ 0-9.]*\] \(L2: \)/  run: \1/p'
tr -d '\r' <"$l2b" | grep -v 'L2: at seq' | sed -n 's/^\[[ 0-9.]*\] \(L2: \)/  restore: \1/p'
if grep -hE '^\[[ 0-9.]*\] vmm: .*(error|warn|fail)' "$l2" "$l2b" >&2; then
	nested_fail "vmm logged errors or warnings (above)"
fi

# Console: the two files together are one unbroken sequence.
nested_exec h 'cp /tmp/hvc2.log /share/hvc2.log' >/dev/null || nested_fail "no second hvc0 file"
cat "$NESTED_WORK/hosts/h/share/hvc1.log" "$NESTED_WORK/hosts/h/share/hvc2.log" >"$NESTED_WORK/hvc.log"
read -r f2 l2n _ _ <<<"$(nested_seq_check "$NESTED_WORK/hosts/h/share/hvc2.log")"
read -r f l n s <<<"$(nested_seq_check "$NESTED_WORK/hvc.log")"
[ "$f" = 1 ] && [ "$l" = "$COUNT" ] && [ "$n" = "$COUNT" ] && [ "$s" = ok ] ||
	nested_fail "hvc0 across the snapshot: seq $f..$l, $n lines, $s (want 1..$COUNT)"
echo "ok: hvc0: seq 1..$k1 before, $f2..$l2n after the restore: 1..$COUNT with no gap or repeat"

# Clock. In the console lines: the guest's own steps, line to line.
read -r xg ng xm nm kg km <<<"$(clock_steps "$NESTED_WORK/hvc.log" "$k1")"
# Against L1's clock: the serial lines, stamped by L1 as they came out of vmm.
t_stop=$(tr -d '\r' <"$l2" | sed -n 's/^\[\([0-9.]*\)\] VMM: exit.*/\1/p')
t_restore=$(tr -d '\r' <"$l2b" | sed -n '1s/^\[\([0-9.]*\)\].*/\1/p')
read -r offb offa spread <<<"$({ offsets "$l2"; offsets "$l2b"; } | awk -v k="$k1" '
	$1 <= k { b += $2; nb++ } $1 > k + 10 { a += $2; na++; if (na == 1 || $2 < lo) lo = $2; if (na == 1 || $2 > hi) hi = $2 }
	END { printf "%.3f %.3f %.3f\n", nb ? b / nb : 0, na ? a / na : 0, hi - lo }')"
# The longest the guest can have been stopped: between the serial lines around the snapshot.
window=$(cat "$l2" "$l2b" | tr -d '\r' | awk -v k="$k1" '/^\[[0-9.]+\] L2: at seq [0-9]+ rt=/ {
	h = substr($1, 2) + 0; if ($5 <= k) b = h; else if (!a) a = h } END { printf "%.3f\n", a - b }')
pause=$(awk -v a="$t_stop" -v b="$t_restore" 'BEGIN { printf "%.3f", b - a }')
lag=$(awk -v a="$offa" -v b="$offb" 'BEGIN { printf "%.3f", b - a }')
echo "  clock: the guest's realtime stepped $kg s (monotonic $km s) from seq $k1 to $((k1 + 1)); line to line" \
	"$ng..$xg s (monotonic $nm..$xm s); guest - L1 offset $offb s before, $offa s after (spread $spread s);" \
	"vmm was down $pause s (exit to restore), $window s between serial lines around it"
awk -v a="$ng" -v b="$nm" -v c="$xg" -v d="$xm" 'BEGIN { exit !(a >= 0 && b >= 0 && c < 2 && d < 2) }' ||
	nested_fail "guest clock stepped back or jumped between lines: realtime $ng..$xg s, monotonic $nm..$xm s"
awk -v s="$spread" 'BEGIN { exit !(s < 0.5) }' ||
	nested_fail "guest clock does not run at L1's rate after the restore: offset spread $spread s"
# The guest was stopped from the snapshot (before vmm's exit) until the restore had
# loaded (after its start): its lag is that, at least the time vmm was down.
awk -v l="$lag" -v p="$pause" -v w="$window" 'BEGIN { exit !(p > 1 && l > p - 0.5 && l < w + 0.5) }' ||
	nested_fail "the guest's lag behind L1 after the restore ($lag s) is not between the time vmm was down ($pause s) and the gap in its serial output ($window s)"
echo "ok: guest clock continued from the saved value: +$kg s across the snapshot, never back, never more than $xg s" \
	"between lines; after the restore it runs at L1's rate, $lag s behind (vmm was down $pause s)"

# Disk after poweroff.
out=$(nested_exec h '/usr/sbin/e2fsck -fn /tmp/disk.img 2>&1; echo "e2fsck rc=$?"
/usr/sbin/debugfs -R "cat /seq.txt" /tmp/disk.img >/share/final.txt 2>/dev/null')
echo "$out" | sed 's/^/  L1: /'
echo "$out" | grep -q '^e2fsck rc=0$' || nested_fail "e2fsck -fn on the disk image is not clean"
echo "$out" | grep -q 'snaptest: .* files' || nested_fail "e2fsck did not check the snaptest file system"
read -r f l n s <<<"$(nested_seq_check "$NESTED_WORK/hosts/h/share/final.txt")"
[ "$f" = 1 ] && [ "$l" = "$COUNT" ] && [ "$n" = "$COUNT" ] && [ "$s" = ok ] ||
	nested_fail "seq.txt after poweroff: seq $f..$l, $n lines, $s (want 1..$COUNT)"
echo "ok: e2fsck -fn clean after poweroff; /seq.txt holds seq 1..$COUNT"

# Network after the restore: the TCP connection from L1, and pings to L1.
rc=0
nested_job_wait h client 20 || rc=$?
[ $rc = 0 ] || nested_job_kill h client KILL >/dev/null 2>&1 || true
cp "$cli" "$NESTED_WORK/client.log"
read -r f l n s <<<"$(nested_seq_check "$cli")"
grep -q "^client: eof after $COUNT lines$" "$cli" && [ "$f" = 1 ] && [ "$l" = "$COUNT" ] && [ "$s" = ok ] ||
	nested_fail "TCP stream across the snapshot: L1 got seq $f..$l, $n lines, $s$(grep '^client: e' "$cli" | sed 's/^/; /')" \
		"(the snapshot was at seq $k1); after the restore, L1: $diag"
echo "ok: the TCP connection from L1 survived snapshot and restore: seq 1..$COUNT, closed by the guest at the end"
line=$(tr -d '\r' <"$l2b" | grep -m1 'L2: net ping after:' || true)
echo "$line" | grep -q '3 packets transmitted, 3 packets received' || nested_fail "ping after the restore: $line; L1: $diag"
echo "ok: 3/3 pings from L2 to L1 after the restore"
nested_stop h 30 || true
echo "time: $((SECONDS - t_start)) s"
