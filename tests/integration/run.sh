#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Host-KVM integration tests: run vmm on /dev/kvm with the bare-metal guests.
set -u
cd "$(dirname "$0")/../.."
. tests/lib.sh

VMM=${VMM:-build/vmm-asan}
IMG=images/out
WORK=$(mktemp -d /tmp/vmm-integration.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	fail "kvm-available" "/dev/kvm is missing or not accessible: the host-KVM suite must run"
	summary integration
	exit 1
fi
for f in "$VMM" $IMG/hello.elf $IMG/counter.elf $IMG/smp.elf $IMG/crash.elf; do
	[ -e "$f" ] || { fail "prerequisites" "$f not built"; summary integration; exit 1; }
done

# run_vmm NAME TIMEOUT ARGS...: run vmm with stdin from /dev/null; sets $rc, $out, $err.
run_vmm() {
	local name=$1 secs=$2
	shift 2
	timeout -s KILL "$secs" "$VMM" "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err"
	rc=$?
	out=$(cat "$WORK/$name.out")
	err=$(cat "$WORK/$name.err")
}

expect() { # NAME CONDITION-DESCRIPTION: evaluated by caller, this records
	if eval "$2"; then pass "$1"; else
		fail "$1" "expected [$2]; rc=$rc; stdout: $(head -c 400 <<<"$out"); stderr: $(head -c 600 <<<"$err")"
	fi
}

# --- guests that boot --------------------------------------------------------
run_vmm hello 30 run --kernel $IMG/hello.elf --cmdline "greeting=test"
expect "hello prints and exits 0" '[ $rc -eq 0 ] && grep -q "Hello from a bare-metal guest" <<<"$out"'
expect "hello sees its command line" 'grep -q "greeting=test" <<<"$out"'

run_vmm counter 60 run --kernel $IMG/counter.elf --cmdline "interval_ms=5 count=200"
seq_ok() { # the counter lines must be exactly 0..N-1, in order
	local n
	n=$(grep -cE '^counter: [0-9]+$' <<<"$out")
	[ "$n" -eq "$1" ] && diff <(grep -E '^counter: [0-9]+$' <<<"$out" | awk '{print $2}') <(seq 0 $(($1 - 1))) >/dev/null
}
expect "counter counts 0..199 without gap or repeat and exits 0" '[ $rc -eq 0 ] && seq_ok 200'

# Steady rate: 200 lines at 5 ms should take about 1 s, not 10.
start=$(date +%s%N)
run_vmm counter-rate 60 run --kernel $IMG/counter.elf --cmdline "interval_ms=5 count=200"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect "counter paces itself (200 x 5 ms took ${ms} ms)" '[ $rc -eq 0 ] && [ $ms -ge 900 ] && [ $ms -lt 5000 ]'

run_vmm smp2 30 run --kernel $IMG/smp.elf --cpus 2
expect "smp guest finds 2 CPUs in the ACPI MADT" '[ $rc -eq 0 ] && grep -q "smp: cpus=2" <<<"$out"'
run_vmm smp1 30 run --kernel $IMG/smp.elf
expect "smp guest finds 1 CPU by default" '[ $rc -eq 0 ] && grep -q "smp: cpus=1" <<<"$out"'

run_vmm bigmem 30 run --kernel $IMG/hello.elf --mem 4G
expect "guest RAM above the PCI hole (4G) boots" '[ $rc -eq 0 ] && grep -q "Hello" <<<"$out"'

run_vmm dirty 30 run --kernel $IMG/dirty.elf --mem 128M --cmdline "rate=10 pages=2048 report_ms=200 duration_ms=1000"
# The rate is the benchmark's business; here it only has to be in the right range on a busy host.
expect "dirty guest dirties pages at its rate and verifies its memory" '[ $rc -eq 0 ] && grep -q "verify=ok" <<<"$out" && ! grep -q FAIL <<<"$out" && grep -qE "rate=([5-9]|1[01])\." <<<"$out"'

head -c 12345 /dev/urandom >"$WORK/mod.bin"
run_vmm info 30 run --kernel $IMG/info.elf --initrd "$WORK/mod.bin" --cmdline "a=b"
expect "PVH start_info carries the initrd as a module and the command line" '[ $rc -eq 0 ] && grep -qi "12345" <<<"$out" && grep -q "a=b" <<<"$out"'

# --- how a VM ends -------------------------------------------------------------
run_vmm crash 30 run --kernel $IMG/crash.elf --cmdline "mode=triplefault"
expect "triple fault exits 1 with a register dump" '[ $rc -eq 1 ] && grep -q "triple fault" <<<"$err" && grep -q "rip=" <<<"$err"'

run_vmm status 30 run --kernel $IMG/hello.elf --cmdline "status=7"
expect "guest status on the test-exit port becomes the exit status" '[ $rc -eq 7 ]'

run_vmm reboot 30 run --kernel $IMG/hello.elf --cmdline "reboot=1"
expect "guest reboot (i8042 reset) exits 0 by default" '[ $rc -eq 0 ] && [ $(grep -c "^hello:" <<<"$out") -eq 1 ]'

run_vmm restart 5 run --kernel $IMG/hello.elf --cmdline "reboot=1" --reboot=restart
# With restart the guest reboots forever; the timeout kills it.  It must have booted more than once.
expect "--reboot=restart boots the guest again" '[ $(grep -c "^hello:" <<<"$out") -ge 2 ]'

for sig in TERM INT; do
	"$VMM" run --kernel $IMG/counter.elf --cmdline "interval_ms=10" </dev/null >"$WORK/sig.out" 2>"$WORK/sig.err" &
	pid=$!
	sleep 1
	kill -s $sig $pid
	wait $pid
	rc=$?
	out=$(cat "$WORK/sig.out"); err=$(cat "$WORK/sig.err")
	want=$([ $sig = TERM ] && echo 143 || echo 130)
	expect "SIG$sig stops the VM cleanly (status $want)" '[ $rc -eq $want ] && grep -q "^counter: 5" <<<"$out"'
done

if python3 tests/integration/pty_escape.py "$VMM" $IMG/counter.elf >"$WORK/pty.out" 2>&1; then
	pass "Ctrl-A x on a terminal stops the VM (status 0) and restores the terminal"
else
	fail "Ctrl-A x on a terminal" "$(cat "$WORK/pty.out")"
fi

# Console input reaches the guest's UART, in order and complete even when it
# arrives faster than the 16-byte FIFO drains (the loop waits for room).
# Input is sent once the guest is ready: bytes that arrive before a guest
# enables its FIFO are cleared by the FIFO enable, as on real hardware.
mkfifo "$WORK/in"
timeout 30 "$VMM" run --kernel $IMG/echo.elf --cmdline lines=3 <"$WORK/in" >"$WORK/echo.out" 2>"$WORK/echo.err" &
pid=$!
exec 3>"$WORK/in"
for _ in $(seq 100); do grep -q "echo: ready" "$WORK/echo.out" && break; sleep 0.1; done
lines=$(head -c 3000 /dev/urandom | base64 -w 200 | head -3)
printf '%s\n' "$lines" >&3
exec 3>&-
wait $pid
rc=$?
out=$(cat "$WORK/echo.out"); err=$(cat "$WORK/echo.err")
expect "stdin reaches the guest through the UART, 600 bytes, none lost" '[ $rc -eq 0 ] && diff <(sed -n "s/^echo: //p" <<<"$out" | tail -3) <(printf "%s\n" "$lines") >/dev/null'

# --- bad input: one line on stderr, status 2 ---------------------------------------
bad() { # NAME NEEDLE ARGS...
	local name=$1 needle=$2
	shift 2
	run_vmm bad 30 "$@"
	local lines
	lines=$(grep -c . <<<"$err")
	if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && grep -qi -- "$needle" <<<"$err"; then
		pass "bad input: $name"
	else
		fail "bad input: $name" "rc=$rc (want 2), stderr ($lines lines, want 1 mentioning '$needle'): $err"
	fi
}
head -c 100000 /dev/urandom >"$WORK/random.img"
head -c 100 $IMG/hello.elf >"$WORK/trunc.elf"
printf 'MZ' >"$WORK/tiny.img"
mkdir "$WORK/adir"
head -c $((8 << 20)) /dev/urandom >"$WORK/big.initrd"

bad "no command" "command" 
bad "unknown command" "unknown command" fly
bad "unknown option" "unknown option" run --kernel $IMG/hello.elf --frobnicate
bad "missing --kernel" "kernel" run
bad "option without value" "needs a value" run --kernel
bad "bad --mem" "mem" run --kernel $IMG/hello.elf --mem lots
bad "bad --cpus" "cpus" run --kernel $IMG/hello.elf --cpus 0
bad "bad --reboot" "reboot" run --kernel $IMG/hello.elf --reboot=sometimes
bad "more CPUs than the APIC IDs allow" "cpus" run --kernel $IMG/hello.elf --cpus 255
bad "missing kernel file" "no such file" run --kernel "$WORK/nope.elf"
bad "kernel is a directory" "directory" run --kernel "$WORK/adir"
bad "kernel is neither bzImage nor ELF" "random.img" run --kernel "$WORK/random.img"
bad "tiny kernel file" "tiny.img" run --kernel "$WORK/tiny.img"
bad "truncated ELF" "trunc.elf" run --kernel "$WORK/trunc.elf"
bad "missing initrd" "nope.initrd" run --kernel $IMG/hello.elf --initrd "$WORK/nope.initrd"
bad "memory too small for kernel + initrd" "does not fit" run --kernel $IMG/hello.elf --initrd "$WORK/big.initrd" --mem 4M

# --- virtio (ring-3 polling driver in the kit) --------------------------------------
if [ -e $IMG/virtio_rng.elf ]; then
	run_vmm virtio-rng 30 run --kernel $IMG/virtio_rng.elf --rng
	expect "virtio-rng: the guest driver reads 4 KiB of entropy" '[ $rc -eq 0 ] && grep -q "^virtio_rng: ok bytes=4096$" <<<"$out"'
	run_vmm virtio-rng-big 60 run --kernel $IMG/virtio_rng.elf --rng --cpus 2 --cmdline "bytes=1048576"
	expect "virtio-rng: 1 MiB in 1 KiB requests through the ioeventfd path" '[ $rc -eq 0 ] && grep -q "^virtio_rng: ok bytes=1048576$" <<<"$out"'
	run_vmm virtio-rng-move 30 run --kernel $IMG/virtio_rng.elf --rng --cmdline "move_bar=1"
	expect "virtio-rng: a moved BAR takes its ioeventfds along (old doorbell dead)" '[ $rc -eq 0 ] && grep -q "old doorbell dead" <<<"$out" && grep -q "^virtio_rng: ok" <<<"$out"'
	run_vmm virtio-rng-none 30 run --kernel $IMG/virtio_rng.elf
	expect "virtio-rng: without --rng the guest finds no device (status 1)" '[ $rc -eq 1 ] && grep -q "^virtio_rng: FAIL no virtio-rng device" <<<"$out"'
else
	fail "virtio-rng" "$IMG/virtio_rng.elf not built"
fi


# virtio-blk: the guest writes a pattern, flushes, reads it back; the host checks the file.
fnv_of() { # FILE BYTES: FNV-1a 64 of the first BYTES bytes, as the guests print it
	python3 -c 'import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], "rb").read(int(sys.argv[2])):
    h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)
print("0x%016x" % h)' "$1" "$2"
}
truncate -s 8M "$WORK/disk0.img"
head -c 1M /dev/urandom >"$WORK/ro.img"
ro_sum=$(sha256sum <"$WORK/ro.img")
run_vmm blk-rw 60 run --kernel $IMG/virtio_blk.elf --disk "$WORK/disk0.img" --cmdline "sectors=4096 seed=3"
host_fnv=$(fnv_of "$WORK/disk0.img" $((4096 * 512)))
expect "virtio-blk: 2 MiB written, flushed and read back; the image file holds what the guest wrote" \
	'[ $rc -eq 0 ] && grep -q "^virtio_blk: ok mode=rw bytes=2097152 fnv=$host_fnv$" <<<"$out"'
