#!/usr/bin/env python3
"""trunkline's own ng protocol client (rtpengine's control protocol: a cookie, a space, then a
bencoded dictionary, over UDP), used by tests/ng_ngcalls.rs when the shared peer script
ngcalls.py is not on this machine. Same command line and output:

    ngclient.py --ng HOST:PORT --calls N [--base-a P] [--base-b P] [--delete]

prints, per call, "pa ra pb rb": the caller's port, the relay port answering the caller, the
callee's port, the relay port answering the callee. Written from the ng protocol description
(bencode: BEP 3), independently of ngcalls.py.
"""
import argparse
import os
import socket
import sys


def encode(v):
    if isinstance(v, int):
        return b"i" + str(v).encode() + b"e"
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return str(len(v)).encode() + b":" + v
    if isinstance(v, (list, tuple)):
        return b"l" + b"".join(encode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(encode(k) + encode(x) for k, x in items) + b"e"
    raise TypeError("cannot bencode %r" % (v,))


def decode(data, pos=0):
    """Returns (value, next position)."""
    kind = data[pos:pos + 1]
    if kind == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1:end]), end + 1
    if kind in (b"l", b"d"):
        pos += 1
        items = []
        while data[pos:pos + 1] != b"e":
            item, pos = decode(data, pos)
            items.append(item)
        if kind == b"l":
            return items, pos + 1
        return {items[i]: items[i + 1] for i in range(0, len(items), 2)}, pos + 1
    colon = data.index(b":", pos)
    length = int(data[pos:colon])
    start = colon + 1
    return data[start:start + length], start + length


def request(sock, server, message):
    cookie = os.urandom(6).hex().encode()
    packet = cookie + b" " + encode(message)
    for _attempt in range(5):
        sock.sendto(packet, server)
        try:
            while True:
                reply, _ = sock.recvfrom(65535)
                if reply.startswith(cookie + b" "):
                    value, _ = decode(reply, len(cookie) + 1)
                    return value
        except socket.timeout:
            continue
    sys.exit("no ng answer from %s:%d" % server)


def offer_sdp(port, version):
    lines = [
        "v=0",
        "o=- %d 1 IN IP4 127.0.0.1" % version,
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio %d RTP/AVP 0" % port,
        "a=rtpmap:0 PCMU/8000",
        "a=sendrecv",
    ]
    return "\r\n".join(lines) + "\r\n"


def audio_port(sdp):
    for line in sdp.decode().splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    sys.exit("the relay's SDP has no m=audio line: %r" % sdp)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ng", default="127.0.0.1:2223")
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--base-a", type=int, default=40000)
    p.add_argument("--base-b", type=int, default=50000)
    p.add_argument("--delete", action="store_true")
    args = p.parse_args()
    host, port = args.ng.rsplit(":", 1)
    server = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    flags = ["origin", "session-connection"]
    for n in range(args.calls):
        call_id, from_tag, to_tag = "load-%d" % n, "from-%d" % n, "to-%d" % n
        if args.delete:
            request(sock, server, {"command": "delete", "call-id": call_id, "from-tag": from_tag})
            continue
        pa, pb = args.base_a + 2 * n, args.base_b + 2 * n
        r = request(sock, server, {"command": "offer", "call-id": call_id, "from-tag": from_tag,
                                   "sdp": offer_sdp(pa, n), "replace": flags})
        if r.get(b"result") != b"ok":
            sys.exit("offer refused: %r" % r)
        rb = audio_port(r[b"sdp"])
        r = request(sock, server, {"command": "answer", "call-id": call_id, "from-tag": from_tag,
                                   "to-tag": to_tag, "sdp": offer_sdp(pb, n), "replace": flags})
        if r.get(b"result") != b"ok":
            sys.exit("answer refused: %r" % r)
        ra = audio_port(r[b"sdp"])
        print(pa, ra, pb, rb)


if __name__ == "__main__":
    main()
