#!/usr/bin/env python3
"""Create N transcoded calls on an ng relay (rtpengine or trunkline) and print one line per call,
   pa ra pb rb, as the shared ngcalls.py does. The caller offers --caller (PCMU, PCMA or G722);
   the offer carries rtpengine's codec flags {mask: [caller], transcode: [callee]}, so the callee
   is offered --callee only and answers it; the relay transcodes both ways.
Usage: ngcalls-codec.py --ng 127.0.0.1:2223 --calls N --caller PCMU --callee PCMA"""
import argparse, random, socket, sys

PT = {"PCMU": 0, "PCMA": 8, "G722": 9}


def enc(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, list):
        return b"l" + b"".join(enc(v) for v in x) + b"e"
    return b"d" + b"".join(enc(k) + enc(x[k]) for k in sorted(x)) + b"e"


def dec(s, i=0):
    c = s[i:i + 1]
    if c == b"i":
        j = s.index(b"e", i)
        return int(s[i + 1:j]), j + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while s[i:i + 1] != b"e":
            v, i = dec(s, i)
            items.append(v)
        return (dict(zip(items[::2], items[1::2])) if c == b"d" else items), i + 1
    j = s.index(b":", i)
    n = int(s[i:j])
    return s[j + 1:j + 1 + n], j + 1 + n


def request(sock, addr, msg):
    cookie = b"%08x" % random.getrandbits(32)
    for _ in range(5):
        sock.sendto(cookie + b" " + enc(msg), addr)
        try:
            while True:
                r, _ = sock.recvfrom(65536)
                if r.startswith(cookie + b" "):
                    return dec(r[len(cookie) + 1:])[0]
        except socket.timeout:
            continue
    sys.exit("ng: no answer from %s:%d" % addr)


def sdp(port, sid, codec):
    return ("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP %d\r\na=rtpmap:%d %s/8000\r\na=sendrecv\r\n"
            % (sid, port, PT[codec], PT[codec], codec))


def port_and_pt(body):
    for line in body.decode().split("\r\n"):
        if line.startswith("m=audio "):
            f = line.split()
            return int(f[1]), int(f[3])
    sys.exit("no m=audio line in relay SDP: %r" % body)


ap = argparse.ArgumentParser()
ap.add_argument("--ng", default="127.0.0.1:2223")
ap.add_argument("--calls", type=int, default=100)
ap.add_argument("--caller", default="PCMU", choices=sorted(PT))
ap.add_argument("--callee", default="PCMA", choices=sorted(PT))
ap.add_argument("--base-a", type=int, default=40000)
ap.add_argument("--base-b", type=int, default=50000)
a = ap.parse_args()
host, port = a.ng.rsplit(":", 1)
addr = (host, int(port))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.0)
for i in range(a.calls):
    cid, ft, tt = "tc-%d" % i, "ft%d" % i, "tt%d" % i
    pa, pb = a.base_a + 2 * i, a.base_b + 2 * i
    r = request(sock, addr, {"command": "offer", "call-id": cid, "from-tag": ft,
                             "sdp": sdp(pa, i, a.caller),
                             "codec": {"mask": [a.caller], "transcode": [a.callee]},
                             "replace": ["origin", "session-connection"]})
    if r.get(b"result") != b"ok":
        sys.exit("offer failed: %r" % r)
    rb, pt = port_and_pt(r[b"sdp"])
    if pt != PT[a.callee]:
        sys.exit("the callee was offered payload type %d, not %s" % (pt, a.callee))
    r = request(sock, addr, {"command": "answer", "call-id": cid, "from-tag": ft, "to-tag": tt,
                             "sdp": sdp(pb, i, a.callee),
                             "replace": ["origin", "session-connection"]})
    if r.get(b"result") != b"ok":
        sys.exit("answer failed: %r" % r)
    ra, pt = port_and_pt(r[b"sdp"])
    if pt != PT[a.caller]:
        sys.exit("the caller was answered payload type %d, not %s" % (pt, a.caller))
    print(pa, ra, pb, rb)
