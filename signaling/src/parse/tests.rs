use super::*;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
X-Custom-Thing:   kept as is\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r";

fn req(m: SipMessage) -> Request {
    match m {
        SipMessage::Request(r) => r,
        _ => panic!("not a request"),
    }
}

#[test]
fn parses_request() {
    let r = req(parse(INVITE).unwrap());
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri, "sip:bob@biloxi.example.com");
    assert_eq!(
        r.headers.get("From"),
        Some("Alice <sip:alice@atlanta.example.com>;tag=1928301774")
    );
    assert_eq!(r.call_id(), Some("a84b4c76e66710@pc33.atlanta.example.com"));
    assert_eq!(r.headers.get("x-custom-thing"), Some("kept as is"));
    assert_eq!(r.headers.0[7].name, "X-Custom-Thing");
    assert_eq!(r.body, b"v=0\r");
    assert_eq!(r.cseq().unwrap().seq, 314159);
    assert_eq!(r.max_forwards(), Some(70));
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
}

#[test]
fn round_trip() {
    let m = parse(INVITE).unwrap();
    let b = m.to_bytes();
    let m2 = parse(&b).unwrap();
    assert_eq!(m, m2);
    assert!(b.starts_with(b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: "));
    assert!(std::str::from_utf8(&b).unwrap().contains("\r\nFrom: Alice"));
}

#[test]
fn content_length_rewritten() {
    let mut r = req(parse(INVITE).unwrap());
    r.body = b"v=0\r\no=x\r\n".to_vec();
    let s = String::from_utf8(r.to_bytes()).unwrap();
    assert!(s.contains("\r\nContent-Length: 10\r\n\r\nv=0"));
    assert_eq!(s.matches("Content-Length").count(), 1);
    r.headers.remove("Content-Length");
    let s = String::from_utf8(r.to_bytes()).unwrap();
    assert!(s.ends_with("Content-Length: 10\r\n\r\nv=0\r\no=x\r\n"));
}

#[test]
fn latin1_and_injection() {
    let m =
        parse(b"OPTIONS sip:a@b SIP/2.0\r\nFrom: \"M\xfcller\" <sip:m@b>;tag=1\r\n\r\n").unwrap();
    assert_eq!(
        m.headers().get("From"),
        Some("\"M\u{FFFD}ller\" <sip:m@b>;tag=1")
    );
    assert_eq!(parse(&m.to_bytes()).unwrap(), {
        let mut m = m.clone();
        m.headers_mut().push("Content-Length", "0");
        m
    });
    let mut r = req(parse(INVITE).unwrap());
    r.headers.set("Subject", "x\r\nVia: evil");
    let out = String::from_utf8(r.to_bytes()).unwrap();
    assert!(out.contains("\r\nSubject: x  Via: evil\r\n"));
    assert_eq!(out.matches("Via:").count(), 2);
}

#[test]
fn response_and_empty_reason() {
    let m = parse(b"SIP/2.0 100 \r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap();
    match &m {
        SipMessage::Response(r) => {
            assert_eq!(r.status, 100);
            assert_eq!(r.reason, "");
        }
        _ => panic!(),
    }
    assert_eq!(parse(&m.to_bytes()).unwrap(), m);
    assert!(parse(b"SIP/2.0 4294967301 big\r\n\r\n").is_err());
    assert!(parse(b"SIP/2.0 099 low\r\n\r\n").is_err());
    assert!(parse(b"SIP/2.0 20 x\r\n\r\n").is_err());
}

#[test]
fn folding_and_compact() {
    let m = parse(
        b"OPTIONS sip:a@b SIP/2.0\r\nTO :\r\n sip:x@y ;   tag    = 1\r\nl: 0\r\nsubject:  a\r\n\tb  \r\n   c\r\n\r\n",
    )
    .unwrap();
    let h = m.headers();
    assert_eq!(h.get("To"), Some("sip:x@y ;   tag    = 1"));
    assert_eq!(h.0[0].name, "To");
    assert_eq!(h.get("Content-Length"), Some("0"));
    assert_eq!(h.get("Subject"), Some("a b c"));
    assert_eq!(m.to().unwrap().tag(), Some("1"));
}

#[test]
fn body_framing_udp() {
    let base = b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n";
    let mk = |extra: &str| [&base[..], extra.as_bytes()].concat();
    // longer than Content-Length: truncated
    assert_eq!(parse(&mk("l: 2\r\n\r\nabcd")).unwrap().body(), b"ab");
    // shorter: error
    let e = parse(&mk("l: 9\r\n\r\nabcd")).unwrap_err();
    assert!(e.reason.contains("shorter"), "{e}");
    assert!(e.is_request);
    assert_eq!(e.method, Some(Method::Options));
    assert!(e.headers.unwrap().get("CSeq").is_some());
    // absent: rest of datagram
    assert_eq!(parse(&mk("\r\nabcd")).unwrap().body(), b"abcd");
    assert!(parse(&mk("l: -1\r\n\r\n")).is_err());
    assert!(parse(&mk("l: 1\r\nContent-Length: 2\r\n\r\nabc")).is_err());
    assert!(parse(&mk("l: 2\r\nContent-Length: 2\r\n\r\nabc")).is_ok());
}

#[test]
fn strictness() {
    for bad in [
        &b"INVITE  sip:a@b SIP/2.0\r\n\r\n"[..],
        b"INVITE sip:a@b  SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0 \r\n\r\n",
        b"INVITE <sip:a@b> SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b; lr SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\nVia: x\n\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: x\ry\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nCSeq: 99999999999 INVITE\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n",
        b"\r\n\r\n",
        b"",
    ] {
        assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let e = parse(b"OPTIONS sip:a@b SIP/7.0\r\nCSeq: 1 OPTIONS\r\n\r\n").unwrap_err();
    assert_eq!(e.status, 505);
}

#[test]
fn bad_request_answer() {
    let e = parse(
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 50\r\n\r\nshort",
    )
    .unwrap_err();
    let r = bad_request_response(&e).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.reason.starts_with("Bad Request (body shorter"));
    assert_eq!(r.call_id(), Some("c1"));
    assert!(r.to().unwrap().tag().is_some());
    assert_eq!(r.headers.get("Via"), Some("SIP/2.0/UDP h;branch=z9hG4bK1"));
    // a response is never answered
    let e = parse(b"SIP/2.0 200 OK\r\nl: 5\r\n\r\n").unwrap_err();
    assert!(bad_request_response(&e).is_none());
}

#[test]
fn stream_framing() {
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\nl: 3\r\n\r\nabc";
    for cut in 0..msg.len() {
        assert_eq!(frame_len(&msg[..cut]).unwrap(), None, "cut {cut}");
    }
    let mut two = msg.to_vec();
    two.extend_from_slice(b"\r\n\r\n");
    two.extend_from_slice(msg);
    let f = frame_len(&two).unwrap().unwrap();
    assert_eq!(
        f,
        Frame {
            len: msg.len(),
            keepalive: false
        }
    );
    let f2 = frame_len(&two[f.len..]).unwrap().unwrap();
    assert!(f2.keepalive);
    assert_eq!(f2.len, 4);
    let f3 = frame_len(&two[f.len + 4..]).unwrap().unwrap();
    assert_eq!(f3.len, msg.len());
    // a lone CRLF (pong) is carried into the next frame and skipped by parse
    let mut p = b"\r\n".to_vec();
    p.extend_from_slice(msg);
    let f = frame_len(&p).unwrap().unwrap();
    assert_eq!(f.len, p.len());
    assert!(parse(&p[..f.len]).is_ok());
    assert_eq!(frame_len(b"\r\n").unwrap(), None);
    assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n").is_err());
    assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n").is_err());
    assert!(frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999\r\n\r\n").is_err());
    assert!(is_keepalive(b"\r\n\r\n"));
    assert!(!is_keepalive(msg));
}
