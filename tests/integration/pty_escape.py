#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run vmm on a pseudo-terminal, type Ctrl-A x, check it stops with status 0
and leaves the terminal as it found it (canonical mode, echo on)."""
import os
import pty
import select
import sys
import termios
import time

vmm, kernel = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(vmm, [vmm, "run", "--kernel", kernel, "--cmdline", "interval_ms=10"])
out = b""
deadline = time.time() + 20
while b"counter: 3" not in out and time.time() < deadline:
    if select.select([fd], [], [], 1)[0]:
        out += os.read(fd, 4096)
os.write(fd, b"\x01x")
_, status = os.waitpid(pid, 0)
attrs = termios.tcgetattr(fd)
canonical = bool(attrs[3] & termios.ICANON) and bool(attrs[3] & termios.ECHO)
code = os.waitstatus_to_exitcode(status)
print(f"exit={code} canonical_restored={canonical} saw_counter={b'counter: 3' in out}")
sys.exit(0 if code == 0 and canonical and b"counter: 3" in out else 1)