run_vmm blk-verify 60 run --kernel $IMG/virtio_blk.elf --disk "$WORK/disk0.img" --cmdline "sectors=4096 seed=3 mode=verify"
expect "virtio-blk: a second VM reads the same data back from the image" \
	'[ $rc -eq 0 ] && grep -q "^virtio_blk: ok mode=verify bytes=2097152 fnv=$host_fnv$" <<<"$out"'
run_vmm blk-ro 60 run --kernel $IMG/virtio_blk.elf --disk "$WORK/disk0.img" \
	--disk "$WORK/ro.img,readonly,serial=ro-disk-7" --cmdline "disk=1 mode=ro"
expect "virtio-blk: second disk read-only: writes fail with IOERR, serial and RO flag seen, image unchanged" \
	'[ $rc -eq 0 ] && grep -q "^virtio_blk: disk=1 capacity=2048 ro=1 serial=ro-disk-7$" <<<"$out" && grep -q "^virtio_blk: ok mode=ro .*write refused" <<<"$out" && [ "$(sha256sum <"$WORK/ro.img")" = "$ro_sum" ]'
run_vmm blk-asan-none 30 run --kernel $IMG/virtio_blk.elf
expect "virtio-blk: without --disk the guest finds no device (status 1)" '[ $rc -eq 1 ] && grep -q "^virtio_blk: FAIL" <<<"$out"'

