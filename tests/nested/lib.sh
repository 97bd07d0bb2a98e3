# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Nested-QEMU harness: "hosts" are QEMU TCG VMs (-cpu EPYC) running Debian's
# stock kernel with kvm-amd loaded, our vmm and whatever the test copies in.
# Killing a host's QEMU with SIGKILL is a host failure. See README.md here.
#
# Source it from a test script (bash, set -eu is fine), then:
#
#   nested_init NAME                  work dir tests/nested/work/NAME, cleanup
#                                     trap, kernel + default L2 initrd built
#   nested_require_vmm                fail unless build/vmm exists
#   nested_l2_initrd OUT [build.sh options...]
#                                     build an L2 initramfs (images/linux/build.sh)
#   nested_build_l1 [--no-vmm] [--add SRC:DEST]... [--add-bin SRC[:DEST]]...
#                   [--modules "M..."] [--script FILE] [--with-qemu] [--out FILE]
#                                     build the L1 initramfs (sets NESTED_L1_INITRD)
#   nested_segment SEG HOST...        declare an Ethernet segment joining HOSTs
#                                     (call before starting them)
#   nested_host_start HOST [--mem MB] [--smp N] [--initrd F] [--append ARGS]
#                     [--qemu "ARGS"]  boot a host in the background
#   nested_ready HOST [TIMEOUT]       wait until its command agent runs
#   nested_wait HOST REGEX [TIMEOUT]  wait for REGEX (grep -E) in its console log
#   nested_exec HOST [--timeout S] CMD...  run CMD (sh) on HOST; its output on
#                                     stdout, its exit status as ours
#   nested_spawn HOST JOB CMD...      start CMD on HOST in the background
#   nested_vmm_spawn HOST JOB ARGS... start `vmm ARGS` on HOST as JOB, output
#                                     through stamp, last line "VMM: exit N"
#   nested_job_wait HOST JOB [TIMEOUT]  wait for JOB; its exit status as ours
#   nested_job_out HOST JOB           path (outer host) of JOB's live output
#   nested_job_kill HOST JOB [SIG]    signal all processes of JOB on HOST
#   nested_share HOST SRC [NAME]      put a file at /share/NAME on HOST
#   nested_console HOST               path of HOST's console log
#   nested_marker HOST REGEX          first console line matching REGEX
#   nested_ts FILE REGEX              seconds on the first line matching REGEX
#                                     of a `... | stamp` output (see stamp.sh)
#   nested_mac HOST SEG               MAC of HOST's NIC on SEG
#   nested_alive HOST                 true while HOST's QEMU runs
#   nested_kill HOST                  SIGKILL HOST's QEMU (host failure)
#   nested_freeze HOST / nested_thaw HOST  SIGSTOP / SIGCONT its QEMU (a hung host)
#   nested_monitor HOST CMD           a QEMU human-monitor command on HOST's QEMU,
#                                     e.g. "set_link lan off", "info registers -a"
#   nested_stop HOST [TIMEOUT]        clean power-off
#   nested_elapsed HOST               seconds since HOST was started
#   nested_fail MSG                   print diagnostics and exit 1
#
# Exit statuses of the waiting functions: 124 timeout, 125 host died.
# Tunables (environment): NESTED_L1_KERNEL (out/vmlinux if it exists, PVH
# boot, else out/vmlinuz), NESTED_L1_MEM (2048), NESTED_L1_SMP (1:
# 2 L1 vCPUs under MTTCG brought the stack down far more often, see README.md),
# NESTED_L1_APPEND (kernel args, default "quiet softlockup_panic=1 panic=-1"), NESTED_MAX_LIFETIME
# (900 s: a QEMU is SIGKILLed after this even if the test is killed).
# Work files (console logs, shares, job outputs) stay in tests/nested/work/NAME
# until the next nested_init NAME.

NESTED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NESTED_REPO=$(cd "$NESTED_DIR/../.." && pwd)
NESTED_IMAGES=$NESTED_REPO/images/linux
NESTED_KERNEL=$NESTED_IMAGES/out/vmlinuz
NESTED_VMLINUX=$NESTED_IMAGES/out/vmlinux
# shellcheck disable=SC2034 # for tests: the default L2 initramfs
NESTED_L2_INITRD=$NESTED_IMAGES/out/initrd.gz
# L1 boots the same kernel through its PVH entry when the vmlinux exists:
# that skips decompressing the bzImage under TCG (3.5 s instead of 6.8 s).
NESTED_L1_KERNEL=${NESTED_L1_KERNEL:-}
NESTED_VMM=${NESTED_VMM:-$NESTED_REPO/build/vmm}
NESTED_WORK=
NESTED_L1_INITRD=

