#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# vmm boots the vmlinux taken out of Debian's bzImage through its PVH entry.
exec "$(dirname "$0")/test_boot.sh" pvh
