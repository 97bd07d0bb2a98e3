#!/bin/sh
# SPDX-License-Identifier: MIT
# /bin/stamp on L1 hosts: prefix each input line with "[seconds]" since stamp started,
# from /proc/uptime (under TCG the guest clock follows the outer host's).
exec awk -v t0="$(cut -d' ' -f1 /proc/uptime)" '{
	getline up < "/proc/uptime"; close("/proc/uptime"); split(up, a, " ")
	printf "[%7.3f] %s\n", a[1] - t0, $0; fflush()
}'
