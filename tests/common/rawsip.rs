//! Raw SIP over UDP for the media security tests: just enough UAC and UAS for one call whose
//! media the test moves with its own sockets. (A copy of the helpers in `media_e2e.rs`, which
//! keeps its own.)

// Only the media security tests use this module.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{header, status_code};

pub fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=phone 42 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

pub struct Msg {
    pub text: String,
}

impl Msg {
    pub fn is_request(&self, method: &str) -> bool {
        self.text.starts_with(&format!("{method} "))
    }
    pub fn code(&self) -> Option<u16> {
        status_code(self.text.as_bytes())
    }
    pub fn cseq_method(&self) -> &str {
        header(&self.text, "CSeq", None)
            .and_then(|v| v.split_whitespace().nth(1))
            .unwrap_or("")
    }
    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
    /// The `m=audio` port of the body.
    pub fn audio_port(&self) -> u16 {
        self.body()
            .lines()
            .find_map(|l| l.trim().strip_prefix("m=audio "))
            .and_then(|m| m.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no m=audio port in:\n{}", self.text))
    }
    /// Every Via, From, To (with `to_tag` added), Call-ID, CSeq, in order (RFC 3261 §8.2.6.2).
    pub fn reply_headers(&self, to_tag: Option<&str>) -> String {
        let mut out = String::new();
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        for line in head.split("\r\n").skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                "to" | "t" => {
                    out.push_str("To: ");
                    out.push_str(v.trim());
                    if let (Some(t), false) = (to_tag, v.contains("tag=")) {
                        out.push_str(";tag=");
                        out.push_str(t);
                    }
                    out.push_str("\r\n");
                }
                _ => {}
            }
        }
        out
    }
}

/// Reads SIP messages on `sock` until one satisfies `want`; panics after `limit`.
pub fn recv_until(
    sock: &UdpSocket,
    limit: Duration,
    what: &str,
    want: impl Fn(&Msg) -> bool,
) -> Msg {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65535];
    let mut skipped = Vec::new();
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let m = Msg {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
        };
        if want(&m) {
            return m;
        }
        skipped.push(m.text.lines().next().unwrap_or("").to_string());
    }
    panic!("{what}: not received within {limit:?} (skipped: {skipped:?})");
}

pub fn reply(sock: &UdpSocket, to: SocketAddr, req: &Msg, code: u16, tag: &str, sdp: Option<&str>) {
    let me = sock.local_addr().expect("local");
    let reason = match code {
        180 => "Ringing",
        200 => "OK",
        _ => "Whatever",
    };
    let mut r = format!(
        "SIP/2.0 {code} {reason}\r\n{}Contact: <sip:phone@{me}>\r\n",
        req.reply_headers(Some(tag))
    );
    match sdp {
        Some(b) => {
            r += &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
        }
        None => r += "Content-Length: 0\r\n\r\n",
    }
    sock.send_to(r.as_bytes(), to).expect("send response");
}

/// The caller: a UAC talking to trunkline.
pub struct Uac {
    pub sock: UdpSocket,
    me: SocketAddr,
    tl: SocketAddr,
    call_id: String,
    pub tag: String,
    cseq: u32,
    to: String,
    target: String,
}

impl Uac {
    pub fn new(sock: UdpSocket, tl: SocketAddr, name: &str) -> Uac {
        let me = sock.local_addr().expect("local");
        Uac {
            sock,
            me,
            tl,
            call_id: format!("{name}-{}@127.0.0.1", std::process::id()),
            tag: format!("a-{name}"),
            cseq: 0,
            to: format!("<sip:100@{tl}>"),
            target: format!("sip:100@{tl}"),
        }
    }

    fn request(&self, method: &str, cseq: u32, branch: &str, body: Option<&str>) -> String {
        let me = self.me;
        let mut r = format!(
            "{method} {} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:a@{me}>;tag={}\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:a@{me}>\r\n",
            self.target, self.tag, self.to, self.call_id
        );
        match body {
            Some(b) => {
                r += &format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                )
            }
            None => r += "Content-Length: 0\r\n\r\n",
        }
        r
    }

    /// Sends a request (new transaction) and returns its CSeq number.
    pub fn send(&mut self, method: &str, body: Option<&str>) -> u32 {
        self.cseq += 1;
        let branch = format!("{}-{}-{}", self.tag, self.cseq, method.to_ascii_lowercase());
        let r = self.request(method, self.cseq, &branch, body);
        self.sock.send_to(r.as_bytes(), self.tl).expect("send");
        self.cseq
    }

    /// Waits for the final response to `method`; ACKs a 2xx to INVITE (RFC 3261 §13.2.2.4).
    pub fn final_response(&mut self, method: &str, cseq: u32) -> Msg {
        let m = recv_until(
            &self.sock,
            Duration::from_secs(10),
            &format!("A: final response to {method}"),
            |m| {
                m.code().is_some_and(|c| c >= 200)
                    && m.cseq_method() == method
                    && header(&m.text, "CSeq", None)
                        .is_some_and(|v| v.starts_with(&format!("{cseq} ")))
            },
        );
        if method == "INVITE" && m.code().is_some_and(|c| (200..300).contains(&c)) {
            if let Some(to) = header(&m.text, "To", Some("t")) {
                self.to = to.to_string();
            }
            if let Some(c) = header(&m.text, "Contact", Some("m")) {
                let uri = c.trim_start_matches('<');
                let uri = uri.split('>').next().unwrap_or(uri);
                self.target = uri.to_string();
            }
            let branch = format!("{}-{cseq}-ack", self.tag);
            let ack = self.request("ACK", cseq, &branch, None);
            self.sock.send_to(ack.as_bytes(), self.tl).expect("ack");
        }
        m
    }
}

/// The callee: the trunk's UAS.
pub struct Uas {
    pub sock: UdpSocket,
}

impl Uas {
    pub fn recv_request(&self, method: &str, limit: Duration) -> Msg {
        recv_until(&self.sock, limit, &format!("B: {method}"), |m| {
            m.is_request(method)
        })
    }
}

pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| i as u8));
    p
}

pub fn ssrc_of(p: &[u8]) -> Option<u32> {
    p.get(8..12)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Everything `sock` receives within `limit` (stops early after `want` datagrams).
pub fn collect(sock: &UdpSocket, want: usize, limit: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < want && Instant::now() < deadline {
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            out.push((src, buf[..n].to_vec()));
        }
    }
    out
}
