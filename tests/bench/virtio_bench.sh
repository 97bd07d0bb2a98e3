#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# virtio I/O of vmm against QEMU, on the nested harness (tests/nested/lib.sh):
# one L1 host (QEMU TCG, -cpu EPYC, Debian's kvm-amd) runs both L2 VMMs, one
# after the other, on the same L2 guest: Debian's stock bzImage, one initramfs
# with fio and iperf3 (their shared libraries copied in), the same command
# line, 512 MiB.
#
# One vCPU at both levels by default. With 2 L1 vCPUs (MTTCG: two host
# threads) sustained I/O brings the nested SVM that TCG emulates down every
# few runs, under either VMM: L1 panics ("TASK stack guard page was hit",
# "corrupted stack end detected inside scheduler" in a vCPU thread), L1
# resets and L2 triple faults; with one L1 vCPU, none in 26 runs of 90 s.
# BENCH_VIRTIO_L1_SMP=2 BENCH_VIRTIO_L2_CPUS=2 measure the SMP case anyway
# (failed runs are retried, a dead or panicked L1 is booted again).
#
#   disk  a 256 MiB raw image on L1's tmpfs, written once before the runs;
#         in L2 fio (libaio, --direct=1) on the disk with serial bench0, its
#         I/O scheduler set to none: sequential 1 MiB read and write at queue
#         depth 8, 4 KiB random read and write at queue depth 32, each
#         time-based (10 s after a 2 s ramp), one terse line parsed in L2
#   net   tap0 in L1 (10.0.2.1), the guest on it (10.0.2.2); iperf3 server in
#         L1, the client in L2: one TCP stream guest -> L1 and one L1 -> guest
#         (-R), 10 s after 1 s omitted; the receiver's Mbit/s
#
#   vmm   vmm run --disk IMG,serial=bench0 --net tap=tap0
#   qemu  qemu-system-x86_64 -accel kvm -cpu host -M pc, -device virtio-blk-pci
#         (cache=writeback, aio=threads: the defaults) and -device
#         virtio-net-pci on -netdev tap,ifname=tap0 (userspace, no vhost), as
#         copied into L1 by the harness's --with-qemu
#
# Each run is one L2 boot that does every workload once; runs alternate
# between the VMMs (vmm, qemu, vmm, qemu, ...), --runs of each. The table has
# median (min-max) per workload and VMM, and the ratio vmm/qemu of the
# medians (higher is better for vmm). Nothing is printed on the L2 console
# while a workload runs. A failed L2 run is tried again (3 attempts), counted and its
# log kept in tests/nested/work/virtio-bench/ (a run whose L2 reports an RCU
# stall, a soft lockup or a panic is stopped at once); an L1 host that dies
# is booted again. The guest's clock is checked
# against L1's over each run (the rates are measured with the guest's).
#
#   tests/bench/virtio_bench.sh --out FILE [--vmm FILE] [--runs N] [--rev TEXT]
#   (--rev: what the binary was built from, for the header; default the
#   checkout's HEAD, "+changes" when vmm/ devices/ replication/ include/ differ)
#   BENCH_QUICK=1: one run each, 3 s workloads (1 s ramp); BENCH_VIRTIO_RUNS=N: N runs
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../nested/lib.sh"

out='' rev='' runs=${BENCH_VIRTIO_RUNS:-5} rt=10 ramp=2
vmm_bin=$NESTED_VMM
while [ $# -gt 0 ]; do
	case "$1" in
	--vmm) vmm_bin=$(realpath "$2"); shift 2 ;;
	--out) out=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--rev) rev=$2; shift 2 ;;
	*) echo "virtio_bench: unknown option $1" >&2; exit 2 ;;
	esac
done
[ -n "$out" ] || { echo "usage: virtio_bench.sh --out FILE [--vmm FILE] [--runs N] [--rev TEXT]" >&2; exit 2; }
if [ -n "${BENCH_QUICK:-}" ]; then
	runs=1 rt=3 ramp=1
fi
NESTED_VMM=$vmm_bin
L2_MEM=512
L2_CPUS=${BENCH_VIRTIO_L2_CPUS:-1}
L1_MEM=3072
L1_SMP=${BENCH_VIRTIO_L1_SMP:-1}
DISK_MB=256
t_start=$SECONDS

