#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Linux guest builder: Debian's stock kernel plus a busybox initramfs.
#
#   images/linux/build.sh [options]
#
# Stage 1 (cached, runs once): fetch linux-image-amd64 and the versioned
# linux-image-6.*-amd64 it depends on with `apt-get download`, unpack them and
# leave in images/linux/out/:
#   vmlinuz         the bzImage
#   vmlinux         uncompressed ELF taken out of the bzImage (for PVH boot)
#   modules/        the kernel's /lib/modules/<version> tree, with modules.dep
#   kernel-version  e.g. 6.1.0-56-amd64
#   config          the kernel's .config
#
# Stage 2: build an initramfs (default out/initrd.gz) from busybox-static, the
# modules asked for (with their dependencies, in load order) and extra files.
# Its /init (images/linux/init.sh) mounts proc/sys/dev, insmods the modules,
# runs the script named by `run=/path` on the kernel command line (else an
# interactive shell) and powers off. Rebuilt only when its inputs change.
#
# Options:
#   --out FILE          initramfs to write (default: out/initrd.gz); gzip if
#                       FILE ends in .gz, else an uncompressed cpio
#   --modules "A B"     modules to load at boot, by name; replaces the default
#                       virtio set (see DEFAULT_MODULES). Missing ones are skipped.
#   --extra-modules "A" modules loaded after the default set
#   --lazy-modules "A"  modules copied in (with dependencies not already
#                       loaded) but not loaded by /init: their file names are
#                       listed in load order in /etc/modules.lazy
#   --add SRC:DEST      copy file SRC to DEST inside the initramfs (repeatable)
#   --add-bin SRC[:DEST] copy an ELF binary and the shared libraries `ldd`
#                       lists for it (DEST defaults to /bin/<name>) (repeatable)
#   --overlay DIR       copy DIR's contents over the initramfs root (repeatable)
#   --kernel-only       stop after stage 1
#   -q, --quiet         only print errors and the final paths
#
# Environment: KERNEL_PKG overrides the versioned package (e.g. to pin one).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/out"
DEFAULT_MODULES="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
virtio_blk failover net_failover virtio_net virtio_console virtio-rng"

initrd="$out/initrd.gz"
modules="$DEFAULT_MODULES"
extra_modules=""
lazy_modules=""
adds=()
bins=()
overlays=()
kernel_only=0
quiet=0

say() { [ "$quiet" = 1 ] || echo "build.sh: $*" >&2; }
die() {
	echo "build.sh: error: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--out) initrd=$(realpath -m "$2"); shift 2 ;;
	--modules) modules="$2"; shift 2 ;;
	--extra-modules) extra_modules="$2"; shift 2 ;;
	--lazy-modules) lazy_modules="$2"; shift 2 ;;
	--add) adds+=("$2"); shift 2 ;;
	--add-bin) bins+=("$2"); shift 2 ;;
	--overlay) overlays+=("$2"); shift 2 ;;
	--kernel-only) kernel_only=1; shift ;;
	-q | --quiet) quiet=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done

# ---------------------------------------------------------------- stage 1

# Offsets in the bzImage header (Documentation/arch/x86/boot.rst):
# setup_sects at 0x1f1, payload_offset/payload_length at 0x248/0x24c, relative
# to the protected-mode code that starts after the setup sectors.
extract_vmlinux() {
	local bz=$1 dst=$2 setup_sects poff plen start magic
	setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bz" | tr -d ' ')
	[ "$setup_sects" != 0 ] || setup_sects=4
	read -r poff plen < <(od -An -tu4 -j $((0x248)) -N8 "$bz")
	start=$(((setup_sects + 1) * 512 + poff))
	magic=$(od -An -tx1 -j "$start" -N4 "$bz" | tr -d ' ')
	local dec
	case "$magic" in
	fd377a58) dec="xz -dc --single-stream" ;;
	28b52ffd) dec="zstd -dcq" ;;
	1f8b*) dec="gzip -dc" ;;
	*) say "vmlinux: unknown payload compression (magic $magic), not extracted"; return 0 ;;
	esac
	# The payload is followed by other data; each decoder stops at its stream end.
	tail -c +$((start + 1)) "$bz" | head -c "$((plen + 4096))" | $dec >"$dst.tmp" 2>/dev/null || true
	if [ "$(od -An -tx1 -N4 "$dst.tmp" 2>/dev/null | tr -d ' ')" = 7f454c46 ]; then
		mv "$dst.tmp" "$dst"
	else
		rm -f "$dst.tmp"
		say "vmlinux: payload did not decompress to an ELF, not extracted"
	fi
}

kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

fetch_kernel() {
	local pkg dl kver
	command -v apt-get >/dev/null || die "apt-get is needed to fetch the kernel"
	pkg=${KERNEL_PKG:-$(kernel_package)}
	if [ -z "$pkg" ]; then
		say "no linux-image-amd64 in the package lists; running apt-get update"
		apt-get update -q >/dev/null || true
		pkg=$(kernel_package)
	fi
	[ -n "$pkg" ] || die "cannot resolve the versioned package behind linux-image-amd64"
	say "fetching $pkg"
	dl="$out/deb"
	rm -rf "$dl" "$out/pkg"
	mkdir -p "$dl"
	# apt drops to the _apt user to download; let it write here.
	chown _apt "$dl" 2>/dev/null || true
	(cd "$dl" && apt-get download -q linux-image-amd64 "$pkg" >/dev/null) ||
		die "apt-get download linux-image-amd64 $pkg failed"
	dpkg-deb -x "$dl/$pkg"_*.deb "$out/pkg"
	kver=$(basename "$(ls -d "$out"/pkg/lib/modules/*/ | head -n1)")
	[ -n "$kver" ] && [ -f "$out/pkg/boot/vmlinuz-$kver" ] || die "$pkg has no vmlinuz"
	say "generating modules.dep for $kver"
	busybox depmod -b "$out/pkg" "$kver"
	rm -rf "$out/modules"
	mv "$out/pkg/lib/modules/$kver" "$out/modules"
	cp "$out/pkg/boot/vmlinuz-$kver" "$out/vmlinuz"
	cp "$out/pkg/boot/config-$kver" "$out/config"
	rm -rf "$out/pkg" "$out/vmlinux" "$dl"
	extract_vmlinux "$out/vmlinuz" "$out/vmlinux"
	echo "$kver" >"$out/kernel-version"
}

ensure_busybox() {
	# ldd fails on a static binary; the initramfs has no libraries for busybox.
	if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
		return 0
	fi
	say "installing busybox-static"
	apt-get install -y -q busybox-static >/dev/null || die "cannot install busybox-static"
}

mkdir -p "$out"
ensure_busybox
[ -f "$out/kernel-version" ] && [ -f "$out/modules/modules.dep" ] && [ -f "$out/vmlinuz" ] || fetch_kernel
kver=$(cat "$out/kernel-version")
[ "$kernel_only" = 0 ] || { echo "$out/vmlinuz"; exit 0; }

# ---------------------------------------------------------------- stage 2

