#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Live migration of vmm against QEMU over loopback, on the same guest ELF.

The `dirty` guest writes R pages/ms over a 16384-page (64 MiB) region of a
256 MiB guest and checks the whole region every report_ms.  For each rate, a
source is booted, left to warm up (its first report line: the region is
written and checked once), then migrated to a destination on 127.0.0.1 with
the same downtime limit for both:

- vmm: `vmm ctl SOCK migrate 127.0.0.1:PORT --downtime-ms D`, whose last line
  is "migrated to ...: N passes, X MiB in T ms, downtime Y ms";
- QEMU: QMP `migrate-set-parameters downtime-limit=D max-bandwidth=...`,
  `migrate`, then `query-migrate` polled until completed (downtime,
  total-time, ram.transferred, ram.dirty-sync-count as the pass count).

Bytes sent are read on the destination (/proc/PID/io rchar, the bytes its
read calls returned: the migration stream plus a few eventfd words) for
vmm, whose own line only has whole MiB, and from ram.transferred for QEMU.
QEMU's default bandwidth cap (128 MiB/s in 7.x) is lifted, since vmm has
none by default.  The destination must then print two report lines with
verify=ok.  Runs alternate between the two monitors; each point is repeated
--runs times; medians, min-max and the vmm/QEMU ratios go in the table.