# virtio-console: hvc0 to a file, on stdio (input echoed back), on a unix socket.
run_vmm hvc-file 30 run --kernel $IMG/virtio_console.elf --console "hvc,path=$WORK/hvc.out" --cmdline seed=5
expect "virtio-console: transmitq and emergency write reach the file" \
	'[ $rc -eq 0 ] && [ "$(cat "$WORK/hvc.out")" = "$(printf "hvc0: hello 5\nhvc0: emergency")" ] && grep -q "size=80x25" <<<"$out"'
rm -f "$WORK/in2"
mkfifo "$WORK/in2"
timeout 30 "$VMM" run --kernel $IMG/virtio_console.elf --console hvc --cmdline "lines=3" <"$WORK/in2" >"$WORK/hvc-stdio.out" 2>"$WORK/hvc-stdio.err" &
pid=$!
exec 3>"$WORK/in2"
lines=$(head -c 900 /dev/urandom | base64 -w 100 | head -3)
printf '%s\n' "$lines" >&3
exec 3>&-
wait $pid
rc=$?
out=$(cat "$WORK/hvc-stdio.out"); err=$(cat "$WORK/hvc-stdio.err")
expect "virtio-console on stdio: stdin goes to hvc0 (300 bytes echoed back in order), output to stdout" \
	'[ $rc -eq 0 ] && diff <(sed -n "s/^hvc0: echo //p" <<<"$out") <(printf "%s\n" "$lines") >/dev/null && grep -q "^hvc0: hello 1$" <<<"$out"'
