//! Nothing in the transaction layer panics on network input: requests and responses whose
//! matching headers (Via, CSeq, From, To, Call-ID) hold arbitrary text, in any order of arrival,
//! over UDP and TCP, with the TU answering whatever it is handed. Deterministic (seeded xorshift).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signaling::message::{Headers, Method, Request, Response, SipMessage};
use signaling::transaction::{TimerConfig, Transactions, TuEvent};
use signaling::{Peer, Transport};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const VIAS: &[&str] = &[
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK2;received=1.2.3.4;rport=9",
    "SIP / 2.0 / TCP [2001:db8::1]:5060 ; branch = z9hG4bK3",
    "SIP/2.0/UDP host;branch=z9hG4bK",
    "SIP/2.0/UDP host",
    "SIP/2.0/UDP",
    "SIP/2.0/UDP ;branch=",
    "SIP/2.0/UDP [",
    "SIP/2.0/UDP [::1",
    "SIP/2.0/UDP a:b:c:d;;;=;branch",
    "/",
    "",
    ",",
    "\"",
    "SIP/2.0/UDP \"quoted, still\";branch=z9hG4bK1, SIP/2.0/UDP x",
    "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1,",
    "ü SIP/2.0/UDP ü;branch=z9hG4bKü",
];

const CSEQS: &[&str] = &[
    "1 INVITE",
    "1 ACK",
    "1 CANCEL",
    "2 BYE",
    "4294967295 INVITE",
    "4294967296 INVITE",
    "-1 INVITE",
    "1",
    "",
    "INVITE 1",
    "1 FOO",
    "  7   OPTIONS  ",
    "ü ü",
];

const NAMES: &[&str] = &[
    "<sip:a@b>;tag=1",
    "<sip:a@b>",
    "sip:a@b;tag=2",
    "\"x;tag=3>\" <sip:a@b;tag=4>;tag=5",
    "\"unterminated <sip:a@b>;tag=6",
    "<sip:a@b",
    ">;tag=7",
    ";tag",
    ";tag=",
    "",
    "ü<ü>;tag=ü",
];

const METHODS: &[&str] = &["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "FOO"];

fn headers(rng: &mut Rng) -> Headers {
    let mut h = Headers::new();
    for _ in 0..rng.below(3) {
        let v = rng.pick(VIAS);
        h.push("Via", v);
    }
    if rng.below(8) != 0 {
        let v = rng.pick(NAMES);
        h.push("From", v);
    }
    if rng.below(8) != 0 {
        let v = rng.pick(NAMES);
        h.push("To", v);
    }
    if rng.below(8) != 0 {
        let v = ["c1", "c2", "", " c1 "][rng.below(4)];
        h.push("Call-ID", v);
    }
    if rng.below(10) != 0 {
        let v = rng.pick(CSEQS);
        h.push("CSeq", v);
    }
    h
}

fn message(rng: &mut Rng) -> SipMessage {
    let headers = headers(rng);
    if rng.below(2) == 0 {
        SipMessage::Request(Request {
            method: Method::from_token(rng.pick(METHODS)),
            uri: ["sip:b@x", "", "ü"][rng.below(3)].to_string(),
            headers,
            body: Vec::new(),
        })
    } else {
        let status = [100u16, 180, 200, 302, 486, 699, 0, 99, 700, 65535][rng.below(10)];
        SipMessage::Response(Response {
            status,
            reason: "R".into(),
            headers,
            body: Vec::new(),
        })
    }
}

#[test]
fn arbitrary_header_text_never_panics_and_nothing_leaks() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut t = Transactions::new(TimerConfig::default());
    let base = Instant::now();
    let peers = [
        Peer {
            transport: Transport::Udp,
            addr: "192.0.2.1:5060".parse::<SocketAddr>().unwrap(),
        },
        Peer {
            transport: Transport::Tcp,
            addr: "[2001:db8::1]:5060".parse::<SocketAddr>().unwrap(),
        },
        Peer {
            transport: Transport::Udp,
            addr: "[::ffff:192.0.2.1]:5060".parse::<SocketAddr>().unwrap(),
        },
    ];
    let mut now = base;
    for step in 0..20_000u32 {
        now += Duration::from_millis(rng.below(50) as u64);
        let peer = peers[rng.below(peers.len())];
        match rng.below(10) {
            0..=5 => t.handle_message(message(&mut rng), peer, now),
            6 => {
                if let SipMessage::Request(r) = message(&mut rng) {
                    t.send_request(r, peer, now);
                }
            }
            7 => t.transport_error(peer, now),
            _ => t.handle_timeout(now),
        }
        // The TU answers every new request with a random status, sometimes reliably.
        while let Some(ev) = t.poll_event() {
            if let TuEvent::Request { tx, req, .. } = ev {
                let status = [100u16, 180, 200, 404, 486][rng.below(5)];
                let mut resp = Response {
                    status,
                    reason: "R".into(),
                    headers: req.headers.clone(),
                    body: Vec::new(),
                };
                resp.headers.remove("Max-Forwards");
                if rng.below(2) == 0 {
                    t.send_2xx_reliably(tx, resp, now);
                } else {
                    t.send_response(tx, resp, now);
                }
                if rng.below(4) == 0 {
                    // A stale id from the TU is harmless.
                    t.send_response(
                        tx,
                        Response {
                            status: 200,
                            reason: String::new(),
                            headers: Headers::new(),
                            body: Vec::new(),
                        },
                        now,
                    );
                }
            }
        }
        while t.poll_transmit().is_some() {}
        if step % 1000 == 0 {
            assert!(t.pending_timers() <= 8 * (t.len() + 1) + 1024);
        }
    }
    // Server transactions left in Proceeding/Trying wait for their TU forever by design: answer
    // nothing more, but every transaction with a final response or a client timer must end.
    let end = now + Duration::from_secs(3600);
    while let Some(at) = t.poll_timeout() {
        assert!(at <= end, "a timer beyond an hour");
        t.handle_timeout(at);
        while t.poll_event().is_some() {}
        while t.poll_transmit().is_some() {}
    }
    assert_eq!(t.poll_timeout(), None);
    // The input really reached every path.
    let s = t.stats();
    println!("{s:?}, {} left waiting", t.len());
    assert!(s.server_created > 100 && s.client_created > 100);
    assert!(s.malformed > 100 && s.stray_responses > 100);
    assert!(s.retransmissions_absorbed > 10 && s.retransmissions_sent > 10);
    assert!(s.transport_errors > 0 && s.timeouts > 0);
}
