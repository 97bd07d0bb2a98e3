#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Frames through virtio-net on a real tap: the host side of images/guests/virtio_net.c.

usage: net_echo.py VMM ELF TAP FRAMES

Starts vmm with the echo guest on tap TAP (vmm creates it), sends FRAMES
frames of EtherType 0x88b5 and varying sizes into the tap in bursts, and
checks every reply: from the guest's MAC, to ours, payload inverted, in
order.  Then checks the guest's own report (frame count, bytes, FNV of what
it received) and its exit status.  Prints one line; exits 0 on success.
"""
import os
import socket
import subprocess
import sys
import time

ETHERTYPE = 0x88B5
GUEST_MAC = bytes.fromhex("525400aabbcc")
PACKET_OUTGOING = 4
BURST = 8


def fnv1a64(chunks):
    h = 0xCBF29CE484222325
    for c in chunks:
        for b in c:
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def payload(i):
    # 46..1500 bytes (minimum Ethernet payload to a full MTU), distinct per frame.
    size = 46 + (i * 277) % 1455
    return bytes(((i * 131 + j * 7) ^ (j >> 3)) & 0xFF for j in range(size))


def main():
    vmm, elf, tap, frames = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    proc = subprocess.Popen(
        [vmm, "run", "--kernel", elf, "--net", f"tap={tap},mac=52:54:00:aa:bb:cc",
         "--cmdline", f"frames={frames}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        return run(proc, tap, frames)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run(proc, tap, frames):
    deadline = time.time() + 10
    while not os.path.exists(f"/sys/class/net/{tap}") and time.time() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    if not os.path.exists(f"/sys/class/net/{tap}"):
        out, err = proc.communicate()
        print(f"FAIL tap {tap} never appeared; vmm rc={proc.returncode} err={err.decode()!r}")
        return 1
    with open(f"/sys/class/net/{tap}/address") as f:
        host_mac = bytes.fromhex(f.read().strip().replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    s.bind((tap, ETHERTYPE))
    s.settimeout(10)
    sent = []
    for start in range(0, frames, BURST):
        burst = [payload(i) for i in range(start, min(start + BURST, frames))]
        for p in burst:
            s.send(GUEST_MAC + host_mac + ETHERTYPE.to_bytes(2, "big") + p)
        sent += burst
        for i, p in enumerate(burst, start):
            while True:
                try:
                    data, addr = s.recvfrom(2048)
                except socket.timeout:
                    print(f"FAIL no reply to frame {i} within 10 s")
                    return 1
                if addr[2] != PACKET_OUTGOING:
                    break
            if data[0:6] != host_mac or data[6:12] != GUEST_MAC:
                print(f"FAIL reply {i}: addressed {data[0:6].hex()} from {data[6:12].hex()}")
                return 1
            want = bytes(b ^ 0xFF for b in p)
            # Short frames may come back padded by nobody: the guest echoes the length it got.
            if data[14:14 + len(want)] != want:
                print(f"FAIL reply {i}: payload ({len(data) - 14} bytes) is not the inverted"
                      f" {len(p)}-byte frame")
                return 1
    out, err = proc.communicate(timeout=30)
    out, err = out.decode(), err.decode()
    expect = (f"virtio_net: ok frames={frames} bytes={sum(map(len, sent))} "
              f"fnv=0x{fnv1a64(sent):016x}")
    if proc.returncode != 0 or expect not in out:
        print(f"FAIL guest report: rc={proc.returncode}, want '{expect}'; out={out!r} err={err!r}")
        return 1
    batches = out.split("batches=")[1].split()[0]
    print(f"ok: {frames} frames ({sum(map(len, sent))} bytes) echoed in order,"
          f" {batches} reply batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