if python3 - "$VMM" $IMG/virtio_console.elf "$WORK/hvc.sock" >"$WORK/hvc-sock.out" 2>&1 <<'PY'
import socket, subprocess, sys, time
vmm, elf, path = sys.argv[1:4]
p = subprocess.Popen([vmm, "run", "--kernel", elf, "--console", "hvc,socket=" + path,
                      "--cmdline", "lines=2"], stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
for _ in range(200):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(path); break
    except OSError:
        time.sleep(0.02)
s.sendall(b"first line\nsecond\n"); s.settimeout(10); data = b""
while b"echo second\n" not in data:
    d = s.recv(4096)
    if not d: break
    data += d
out, err = p.communicate(timeout=20)
want = b"hvc0: hello 1\nhvc0: emergency\nhvc0: echo first line\nhvc0: echo second\n"
ok = p.returncode == 0 and data == want and b"virtio_console: ok lines=2" in out
print("ok" if ok else f"rc={p.returncode} data={data!r} out={out!r} err={err!r}")
sys.exit(0 if ok else 1)
PY
then
	pass "virtio-console on a unix socket: output before the client connected is kept, input echoed"
else
	fail "virtio-console on a unix socket" "$(cat "$WORK/hvc-sock.out")"
fi

# virtio-net: frames in bursts through a real tap (vmm creates it), echoed by the guest.
if out=$(python3 tests/integration/net_echo.py "$VMM" $IMG/virtio_net.elf vmmit$$ 96 2>&1); then
	pass "virtio-net on a tap: 96 frames of 46-1500 bytes echoed in order ($out)"
else
	fail "virtio-net on a tap" "$out"
fi
[ ! -e /sys/class/net/vmmit$$ ] && pass "virtio-net: the tap vmm created is gone after it exits" ||
	fail "virtio-net: tap left behind" "vmmit$$ still exists"

# Bad device options and files: one line on stderr, status 2.
printf 'x' >"$WORK/odd.img"
touch "$WORK/not-a-socket"
bad "missing disk image" "nope.img" run --kernel $IMG/hello.elf --disk "$WORK/nope.img"
bad "disk image is a directory" "adir" run --kernel $IMG/hello.elf --disk "$WORK/adir"
bad "disk image not a multiple of 512 bytes" "multiple of 512" run --kernel $IMG/hello.elf --disk "$WORK/odd.img"
bad "bad --disk option" "disk" run --kernel $IMG/hello.elf --disk "$WORK/disk0.img,sometimes"
bad "bad --net option" "net" run --kernel $IMG/hello.elf --net bridge=br0
bad "bad MAC address" "mac" run --kernel $IMG/hello.elf --net tap=t0,mac=52:54:zz:00:00:01
bad "bad --console" "console" run --kernel $IMG/hello.elf --console serial
bad "hvc file in a missing directory" "no such file" run --kernel $IMG/hello.elf --console "hvc,path=$WORK/nodir/hvc.out"
bad "hvc socket path is a regular file" "not a socket" run --kernel $IMG/hello.elf --console "hvc,socket=$WORK/not-a-socket"


# --- snapshot and restore ----------------------------------------------------------
# wait_socket PATH: until a control socket accepts (the VM is up)
wait_socket() {
	for _ in $(seq 200); do "$VMM" ctl "$1" status >/dev/null 2>&1 && return 0; sleep 0.05; done
	return 1
}
# counter_seq FILE...: the counter numbers across the files, one per line
counter_seq() { cat "$@" | grep -aoE 'counter: [0-9]+' | awk '{print $2}'; }
seq_contiguous() { # FILE: numbers 0..N-1 in order, no gap, no repeat; N >= $2
	local n
	n=$(wc -l <"$1")
	[ "$n" -ge "$2" ] && diff "$1" <(seq 0 $((n - 1))) >/dev/null
}

snap_case() { # NAME CPUS: counter snapshotted with --stop mid-run, restored, sequence checked
	local name=$1 cpus=$2 sock=$WORK/$1.sock
	"$VMM" run --kernel $IMG/counter.elf --cpus "$cpus" --cmdline "interval_ms=5 count=400" \
		--control "$sock" </dev/null >"$WORK/$name.1.out" 2>"$WORK/$name.1.err" &
	local pid=$!
	wait_socket "$sock"
	sleep 0.5
	"$VMM" ctl "$sock" snapshot "$WORK/$name.snap" --stop >"$WORK/$name.ctl" 2>&1
	local ctl_rc=$?
	wait $pid
	local rc1=$?
	run_vmm "$name.2" 60 restore "$WORK/$name.snap"
	cp "$WORK/$name.2.out" "$WORK/$name.2.txt"
	counter_seq "$WORK/$name.1.out" "$WORK/$name.2.txt" >"$WORK/$name.seq"
	local before
	before=$(counter_seq "$WORK/$name.1.out" | wc -l)
	if [ $ctl_rc -eq 0 ] && [ $rc1 -eq 0 ] && [ $rc -eq 0 ] && [ "$before" -ge 20 ] &&
		[ "$before" -lt 400 ] && seq_contiguous "$WORK/$name.seq" 400 &&
		[ "$(wc -l <"$WORK/$name.seq")" -eq 400 ]; then
		pass "snapshot --stop at line $before, restore: counter continues to 399 with no gap or repeat ($cpus vCPU)"
	else
		fail "snapshot/restore ($cpus vCPU)" "ctl rc=$ctl_rc ($(cat "$WORK/$name.ctl")), run rc=$rc1, restore rc=$rc, lines before=$before, total=$(wc -l <"$WORK/$name.seq"); restore stderr: $err"
	fi
}
snap_case snap1 1
snap_case snap2 2

# The snapshot of a running VM that is not stopped: both the original and the restored copy go on.
"$VMM" run --kernel $IMG/dirty.elf --mem 64M --cmdline "rate=10 pages=4096 report_ms=300 duration_ms=2500" \
	--control "$WORK/dirty.sock" </dev/null >"$WORK/dirty.1.out" 2>&1 &
pid=$!
wait_socket "$WORK/dirty.sock"
sleep 1
"$VMM" ctl "$WORK/dirty.sock" snapshot "$WORK/dirty.snap" >"$WORK/dirty.ctl" 2>&1
ctl_rc=$?
wait $pid
rc1=$?
run_vmm dirty-restore 60 restore "$WORK/dirty.snap"
expect "dirty guest (10 pages/ms) snapshotted live: original and restored copy both verify their memory" \
	'[ $ctl_rc -eq 0 ] && [ $rc1 -eq 0 ] && grep -q "verify=ok" "$WORK/dirty.1.out" && [ $rc -eq 0 ] && grep -q "verify=ok" <<<"$out" && ! grep -q FAIL <<<"$out$(cat "$WORK/dirty.1.out")"'
expect "snapshot reports its size and a short pause" \
	'grep -qE "^snapshot: .* bytes=[0-9]+ pages=[0-9]+ .*paused-ms=[0-9.]+$" "$WORK/dirty.ctl"'

# Devices mid-conversation: the echo guest waits on the UART, hvc0 with posted receive buffers.
"$VMM" run --kernel $IMG/echo.elf --cmdline "lines=2" --control "$WORK/echo.sock" </dev/null >"$WORK/echo-s.1.out" 2>&1 &
pid=$!
wait_socket "$WORK/echo.sock"
"$VMM" ctl "$WORK/echo.sock" snapshot "$WORK/echo.snap" --stop >/dev/null 2>&1
wait $pid
rm -f "$WORK/in3"; mkfifo "$WORK/in3"
timeout 30 "$VMM" restore "$WORK/echo.snap" <"$WORK/in3" >"$WORK/echo-s.2.out" 2>&1 &
pid=$!
exec 3>"$WORK/in3"; sleep 0.3; printf 'after restore\nline 2\n' >&3; exec 3>&-
wait $pid; rc=$?
out=$(cat "$WORK/echo-s.2.out")
expect "UART state restored: the echo guest waiting for input gets the lines typed after the restore" \
	'[ $rc -eq 0 ] && grep -q "^echo: ready" "$WORK/echo-s.1.out" && grep -q "^echo: after restore$" <<<"$out" && grep -q "^echo: line 2$" <<<"$out"'
"$VMM" run --kernel $IMG/virtio_console.elf --console hvc --rng --disk "$WORK/disk0.img" \
	--cmdline "lines=2 timeout_ms=60000" --control "$WORK/hvc-s.sock" </dev/null >"$WORK/hvc-s.1.out" 2>&1 &
pid=$!
wait_socket "$WORK/hvc-s.sock"
sleep 0.3
"$VMM" ctl "$WORK/hvc-s.sock" snapshot "$WORK/hvc.snap" --stop >/dev/null 2>&1
wait $pid
rm -f "$WORK/in4"; mkfifo "$WORK/in4"
timeout 30 "$VMM" restore "$WORK/hvc.snap" <"$WORK/in4" >"$WORK/hvc-s.2.out" 2>&1 &
pid=$!
exec 3>"$WORK/in4"; sleep 0.3; printf 'typed later\nmore\n' >&3; exec 3>&-
wait $pid; rc=$?
out=$(cat "$WORK/hvc-s.2.out")
expect "virtio-console restored with its posted buffers (disk and rng beside it): input after the restore is echoed" \
	'[ $rc -eq 0 ] && grep -q "^hvc0: hello 1$" "$WORK/hvc-s.1.out" && grep -q "^hvc0: echo typed later$" <<<"$out" && grep -q "^hvc0: echo more$" <<<"$out"'

# Bad snapshots: a clear line, status 2, and nothing runs (no guest output).
snap=$WORK/snap1.snap
size=$(stat -c %s "$snap")
head -c $((size / 2)) "$snap" >"$WORK/trunc.snap"
head -c 40 "$snap" >"$WORK/tiny.snap"
cp "$snap" "$WORK/flip.snap"
# Flip one byte in the middle (inside the memory section).
printf '\xff' | dd of="$WORK/flip.snap" bs=1 seek=$((size / 2)) conv=notrunc status=none
cp "$snap" "$WORK/version.snap"
printf '\x09' | dd of="$WORK/version.snap" bs=1 seek=8 conv=notrunc status=none
bad_restore() { # NAME NEEDLE ARGS...
	local name=$1 needle=$2
	shift 2
	run_vmm bad-restore 30 restore "$@"
	if [ $rc -eq 2 ] && [ -z "$out" ] && grep -qi -- "$needle" <<<"$err"; then
		pass "bad snapshot: $name (status 2, nothing ran)"
	else
		fail "bad snapshot: $name" "rc=$rc (want 2), stdout: $(head -c 200 <<<"$out"), stderr: $err"
	fi
}
bad_restore "missing file" "no such file" "$WORK/nope.snap"
bad_restore "not a snapshot" "not valid" "$WORK/random.img"
bad_restore "truncated to half" "ends early" "$WORK/trunc.snap"
bad_restore "truncated inside the header" "ends early" "$WORK/tiny.snap"
bad_restore "one byte flipped in memory" "checksum" "$WORK/flip.snap"
bad_restore "unknown version" "version" "$WORK/version.snap"
bad_restore "more disks than the snapshot had" "disk" "$snap" --disk "$WORK/disk0.img"
bad "restore with --kernel" "from the snapshot" restore "$snap" --kernel $IMG/hello.elf
bad "restore without a file" "snapshot file" restore

# A snapshot that cannot be written fails the command; the VM runs on.
"$VMM" run --kernel $IMG/counter.elf --cmdline "interval_ms=10 count=150" --control "$WORK/c3.sock" </dev/null >"$WORK/c3.out" 2>&1 &
pid=$!
wait_socket "$WORK/c3.sock"
"$VMM" ctl "$WORK/c3.sock" snapshot "$WORK/nodir/x.snap" >"$WORK/c3.ctl" 2>&1
ctl_rc=$?
"$VMM" ctl "$WORK/c3.sock" bogus >>"$WORK/c3.ctl" 2>&1
bogus_rc=$?
wait $pid
rc1=$?
counter_seq "$WORK/c3.out" >"$WORK/c3.seq"
expect "snapshot to a missing directory: ctl fails (1) with the reason, the guest runs to the end" \
	'[ $ctl_rc -eq 1 ] && grep -q "No such file" "$WORK/c3.ctl" && [ $bogus_rc -eq 1 ] && grep -q "unknown command" "$WORK/c3.ctl" && [ $rc1 -eq 0 ] && seq_contiguous "$WORK/c3.seq" 150'
"$VMM" ctl "$WORK/no.sock" status >"$WORK/nosock.out" 2>&1
rc=$?
expect "vmm ctl to a missing socket: status 2 with a clear line" '[ $rc -eq 2 ] && grep -q "cannot connect" "$WORK/nosock.out"'

# --- live migration over loopback ----------------------------------------------------
port=$((17000 + $$ % 1000))
# migrate_case NAME GUEST_ARGS... -- CTL_ARGS...: destination, source, migrate; sets rc_ctl, rc_src, rc_dst
migrate_case() {
	local name=$1
	shift
	local guest=() ctl=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do guest+=("$1"); shift; done
	shift
	ctl=("$@")
	port=$((port + 1))
	"$VMM" run --incoming 127.0.0.1:$port </dev/null >"$WORK/$name.dst" 2>&1 &
	local dpid=$!
	"$VMM" run "${guest[@]}" --control "$WORK/$name.sock" </dev/null >"$WORK/$name.src" 2>&1 &
	local spid=$!
	wait_socket "$WORK/$name.sock"
	sleep 0.5
	"$VMM" ctl "$WORK/$name.sock" migrate 127.0.0.1:$port "${ctl[@]}" >"$WORK/$name.ctl" 2>&1
	rc_ctl=$?
	wait $spid; rc_src=$?
	wait $dpid; rc_dst=$?
}
# expect_mig NAME DESCRIPTION CONDITION: like expect, with the migration's own files in the report
expect_mig() {
	if eval "$3"; then pass "$2"; else
		fail "$2" "ctl=$rc_ctl src=$rc_src dst=$rc_dst; ctl: $(tail -4 "$WORK/$1.ctl" | tr '\n' ' '); dst: $(tail -3 "$WORK/$1.dst" | tr '\n' ' '); src: $(tail -3 "$WORK/$1.src" | tr '\n' ' ')"
	fi
}
migrate_case mig-counter --kernel $IMG/counter.elf --cmdline "interval_ms=5 count=500" --
counter_seq "$WORK/mig-counter.src" "$WORK/mig-counter.dst" >"$WORK/mig-counter.seq"
expect_mig mig-counter "counter migrates over loopback: the sequence goes on at the destination with no gap or repeat" \
	'[ $rc_ctl -eq 0 ] && [ $rc_src -eq 0 ] && [ $rc_dst -eq 0 ] && grep -q "^migrated to" "$WORK/mig-counter.ctl" && seq_contiguous "$WORK/mig-counter.seq" 500 && [ "$(wc -l <"$WORK/mig-counter.seq")" -eq 500 ] && [ "$(counter_seq "$WORK/mig-counter.dst" | wc -l)" -gt 100 ]'
migrate_case mig-smp --kernel $IMG/counter.elf --cpus 2 --cmdline "interval_ms=5 count=400" --
counter_seq "$WORK/mig-smp.src" "$WORK/mig-smp.dst" >"$WORK/mig-smp.seq"
expect_mig mig-smp "a two-vCPU guest migrates" \
	'[ $rc_ctl -eq 0 ] && [ $rc_src -eq 0 ] && [ $rc_dst -eq 0 ] && seq_contiguous "$WORK/mig-smp.seq" 400'
migrate_case mig-dirty --kernel $IMG/dirty.elf --mem 256M --cmdline "rate=10 pages=16384 report_ms=500 duration_ms=3000" -- --downtime-ms 20
downtime=$(grep -o 'downtime [0-9.]* ms' "$WORK/mig-dirty.ctl" | tail -1)
expect_mig mig-dirty "dirty guest at 10 pages/ms converges ($downtime) and verifies its memory on the destination" \
	'[ $rc_ctl -eq 0 ] && [ $rc_src -eq 0 ] && [ $rc_dst -eq 0 ] && grep -q "verify=ok" "$WORK/mig-dirty.dst" && ! grep -q FAIL "$WORK/mig-dirty.dst" && grep -q "^pass 0: " "$WORK/mig-dirty.ctl"'

# A guest dirtying as fast as it can over a 20 MiB/s link cannot go in 1 ms: abort, run on.
migrate_case mig-noconv --kernel $IMG/dirty.elf --mem 64M --cmdline "rate=0 pages=8192 report_ms=500 duration_ms=4000" -- --downtime-ms 1 --max-passes 2 --bandwidth 20
expect_mig mig-noconv "no convergence: migrate fails with the reason, the source finishes its work and verifies" \
	'[ $rc_ctl -eq 1 ] && grep -q "no convergence" "$WORK/mig-noconv.ctl" && [ $rc_src -eq 0 ] && grep -q "verify=ok" "$WORK/mig-noconv.src" && ! grep -q FAIL "$WORK/mig-noconv.src"'
migrate_case mig-force --kernel $IMG/dirty.elf --mem 64M --cmdline "rate=0 pages=8192 report_ms=500 duration_ms=3000" -- --downtime-ms 1 --max-passes 2 --bandwidth 200 --force
expect_mig mig-force "--force: the migration stops the guest after the last pass and completes anyway" \
	'[ $rc_ctl -eq 0 ] && [ $rc_src -eq 0 ] && [ $rc_dst -eq 0 ] && grep -q "verify=ok" "$WORK/mig-force.dst" && ! grep -q FAIL "$WORK/mig-force.dst"'

# The destination dies mid-stream (slow link): the source carries on.
port=$((port + 1))
"$VMM" run --incoming 127.0.0.1:$port </dev/null >"$WORK/mig-kill.dst" 2>&1 &
dpid=$!
"$VMM" run --kernel $IMG/dirty.elf --mem 128M --cmdline "rate=10 pages=16384 report_ms=300 duration_ms=3000" \
	--control "$WORK/mig-kill.sock" </dev/null >"$WORK/mig-kill.src" 2>&1 &
spid=$!
wait_socket "$WORK/mig-kill.sock"
"$VMM" ctl "$WORK/mig-kill.sock" migrate 127.0.0.1:$port --bandwidth 8 >"$WORK/mig-kill.ctl" 2>&1 &
cpid=$!
sleep 1
kill -9 $dpid
wait $cpid; rc_ctl=$?
wait $spid; rc_src=$?
rc_dst=killed
expect_mig mig-kill "destination killed mid-migration: migrate fails, the source guest runs to its end and verifies" \
	'[ $rc_ctl -eq 1 ] && grep -q "keeps running here" "$WORK/mig-kill.ctl" && [ $rc_src -eq 0 ] && grep -q "verify=ok" "$WORK/mig-kill.src" && ! grep -q FAIL "$WORK/mig-kill.src"'

# A source that hears "loaded" but never says "go" (it resumed, or died): the
# destination must not run a second copy.  The fake source replays a snapshot,
# which is a migration stream without dirty passes.
port=$((port + 1))
"$VMM" run --incoming 127.0.0.1:$port </dev/null >"$WORK/mig-nogo.out" 2>"$WORK/mig-nogo.err" &
dpid=$!
nogo_answers=$(python3 - "$port" "$WORK/snap1.snap" <<'PY' 2>&1
import socket, sys, time
for _ in range(50):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        break
    except OSError:
        time.sleep(0.1)
s.sendall(open(sys.argv[2], "rb").read())
got = b""
while not got.endswith(b"S"):
    b = s.recv(1)
    if not b:
        break
    got += b
print(got.decode())
s.close()
PY
)
wait $dpid; rc=$?
expect "a destination whose source never says go after 'loaded' ($nogo_answers) runs nothing and says why" \
	'[ $rc -ne 0 ] && [ "$nogo_answers" = PS ] && grep -q "no go-ahead" "$WORK/mig-nogo.err" && ! grep -q "counter\|seq" "$WORK/mig-nogo.out"'

# A destination fed garbage runs nothing and says why.
port=$((port + 1))
"$VMM" run --incoming 127.0.0.1:$port </dev/null >"$WORK/mig-junk.out" 2>"$WORK/mig-junk.err" &
dpid=$!
for _ in $(seq 50); do python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port)); s.sendall(open('/dev/urandom','rb').read(5000)); s.close()" 2>/dev/null && break; sleep 0.1; done
wait $dpid; rc=$?
expect "incoming stream of garbage: the destination fails with a clear line and runs nothing" \
	'[ $rc -ne 0 ] && [ ! -s "$WORK/mig-junk.out" ] && grep -q "not valid\|bad magic" "$WORK/mig-junk.err"'
bad "--incoming with --kernel" "from the migration" run --incoming 127.0.0.1:1 --kernel $IMG/hello.elf
bad "--incoming with a bad address" "HOST:PORT" run --incoming nowhere

summary integration
