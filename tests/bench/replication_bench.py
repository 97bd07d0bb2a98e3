#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Replication on host KVM: a primary and a standby on loopback.

1. Epoch grid: the `dirty` guest (256 MiB, 16384-page region) at 1, 10 and
   100 pages/ms, epochs of 10, 20 and 50 ms.  After a warm-up (protected,
   then --warmup seconds) the primary's `vmm ctl status` is read at the
   start and the end of a measured interval long enough for the status's
   window of the last 512 pauses to hold only measured epochs:
   - pause per epoch: p50, p99, max from the status at the end;
   - epochs per second: delta of the epoch count over the interval;
   - bytes per epoch: delta of the standby's /proc/PID/io rchar (bytes its
     reads returned: the checkpoint stream plus heartbeats) over the delta of
     epochs; the status's whole-MiB delta is shown beside it as a check;
   - guest work rate: median of the dirty guest's rate= lines printed in the
     interval, against the median of an unreplicated run of the same guest
     in the same benchmark run (same measured interval);
   - output held: the status's "longest" (over the VM's life).
2. Pause target: a 1 GiB guest asked to dirty 50 pages/ms at 20 and at
   40 ms epochs, same measurement.  Under dirty logging the guest reaches
   only ~30 pages/ms on this host (each first write after a clear faults),
   so 20 ms epochs hold ~600 pages and 40 ms ones the ~1,000 (and more) of
   the target, which is judged on the 40 ms row and its page count.
3. Failover: the `counter` guest (interval_ms=5), --epoch-ms 20,
   --failover-timeout-ms 50 on both sides (a silent primary is declared
   dead after the timeout, so it must sit well under the 100 ms target;
   heartbeats go every 12.5 ms).  The primary is killed with
   SIGKILL (the standby sees EOF at once) or frozen with SIGSTOP (the
   standby must wait out the timeout); measured from just before the
   signal to the standby's "took over" log line and to its first counter
   line (guest instructions retiring on the standby, and output released).
4. Output latency added: from the same counter runs before the kill, the
   delay of each console line against its schedule (line n is due at
   t0 + n ms; t0 is fitted as the earliest arrival minus n), with and
   without a standby.

Each point reports median and spread; results go to the results file.
BENCH_QUICK=1 shortens everything (1 trial, short intervals: the pause
window then still holds warm-up epochs).
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

QUICK = bool(os.environ.get("BENCH_QUICK"))
PORT_BASE = 26000 + (os.getpid() % 400) * 10
WINDOW = 512  # pauses the status keeps
# A console line costs ~1.1 ms of UART exits here (one exit per byte), so 1 ms
# lines would fall behind their schedule even without replication.
COUNTER_MS = 5


class Port:
    n = PORT_BASE

    @classmethod
    def next(cls):
        cls.n += 1
        return cls.n


