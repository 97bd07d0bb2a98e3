#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Live migration of a real Linux guest (Debian's kernel through PVH, `quiet`)
# between two L1 hosts of the harness, a and b, on one Ethernet segment,
# while it writes files in a loop:
#
#   storage   shared, as vmm assumes: one ext4 image, made on the outer
#             machine with mke2fs, hard-linked into both hosts' 9p shares,
#             so a and b open the very same file at /share/disk.img (9p
#             without a cache: every write reaches the file, every read
#             comes from it, like NFS); the test checks the inodes match
#   network   on each host br0 joins eth0 (the segment) and tap0; the guest
#             is 10.0.3.10 with a fixed MAC, a is 10.0.3.1, b is 10.0.3.2
#   clocks    the hosts' clocks start from their emulated RTCs (1 s steps),
#             so b's clock is first set to a's over the segment (seqload
#             timesync, NTP-style): migration hosts run NTP, and a guest
#             clock jump then is vmm's, not the hosts' skew
#   workload  in L2, seqload (compiled here) waits for two TCP clients (one
#             on a, one on b), then writes "seq N rt=REALTIME mono=MONOTONIC"
#             every 100 ms: appended to /seq.txt and fsynced, as a new file
#             /d/N, to hvc0 (a file in /tmp of the host it runs on) and to
#             both TCP connections; the clients stamp each line with their
#             host's CLOCK_REALTIME
#   migrate   once the guest has written seq 40: `vmm ctl migrate 10.0.3.2:7000
#             --downtime-ms 300` on a, where b runs `vmm run --incoming 0.0.0.0:7000`; ctl reports
#             "migrated" with the downtime, a's vmm exits 0, b's status says
#             running
#   checks    hvc0 on a then on b is seq 1..COUNT, no gap or repeat; the
#             guest clock tracks wall time: line to line it never steps back,
#             nor by 5 s or more (a slowed guest's real gaps reach 2 s here),
#             and its offset from the
#             hosts' clocks (every 10th line goes to ttyS0 too, stamped by the
#             host it runs on) after the migration is within 1 s of the offset
#             before (vmm loads the clock with the elapsed wall time); the
#             guest powers off on b (vmm exits 0), e2fsck -fn on the image is
#             clean, /seq.txt is 1..COUNT and /d holds COUNT files; both TCP
#             connections survived: each client got 1..COUNT once, then the
#             guest's close. The network checks come last, so that a broken
#             network still shows how the rest went.
set -eu
. "$(dirname "$0")/lib.sh"

COUNT=${MIGRATE_COUNT:-200} # lines the workload writes, 100 ms apart
MIG_AT=40                   # migrate once the guest has written this line
# The link between two L1s is TCG's emulated network, 5-9 MiB/s in CI, and the L2 dirties
# 150-250 pages while a pass goes: the default 30 ms cannot be met there (a CI run gave up
# after 30 passes at an expected 80-100 ms, as it should). 300 ms still has to converge.
MIG_ARGS=${MIGRATE_ARGS:---downtime-ms 300} # `vmm ctl migrate` options

nested_init migrate
nested_require_linux_guest
t_start=$SECONDS

# ------------------------------------------------------------------ workload
nested_build_seqload

# ------------------------------------------------------------------ L2 script
nested_l2_script "$NESTED_WORK/mig.sh" <<'L2'
say "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
ip addr add 10.0.3.10/24 dev eth0
ip link set eth0 up
mount -t ext4 /dev/vda /mnt || { say "FAIL mount /dev/vda"; exit 1; }
/bin/seqload run 7001 2 "$count" 100 /mnt/seq.txt /mnt/d
rc=$?
umount /mnt || { say "FAIL umount"; rc=1; }
say "done rc=$rc"
exit $rc
L2

# ------------------------------------------------------------------ images, hosts
nested_l2_initrd "$NESTED_WORK/l2.cpio" --extra-modules "ext4 crc32c_generic" \
	--add "$NESTED_WORK/mig.sh:/mig.sh" --add-bin "$NESTED_WORK/seqload:/bin/seqload"
nested_build_l1 --add "$NESTED_WORK/l2.cpio:/l2/initrd.cpio" \
	--add-bin "$NESTED_WORK/seqload:/usr/bin/seqload"
rm -f "$NESTED_WORK/disk.img"
truncate -s 64M "$NESTED_WORK/disk.img"
/usr/sbin/mke2fs -q -t ext4 -L migtest "$NESTED_WORK/disk.img" || nested_fail "mke2fs failed"

