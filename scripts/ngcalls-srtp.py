#!/usr/bin/env python3
"""Create N SRTP <-> RTP bridged calls on an ng relay (rtpengine or trunkline) and print one line
   per call, pa ra pb rb KEY_A KEY_RELAY (for tools/srtpload.rs). The caller offers RTP/SAVP with
   its own SDES key (AES_CM_128_HMAC_SHA1_80, random per call) and transport-protocol RTP/AVP, so
   the callee is offered plain RTP (checked: no a=crypto) and answers it; the relay answers the
   caller with RTP/SAVP and a key of its own (checked: not the caller's).
Usage: ngcalls-srtp.py --ng 127.0.0.1:2223 --calls N"""
import argparse, base64, os, random, socket, sys



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


def sdp(port, sid, crypto=None):
    s = ("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio %d %s 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
         % (sid, port, "RTP/SAVP" if crypto else "RTP/AVP"))
    if crypto:
        s += "a=crypto:1 AES_CM_128_HMAC_SHA1_80 %s\r\n" % crypto
    return s


def media(body):
    port, proto, keys = None, None, []
    for line in body.decode().split("\r\n"):
        if line.startswith("m=audio "):
            f = line.split()
            port, proto = int(f[1]), f[2]
        if line.startswith("a=crypto:"):
            keys.append(line.split()[2])
    if port is None:
        sys.exit("no m=audio line in relay SDP: %r" % body)
    return port, proto, keys


ap = argparse.ArgumentParser()
ap.add_argument("--ng", default="127.0.0.1:2223")
ap.add_argument("--calls", type=int, default=100)
ap.add_argument("--base-a", type=int, default=40000)
ap.add_argument("--base-b", type=int, default=50000)
a = ap.parse_args()
host, port = a.ng.rsplit(":", 1)
addr = (host, int(port))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.0)
for i in range(a.calls):
    cid, ft, tt = "srtp-%d" % i, "ft%d" % i, "tt%d" % i
    pa, pb = a.base_a + 2 * i, a.base_b + 2 * i
    key_a = "inline:" + base64.b64encode(os.urandom(30)).decode()
    r = request(sock, addr, {"command": "offer", "call-id": cid, "from-tag": ft,
                             "sdp": sdp(pa, i, key_a), "transport-protocol": "RTP/AVP",
                             "replace": ["origin", "session-connection"]})
    if r.get(b"result") != b"ok":
        sys.exit("offer failed: %r" % r)
    rb, proto, keys = media(r[b"sdp"])
    if proto != "RTP/AVP" or keys:
        sys.exit("the callee was offered %s with %d keys" % (proto, len(keys)))
    r = request(sock, addr, {"command": "answer", "call-id": cid, "from-tag": ft, "to-tag": tt,
                             "sdp": sdp(pb, i), "replace": ["origin", "session-connection"]})
    if r.get(b"result") != b"ok":
        sys.exit("answer failed: %r" % r)
    ra, proto, keys = media(r[b"sdp"])
    if proto != "RTP/SAVP" or not keys or keys[0] == key_a:
        sys.exit("the caller was answered %s with keys %r" % (proto, keys))
    print(pa, ra, pb, rb, key_a, keys[0])