nested_init virtio-bench
nested_require_vmm
for b in /usr/bin/fio /usr/bin/iperf3; do
	[ -x "$b" ] || nested_fail "$b is missing (apt-get install fio iperf3)"
done

# ------------------------------------------------------------------ L2 script
cat >"$NESTED_WORK/bench.sh" <<'L2'
# Runs in L2 as init's run= script. Parameters from the kernel command line:
# bench_rt (s per workload), bench_ramp (s before fio measures). Results are
# "L2: ..." lines on ttyS0, printed between the workloads.
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p"; }
rt=$(arg bench_rt)
ramp=$(arg bench_ramp)
say() { echo "L2: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
fails=0
say "clock start up=$(up)"

dev=
for b in /sys/block/vd*; do
	[ "$(cat "$b/serial" 2>/dev/null)" = bench0 ] && dev=${b##*/}
done
if [ -n "$dev" ]; then
	# The same scheduler under both VMMs (the kernel picks by the queue count).
	echo none >"/sys/block/$dev/queue/scheduler"
	say "blk $dev sectors=$(cat "/sys/block/$dev/size") queues=$(ls "/sys/block/$dev/mq" | wc -l) scheduler=$(cat "/sys/block/$dev/queue/scheduler")"
	for job in "seqread read 1M 8" "seqwrite write 1M 8" "randread randread 4k 32" "randwrite randwrite 4k 32"; do
		set -- $job
		fio --name="$1" --filename="/dev/$dev" --rw="$2" --bs="$3" --iodepth="$4" \
			--ioengine=libaio --direct=1 --time_based --runtime="$rt" --ramp_time="$ramp" \
			--output-format=terse --terse-version=3 >/tmp/fio.out 2>/tmp/fio.err
		# terse v3: 5 error; read 7 bw KiB/s, 8 IOPS, 40 mean latency us; write 48, 49, 81
		line=$(awk -F';' -v n="$1" -v w="$2" 'NF > 80 {
			if (w ~ /write/) { bw = $48; io = $49; lat = $81 } else { bw = $7; io = $8; lat = $40 }
			printf "fio %s err=%s bw_kib=%s iops=%s lat_us=%.1f", n, $5, bw, io, lat }' /tmp/fio.out)
		case "$line" in
		*" err=0 "*) say "$line" ;;
		*) say "FAIL fio $1: $line $(head -c 300 /tmp/fio.err)"; fails=$((fails + 1)) ;;
		esac
	done
else
	say "FAIL no disk with serial bench0"
	fails=$((fails + 1))
fi