nested_segment lan a b
nested_host_start a
nested_host_start b
for h in a b; do nested_ready "$h" 240 || nested_fail "L1 host $h did not come up (status $?)"; done
echo "L1: a and b ready $(nested_elapsed b) s after QEMU start"
nested_share a "$NESTED_VMLINUX" vmlinux
nested_share a "$NESTED_WORK/disk.img" disk.img
nested_share b "$NESTED_WORK/disk.img" disk.img
ia=$(stat -c %i "$NESTED_WORK/hosts/a/share/disk.img")
ib=$(stat -c %i "$NESTED_WORK/hosts/b/share/disk.img")
[ "$ia" = "$ib" ] && [ "$ia" = "$(stat -c %i "$NESTED_WORK/disk.img")" ] ||
	nested_fail "the disk image is not one file in both shares (inodes $ia, $ib): no shared storage"
ino=$(nested_exec a 'stat -c %i /share/disk.img') && [ "$ino" = "$(nested_exec b 'stat -c %i /share/disk.img')" ] ||
	nested_fail "a and b see different files at /share/disk.img"
nested_bridge_tap a 10.0.3.1
nested_bridge_tap b 10.0.3.2
out=$(nested_exec b 'ping -c 2 -W 5 10.0.3.1') || nested_fail "b cannot ping a over the segment: $out"
echo "ok: shared storage (one inode at /share/disk.img on a and b), br0 with eth0 + tap0 on both hosts"

nested_spawn a timeserve 'seqload timeserve 7100 30'
out=$(nested_exec b 'seqload timesync 10.0.3.1 7100 set') || nested_fail "clock sync of b to a failed: $out"
echo "$out" | sed 's/^/  b: /'
skew=$(echo "$out" | awk '/after set/ { sub(/^\+/, "", $5); print $5 }')
awk -v s="$skew" 'BEGIN { exit !(s != "" && s > -20 && s < 20) }' || nested_fail "b's clock is not within 20 ms of a's: $out"
echo "ok: b's clock set to a's (residual $skew ms)"

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

# ------------------------------------------------------------------ run on a
nested_vmm_spawn_stamped b dst run --incoming 0.0.0.0:7000 --control /tmp/ctl.sock -v
dst=$(nested_job_out b dst)
nested_wait_out "$dst" 'waiting for a migration' 30 || nested_fail "b's vmm --incoming did not start (status $?): $(cat "$dst")"
nested_vmm_spawn_stamped a src run --kernel /share/vmlinux --initrd /l2/initrd.cpio \
	--cmdline "console=ttyS0 run=/mig.sh quiet seq_count=$COUNT" --mem 256M --cpus 2 \
	--disk /share/disk.img,serial=mig0 --net tap=tap0,mac=52:54:00:12:34:56 \
	--console hvc,path=/tmp/hvc.log --rng --control /tmp/ctl.sock -v
src=$(nested_job_out a src)
t_vmm=$SECONDS
nested_wait_out "$src" 'L2: listening' 150 || nested_fail "the L2 workload did not start on a (status $?): $(tail -n 20 "$src")"
echo "L2: workload listening on a $((SECONDS - t_vmm)) s after vmm start"
nested_spawn a client 'seqload client 10.0.3.10 7001 30'
nested_spawn b client 'seqload client 10.0.3.10 7001 30'
cla=$(nested_job_out a client)
clb=$(nested_job_out b client)
nested_wait_out "$src" "L2: at seq $MIG_AT " 60 || nested_fail "L2 did not reach seq $MIG_AT on a (status $?): $(tail -n 10 "$src")"
for c in "$cla" "$clb"; do
	grep -q ' seq 10 rt=' "$c" || nested_fail "a client does not receive the guest's lines: $(tail -n 3 "$c")"
done

