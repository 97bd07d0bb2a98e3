#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what building and testing vmm needs on a fresh Debian 12 machine.
# Everything comes from Debian's packages; the Linux guest kernel is fetched
# later with `apt-get download` by images/linux/build.sh (not installed).
set -eu
PKGS=(
	build-essential clang libclang-rt-dev   # compiler, libFuzzer + sanitizer runtimes
	linux-libc-dev                          # KVM and virtio UAPI headers
	libfdt-dev libcmocka-dev libxxhash-dev  # state tree (libfdt), unit tests (cmocka), stream checksums (xxHash)
	qemu-system-x86                         # nested Linux harness and the benchmark peer
	busybox-static cpio xz-utils zstd kmod  # initramfs building, module unpacking
	e2fsprogs iproute2 procps psmisc python3 curl
	etcd-server etcd-client libcurl4-openssl-dev  # split-brain witness: etcd lease over its v3 JSON gateway (libcurl)
	fio iperf3                              # benchmark workloads copied into the nested guest (make bench)
)
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	$SUDO apt-get update -q
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
if [ ! -c /dev/kvm ]; then
	echo "warning: /dev/kvm is missing; vmm needs KVM (the integration suite will fail)" >&2
fi
