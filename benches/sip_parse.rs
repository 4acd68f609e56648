//! SIP message parse / serialise benches (criterion).
//!
//! `cargo bench --bench sip_parse -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use signaling::check::admission;
use signaling::parse::{frame_len, parse};
use signaling::SipMessage;

/// A typical INVITE from a PBX with an SDP offer (1056 bytes, 400 of SDP).
const INVITE: &[u8] = b"INVITE sip:+15551234567@carrier.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---a8b2c7d6e5f4;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@192.0.2.10:5060;transport=udp>\r\n\
To: <sip:+15551234567@carrier.example.net>\r\n\
From: \"Front Desk\" <sip:1001@pbx.example.com>;tag=8f3c2a1b\r\n\
Call-ID: 7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a@192.0.2.10\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE, UPDATE\r\n\
Supported: replaces, norefersub, timer\r\n\
User-Agent: ExamplePBX 18.2.1\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 400\r\n\
\r\n\
v=0\r\n\
o=- 3912847561 3912847561 IN IP4 192.0.2.10\r\n\
s=ExamplePBX\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n\
a=rtcp:16385 IN IP4 192.0.2.10\r\n\
a=label:1\r\n\
a=silenceSupp:off - - - -\r\n";

/// A 200 OK to an INVITE, without body (about 450 bytes).
const OK200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---a8b2c7d6e5f4;rport=5060;received=192.0.2.10\r\n\
Record-Route: <sip:198.51.100.1;lr>\r\n\
Contact: <sip:+15551234567@198.51.100.20:5060>\r\n\
To: <sip:+15551234567@carrier.example.net>;tag=as5f2e1d0c\r\n\
From: \"Front Desk\" <sip:1001@pbx.example.com>;tag=8f3c2a1b\r\n\
Call-ID: 7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a@192.0.2.10\r\n\
CSeq: 2 INVITE\r\n\
Server: CarrierSBC\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Supported: replaces, timer\r\n\
Content-Length: 0\r\n\
\r\n";

fn benches(c: &mut Criterion) {
    assert!(INVITE.len() > 850, "INVITE is {} bytes", INVITE.len());
    assert!(matches!(parse(INVITE), Ok(SipMessage::Request(_))));
    assert!(matches!(parse(OK200), Ok(SipMessage::Response(_))));

    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite_sdp", |b| {
        b.iter(|| parse(black_box(INVITE)).unwrap())
    });
    g.bench_function("parse_200ok", |b| {
        b.iter(|| parse(black_box(OK200)).unwrap())
    });
    g.bench_function("frame_len_invite", |b| {
        b.iter(|| frame_len(black_box(INVITE)).unwrap())
    });

    let inv = parse(INVITE).unwrap();
    let ok = parse(OK200).unwrap();
    let mut buf = Vec::with_capacity(2048);
    g.bench_function("emit_invite_sdp", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&inv).write_to(&mut buf);
            buf.len()
        })
    });
    g.bench_function("emit_200ok", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&ok).write_to(&mut buf);
            buf.len()
        })
    });
    g.bench_function("to_bytes_invite_sdp", |b| {
        b.iter(|| black_box(&inv).to_bytes())
    });

    let SipMessage::Request(req) = &inv else {
        unreachable!()
    };
    g.bench_function("admission_invite", |b| {
        b.iter(|| admission(black_box(req)).is_ok())
    });
    g.bench_function("parse_admit_invite", |b| {
        b.iter(|| match parse(black_box(INVITE)).unwrap() {
            SipMessage::Request(r) => admission(&r).is_ok(),
            SipMessage::Response(_) => false,
        })
    });
    g.finish();
}

criterion_group!(sip_parse, benches);
criterion_main!(sip_parse);