# ------------------------------------------------------------------ migrate
t_mig=$SECONDS
rc=0
# shellcheck disable=SC2086 # MIG_ARGS is a list of options
ctl=$(nested_exec a --timeout 120 "vmm ctl /tmp/ctl.sock migrate 10.0.3.2:7000 $MIG_ARGS") || rc=$?
echo "$ctl" | sed 's/^/  ctl: /'
[ $rc = 0 ] || nested_fail "vmm ctl migrate failed (status $rc): $(tail -n 10 "$src"; tail -n 10 "$dst")"
mig=$(echo "$ctl" | grep -m1 '^migrated to 10.0.3.2:7000: ') || nested_fail "ctl did not report the migration"
downtime=$(echo "$mig" | sed -n 's/.*downtime \([0-9.]*\) ms$/\1/p')
[ -n "$downtime" ] || nested_fail "no downtime in: $mig"
rc=0
nested_job_wait a src 30 || rc=$?
cp "$src" "$NESTED_WORK/src.log"
[ $rc = 0 ] || nested_fail "a's vmm did not end after the migration (status $rc): $(tail -n 10 "$src")"
grep -q 'VMM: exit 0$' "$src" || nested_fail "a's vmm did not exit 0 after the migration: $(tail -n 10 "$src")"
nested_wait_out "$dst" 'incoming migration complete' 10 || nested_fail "b's vmm does not run the guest: $(tail -n 20 "$dst")"
st=$(nested_exec b 'vmm ctl /tmp/ctl.sock status') || nested_fail "ctl status on b: $st"
echo "$st" | grep -q '^state: running$' || nested_fail "status on b: $st"
echo "ok: migrated a -> b in $((SECONDS - t_mig)) s, downtime $downtime ms; a's vmm exited 0, b's status: running"
# For the network checks at the end: the device's and the tap's counters on b, a bit later,
# and whether b reaches the guest.
nested_wait_out "$dst" "L2: at seq $(((MIG_AT / 10 + 6) * 10)) " 60 || nested_fail "the guest does not go on on b (status $?): $(tail -n 10 "$dst")"
diag=$(nested_exec b --timeout 30 'vmm ctl /tmp/ctl.sock status | grep "^net"
ip -s link show tap0 | sed -n "3,6p" | tr -s " " | tr "\n" " "; echo
ping -c 2 -W 2 10.0.3.10 | grep transmitted
vmm ctl /tmp/ctl.sock status | grep "^net"' 2>&1) || true

rc=0
nested_job_wait b dst 150 || rc=$?
cp "$dst" "$NESTED_WORK/dst.log"
[ $rc = 0 ] || nested_fail "b's vmm did not finish (status $rc): $(tail -n 20 "$dst")"
grep -q 'VMM: exit 0$' "$dst" || nested_fail "b's vmm did not exit 0: $(tail -n 20 "$dst")"
grep -q 'L2: done rc=0' "$dst" || nested_fail "the L2 script failed on b: $(tail -n 20 "$dst")"
tr -d '\r' <"$src" | grep -v 'L2: at seq' | sed -n 's/^\[[ 0-9.]*\] \(L2: \)/  a: \1/p'
tr -d '\r' <"$dst" | grep -v 'L2: at seq' | sed -n 's/^\[[ 0-9.]*\] \(L2: \)/  b: \1/p'
if grep -hE '^\[[ 0-9.]*\] vmm: .*(error|warn|fail)' "$src" "$dst" >&2; then
	nested_fail "vmm logged errors or warnings (above)"
fi

# Console: a's part, then b's, one unbroken sequence.
for h in a b; do nested_exec "$h" 'cp /tmp/hvc.log /share/hvc.log' >/dev/null || nested_fail "no hvc0 file on $h"; done
cat "$NESTED_WORK/hosts/a/share/hvc.log" "$NESTED_WORK/hosts/b/share/hvc.log" >"$NESTED_WORK/hvc.log"
read -r _ k _ sa <<<"$(nested_seq_check "$NESTED_WORK/hosts/a/share/hvc.log")"
read -r fb lb nb _ <<<"$(nested_seq_check "$NESTED_WORK/hosts/b/share/hvc.log")"
read -r f l n s <<<"$(nested_seq_check "$NESTED_WORK/hvc.log")"
[ "$f" = 1 ] && [ "$l" = "$COUNT" ] && [ "$n" = "$COUNT" ] && [ "$s" = ok ] && [ "$sa" = ok ] && [ "$nb" -ge 50 ] ||
	nested_fail "hvc0 across the migration: seq $f..$l, $n lines, $s (a: ..$k $sa; b: $fb..$lb, $nb lines)"
echo "ok: hvc0: seq 1..$k on a, $fb..$lb on b: 1..$COUNT with no gap or repeat"

# Clock. In the console lines: the guest's own steps, line to line.
read -r xg ng xm nm kg km <<<"$(clock_steps "$NESTED_WORK/hvc.log" "$k")"
# Against the hosts' clocks (b's set to a's): the serial lines, stamped by the host
# they came out of.
read -r offb offa spread <<<"$({ offsets "$src"; offsets "$dst"; } | awk -v k="$k" '
	$1 <= k { b += $2; nb++ } $1 > k + 10 { a += $2; na++; if (na == 1 || $2 < lo) lo = $2; if (na == 1 || $2 > hi) hi = $2 }
	END { printf "%.3f %.3f %.3f\n", nb ? b / nb : 0, na ? a / na : 0, hi - lo }')"
jump=$(awk -v a="$offa" -v b="$offb" 'BEGIN { printf "%.3f", a - b }')
echo "  clock: the guest's realtime stepped $kg s (monotonic $km s) from seq $k to $((k + 1)), across $downtime ms" \
	"of downtime; line to line $ng..$xg s (monotonic $nm..$xm s); guest - host offset $offb s on a, $offa s on b" \
	"(spread $spread s)"
awk -v a="$ng" -v b="$nm" -v c="$xg" -v d="$xm" -v t="$downtime" \
	'BEGIN { exit !(a >= 0 && b >= 0 && c < 5 && d < 5) }' ||
	nested_fail "guest clock stepped back or jumped between lines: realtime $ng..$xg s, monotonic $nm..$xm s (downtime $downtime ms)"
# The spread is mostly the serial line's own latency under TCG (each byte is an exit through
# two levels; a loaded machine delays lines by up to a second or so), not the guest's clock:
# the mean offset before and after is what shows a jump.
awk -v j="$jump" -v s="$spread" 'BEGIN { exit !(j > -1 && j < 1 && s < 2) }' ||
	nested_fail "guest clock does not track the hosts' after the migration: offset moved $jump s, spread $spread s"
echo "ok: guest clock tracks wall time through the migration: its offset from the hosts' clock moved $jump s;" \
	"+$kg s across the hand-over, never back, at most $xg s between lines"

# Disk: clean, every line and file there.
fsck=$(/usr/sbin/e2fsck -fn "$NESTED_WORK/disk.img" 2>&1) && rc=0 || rc=$?
echo "$fsck" | sed 's/^/  e2fsck: /'
[ $rc = 0 ] && echo "$fsck" | grep -q 'migtest: .* files' || nested_fail "e2fsck -fn on the shared image is not clean (status $rc)"
/usr/sbin/debugfs -R "cat /seq.txt" "$NESTED_WORK/disk.img" >"$NESTED_WORK/seq.txt" 2>/dev/null
read -r f l n s <<<"$(nested_seq_check "$NESTED_WORK/seq.txt")"
[ "$f" = 1 ] && [ "$l" = "$COUNT" ] && [ "$n" = "$COUNT" ] && [ "$s" = ok ] ||
	nested_fail "seq.txt on the image: seq $f..$l, $n lines, $s (want 1..$COUNT)"
files=$(/usr/sbin/debugfs -R "ls -p /d" "$NESTED_WORK/disk.img" 2>/dev/null | awk -F/ '$6 ~ /^[0-9]+$/ { n++ } END { print n + 0 }')
[ "$files" = "$COUNT" ] || nested_fail "/d on the image holds $files files, want $COUNT"
echo "ok: e2fsck -fn clean after poweroff on b; /seq.txt holds seq 1..$COUNT and /d $files files"
# Network: both TCP connections survived, every line arrived once.
for h in a b; do
	nested_job_wait "$h" client 20 || nested_job_kill "$h" client KILL >/dev/null 2>&1 || true
	cp "$(nested_job_out "$h" client)" "$NESTED_WORK/client-$h.log"
done
for h in a b; do
	c=$NESTED_WORK/client-$h.log
	read -r f l n s <<<"$(nested_seq_check "$c")"
	grep -q "^client: eof after $COUNT lines$" "$c" && [ "$f" = 1 ] && [ "$l" = "$COUNT" ] && [ "$s" = ok ] ||
		nested_fail "TCP stream to $h's client: seq $f..$l, $n lines, $s$(grep '^client: e' "$c" | sed 's/^/; /')" \
			"(the guest left a after seq $k); on b after the migration: $diag"
done
echo "ok: both TCP connections (clients on a and on b) survived: seq 1..$COUNT each, closed by the guest at the end"
nested_stop a 30 || true
nested_stop b 30 || true
echo "time: $((SECONDS - t_start)) s"