# Modules every L1 host loads at boot (virtio, 9p for the command channel,
# what hosts need for guest networking) and the KVM set loaded by /l1.sh.
NESTED_L1_MODULES="9pnet_virtio 9p tun bridge veth"
NESTED_L1_KVM_MODULES="irqbypass ccp kvm kvm-amd"
# iproute2 for the hosts (busybox's ip has no tuntap, bridge or netns); the
# agent makes `ip`, `tc` and `bridge` in commands mean these.
NESTED_L1_TOOLS="/usr/sbin/ip /usr/sbin/tc /usr/sbin/bridge"
# --with-qemu: QEMU as a peer inside L1 (about 50 MB more) and the firmware
# its x86 pc and microvm machines load.
NESTED_L1_QEMU_FILES="/usr/share/qemu/qboot.rom /usr/share/qemu/bios-microvm.bin
/usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/pvh.bin /usr/share/qemu/kvmvapic.bin
/usr/share/seabios/bios-256k.bin"

declare -A _nested_host_idx=() _nested_t0=() _nested_seg_members=() _nested_seg_idx=()
_nested_hosts=()
_nested_hubs=()
_nested_port_base=0

_nested_now() { date +%s.%N; }
_nested_hostdir() { echo "$NESTED_WORK/hosts/$1"; }

# The QEMU that writes PIDFILE, if it runs: its pid is checked against its
# command line, so neither a stale file (QEMU leaves it behind when killed)
# nor a reused pid can point at another process.
_nested_pid_of() {
	local pid
	pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] &&
		grep -qaF -- "$1" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

_nested_kill_pidfile() {
	local pid
	pid=$(_nested_pid_of "$1") && kill -9 "$pid" 2>/dev/null
	return 0
}

nested_cleanup() {
	local h
	for h in "${_nested_hosts[@]:-}"; do
		[ -z "$h" ] || _nested_kill_pidfile "$(_nested_hostdir "$h")/qemu.pid"
	done
	for h in "${_nested_hubs[@]:-}"; do
		[ -z "$h" ] || _nested_kill_pidfile "$h"
	done
}

nested_fail() {
	local h log
	echo "nested: FAIL: $*" >&2
	for h in "${_nested_hosts[@]:-}"; do
		[ -n "$h" ] || continue
		log=$(nested_console "$h")
		echo "--- $h console (last 25 lines of $log) ---" >&2
		tail -n 25 "$log" >&2 2>/dev/null || true
		grep -v 'TCG doesn.t support' "$(_nested_hostdir "$h")/qemu.err" 2>/dev/null | tail -n 5 >&2 || true
	done
	exit 1
}

nested_init() {
	local name=$1
	command -v qemu-system-x86_64 >/dev/null ||
		nested_fail "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"
	NESTED_WORK=$NESTED_DIR/work/$name
	rm -rf "$NESTED_WORK/hosts" "$NESTED_WORK/hubs"
	mkdir -p "$NESTED_WORK/hosts" "$NESTED_WORK/hubs"
	# Ports: a block of 160 per run, picked by pid so that parallel runs do
	# not meet: UDP for 8 segments x 8 hosts x 2, then TCP monitors of 32 hosts.
	_nested_port_base=$((20000 + ($$ % 250) * 160))
	trap nested_cleanup EXIT
	trap 'exit 130' INT TERM
	"$NESTED_IMAGES/build.sh" -q >/dev/null || nested_fail "images/linux/build.sh failed"
	if [ -z "$NESTED_L1_KERNEL" ]; then
		NESTED_L1_KERNEL=$NESTED_KERNEL
		[ ! -f "$NESTED_VMLINUX" ] || NESTED_L1_KERNEL=$NESTED_VMLINUX
	fi
}

nested_require_vmm() {
	[ -x "$NESTED_VMM" ] || nested_fail "$NESTED_VMM is missing: run make"
}