class Proc:
    """A child whose stdout and stderr lines are kept with their arrival times."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.raw = bytearray()  # stdout as it came, a line cut short by a kill included
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(f, l), daemon=True)
                        for f, l in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _read(self, f, lines):
        for raw in iter(f.readline, b""):
            t = time.monotonic()
            if lines is self.out:
                with self.cv:
                    self.raw += raw
            if not raw.endswith(b"\n"):
                break  # a line cut short by a kill is not output the world saw whole
            with self.cv:
                lines.append((t, raw.decode(errors="replace").rstrip("\n")))
                self.cv.notify_all()

    def wait_line(self, regex, timeout, stream="out", after=0.0):
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout
        lines = self.out if stream == "out" else self.err
        with self.cv:
            while True:
                for t, l in lines:
                    if t >= after and pat.search(l):
                        return t, l
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)

    def lines(self, regex, t0=0.0, t1=float("inf"), stream="out"):
        pat = re.compile(regex)
        with self.cv:
            src = list(self.out if stream == "out" else self.err)
        return [(t, l) for t, l in src if t0 <= t <= t1 and pat.search(l)]

    def stop(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        for t in self.threads:
            t.join(timeout=2)


def ctl_status(vmm, sock):
    r = subprocess.run([vmm, "ctl", sock, "status"], capture_output=True, text=True, timeout=10)
    return r.stdout


REPL_RE = re.compile(r"replication: epoch (\d+), acknowledged (\d+), lag \d+ epochs, (\d+) MiB sent, "
                     r"pause p50 (\d+) us p99 (\d+) us max (\d+) us, last epoch (\d+) pages "
                     r"\((\d+) copied ahead\), output held (\d+) bytes \(longest (\d+) us\)")


def parse_status(text):
    m = REPL_RE.search(text)
    if not m:
        return None
    keys = ("epoch", "acked", "mib", "p50", "p99", "max", "last_pages", "last_ahead", "held",
            "hold_max")
    s = dict(zip(keys, (int(x) for x in m.groups())))
    s["protected"] = "protection: protected" in text
    return s


def rchar(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_protected(vmm, sock, timeout, min_acked=5, sb=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sb and (sb.p.poll() is not None or sb.lines(r"took over|went away|giving up", stream="err")):
            return None  # the pair fell apart: no point waiting
        try:
            s = parse_status(ctl_status(vmm, sock))
        except (subprocess.TimeoutExpired, OSError):
            s = None
        if s and s["protected"] and s["acked"] >= min_acked:
            return s
        time.sleep(0.05)
    return None


def start_pair(a, work, guest_args, epoch_ms, timeout_ms):
    port = Port.next()
    sock = os.path.join(work, f"p{port}.sock")
    sb = Proc([a.vmm, "standby", "--listen", f"127.0.0.1:{port}", "--failover-timeout-ms", str(timeout_ms)])
    time.sleep(0.05)
    pr = Proc([a.vmm, "run"] + guest_args + ["--replicate-to", f"127.0.0.1:{port}", "--epoch-ms",
                                               str(epoch_ms), "--failover-timeout-ms", str(timeout_ms),
                                               "--control", sock])
    return sb, pr, sock


def dirty_args(a, mem, rate, pages):
    return ["--kernel", os.path.join(a.images, "dirty.elf"), "--mem", mem, "--cmdline",
            f"rate={rate} pages={pages} report_ms=500 duration_ms=0"]


def rates_in(proc, t0, t1):
    return [float(re.search(r"rate=([\d.]+)", l).group(1))
            for _, l in proc.lines(r"dirty: rate=", t0, t1)]


def unreplicated_rate(a, mem, rate, pages, seconds):
    p = Proc([a.vmm, "run"] + dirty_args(a, mem, rate, pages))
    try:
        if not p.wait_line(r"dirty: rate=", 60):
            return None
        time.sleep(a.warmup)
        t0 = time.monotonic()
        time.sleep(seconds)
        r = rates_in(p, t0, time.monotonic())
        return statistics.median(r) if r else None
    finally:
        p.stop()


def measure_epochs_once(a, work, mem, rate, pages, epoch_ms, timeout_ms):
    """One replicated run; returns a dict of measurements or {'error': ...}."""
    sb, pr, sock = start_pair(a, work, dirty_args(a, mem, rate, pages), epoch_ms, timeout_ms)
    try:
        if not wait_protected(a.vmm, sock, 60, sb=sb):
            return {"error": "never protected: " + "; ".join(l.strip() for _, l in (pr.err + sb.err) if "no --witness" not in l)}
        time.sleep(a.warmup)
        s0, r0, t0 = parse_status(ctl_status(a.vmm, sock)), rchar(sb.p.pid), time.monotonic()
        # long enough for the pause window to hold only measured epochs
        seconds = a.interval if QUICK else max(a.interval, WINDOW * epoch_ms / 1000 * 1.6)
        time.sleep(seconds)
        s1, r1, t1 = parse_status(ctl_status(a.vmm, sock)), rchar(sb.p.pid), time.monotonic()
        if not s0 or not s1 or not s1["protected"]:
            return {"error": "lost protection during the measurement: " +
                    "; ".join(l.strip() for _, l in pr.err if "no --witness" not in l)}
        de = s1["epoch"] - s0["epoch"]
        res = dict(s1)
        res.update(epochs_s=de / (t1 - t0), full_window=de >= WINDOW,
                   kib_epoch=(r1 - r0) / 1024 / de if de and r0 is not None and r1 is not None else None,
                   mib_epoch_status=(s1["mib"] - s0["mib"]) / de if de else None)
        rs = rates_in(pr, t0, t1)
        res["rate"] = statistics.median(rs) if rs else None
        fails = pr.lines(r"verify=FAIL|mismatch")
        if fails:
            res["error"] = "guest: " + fails[0][1]
        return res
    finally:
        pr.stop()
        sb.stop()


def measure_epochs(a, work, mem, rate, pages, epoch_ms, timeout_ms=1000):
    """measure_epochs_once, again (up to twice) when the pair lost protection."""
    lost = []
    for attempt in range(3):
        r = measure_epochs_once(a, work, mem, rate, pages, epoch_ms, timeout_ms)
        if not r.get("error", "").startswith(("never protected", "lost protection")):
            break
        lost.append(r["error"])
    r["lost"] = lost
    return r


def counter_latency(lines, interval_ms=1.0):
    """Per-line delay against the schedule line n at t0 + n * interval."""
    pts = []
    for t, l in lines:
        m = re.match(r"counter: (\d+)$", l)
        if m:
            pts.append((int(m.group(1)), t))
    if len(pts) < 50:
        return None
    pts = pts[len(pts) // 10:]  # skip the start
    base = min(t - n * interval_ms / 1000 for n, t in pts)
    return [(t - n * interval_ms / 1000 - base) * 1000 for n, t in pts]


FAILOVER_TIMEOUT_MS = 50


def failover_trial(a, work, mode, epoch_ms=20, timeout_ms=FAILOVER_TIMEOUT_MS):
    args = ["--kernel", os.path.join(a.images, "counter.elf"), "--cmdline", f"interval_ms={COUNTER_MS}"]
    sb, pr, sock = start_pair(a, work, args, epoch_ms, timeout_ms)
    res = {}
    try:
        if not wait_protected(a.vmm, sock, 30, min_acked=10, sb=sb):
            res["error"] = "never protected: " + "; ".join(l.strip() for _, l in (pr.err + sb.err) if "no --witness" not in l)
            return res
        t_lat0 = time.monotonic()
        time.sleep(0.5 if QUICK else 1.0)
        res["latency"] = counter_latency(pr.lines(r"^counter: \d+$", t_lat0), COUNTER_MS)
        s = parse_status(ctl_status(a.vmm, sock))
        if not s or not s["protected"] or sb.lines(r"took over|gave up|went away", stream="err"):
            res["error"] = "never protected: the pair broke before the signal: " + "; ".join(
                l.strip() for _, l in (pr.err + sb.err) if "no --witness" not in l)
            return res
        last_pr = pr.lines(r"^counter: \d+$")
        t_kill = time.monotonic()
        pr.p.send_signal(signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
        took = sb.wait_line(r"took over", 5, stream="err", after=t_kill)
        first = sb.wait_line(r"^counter: \d+$", 5, after=t_kill)
        if not took or not first:
            res["error"] = "no takeover: " + "; ".join(l for _, l in sb.err[-2:])
            return res
        res["took_ms"] = (took[0] - t_kill) * 1000
        res["first_ms"] = (first[0] - t_kill) * 1000
        # nothing released by the primary may be missing or repeated on the standby
        n_last = int(last_pr[-1][1].split()[1]) if last_pr else -1
        n_first = int(first[1].split()[1])
        res["seq_ok"] = n_first <= n_last + 1
        time.sleep(0.1)
        # The two consoles back to back: a line the primary began in a released
        # epoch and the standby finished is one line, as a reader of both sees it.
        pr.stop()
        for t in pr.threads:
            t.join(2)  # everything the primary wrote is read
        with pr.cv, sb.cv:
            text = bytes(pr.raw + sb.raw).decode(errors="replace")
        seq = [int(m.group(1)) for m in re.finditer(r"^counter: (\d+)$", text, re.M)]
        res["seq_ok"] = seq == list(range(len(seq)))
        if not res["seq_ok"]:
            bad = next(i for i, n in enumerate(seq) if n != i)
            res["seq_break"] = f"line {bad}: {seq[max(0, bad - 2):bad + 3]} (primary printed up to {n_last})"
        return res
    finally:
        pr.stop()
        sb.stop()


def unreplicated_latency(a):
    p = Proc([a.vmm, "run", "--kernel", os.path.join(a.images, "counter.elf"), "--cmdline", f"interval_ms={COUNTER_MS}"])
    try:
        if not p.wait_line(r"^counter: 0$", 30):
            return None
        time.sleep(0.5)
        t0 = time.monotonic()
        time.sleep(0.5 if QUICK else 1.0)
        return counter_latency(p.lines(r"^counter: \d+$", t0), COUNTER_MS)
    finally:
        p.stop()


def pct(values, q):
    v = sorted(values)
    if not v:
        return None
    k = min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))
    return v[k]


def f(v, spec=".0f", width=8):
    return f"{'-':>{width}}" if v is None else f"{v:{spec}}".rjust(width)


def host_note(vmm):
    """What else ran: the benchmarks share 2 cores with whatever the host is doing."""
    load = os.getloadavg()
    return f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end, {os.cpu_count()} CPUs"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", default="build/vmm")
    ap.add_argument("--images", default="images/out")
    ap.add_argument("--rates", default=os.environ.get("BENCH_REPL_RATES", "1,10,100"))
    ap.add_argument("--epochs", default=os.environ.get("BENCH_REPL_EPOCHS", "10,20,50"))
    ap.add_argument("--trials", type=int, default=int(os.environ.get("BENCH_FAILOVER_TRIALS", 20)))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    a.warmup = 1.0 if QUICK else 2.0
    a.interval = 3.0 if QUICK else 5.0
    if QUICK:
        a.trials = 1
    rates = [int(x) for x in a.rates.split(",")]
    epochs = [int(x) for x in a.epochs.split(",")]
    work = tempfile.mkdtemp(prefix="vmm-replbench.")
    t_start = time.monotonic()
    out = []

    def log(msg):
        print("  " + msg, file=sys.stderr, flush=True)

    # Warm-up: page cache, KVM, the host's memory.
    measure_epochs(a, work, "256M", 10, 16384, 20) if not QUICK else None

    # 1. grid
    grid = {}
    base = {}
    for rate in rates:
        base[rate] = unreplicated_rate(a, "256M", rate, 16384, a.interval)
        log(f"unreplicated rate={rate}: {base[rate]}")
        for e in epochs:
            grid[(rate, e)] = measure_epochs(a, work, "256M", rate, 16384, e)
            log(f"rate={rate} epoch={e}: {grid[(rate, e)]}")
    # 2. pause target: 1 GiB guest, ~1000 pages an epoch
    big_base = unreplicated_rate(a, "1G", 50, 65536, a.interval)
    big20 = measure_epochs(a, work, "1G", 50, 65536, 20)
    big = measure_epochs(a, work, "1G", 50, 65536, 40)
    log(f"1G: 20 ms {big20}, 40 ms {big} (unreplicated {big_base})")
    # 3./4. failover and output latency
    fo = {"kill": [], "stop": []}
    setup_fail = {"kill": [], "stop": []}
    for i in range(a.trials):
        for mode in ("kill", "stop"):
            for attempt in range(3):  # a pair that never got protected is set-up, not failover
                r = failover_trial(a, work, mode)
                if not r.get("error", "").startswith("never protected"):
                    break
                setup_fail[mode].append(r["error"])
            fo[mode].append(r)
            log(f"failover {mode} {i + 1}: " + str({k: v for k, v in r.items() if k != "latency"}))
    lat_unrep = unreplicated_latency(a)
    elapsed = time.monotonic() - t_start

    out.append(f"# replication benchmark {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}, "
               f"primary and standby on loopback ({elapsed:.0f} s{', QUICK' if QUICK else ''})")
    out.append(f"# {host_note(a.vmm)}")
    out.append("## epochs: dirty guest, 256 MiB RAM, 16384-page region, --failover-timeout-ms 1000")
    out.append("# pause (us): from ctl status after the measured interval (last 512 epochs; '*' = window "
               "also holds warm-up epochs)")
    out.append("# rate: guest pages/ms achieved, median of its 500 ms reports; rel = vs the unreplicated run")
    out.append("# KiB/epoch: standby's bytes read / epochs (status MiB delta / epochs in brackets)")
    hdr = (f"{'dirty':>5} {'epoch':>5} {'ep/s':>6} {'p50':>7} {'p99':>7} {'max':>7} {'pages/ep':>8} "
           f"{'KiB/epoch':>17} {'rate':>6} {'unrep':>6} {'rel':>5} {'held max us':>11}")
    out.append(hdr)

    def row(label_rate, e, r, b):
        if not r or r.get("error") and "epoch" not in r:
            return f"{label_rate:>5} {e:>5}  failed: {r.get('error') if r else '?'}"
        star = "" if r["full_window"] else "*"
        kib = f"{f(r['kib_epoch'], '.1f', 7)} ({r['mib_epoch_status'] * 1024:.0f})" \
            if r["kib_epoch"] is not None else "-"
        rel = r["rate"] / b * 100 if r["rate"] and b else None
        s = (f"{label_rate:>5} {e:>5} {r['epochs_s']:6.1f} {r['p50']:7d} {r['p99']:6d}{star:1} "
             f"{r['max']:6d}{star:1} {r['last_pages']:8d} {kib:>17} {f(r['rate'], '.2f', 6)} "
             f"{f(b, '.2f', 6)} {f(rel, '.0f', 4)}% {r['hold_max']:11d}")
        if r.get("error"):
            s += f"  ERROR {r['error']}"
        return s

    for rate in rates:
        for e in epochs:
            out.append(row(rate, e, grid[(rate, e)], base[rate]))
    out.append("## pause target: 1 GiB guest, asked for 50 pages/ms over 65536 pages, 20 and 40 ms epochs")
    out.append(hdr)
    out.append(row(50, 20, big20, big_base))
    out.append(row(50, 40, big, big_base))
    losses = [(k, r["lost"]) for k, r in list(grid.items()) + [((50, 20), big20), ((50, 40), big)]
              if r.get("lost")]
    for (rate, e), lost in losses:
        out.append(f"note: dirty {rate} epoch {e}: {len(lost)} run(s) lost protection and were redone: "
                   f"{lost[0][:200]}")

    def summary(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "-"
        return (f"p50 {pct(vals, 50):6.1f}  p99 {pct(vals, 99):6.1f}  min {min(vals):6.1f}  "
                f"max {max(vals):6.1f}  (n={len(vals)})")

    out.append(f"## failover: counter guest interval_ms={COUNTER_MS}, --epoch-ms 20, --failover-timeout-ms {FAILOVER_TIMEOUT_MS}, "
               f"{a.trials} trials each; ms from the signal")
    for mode, label in (("kill", "SIGKILL (EOF)"), ("stop", "SIGSTOP (silent)")):
        rs = fo[mode]
        good = [r for r in rs if "error" not in r]
        bad_seq = sum(1 for r in good if not r.get("seq_ok"))
        out.append(f"{label:17} to 'took over' log: {summary([r['took_ms'] for r in good])}")
        out.append(f"{'':17} to first guest line: {summary([r['first_ms'] for r in good])}")
        out.append(f"{'':17} {len(good)}/{len(rs)} took over, console sequence without gap or repeat "
                   f"in {len(good) - bad_seq}/{len(good)}")
        for r in rs:
            if "error" in r:
                out.append(f"{'':17} error: {r['error']}")
            elif r.get("seq_break"):
                out.append(f"{'':17} sequence break at {r['seq_break']}")
        if setup_fail[mode]:
            out.append(f"{'':17} {len(setup_fail[mode])} pair(s) never got protected and were retried: "
                       f"{setup_fail[mode][0]}")
    out.append(f"## output latency added: delay of each counter line ({COUNTER_MS} ms apart) against its schedule, ms")
    lat_rep = [x for mode in fo for r in fo[mode] for x in (r.get("latency") or [])]
    out.append(f"{'replicated 20 ms':17} {summary(lat_rep)}")
    out.append(f"{'unreplicated':17} {summary(lat_unrep or [])}")

    def verdict(ok):
        return "MET" if ok else "NOT MET"

    out.append("## targets")
    if big and "p99" in big:
        per_page = big["p50"] / big["last_pages"] if big["last_pages"] else None
        out.append(f"pause p99 < 1 ms for ~1000 dirty pages of a 1 GiB guest: p99 {big['p99']} us at "
                   f"{big['last_pages']} pages in the last epoch"
                   f"{'' if big['full_window'] else ' (window holds warm-up)'}"
                   f"{f', p50 {per_page:.2f} us/page' if per_page else ''} (40 ms epochs) -> "
                   f"{verdict(big['p99'] < 1000 and big['last_pages'] >= 900)}"
                   f"{'' if big['last_pages'] >= 900 else ' (fewer pages than the target asks)'}")
    g = grid.get((10, 20))
    if g and g.get("rate") and base.get(10):
        rel = g["rate"] / base[10]
        out.append(f">= 90% of the unreplicated rate at 50 epochs/s (20 ms) with 10 pages/ms: "
                   f"{rel * 100:.0f}% at {g['epochs_s']:.1f} epochs/s achieved -> "
                   f"{verdict(rel >= 0.9 and g['epochs_s'] >= 45)}"
                   f"{'' if g['epochs_s'] >= 45 else ' (the epoch rate itself falls short of 50/s)'}")
    for mode, label in (("kill", "SIGKILL"), ("stop", "SIGSTOP")):
        vals = [r["first_ms"] for r in fo[mode] if "first_ms" in r]
        if vals:
            out.append(f"failover p99 < 100 ms ({label}, to first guest line): {pct(vals, 99):.1f} ms -> "
                       f"{verdict(pct(vals, 99) < 100)}")
    text = "\n".join(out) + "\n"
    print(text, end="")
    with open(a.out, "w") as fh:
        fh.write(text)
    subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
