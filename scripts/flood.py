#!/usr/bin/env python3
"""Bad traffic for scripts/flood.sh: garbage datagrams and unauthenticated INVITEs from many
source addresses (127.0.0.2 ... 127.0.0.N+1), paced at --pps for --seconds, plus --tcp idle
TCP connections to the SIP port held open for the whole run. Loopback only (inside the
namespace flood.sh makes); bounded in time. Prints what it sent.
"""
import argparse
import os
import random
import socket
import time


def invites(target, n):
    """Unauthenticated INVITEs in the shapes that got through before (served domain without a
    user, the carrier's number in To, many m= lines)."""
    out = []
    for i in range(n):
        media = "".join(f"m=audio {20000 + 2 * k} RTP/AVP 0\r\n" for k in range(1 + i % 20))
        body = f"v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{media}"
        ruri = ["sip:pbx.example.com", "sip:PBX.EXAMPLE.COM;user=phone",
                "sip:011442079460000@carrier.example", "sip:alice@pbx.example.com"][i % 4]
        out.append((
            f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKfl{i}\r\n"
            f"Max-Forwards: 70\r\nTo: <sip:011442079460000@pbx.example.com>\r\n"
            f"From: <sip:x@10.0.0.1>;tag=f{i}\r\nCall-ID: flood-{i}-{os.getpid()}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:x@10.0.0.1>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    return out


def garbage(n):
    rnd = random.Random(7)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 1400))))
        elif kind == 1:
            out.append(b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n" + b"A" * rnd.randint(0, 900))
        else:
            out.append(b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nCall-ID: nothing\r\n\r\n")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="127.0.0.1:5070")
    ap.add_argument("--pps", type=int, default=50000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--sources", type=int, default=200)
    ap.add_argument("--tcp", type=int, default=2000)
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    target = (host, int(port))
    socks = []
    for i in range(a.sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{(i + 2) // 256}.{(i + 2) % 256}", 0))
        s.setblocking(False)
        socks.append(s)
    idle = []
    for i in range(a.tcp):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.bind((f"127.1.{i // 250}.{i % 250 + 1}", 0))
        try:
            c.connect(target)
            idle.append(c)
        except OSError:
            c.close()
    msgs = invites(target, 400) + garbage(400)
    random.Random(3).shuffle(msgs)
    sent = dropped = 0
    start = time.monotonic()
    end = start + a.seconds
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        owed = int((now - start) * a.pps) - sent - dropped
        for _ in range(min(owed, 2000)):
            s = socks[i % len(socks)]
            try:
                s.sendto(msgs[i % len(msgs)], target)
                sent += 1
            except (BlockingIOError, OSError):
                dropped += 1
            i += 1
        if owed <= 0:
            time.sleep(0.0005)
    took = time.monotonic() - start
    print(f"flood: {sent} datagrams in {took:.1f} s ({sent / took:.0f}/s), "
          f"{dropped} not sent (socket full), {len(idle)} idle TCP connections opened")
    for c in idle:
        c.close()


if __name__ == "__main__":
    main()