# What the Linux-guest tests need on the host: vmm, the guest kernel, e2fsprogs (the disks
# are made and checked here) and a C compiler (for the tools copied into L1 or L2).
nested_require_linux_guest() {
	local t
	nested_require_vmm
	[ -f "$NESTED_VMLINUX" ] || nested_fail "$NESTED_VMLINUX missing: images/linux/build.sh could not extract it"
	for t in /usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/debugfs; do
		[ -x "$t" ] || nested_fail "$t is missing (apt-get install e2fsprogs)"
	done
	command -v cc >/dev/null || nested_fail "no C compiler for the test's tools"
}

# nested_l2_script FILE: write an L2 run= script to FILE: the common head (say; count from
# seq_count= on the kernel command line), then the test's own part from stdin.
nested_l2_script() {
	{
		cat <<'HEAD'
# Runs in L2 as init's run= script: "L2: ..." lines on ttyS0.
say() { echo "L2: $*"; }
count=0
for a in $(cat /proc/cmdline); do
	case "$a" in seq_count=*) count=${a#seq_count=} ;; esac
done
HEAD
		cat
	} >"$1"
}

# Build the sequence workload (seqload.c) into $NESTED_WORK/seqload.
nested_build_seqload() {
	cc -O2 -Wall -Wextra -Werror -o "$NESTED_WORK/seqload" "$NESTED_DIR/seqload.c" ||
		nested_fail "cannot build seqload"
}

nested_l2_initrd() {
	local out=$1
	shift
	"$NESTED_IMAGES/build.sh" -q --out "$out" "$@" >/dev/null ||
		nested_fail "building L2 initramfs $out failed"
}

nested_build_l1() {
	local out=$NESTED_WORK/l1.cpio vmm=1 args=() mods=$NESTED_L1_MODULES tool
	while [ $# -gt 0 ]; do
		case "$1" in
		--no-vmm) vmm=0; shift ;;
		--modules) mods="$mods $2"; shift 2 ;;
		--with-qemu)
			args+=(--add-bin "$(command -v qemu-system-x86_64):/usr/bin/qemu-system-x86_64")
			for f in $NESTED_L1_QEMU_FILES; do args+=(--add "$f:$f"); done
			shift
			;;
		--add | --add-bin) args+=("$1" "$2"); shift 2 ;;
		--script) args+=(--add "$2:/l1-user.sh"); shift 2 ;;
		--out) out=$2; shift 2 ;;
		*) nested_fail "nested_build_l1: unknown option $1" ;;
		esac
	done
	if [ "$vmm" = 1 ]; then
		nested_require_vmm
		args+=(--add-bin "$NESTED_VMM:/bin/vmm")
	fi
	for tool in $NESTED_L1_TOOLS; do
		[ ! -x "$tool" ] || args+=(--add-bin "$tool:/usr/local/sbin/$(basename "$tool")")
	done
	# Uncompressed: under TCG the kernel unpacks a cpio faster than it gunzips one.
	"$NESTED_IMAGES/build.sh" -q --out "$out" \
		--extra-modules "$mods" --lazy-modules "$NESTED_L1_KVM_MODULES" \
		--add "$NESTED_DIR/l1-init.sh:/l1.sh" --add "$NESTED_DIR/stamp.sh:/bin/stamp" "${args[@]}" >/dev/null ||
		nested_fail "building the L1 initramfs failed"
	NESTED_L1_INITRD=$out
}

# The hub's UDP port for member POS of segment SIDX; the member's is one more.
_nested_hub_port() { echo $((_nested_port_base + $1 * 16 + 2 * $2)); }

