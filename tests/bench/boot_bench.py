#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Start-up time and memory overhead of vmm against QEMU, on the same guest ELF.

- time to first serial byte: from just before exec to the first byte on the
  guest's serial console (hello.elf), over --runs runs after a warm-up;
- VMM memory beyond guest RAM: total RSS minus the RSS of the guest-RAM
  mapping, sampled while counter.elf runs (hello exits too soon to sample).
Prints a table (median, min, max, and the QEMU/vmm ratio) and writes it to
the results file.
"""
import argparse
import os
import select
import statistics
import subprocess
import sys
import time

MEM_MB = 256


def vmm_cmd(vmm, elf, cmdline):
    return [vmm, "run", "--kernel", elf, "--mem", f"{MEM_MB}M", "--cmdline", cmdline]


def qemu_cmd(elf, cmdline):
    return ["qemu-system-x86_64", "-accel", "kvm", "-M", "microvm,acpi=off,pic=off,pit=off,rtc=off",
            "-cpu", "host,-arch-capabilities", "-m", f"{MEM_MB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-kernel", elf, "-append", cmdline]


def first_byte_ms(cmd):
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    r, _, _ = select.select([p.stdout], [], [], 30)
    elapsed = (time.perf_counter() - start) * 1000 if r and os.read(p.stdout.fileno(), 1) else None
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return elapsed


def smaps_overhead_kb(pid, is_ram):
    total = ram = 0
    cur_is_ram = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if "-" in parts[0] and not parts[0].endswith(":"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                cur_is_ram = is_ram(hi - lo, line)
            elif parts[0] == "Rss:":
                kb = int(parts[1])
                total += kb
                if cur_is_ram:
                    ram += kb
    return total - ram, ram


def overhead_kb(cmd, is_ram):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        r, _, _ = select.select([p.stdout], [], [], 30)
        if not r:
            return None
        os.read(p.stdout.fileno(), 4096)
        time.sleep(0.5)
        return smaps_overhead_kb(p.pid, is_ram)[0]
    finally:
        p.kill()
        p.wait()


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values), len(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", default="build/vmm")
    ap.add_argument("--images", default="images/out")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    hello = os.path.join(a.images, "hello.elf")
    counter = os.path.join(a.images, "counter.elf")
    is_vmm_ram = lambda size, line: "vmm-guest-ram" in line
    is_qemu_ram = lambda size, line: size >= MEM_MB << 20 and len(line.split()) < 6  # anonymous, guest-sized

    rows = []
    for name, cmd_hello, cmd_counter, is_ram in (
            ("vmm", vmm_cmd(a.vmm, hello, ""), vmm_cmd(a.vmm, counter, "interval_ms=10"), is_vmm_ram),
            ("qemu", qemu_cmd(hello, ""), qemu_cmd(counter, "interval_ms=10"), is_qemu_ram)):
        first_byte_ms(cmd_hello)  # warm-up: page cache, KVM module state
        t = stats([first_byte_ms(cmd_hello) for _ in range(a.runs)])
        m = stats([overhead_kb(cmd_counter, is_ram) for _ in range(max(3, a.runs // 4))])
        rows.append((name, t, m))

    lines = [f"# boot benchmark {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}, "
             f"guest RAM {MEM_MB} MiB, {a.runs} runs",
             f"{'':6} {'first serial byte (ms)':>34} {'memory beyond guest RAM (KiB)':>36}",
             f"{'':6} {'median':>10} {'min':>10} {'max':>10}   {'median':>10} {'min':>10} {'max':>10}"]
    for name, t, m in rows:
        tf = " ".join(f"{v:10.2f}" for v in t[:3]) if t else f"{'failed':>32}"
        mf = " ".join(f"{v:10.0f}" for v in m[:3]) if m else f"{'failed':>32}"
        lines.append(f"{name:6} {tf}   {mf}")
    (vn, vt, vm), (qn, qt, qm) = rows
    if vt and qt and vm and qm:
        lines.append(f"ratio qemu/vmm: start-up {qt[0] / vt[0]:.2f}x, memory overhead {qm[0] / vm[0]:.2f}x")
    lines.append("targets: first instruction < 10 ms, overhead < 5 MiB (5120 KiB)")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(a.out, "w") as f:
        f.write(text)
    return 0 if vt and vm else 1


if __name__ == "__main__":
    sys.exit(main())
