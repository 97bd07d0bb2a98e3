#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The client of the network failover trials: what the outside world saw.

usage: net_seq.py IFACE OUT [READY]

Listens on IFACE for the counter guest's frames (EtherType 0x88b5, payload
"counter:" and N as 8 bytes big-endian; see images/guests/counter.c) and
for RARP announcements (EtherType 0x8035).  Writes to OUT, one line each,
flushed at once: "N" for every counter frame, "announce MAC" for every
announcement.  Touches READY once it listens.  Runs until SIGTERM.
"""
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
COUNTER = 0x88B5
RARP = 0x8035


def main():
    iface, out_path = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(sys.argv) > 3:
        open(sys.argv[3], "w").close()
    with open(out_path, "w", buffering=1) as out:
        while True:
            frame = sock.recv(2048)
            if len(frame) < 14:
                continue
            kind = struct.unpack("!H", frame[12:14])[0]
            if kind == COUNTER and len(frame) >= 30 and frame[14:22] == b"counter:":
                out.write("%d\n" % struct.unpack("!Q", frame[22:30])[0])
            elif kind == RARP:
                out.write("announce %s\n" % frame[6:12].hex(":"))


if __name__ == "__main__":
    main()
