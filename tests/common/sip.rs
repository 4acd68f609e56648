//! SIP message helpers for tests that talk to trunkline from their own sockets.
// Not every test binary uses every helper here: each test binary builds and reads only the messages it needs.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// An OPTIONS request from `from` to `to` (RFC 3261 §11.1).
pub fn options_request(from: SocketAddr, to: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-probe-{n}-{pid};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{from}>;tag=probe{n}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: probe-{n}-{pid}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        pid = std::process::id()
    )
}

/// The status code of a SIP response (`SIP/2.0 NNN ...`), if `data` is one.
pub fn status_code(data: &[u8]) -> Option<u16> {
    let rest = data.strip_prefix(b"SIP/2.0 ")?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    code.parse().ok()
}

/// The value of the first header named `name` (or its compact form `short`), case-insensitive.
pub fn header<'a>(msg: &'a str, name: &str, short: Option<&str>) -> Option<&'a str> {
    for line in msg.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if k.eq_ignore_ascii_case(name) || short.is_some_and(|s| k.eq_ignore_ascii_case(s)) {
            return Some(v.trim());
        }
    }
    None
}

/// Sends OPTIONS to trunkline from a fresh socket and returns the status of the answer.
pub fn options_status(to: SocketAddr, wait: Duration) -> Option<u16> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let me = sock.local_addr().ok()?;
    let deadline = Instant::now() + wait;
    let mut n = 1000;
    let mut buf = [0u8; 65535];
    while Instant::now() < deadline {
        n += 1;
        sock.send_to(options_request(me, to, n).as_bytes(), to)
            .ok()?;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                if let Some(code) = status_code(&buf[..len]) {
                    if code >= 200 {
                        return Some(code);
                    }
                }
            }
        }
    }
    None
}

/// Sends one INVITE (with an SDP offer) for `user` to `to` from a fresh UDP socket and waits
/// up to `wait` for a final response; a non-2xx final response is ACKed (RFC 3261 §17.1.1.3).
/// Returns the final response's text.
pub fn invite_once(to: SocketAddr, user: &str, wait: Duration) -> Option<String> {
    invite_once_from("127.0.0.1:0", to, user, wait)
}

/// [`invite_once`] from a socket bound to `from` (e.g. a trunk's address).
pub fn invite_once_from(from: &str, to: SocketAddr, user: &str, wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind(from).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let me = sock.local_addr().ok()?;
    let pid = std::process::id();
    let branch = format!("z9hG4bK-ops-{user}-{pid}");
    let call_id = format!("ops-{user}-{pid}@127.0.0.1");
    let sdp = format!(
        "v=0\r\no=ops 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        me.port() + 2
    );
    let invite = format!(
        "INVITE sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ops@{me}>;tag=ops-{pid}\r\n\
         To: <sip:{user}@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:ops@{me}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let deadline = Instant::now() + wait;
    let mut next_send = Instant::now();
    let mut buf = [0u8; 65535];
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            sock.send_to(invite.as_bytes(), to).ok()?;
            next_send = Instant::now() + Duration::from_millis(500);
        }
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some(code) = status_code(&buf[..len]) else {
            continue;
        };
        if code < 200 {
            next_send = deadline; // provisional: stop retransmitting (RFC 3261 §17.1.1.2)
            continue;
        }
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if code >= 300 {
            let to_hdr = header(&text, "To", Some("t")).unwrap_or("");
            let ack = format!(
                "ACK sip:{user}@{to} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:ops@{me}>;tag=ops-{pid}\r\n\
                 To: {to_hdr}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(ack.as_bytes(), to);
        }
        return Some(text);
    }
    None
}