say "net eth0 driver=$(readlink /sys/class/net/eth0/device/driver | sed 's,.*/,,') queues=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)"
ip addr add 10.0.2.2/24 dev eth0
ip link set eth0 up
i=0
until ping -c 1 -W 1 10.0.2.1 >/dev/null 2>&1 || [ $i -ge 20 ]; do i=$((i + 1)); done
for dir in tx rx; do
	r=
	[ "$dir" = tx ] || r=-R
	iperf3 -c 10.0.2.1 -t "$rt" -O 1 -f m $r >/tmp/iperf.out 2>&1
	# "[  5]   0.00-10.00  sec  1.10 GBytes   943 Mbits/sec   12   sender" / "... receiver"
	line=$(awk -v d="$dir" '
		/sender$/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") retr = $(i + 1) }
		/receiver$/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") mbit = $(i - 1) }
		END { if (mbit != "") printf "iperf3 %s mbit=%s retr=%s", d, mbit, retr }' /tmp/iperf.out)
	if [ -n "$line" ]; then
		say "$line"
	else
		say "FAIL iperf3 $dir: $(tail -n 3 /tmp/iperf.out | tr '\n' ' ')"
		fails=$((fails + 1))
	fi
done
say "clock end up=$(up)"
say "done fails=$fails"
exit "$fails"
L2

# ------------------------------------------------------------------ images
# Uncompressed (about 95 MB with fio's libraries): nothing to gunzip in L2.
nested_l2_initrd "$NESTED_WORK/l2.cpio" --add "$NESTED_WORK/bench.sh:/bench.sh" \
	--add-bin /usr/bin/fio:/usr/bin/fio --add-bin /usr/bin/iperf3:/usr/bin/iperf3
nested_build_l1 --with-qemu --add "$NESTED_KERNEL:/l2/vmlinuz" \
	--add-bin /usr/bin/iperf3:/usr/bin/iperf3

# The L1 host: booted again if it dies (its kernel panicked once in the nested
# SVM that TCG emulates, see tests/nested/README.md), set up from scratch:
# the initramfs off the share, the disk image (written, so that no run pays
# tmpfs allocation), tap0 with 10.0.2.1 and the iperf3 server.
l1_boots=0
l1_up() {
	local out
	l1_boots=$((l1_boots + 1))
	[ "$l1_boots" -le 8 ] || nested_fail "the L1 host died $((l1_boots - 1)) times"
	if [ "$l1_boots" -gt 1 ]; then
		cp "$(nested_console h)" "$NESTED_WORK/l1-console-$((l1_boots - 1)).log" 2>/dev/null || true
		echo "virtio_bench: the L1 host died ($(grep -m1 -E 'BUG|panic|Oops' "$(nested_console h)" ||
			echo 'no panic on its console: a reset, which -no-reboot makes an exit')), booting it again" >&2
	fi
	nested_host_start h --mem "$L1_MEM" --smp "$L1_SMP"
	nested_ready h 240 || nested_fail "L1 host did not come up (status $?)"
	echo "virtio_bench: L1 ready after $(nested_elapsed h) s" >&2
	nested_share h "$NESTED_WORK/l2.cpio" l2.cpio
	out=$(nested_exec h "set -e
cp /share/l2.cpio /l2/initrd.cpio
dd if=/dev/zero of=/tmp/disk.img bs=1M count=$DISK_MB 2>/dev/null
ip tuntap add tap0 mode tap
ip addr add 10.0.2.1/24 dev tap0
ip link set tap0 up") || nested_fail "L1 set-up failed: $out"
	nested_spawn h iperf3d '/usr/bin/iperf3 -s -B 10.0.2.1'
}
# Longer than the harness's 900 s default: the whole bench runs on one host.
export NESTED_MAX_LIFETIME=${NESTED_MAX_LIFETIME:-3600}
l1_up

cmdline="console=ttyS0 run=/bench.sh quiet bench_rt=$rt bench_ramp=$ramp"
mac=52:54:00:12:34:56
vmm_cmd="vmm run --kernel /l2/vmlinuz --initrd /l2/initrd.cpio --cmdline '$cmdline' \
--mem ${L2_MEM}M --cpus $L2_CPUS --disk /tmp/disk.img,serial=bench0 --net tap=tap0,mac=$mac"
qemu_cmd="qemu-system-x86_64 -accel kvm -cpu host -M pc -m $L2_MEM -smp $L2_CPUS -nodefaults -no-user-config \
-display none -serial stdio -no-reboot -kernel /l2/vmlinuz -initrd /l2/initrd.cpio -append '$cmdline' \
-drive file=/tmp/disk.img,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0,serial=bench0 \
-netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=$mac,romfile="