Both get `tsc_khz=` on the command line (vmm's value), since QEMU's CPUID
hides the TSC frequency and the guest would otherwise pace itself on an
assumed 2 GHz.
"""
import argparse
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

MEM_MB = 256
PAGES = 16384
QEMU_MAX_BANDWIDTH = 64 << 30  # bytes/s: no cap in practice
QEMU_TIMEOUT_S = 30  # QEMU retries forever; vmm gives up after 30 passes
PORT_BASE = 24000 + (os.getpid() % 400) * 10


class Port:
    n = PORT_BASE

    @classmethod
    def next(cls):
        cls.n += 1
        return cls.n


def qemu_base(elf, cmdline):
    return ["qemu-system-x86_64", "-accel", "kvm", "-M", "microvm,acpi=off,pic=off,pit=off,rtc=off",
            "-cpu", "host,-arch-capabilities", "-m", f"{MEM_MB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-kernel", elf, "-append", cmdline]


def spawn(cmd, out_path):
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(out_path, "wb"),
                            stderr=subprocess.STDOUT)


def wait_lines(path, regex, count, timeout):
    """Waits until path holds count lines matching regex; returns them (maybe fewer)."""
    deadline = time.monotonic() + timeout
    pat = re.compile(regex)
    found = []
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace")
            # complete lines only: the last one may still be being written
            found = [l for l in text.split("\n")[:-1] if pat.search(l)]
        except FileNotFoundError:
            found = []
        if len(found) >= count:
            return found
        time.sleep(0.02)
    return found


def stop(p, sig=signal.SIGKILL):
    if p.poll() is None:
        p.send_signal(sig)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def rchar(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def dest_verify(out, proc):
    """Two report lines from the destination, all verify=ok."""
    lines = wait_lines(out, r"dirty: (rate=|mismatch|FAIL)", 2, 15)
    ok = len(lines) >= 2 and all("verify=ok" in l for l in lines)
    return ok, lines


def run_vmm(a, work, cmdline, downtime_ms):
    port = Port.next()
    sock = os.path.join(work, f"src{port}.sock")
    dst_out, src_out = os.path.join(work, f"vdst{port}.out"), os.path.join(work, f"vsrc{port}.out")
    dst = spawn([a.vmm, "run", "--incoming", f"127.0.0.1:{port}"], dst_out)
    src = spawn([a.vmm, "run", "--kernel", a.elf, "--mem", f"{MEM_MB}M", "--cmdline", cmdline,
                 "--control", sock], src_out)
    res = {"converged": False}
    try:
        if not wait_lines(src_out, r"dirty: rate=", 1, 30):
            res["error"] = "source did not start"
            return res
        r0 = rchar(dst.pid)
        t0 = time.perf_counter()
        ctl = subprocess.run([a.vmm, "ctl", sock, "migrate", f"127.0.0.1:{port}",
                              "--downtime-ms", str(downtime_ms)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        wall_ms = (time.perf_counter() - t0) * 1000
        out = ctl.stdout + ctl.stderr
        m = re.search(r"migrated to \S+: (\d+) passes, (\d+) MiB in ([\d.]+) ms, downtime ([\d.]+) ms", out)
        if not m:
            nc = re.search(r"no convergence after (\d+) passes", out)
            res["passes"] = int(nc.group(1)) if nc else None
            res["total_ms"] = wall_ms
            last = out.strip().splitlines()[-1] if out.strip() else "no reply"
            res["error"] = "did not converge" if nc else "failed: " + last
            return res
        r1 = rchar(dst.pid)
        res.update(converged=True, passes=int(m.group(1)), total_ms=float(m.group(3)),
                   downtime_ms=float(m.group(4)), mib_line=int(m.group(2)))
        res["mib"] = (r1 - r0) / (1 << 20) if r0 is not None and r1 is not None else float(m.group(2))
        ok, lines = dest_verify(dst_out, dst)
        res["verify"] = ok
        if not ok:
            res["error"] = "destination: " + (lines[-1] if lines else "no report line")
        return res
    finally:
        stop(src)
        stop(dst)


class Qmp:
    def __init__(self, path, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")

    def close(self):
        self.s.close()


def run_qemu(a, work, cmdline, downtime_ms):
    port = Port.next()
    qsock = os.path.join(work, f"qmp{port}.sock")
    dst_out, src_out = os.path.join(work, f"qdst{port}.out"), os.path.join(work, f"qsrc{port}.out")
    dst = spawn(qemu_base(a.elf, cmdline) + ["-incoming", f"tcp:127.0.0.1:{port}"], dst_out)
    src = spawn(qemu_base(a.elf, cmdline) + ["-qmp", f"unix:{qsock},server=on,wait=off"], src_out)
    res = {"converged": False}
    q = None
    try:
        if not wait_lines(src_out, r"dirty: rate=", 1, 30):
            res["error"] = "source did not start"
            return res
        q = Qmp(qsock)
        q.cmd("migrate-set-parameters", **{"downtime-limit": downtime_ms,
                                          "max-bandwidth": QEMU_MAX_BANDWIDTH})
        t0 = time.monotonic()
        q.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        while True:
            r = q.cmd("query-migrate")
            st = r.get("status")
            if st in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - t0 > QEMU_TIMEOUT_S:
                ram = r.get("ram", {})
                res.update(error="did not converge", total_ms=(time.monotonic() - t0) * 1000,
                           passes=ram.get("dirty-sync-count"))
                q.cmd("migrate_cancel")
                return res
            time.sleep(0.005)
        if st != "completed":
            res["error"] = f"migration {st}: {r.get('error-desc', '')}"
            return res
        ram = r.get("ram", {})
        res.update(converged=True, passes=ram.get("dirty-sync-count"), total_ms=float(r["total-time"]),
                   downtime_ms=float(r["downtime"]), mib=ram.get("transferred", 0) / (1 << 20))
        ok, lines = dest_verify(dst_out, dst)
        res["verify"] = ok
        if not ok:
            res["error"] = "destination: " + (lines[-1] if lines else "no report line")
        return res
    finally:
        if q:
            q.close()
        stop(src)
        stop(dst)


def probe_tsc_khz(a, work):
    out = os.path.join(work, "probe.out")
    p = spawn([a.vmm, "run", "--kernel", a.elf, "--mem", "64M", "--cmdline",
               "rate=1 pages=16 report_ms=1 duration_ms=1"], out)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        stop(p)
    with open(out, "rb") as f:
        m = re.search(rb"tsc_khz=(\d+)", f.read())
    return int(m.group(1)) if m else None


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(s, prec=1, width=20):
    if not s:
        return f"{'-':>{width}}"
    med, lo, hi = s
    return f"{med:.{prec}f} ({lo:.{prec}f}-{hi:.{prec}f})".rjust(width)


def host_note(vmm):
    """What else ran: the benchmarks share 2 cores with whatever the host is doing."""
    load = os.getloadavg()
    return f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end, {os.cpu_count()} CPUs"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", default="build/vmm")
    ap.add_argument("--images", default="images/out")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 5)))
    ap.add_argument("--rates", default=os.environ.get("BENCH_MIGRATE_RATES", "0,1,10,100"))
    ap.add_argument("--downtime-ms", type=int, default=30)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if os.environ.get("BENCH_QUICK"):
        a.runs = 1
    a.elf = os.path.join(a.images, "dirty.elf")
    rates = [int(x) for x in a.rates.split(",")]
    work = tempfile.mkdtemp(prefix="vmm-migbench.")
    khz = probe_tsc_khz(a, work)
    if not khz:
        print("migrate_bench: cannot read the guest's TSC frequency from vmm", file=sys.stderr)
        return 1

    def cmdline(rate):
        # duration 0: forever; the destination is stopped after two verified reports
        return f"rate={rate} pages={PAGES} report_ms=500 duration_ms=0 tsc_khz={khz}"

    # Warm-up: page cache, KVM, and the host's memory for the first guest of each.
    run_vmm(a, work, cmdline(1), a.downtime_ms)
    run_qemu(a, work, cmdline(1), a.downtime_ms)

    results = {}
    t_start = time.monotonic()
    for rate in rates:
        for name in ("vmm", "qemu"):
            results[(name, rate)] = []
        for i in range(a.runs):
            for name, fn in (("vmm", run_vmm), ("qemu", run_qemu)) if i % 2 == 0 else \
                    (("qemu", run_qemu), ("vmm", run_vmm)):
                r = fn(a, work, cmdline(rate), a.downtime_ms)
                results[(name, rate)].append(r)
                print(f"  {name} rate={rate} run {i + 1}: {r}", file=sys.stderr, flush=True)

    lines = [f"# migration benchmark {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}, "
             f"dirty guest, {MEM_MB} MiB RAM, {PAGES} pages ({PAGES * 4 >> 10} MiB) region, "
             f"loopback TCP, downtime limit {a.downtime_ms} ms, {a.runs} runs per point "
             f"({time.monotonic() - t_start:.0f} s)",
             f"# {host_note(a.vmm)}",
             "# median (min-max) over the runs that converged; passes: vmm's count, QEMU's dirty-sync-count;"
             " rate 0 = unpaced (the guest dirties as fast as it can)",
             f"{'rate':>5} {'':5} {'conv':>5} {'verify':>6} {'total ms':>20} {'downtime ms':>20} "
             f"{'MiB sent':>20} {'passes':>12}"]
    notes = []
    for rate in rates:
        per = {}
        for name in ("vmm", "qemu"):
            rs = results[(name, rate)]
            conv = [r for r in rs if r.get("converged")]
            ver = sum(1 for r in conv if r.get("verify"))
            tot, dt = stats([r["total_ms"] for r in conv]), stats([r["downtime_ms"] for r in conv])
            mib = stats([r["mib"] for r in conv])
            ps = stats([r.get("passes") for r in conv])
            per[name] = (tot, dt)
            pf = f"{ps[0]:.0f} ({ps[1]:.0f}-{ps[2]:.0f})" if ps else "-"
            lines.append(f"{rate:>5} {name:5} {len(conv):>2}/{len(rs):<2} {ver:>3}/{len(conv):<2} "
                         f"{fmt(tot, 0)} {fmt(dt)} {fmt(mib)} {pf:>12}")
            for r in rs:
                if r.get("error"):
                    extra = f" after {r['passes']} passes, {r['total_ms']:.0f} ms" \
                        if r.get("error") == "did not converge" and r.get("passes") else ""
                    notes.append(f"rate {rate} {name}: {r['error']}{extra}")
        (vt, vd), (qt, qd) = per["vmm"], per["qemu"]
        ratio = []
        if vd and qd and qd[0] > 0:
            ratio.append(f"downtime {vd[0] / qd[0]:.2f}x")
        elif vd and qd:
            ratio.append(f"downtime QEMU reports {qd[0]:.0f} ms")
        if vt and qt:
            ratio.append(f"total time {vt[0] / qt[0]:.2f}x")
        if ratio:
            lines.append(f"{'':5} vmm/qemu: " + ", ".join(ratio))
    lines += [f"note: {n}" for n in notes]
    lines.append("notes: vmm downtime is pause to the destination's 'started' ack; QEMU's is its own "
                 "(ms granularity); QEMU max-bandwidth lifted to 64 GiB/s")
    lines.append("target: migration downtime well below QEMU's on the same guest and dirty rate")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(a.out, "w") as f:
        f.write(text)
    subprocess.run(["rm", "-rf", work])
    ok = all(r.get("verify", True) for rs in results.values() for r in rs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
