#!/bin/sh
# SPDX-License-Identifier: MIT
# Boots every kit guest under QEMU and checks its output and exit status.
# Usage: images/qemu-check.sh [accel]   (accel: kvm (default if /dev/kvm) or tcg)
set -u
cd "$(dirname "$0")"
accel=${1:-$( [ -w /dev/kvm ] && echo kvm || echo tcg )}
cpu=host,-arch-capabilities
[ "$accel" = tcg ] && cpu=max
fails=0
smp=1

# run NAME MACHINE-OPTS APPEND WANT-QEMU-STATUS REGEX...
run() {
	name=$1 mopts=$2 append=$3 want=$4
	shift 4
	out=$(timeout 60 qemu-system-x86_64 -accel "$accel" -M "microvm,pic=off,pit=off,rtc=off$mopts" \
		-cpu "$cpu" -smp "$smp" -nodefaults -no-reboot -serial stdio -display none \
		-device isa-debug-exit,iobase=0xf4,iosize=4 \
		-kernel "out/$name.elf" -append "$append" 2>&1)
	status=$?
	ok=1
	[ "$status" = "$want" ] || ok=0
	for re in "$@"; do
		printf '%s\n' "$out" | grep -Eq -- "$re" || ok=0
	done
	if [ $ok = 1 ]; then
		echo "PASS $name $append"
	else
		echo "FAIL $name $append (status $status, want $want)"
		printf '%s\n' "$out" | sed 's/^/    /'
		fails=$((fails + 1))
	fi
}

run hello ",acpi=off" "x=1" 1 '^hello: Hello from a bare-metal guest, cmdline="x=1"$'
run hello ",acpi=off" "status=2" 5 '^hello: '
run selftest ",acpi=off" "" 1 '^selftest: ok$'
run counter ",acpi=off" "count=20 interval_ms=1" 1 '^counter: start ' '^counter: 0$' '^counter: 19$'
run dirty ",acpi=off" "duration_ms=1500 report_ms=500" 1 '^dirty: start pages=4096 rate=10 ' \
	'^dirty: rate=[0-9]+\.[0-9]{2} gen=[0-9]+ verify=ok$'
run dirty ",acpi=off" "pages=1000000" 5 '^dirty: FAIL region '
run smp "" "" 1 '^smp: rsdp=0x[0-9a-f]+ \(start_info\)' '^smp: cpus=1$'
smp=2
run smp "" "scan=1" 1 '^smp: rsdp=0x[0-9a-f]+ \(scan\)' '^smp: cpus=2$'
smp=1
run crash ",acpi=off" "mode=ud2" 7 '^kit: fault vector=6 \(#UD\) .* cs=0x1b '
run crash ",acpi=off" "mode=pagefault" 7 '^kit: fault vector=14 \(#PF\) error=0x6 .* cr2=0x'
run crash ",acpi=off" "mode=triplefault" 0 '^crash: mode=triplefault$'
run info ",acpi=off" "" 1 '^info: image_end=0x'

[ $fails = 0 ] && echo "all kit guests passed" || echo "$fails kit guest test(s) failed"
[ $fails = 0 ]