# One L2 run: boot, every workload, power-off. Appends "VMM KEY VALUE" lines
# to $data; returns 1 if the run failed (its log is kept).
data=$NESTED_WORK/data.txt
: >"$data"
: >"$NESTED_WORK/info.txt"
fails=0
limit=$((8 * (rt + ramp) + 180))
# Signs that the L2 (or the nested stack under it) is stuck: stop the run.
stuck='rcu: INFO: rcu_.* detected stalls|soft lockup|Kernel panic|BUG: '
one_run() {
	local who=$1 n=$2 cmd log job_out lines end
	nested_alive h || l1_up
	cmd=$vmm_cmd
	[ "$who" = vmm ] || cmd=$qemu_cmd
	nested_spawn h l2 "{ timeout -s KILL $limit $cmd </dev/null; echo \"VMM: exit \$?\"; } 2>&1 | stamp"
	job_out=$(nested_job_out h l2)
	end=$((SECONDS + limit + 30))
	while [ ! -s "$(dirname "$job_out")/l2.rc" ] && nested_alive h && [ $SECONDS -lt $end ]; do
		if grep -qE "$stuck" "$job_out" 2>/dev/null; then
			sleep 5 # the rest of the report
			nested_job_kill h l2 KILL >/dev/null 2>&1 || true
			break
		fi
		# A panicked L1 stays up, hung: kill it (the next run boots a new one).
		if grep -q 'Kernel panic' "$(nested_console h)" ||
			{ [ ! -e "$job_out" ] && [ $SECONDS -gt $((end - limit)) ]; }; then
			sleep 2
			nested_kill h
			break
		fi
		sleep 1
	done
	nested_job_wait h l2 10 >/dev/null 2>&1 || true
	log=$NESTED_WORK/$who-$n.log
	cp "$job_out" "$log" 2>/dev/null || echo "(no output: the L1 host died)" >"$log"
	if ! grep -q 'VMM: exit 0$' "$log" || ! grep -q 'L2: done fails=0' "$log"; then
		fails=$((fails + 1))
		cp "$log" "$NESTED_WORK/fail-$fails.log"
		nested_alive h || echo "(the L1 host died: $(grep -m1 -E 'BUG|panic|Oops' "$(nested_console h)" || true))" >>"$NESTED_WORK/fail-$fails.log"
		echo "virtio_bench: $who run $n failed (log in fail-$fails.log): $(grep -m1 -E "FAIL|vmm: |qemu|$stuck" "$log" ||
			grep -v 'VMM: exit' "$log" | tail -n 1)" >&2
		return 1
	fi
	lines=$(tr -d '\r' <"$log" | sed -n 's/^\[ *\([0-9.]*\)\] L2: /\1 /p')
	echo "$lines" | awk -v w="$who" '
		{ delete v; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
		$2 == "fio" && $3 ~ /^seq/ { print w, "fio_" $3, v["bw_kib"] / 1024 }
		$2 == "fio" && $3 ~ /^rand/ { print w, "fio_" $3, v["iops"]; print w, "lat_" $3, v["lat_us"] }
		$2 == "iperf3" { print w, "net_" $3, v["mbit"] }
		$2 == "clock" && $3 == "start" { t0 = $1; u0 = v["up"] }
		$2 == "clock" && $3 == "end" { if ($1 > t0) print w, "clock", (v["up"] - u0) / ($1 - t0) }
		$2 == "blk" { print w, "info_blk", $0 > "/dev/stderr" }
		$2 == "net" { print w, "info_net", $0 > "/dev/stderr" }' >>"$data" 2>>"$NESTED_WORK/info.txt"
	echo "virtio_bench: $who run $n: $(echo "$lines" | awk '$2 == "fio" || $2 == "iperf3" { $1 = ""; printf "%s;", $0 }')" >&2
}

for n in $(seq "$runs"); do
	for who in vmm qemu; do
		one_run "$who" "$n" || one_run "$who" "$n" || one_run "$who" "$n" || true
	done
done
nested_stop h 30 || true