# Each segment is a hub in a QEMU process of its own (-M none, hubport per
# member), wired to each member's NIC by a pair of UDP sockets on 127.0.0.1.
# A hub never sends a frame back to its sender, so bridges inside the hosts
# learn MACs correctly (a multicast socket netdev loops frames back).
nested_segment() {
	local seg=$1 sidx=${#_nested_seg_idx[@]} i args=() pidf hub
	shift
	[ -z "${_nested_seg_idx[$seg]:-}" ] || nested_fail "segment $seg declared twice"
	if [ "$sidx" -ge 8 ] || [ $# -gt 8 ]; then
		nested_fail "at most 8 segments of 8 hosts"
	fi
	_nested_seg_idx[$seg]=$sidx
	_nested_seg_members[$seg]="$*"
	for ((i = 0; i < $#; i++)); do
		hub=$(_nested_hub_port "$sidx" "$i")
		args+=(-netdev "dgram,id=p$i,local.type=inet,local.host=127.0.0.1,local.port=$hub,remote.type=inet,remote.host=127.0.0.1,remote.port=$((hub + 1))"
			-netdev "hubport,id=hp$i,hubid=0,netdev=p$i")
	done
	pidf=$NESTED_WORK/hubs/$seg.pid
	_nested_hubs+=("$pidf")
	timeout -s KILL "${NESTED_MAX_LIFETIME:-900}" qemu-system-x86_64 -M none -nodefaults \
		-no-user-config -display none -pidfile "$pidf" "${args[@]}" \
		>"$NESTED_WORK/hubs/$seg.log" 2>&1 &
	disown
	for i in $(seq 50); do
		_nested_pid_of "$pidf" >/dev/null && return 0
		sleep 0.1
	done
	nested_fail "hub for segment $seg did not start: $(cat "$NESTED_WORK/hubs/$seg.log")"
}

# Position of HOST in SEG's member list, or nothing.
_nested_seg_pos() {
	local i=0 m
	for m in ${_nested_seg_members[$2]:-}; do
		[ "$m" = "$1" ] && { echo $i; return 0; }
		i=$((i + 1))
	done
	return 1
}

nested_mac() {
	local pos
	pos=$(_nested_seg_pos "$1" "$2") || nested_fail "$1 is not on segment $2"
	printf '52:54:00:%02x:%02x:01\n' "${_nested_seg_idx[$2]}" "$pos"
}

nested_host_start() {
	local host=$1 mem=${NESTED_L1_MEM:-2048} smp=${NESTED_L1_SMP:-1}
	local initrd=$NESTED_L1_INITRD append=${NESTED_L1_APPEND:-quiet softlockup_panic=1 panic=-1} extra="" dir
	shift
	while [ $# -gt 0 ]; do
		case "$1" in
		--mem) mem=$2; shift 2 ;;
		--smp) smp=$2; shift 2 ;;
		--initrd) initrd=$2; shift 2 ;;
		--append) append="$append $2"; shift 2 ;;
		--qemu) extra=$2; shift 2 ;;
		*) nested_fail "nested_host_start: unknown option $1" ;;
		esac
	done
	[ -n "$initrd" ] || nested_fail "nested_host_start $host: no L1 initramfs (nested_build_l1)"
	! nested_alive "$host" || nested_fail "host $host is already running"
	dir=$(_nested_hostdir "$host")
	rm -rf "$dir"
	mkdir -p "$dir/share/cmd"
	# NICs in the order the segments were declared: eth0, eth1, ...
	local nics=() seg pos hub
	for seg in $(for s in "${!_nested_seg_idx[@]}"; do echo "${_nested_seg_idx[$s]} $s"; done | sort -n | cut -d' ' -f2); do
		pos=$(_nested_seg_pos "$host" "$seg") || continue
		hub=$(_nested_hub_port "${_nested_seg_idx[$seg]}" "$pos")
		nics+=(-netdev "dgram,id=$seg,local.type=inet,local.host=127.0.0.1,local.port=$((hub + 1)),remote.type=inet,remote.host=127.0.0.1,remote.port=$hub"
			-device "virtio-net-pci,netdev=$seg,mac=$(nested_mac "$host" "$seg")")
	done
	[ -n "${_nested_host_idx[$host]:-}" ] || {
		[ ${#_nested_hosts[@]} -lt 32 ] || nested_fail "at most 32 hosts"
		_nested_host_idx[$host]=${#_nested_hosts[@]}
		_nested_hosts+=("$host")
	}
	_nested_t0[$host]=$(_nested_now)
	# shellcheck disable=SC2086 # $extra is a list of QEMU arguments
	timeout -s KILL "${NESTED_MAX_LIFETIME:-900}" qemu-system-x86_64 \
		-accel tcg -cpu EPYC -m "$mem" -smp "$smp" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$NESTED_L1_KERNEL" -initrd "$initrd" \
		-append "console=ttyS0 run=/l1.sh hostname=$host $append" \
		-serial "file:$dir/console.log" \
		-virtfs "local,path=$dir/share,mount_tag=share,security_model=none,id=share" \
		-qmp "tcp:127.0.0.1:$(_nested_monitor_port "$host"),server=on,wait=off" \
		-pidfile "$dir/qemu.pid" "${nics[@]}" $extra \
		</dev/null >"$dir/qemu.err" 2>&1 &
	local i launcher=$!
	# Not a job of this shell: no "Killed" notices when a host is failed on purpose.
	disown
	for i in $(seq 100); do
		_nested_pid_of "$dir/qemu.pid" >/dev/null && return 0
		kill -0 "$launcher" 2>/dev/null || break
		sleep 0.1
	done
	nested_fail "QEMU for $host did not start: $(grep -v 'TCG doesn' "$dir/qemu.err")"
}

nested_console() { echo "$(_nested_hostdir "$1")/console.log"; }

nested_marker() { tr -d '\r' <"$(nested_console "$1")" | grep -m1 -E "$2"; }

nested_ts() {
	tr -d '\r' <"$1" | awk -v re="$2" '$0 ~ re { sub(/^\[ */, ""); sub(/\].*/, ""); print; exit }'
}

nested_alive() { _nested_pid_of "$(_nested_hostdir "$1")/qemu.pid" >/dev/null; }

nested_elapsed() {
	awk -v a="${_nested_t0[$1]}" -v b="$(_nested_now)" 'BEGIN { printf "%.2f\n", b - a }'
}

nested_wait() {
	local host=$1 re=$2 timeout=${3:-120} log end
	log=$(nested_console "$host")
	end=$((SECONDS + timeout))
	while ! grep -qE "$re" "$log" 2>/dev/null; do
		nested_alive "$host" || { grep -qE "$re" "$log" 2>/dev/null && return 0; return 125; }
		[ $SECONDS -lt $end ] || return 124
		sleep 0.1
	done
}

nested_ready() {
	local rc=0
	nested_wait "$1" '^L1: (agent ready|FAIL)' "${2:-180}" || rc=$?
	[ $rc = 0 ] || return $rc
	! grep -q '^L1: FAIL' "$(nested_console "$1")"
}

nested_share() {
	local dir
	dir=$(_nested_hostdir "$1")/share
	[ -d "$dir" ] || nested_fail "nested_share: $1 is not started"
	ln -f "$2" "$dir/${3:-$(basename "$2")}" 2>/dev/null || cp "$2" "$dir/${3:-$(basename "$2")}"
}

nested_job_out() { echo "$(_nested_hostdir "$1")/share/cmd/$2.out"; }

nested_spawn() {
	local host=$1 job=$2 cmd
	shift 2
	cmd=$(_nested_hostdir "$host")/share/cmd
	[ -d "$cmd" ] || nested_fail "nested_spawn: $host is not started"
	rm -f "$cmd/$job".{sh,run,out,pid,rc,rc.tmp}
	printf '%s\n' "$*" >"$cmd/$job.sh.tmp"
	mv "$cmd/$job.sh.tmp" "$cmd/$job.sh"
}

# Quote for sh: 'it'\''s'.
_nested_quote() {
	local a out=""
	for a in "$@"; do
		out="$out '${a//\'/\'\\\'\'}'"
	done
	echo "${out# }"
}

nested_vmm_spawn() {
	local host=$1 job=$2
	shift 2
	nested_spawn "$host" "$job" "{ vmm $(_nested_quote "$@") </dev/null; echo \"VMM: exit \$?\"; } 2>&1 | stamp"
}

nested_job_wait() {
	local host=$1 job=$2 timeout=${3:-300} rcf end
	rcf=$(_nested_hostdir "$host")/share/cmd/$job.rc
	end=$((SECONDS + timeout))
	while [ ! -s "$rcf" ]; do
		nested_alive "$host" || return 125
		[ $SECONDS -lt $end ] || return 124
		sleep 0.1
	done
	return "$(cat "$rcf")"
}

nested_job_kill() {
	nested_exec "$1" "kill -${3:-TERM} -\$(cat /share/cmd/$2.pid)"
}

nested_exec() {
	local host=$1 timeout=300 job rc=0
	shift
	if [ "${1:-}" = --timeout ]; then
		timeout=$2
		shift 2
	fi
	job=x$(date +%s%N)$RANDOM
	nested_spawn "$host" "$job" "$@"
	nested_job_wait "$host" "$job" "$timeout" || rc=$?
	cat "$(nested_job_out "$host" "$job")" 2>/dev/null
	rm -f "$(_nested_hostdir "$host")/share/cmd/$job".*
	return $rc
}

nested_kill() {
	_nested_kill_pidfile "$(_nested_hostdir "$1")/qemu.pid"
	local i
	for i in $(seq 50); do
		nested_alive "$1" || return 0
		sleep 0.1
	done
}

_nested_monitor_port() { echo $((_nested_port_base + 128 + ${_nested_host_idx[$1]})); }

# Through QMP, which is line-based (one JSON object a line): the human
# monitor's output comes back as one JSON string.
_nested_qmp_reply() {
	local fd=$1 line
	while IFS= read -r -t 10 line <&"$fd"; do
		case "$line" in
		'{"return"'* | '{"error"'*) echo "$line"; return 0 ;;
		esac
	done
	return 1
}

nested_monitor() {
	local host=$1 cmd=$2 fd reply rc=0
	nested_alive "$host" || return 125
	exec {fd}<>"/dev/tcp/127.0.0.1/$(_nested_monitor_port "$host")" || return 1
	cmd=${cmd//\\/\\\\}
	printf '{"execute":"qmp_capabilities"}\n' >&"$fd"
	_nested_qmp_reply "$fd" >/dev/null &&
		printf '{"execute":"human-monitor-command","arguments":{"command-line":"%s"}}\n' \
			"${cmd//\"/\\\"}" >&"$fd" &&
		reply=$(_nested_qmp_reply "$fd") || rc=1
	exec {fd}>&-
	[ $rc = 0 ] || return 1
	case "$reply" in '{"error"'*) echo "$reply" >&2; return 1 ;; esac
	reply=${reply%$'\r'}
	reply=${reply#'{"return": "'}
	reply=${reply%'"}'}
	reply=${reply//\\r/}
	printf '%b' "${reply//\\\"/\"}"
}

nested_freeze() { kill -STOP "$(_nested_pid_of "$(_nested_hostdir "$1")/qemu.pid")"; }
nested_thaw() { kill -CONT "$(_nested_pid_of "$(_nested_hostdir "$1")/qemu.pid")"; }

nested_stop() {
	local host=$1 end=$((SECONDS + ${2:-30}))
	touch "$(_nested_hostdir "$host")/share/cmd/.stop"
	while nested_alive "$host"; do
		if [ $SECONDS -ge $end ]; then
			nested_kill "$host"
			return 1
		fi
		sleep 0.1
	done
}

# nested_seq_check FILE: "first last lines ok|gap-after-P-to-N" of the "seq N rt=" lines in
# FILE (at the start of a line, after a client's stamp, or in an L2 "at seq" console line).
nested_seq_check() {
	tr -d '\r' <"$1" | awk '{ sub(/^[0-9.]+ /, ""); sub(/^\[[0-9.]+\] L2: at /, "") } /^seq [0-9]+ rt=/ {
		n = $2 + 0; if (!c) f = n; else if (n != p + 1 && !bad) bad = "gap-after-" p "-to-" n
		p = n; c++ } END { print (c ? f : 0), (c ? p : 0), c + 0, (bad ? bad : "ok") }'
}

# nested_wait_out JOB-OUT REGEX TIMEOUT: until REGEX is in a vmm job's output (1: the vmm
# ended first, 124: timeout)
nested_wait_out() {
	local end=$((SECONDS + $3))
	until grep -qE "$2" "$1" 2>/dev/null; do
		grep -q 'VMM: exit' "$1" 2>/dev/null && return 1
		[ $SECONDS -lt $end ] || return 124
		sleep 0.2
	done
}

# nested_vmm_spawn_stamped HOST JOB ARGS...: like nested_vmm_spawn, every line stamped with
# L1's realtime (seqload stamp), and "VMM: exit N" at the end.
nested_vmm_spawn_stamped() {
	local host=$1 job=$2
	shift 2
	nested_spawn "$host" "$job" "{ vmm $(_nested_quote "$@") </dev/null; echo \"VMM: exit \$?\"; } 2>&1 | seqload stamp"
}

# nested_bridge_tap HOST ADDR: on HOST, br0 holding eth0 (the segment) and tap0 (for vmm's
# --net), with ADDR/24; IPv6 off, kernel messages quiet.
nested_bridge_tap() {
	local out
	out=$(nested_exec "$1" "set -e
echo 8 >/proc/sys/kernel/printk
sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip tuntap add tap0 mode tap
ip link add br0 type bridge
ip link set eth0 master br0
ip link set tap0 master br0
ip link set eth0 up
ip link set tap0 up
ip link set br0 up
ip addr add $2/24 dev br0") || nested_fail "network set-up on $1 failed: $out"
}
