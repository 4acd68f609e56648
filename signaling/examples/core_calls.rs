//! The SIP core alone, one whole call after another, for instruction counts:
//!
//! ```sh
//! cargo build --release -p signaling --example core_calls
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p target/release/examples/core_calls 1000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p target/release/examples/core_calls 2000
//! ```
//!
//! (instructions of the 2000-call run - those of the 1000-call run) / 1000 = instructions per
//! call, start-up excluded. Each call: INVITE with SDP from leg A, 100/180/200 with SDP from
//! leg B, ACK, BYE from A, 200 from B, with time advancing 1 ms per message; the peers'
//! messages are built as text and what the core sends is parsed back (as a peer would), so
//! that work is in the count too (the same for every version of the core).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signaling::b2bua::{B2bua, CoreConfig, StaticPolicy, Target};
use signaling::message::SipMessage;
use signaling::parse::parse;
use signaling::{Peer, Transport};

const A: &str = "127.0.0.1:5070";
const B: &str = "127.0.0.1:5080";
const SDP: &str = "v=0\r\no=x 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn peer(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: s.parse::<SocketAddr>().expect("address"),
    }
}

struct Run {
    core: B2bua,
    policy: StaticPolicy,
    now: Instant,
}

impl Run {
    fn feed(&mut self, from: &str, text: &str) -> Vec<SipMessage> {
        self.now += Duration::from_millis(1);
        self.core
            .handle_bytes(text.as_bytes(), peer(from), self.now, &mut self.policy);
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            if let Ok(m) = parse(&t.data) {
                out.push(m);
            }
        }
        self.policy.events.clear();
        out
    }
}

fn header<'a>(m: &'a SipMessage, name: &str) -> &'a str {
    let h = match m {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    };
    h.get(name).unwrap_or("")
}

fn call(r: &mut Run, n: u64) {
    let invite = format!(
        "INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-a{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@{A}>;tag=a{n}\r\nTo: <sip:1000@127.0.0.1>\r\n\
         Call-ID: call-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{A}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let out = r.feed(A, &invite);
    let Some(b_inv) = out
        .iter()
        .find(|m| matches!(m, SipMessage::Request(q) if q.method.as_str() == "INVITE"))
    else {
        panic!("no INVITE on leg B");
    };
    let (via, from, to, cid) = (
        header(b_inv, "Via").to_string(),
        header(b_inv, "From").to_string(),
        header(b_inv, "To").to_string(),
        header(b_inv, "Call-ID").to_string(),
    );
    let resp = |code: &str, body: &str| {
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        format!(
            "SIP/2.0 {code}\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to};tag=b{n}\r\nCall-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:b@{B}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    r.feed(
        B,
        &resp("100 Trying", "").replace(&format!(";tag=b{n}"), ""),
    );
    r.feed(B, &resp("180 Ringing", ""));
    let out = r.feed(B, &resp("200 OK", SDP));
    let Some(ok) = out
        .iter()
        .find(|m| matches!(m, SipMessage::Response(p) if p.status == 200))
    else {
        panic!("no 200 on leg A");
    };
    let a_to = header(ok, "To").to_string();
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            "{method} sip:x@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-{method}{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@{A}>;tag=a{n}\r\nTo: {a_to}\r\nCall-ID: call-{n}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    r.feed(A, &in_dialog("ACK", 1));
    let out = r.feed(A, &in_dialog("BYE", 2));
    let Some(bye) = out
        .iter()
        .find(|m| matches!(m, SipMessage::Request(q) if q.method.as_str() == "BYE"))
    else {
        panic!("no BYE on leg B");
    };
    let SipMessage::Request(bye) = bye else {
        return;
    };
    let ok = signaling::b2bua::make_response(bye, 200, "OK", None);
    r.feed(
        B,
        &String::from_utf8_lossy(&SipMessage::Response(ok).to_bytes()),
    );
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let cfg = CoreConfig {
        local_udp: Some("127.0.0.1:5060".parse().expect("address")),
        ..CoreConfig::default()
    };
    let mut r = Run {
        core: B2bua::new(cfg),
        policy: StaticPolicy {
            targets: vec![Target {
                trunk: "pbx".into(),
                peer: peer(B),
                host: B.into(),
            }],
            events: Vec::new(),
            released: Vec::new(),
        },
        now: Instant::now(),
    };
    for n in 0..calls {
        call(&mut r, n);
        if n % 64 == 63 {
            // let finished transactions go (Timer K, J, ...) as time passes
            r.now += Duration::from_secs(40);
            r.core.handle_timeout(r.now, &mut r.policy);
            while r.core.poll_transmit().is_some() {}
        }
    }
    eprintln!(
        "core_calls: {calls} calls, {} live, {} transactions",
        r.core.active_calls(),
        r.core.transactions()
    );
}