# ------------------------------------------------------------------ table
info() { grep "^$1 info_$2" "$NESTED_WORK/info.txt" | sed 's/.* queues=\([0-9]*\).*/\1/' | sort -u | paste -sd/; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
kver=$(cat "$NESTED_IMAGES/out/kernel-version")
if [ -z "$rev" ]; then
	rev=$(git -C "$NESTED_REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	[ -z "$(git -C "$NESTED_REPO" status --porcelain -- vmm devices replication include 2>/dev/null)" ] ||
		rev="$rev+changes"
fi
{
	echo "# virtio I/O benchmark $(date '+%Y-%m-%d %H:%M:%S') on $(uname -n), nested: L1 QEMU TCG -cpu EPYC" \
		"(vCPUs: $L1_SMP, $L1_MEM MiB, kvm-amd), L2 Debian $kver bzImage (vCPUs: $L2_CPUS, $L2_MEM MiB)," \
		"$runs run(s) per VMM, alternating ($((SECONDS - t_start)) s)"
	echo "# vmm of commit $rev; load average $load at the end, $(nproc) CPUs; failed L2 runs: $fails" \
		"(each tried up to 3 times), L1 boots: $l1_boots"
	echo "# disk: $DISK_MB MiB raw image on L1 tmpfs; fio $(fio --version | sed 's/fio-//'), libaio, direct=1," \
		"scheduler none, ${rt} s after ${ramp} s ramp; virtio-blk queues: vmm $(info vmm blk), qemu $(info qemu blk)"
	echo "# net: iperf3 $(iperf3 --version | awk 'NR == 1 { print $2 }') TCP, 1 stream, guest <-> L1 over tap0," \
		"${rt} s after 1 s omitted, receiver's rate; virtio-net queue pairs: vmm $(info vmm net), qemu $(info qemu net)"
	echo "# qemu $(qemu-system-x86_64 --version | awk 'NR == 1 { print $4 }'): -M pc -cpu host," \
		"virtio-blk-pci (cache=writeback, aio=threads), virtio-net-pci on -netdev tap (no vhost)"
	echo "# median (min-max) over the runs; vmm/qemu: ratio of the medians (for latency, qemu/vmm: above 1 = vmm better)"
	awk '
		function med(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
		function sorted(key, out,   n, i, j, t) {
			n = cnt[key]
			for (i = 1; i <= n; i++) out[i] = val[key, i]
			for (i = 2; i <= n; i++) for (j = i; j > 1 && out[j - 1] > out[j]; j--) { t = out[j]; out[j] = out[j - 1]; out[j - 1] = t }
			return n
		}
		function cell(key, fmt,   a, n) {
			n = sorted(key, a)
			if (!n) return sprintf("%24s", "failed")
			m[key] = med(a, n)
			return sprintf("%24s", sprintf(fmt " (" fmt "-" fmt ")", m[key], a[1], a[n]))
		}
		{ cnt[$1 " " $2]++; val[$1 " " $2, cnt[$1 " " $2]] = $3 }
		END {
			split("fio_seqread fio_seqwrite fio_randread fio_randwrite lat_randread lat_randwrite net_tx net_rx", keys, " ")
			name["fio_seqread"] = "blk seq read 1 MiB qd8"; unit["fio_seqread"] = "MiB/s"
			name["fio_seqwrite"] = "blk seq write 1 MiB qd8"; unit["fio_seqwrite"] = "MiB/s"
			name["fio_randread"] = "blk rand read 4 KiB qd32"; unit["fio_randread"] = "IOPS"
			name["fio_randwrite"] = "blk rand write 4 KiB qd32"; unit["fio_randwrite"] = "IOPS"
			name["lat_randread"] = "  rand read mean latency"; unit["lat_randread"] = "us"
			name["lat_randwrite"] = "  rand write mean latency"; unit["lat_randwrite"] = "us"
			name["net_tx"] = "net TCP guest -> L1"; unit["net_tx"] = "Mbit/s"
			name["net_rx"] = "net TCP L1 -> guest"; unit["net_rx"] = "Mbit/s"
			printf "%-27s %-7s %24s %24s %9s\n", "workload", "unit", "vmm", "qemu", "vmm/qemu"
			met = 0; total = 0
			for (k = 1; k <= 8; k++) {
				key = keys[k]
				fmt = unit[key] == "MiB/s" || unit[key] == "us" ? "%.1f" : "%.0f"
				line = sprintf("%-27s %-7s %s %s", name[key], unit[key], cell("vmm " key, fmt), cell("qemu " key, fmt))
				r = "-"
				if (("vmm " key) in m && ("qemu " key) in m && m["vmm " key] > 0 && m["qemu " key] > 0) {
					q = key ~ /^lat/ ? m["qemu " key] / m["vmm " key] : m["vmm " key] / m["qemu " key]
					r = sprintf("%.2fx", q)
					if (key !~ /^lat/) { total++; if (q >= 0.995) met++ }
				}
				printf "%s %9s\n", line, r
			}
			for (w = 1; w <= 2; w++) {
				who = w == 1 ? "vmm" : "qemu"
				n = sorted(who " clock", a)
				if (n) clk = clk sprintf("%s%s %.3f (%.3f-%.3f)", clk == "" ? "" : ", ", who, med(a, n), a[1], a[n])
			}
			print "notes: guest clock rate against L1 over each run (1 = the guest-measured rates are true): " clk
			printf "target: at least on par with QEMU (vmm/qemu >= 1.00): %d of %d workloads\n", met, total
		}' "$data"
} >"$out"
cat "$out"