# Module names use '-' and '_' interchangeably: key them by the '_' form of
# the file name without directory and .ko* suffix. No subshells: 4000 lines.
modname() {
	local n=${1##*/}
	n=${n%%.ko*}
	REPLY=${n//-/_}
}

declare -A modpath=() moddeps=() visited=()
load_modules_dep() {
	local path deps
	while IFS=: read -r path deps; do
		modname "$path"
		modpath[$REPLY]=$path
		moddeps[$REPLY]=$deps
	done <"$out/modules/modules.dep"
}

# Depth-first over modules.dep so every module comes after its dependencies.
order=()
visit() {
	local name dep
	modname "$1"
	name=$REPLY
	[ -z "${visited[$name]:-}" ] || return 0
	visited[$name]=1
	for dep in ${moddeps[$name]}; do
		visit "$dep"
	done
	order+=("$name")
}

# Copy a module in uncompressed, so /init needs only busybox insmod.
copy_module() {
	local src=$out/modules/$1 dst=$2
	case "$src" in
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -dcq "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*) cp "$src" "$dst" ;;
	esac
}

# Copy SRC to DEST in the initramfs, replacing (never writing through) a link there.
install_file() {
	mkdir -p "$(dirname "$2")"
	rm -f "$2"
	cp -L "$1" "$2"
}

copy_with_libs() {
	local src=${1%%:*} dst lib root=$2
	dst=${1#*:}
	[ "$dst" != "$1" ] || dst=/bin/$(basename "$src")
	[ -f "$src" ] || die "--add-bin: $src not found"
	install_file "$src" "$root$dst"
	# ldd prints "name => /path (addr)" and "/lib64/ld-linux... (addr)".
	for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
		[ -f "$lib" ] || continue
		install_file "$lib" "$root$lib"
	done
}

# A key over everything the initramfs is made of: skip the rebuild when it matches.
input_key() {
	{
		echo "$kver|$modules|$extra_modules|$lazy_modules|${adds[*]:-}|${bins[*]:-}|${overlays[*]:-}"
		cat "$here/init.sh" "$here/build.sh"
		local a
		for a in "${adds[@]:-}" "${bins[@]:-}"; do
			if [ -n "$a" ]; then stat -Lc '%n %s %Y' "${a%%:*}"; fi
		done
		for a in "${overlays[@]:-}"; do
			if [ -n "$a" ]; then find "$a" -printf '%P %s %T@\n' | sort; fi
		done
	} | md5sum | cut -d' ' -f1
}

key=$(input_key)
if [ -f "$initrd" ] && [ "$(cat "$initrd.key" 2>/dev/null)" = "$key" ]; then
	say "$initrd is up to date"
	echo "$initrd"
	exit 0
fi

visit_all() {
	local m
	for m in "$@"; do
		modname "$m"
		if [ -n "${modpath[$REPLY]:-}" ]; then
			visit "$m"
		else
			say "module $m is not in $kver (built in or absent), skipped"
		fi
	done
}

load_modules_dep
visit_all $modules $extra_modules
nautoload=${#order[@]}
visit_all $lazy_modules

root=$(mktemp -d "${TMPDIR:-/tmp}/initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,mnt,lib/modules}
cp /bin/busybox "$root/bin/busybox"
# Relative links: a later copy onto an applet's name must never follow a link
# out of $root (install_file removes the link first anyway).
for applet in $(/bin/busybox --list-full); do
	up=${applet//[^\/]/}
	up=${up//\//../}
	[ -e "$root/$applet" ] || ln -s "${up}bin/busybox" "$root/$applet"
done
cp "$here/init.sh" "$root/init"
chmod 0755 "$root/init"
# The kernel opens /dev/console before /init runs; devtmpfs is not mounted yet.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

: >"$root/etc/modules.load"
: >"$root/etc/modules.lazy"
for i in "${!order[@]}"; do
	m=${order[$i]}
	f=${modpath[$m]##*/}
	f=${f%%.ko*}.ko
	copy_module "${modpath[$m]}" "$root/lib/modules/$f"
	list=modules.load
	[ "$i" -lt "$nautoload" ] || list=modules.lazy
	echo "$f" >>"$root/etc/$list"
done
echo "$kver" >"$root/etc/kernel-version"

for b in "${bins[@]:-}"; do
	[ -z "$b" ] || copy_with_libs "$b" "$root"
done
for a in "${adds[@]:-}"; do
	[ -n "$a" ] || continue
	src=${a%%:*}
	dst=${a#*:}
	[ "$dst" != "$a" ] || die "--add wants SRC:DEST, got $a"
	[ -e "$src" ] || die "--add: $src not found"
	install_file "$src" "$root$dst"
done
for o in "${overlays[@]:-}"; do
	[ -z "$o" ] || cp -a --remove-destination "$o/." "$root/"
done

mkdir -p "$(dirname "$initrd")"
# A .gz name gets gzip; any other name stays a plain cpio, which boots faster
# under TCG because the kernel has nothing to decompress.
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 --reproducible) |
	case "$initrd" in
	*.gz) gzip -1 -n ;;
	*) cat ;;
	esac >"$initrd.tmp.$$"
mv "$initrd.tmp.$$" "$initrd"
echo "$key" >"$initrd.key"
say "$initrd: $(du -h "$initrd" | cut -f1), modules: ${order[*]:0:$nautoload}${lazy_modules:+, lazy: ${order[*]:$nautoload}}"
echo "$initrd"
