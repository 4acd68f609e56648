//! The border, SIP side (issue 8): the attacks that got through, tried again as an attacker on
//! the internet would, each from its own loopback address (127.0.0.66 and others) inside the
//! test's network namespace, against trunkline with a registrar and two trunks.
//!
//! * toll fraud without credentials: Request-URI = a served domain without a user part, the
//!   carrier's number in To, in every spelling that got through (upper case, `;user=phone`,
//!   `:5060`), and as MESSAGE and SUBSCRIBE: each is challenged once (no 100, no
//!   retransmission: no amplifier) and the carrier receives nothing;
//! * blind teardown and hijack: a BYE with the victim's Call-ID and guessed tags, the same with
//!   the right tags from another address, a re-INVITE on leg B's identifiers from another
//!   address: 481 each, the call stays up, and the real BYE still ends it;
//! * Digest replay: a captured Proxy-Authorization replayed with other numbers from another
//!   address, and unchanged from the phone's own address: challenged, the carrier sees one call;
//! * password guessing: the source is banned, even the right password then gets no answer.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use signaling::digest::md5_hex;

const WAIT: Duration = Duration::from_secs(5);
/// How long silence is awaited where nothing may arrive (longer than T1, the first
/// retransmission of a response or request).
const QUIET: Duration = Duration::from_millis(1500);

/// A SIP peer: one UDP socket on its own loopback address.
struct Party {
    sock: UdpSocket,
    to: SocketAddr,
}

impl Party {
    fn bind(ip: &str, port: u16, to: SocketAddr) -> Party {
        let sock = UdpSocket::bind((ip, port)).expect("bind party");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Party { sock, to }
    }
    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("addr")
    }
    fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.to).expect("send");
    }
    /// Everything that arrives within `d`.
    fn gather(&self, d: Duration) -> Vec<String> {
        let until = Instant::now() + d;
        let mut got = Vec::new();
        let mut buf = [0u8; 65535];
        while Instant::now() < until {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got
    }
    /// The first message that satisfies `want`, within [`WAIT`].
    fn expect(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + WAIT;
        let mut buf = [0u8; 65535];
        while Instant::now() < until {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if want(&m) {
                    return m;
                }
            }
        }
        panic!("{what}: nothing arrived within {WAIT:?}");
    }
    fn expect_status(&self, code: u16) -> String {
        self.expect(&format!("a {code}"), |m| {
            status_code(m.as_bytes()) == Some(code)
        })
    }
    fn expect_request(&self, method: &str) -> String {
        self.expect(&format!("a {method}"), |m| {
            m.starts_with(&format!("{method} "))
        })
    }
}

fn requests(msgs: &[String], method: &str) -> usize {
    msgs.iter()
        .filter(|m| m.starts_with(&format!("{method} ")))
        .count()
}

/// A request of `method` from `from` to Request-URI `ruri`, To `to`; `extra` headers, `body`.
fn request(
    method: &str,
    ruri: &str,
    to: &str,
    from: SocketAddr,
    call_id: &str,
    extra: &str,
) -> String {
    let body = if method == "INVITE" {
        format!(
            "v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n",
            ip = from.ip()
        )
    } else {
        String::new()
    };
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id}-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:mallory@{from}>;tag=atk-{call_id}\r\nTo: <{to}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:mallory@{from}>\r\n{extra}{ct}\
         Content-Length: {len}\r\n\r\n{body}",
        n = extra.len(),
        len = body.len()
    )
}

/// The value of `name=` in a challenge.
fn param(challenge: &str, name: &str) -> String {
    challenge
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// alice's Proxy-Authorization for `method ruri` under the challenge in `resp` (qop=auth).
fn credentials(resp: &str, method: &str, ruri: &str, password: &str, nc: u32) -> String {
    let ch = header(resp, "Proxy-Authenticate", None).expect("challenge");
    let (realm, nonce) = (param(ch, "realm"), param(ch, "nonce"));
    let nc = format!("{nc:08x}");
    let ha1 = md5_hex(&["alice", &realm, password]);
    let ha2 = md5_hex(&[method, ruri]);
    let response = md5_hex(&[&ha1, &nonce, &nc, "c0ffee", "auth", &ha2]);
    format!(
        "Proxy-Authorization: Digest username=\"alice\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{ruri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, \
         cnonce=\"c0ffee\"\r\n"
    )
}

fn start(net: &Net) -> Trunkline {
    let t = [
        Trunk {
            name: "carrier",
            port: net.trunk(0),
        },
        Trunk {
            name: "pbx",
            port: net.trunk(1),
        },
    ];
    let base = config_yaml_rules(net, &t, &[("^1212555", &["pbx"]), (".*", &["carrier"])]);
    let yaml = format!(
        "{base}registrar:\n  domains: [pbx.example.com]\n  users:\n    alice: {{ password: s3cret }}\n"
    );
    Trunkline::start(net, &with_metrics(net, &yaml, ""))
}

#[test]
fn toll_fraud_without_credentials_never_reaches_the_carrier() {
    isolated(
        "toll_fraud_without_credentials_never_reaches_the_carrier",
        true,
        |net| {
            let mut tl = start(net);
            let carrier = Party::bind("127.0.0.1", net.trunk(0), net.sip_addr());
            let atk = Party::bind("127.0.0.66", net.spare(1), net.sip_addr());
            let me = atk.addr();
            let number = "011442079460000";
            let variants = [
                ("INVITE", "sip:pbx.example.com"),
                ("INVITE", "sip:PBX.EXAMPLE.COM"),
                ("INVITE", "sip:pbx.example.com;user=phone"),
                ("INVITE", "sip:pbx.example.com:5060"),
                ("INVITE", "sip:pbx.example.com:5060;user=phone"),
                ("MESSAGE", "sip:pbx.example.com"),
                ("SUBSCRIBE", "sip:pbx.example.com"),
            ];
            for (i, (method, ruri)) in variants.iter().enumerate() {
                let to = format!("sip:{number}@pbx.example.com");
                let extra = if *method == "SUBSCRIBE" {
                    "Event: presence\r\nExpires: 600\r\n"
                } else {
                    ""
                };
                atk.send(&request(
                    method,
                    ruri,
                    &to,
                    me,
                    &format!("fraud-{i}"),
                    extra,
                ));
                let got = atk.gather(QUIET);
                let codes: Vec<u16> = got
                    .iter()
                    .filter_map(|m| status_code(m.as_bytes()))
                    .collect();
                assert_eq!(
                    codes,
                    vec![407],
                    "{method} {ruri}: one challenge, no 100, no retransmission"
                );
            }
            let seen = carrier.gather(QUIET);
            assert!(seen.is_empty(), "the carrier received something: {seen:?}");
            // The same request from a trunk is routed: the check above could fail.
            let pbx = Party::bind("127.0.0.1", net.trunk(1), net.sip_addr());
            let legit = request(
                "INVITE",
                "sip:12125550100@pbx.example.net",
                "sip:12125550100@pbx.example.net",
                carrier.addr(),
                "from-trunk",
                "",
            );
            carrier.send(&legit);
            pbx.expect_request("INVITE");
            tl.assert_alive();
        },
    );
}

/// Sets up carrier -> pbx call `call_id`; returns (the 200 leg A got, the INVITE leg B got).
fn call_up(carrier: &Party, pbx: &Party, call_id: &str) -> (String, String) {
    let ruri = "sip:12125550100@pbx.example.net";
    let inv = request("INVITE", ruri, ruri, carrier.addr(), call_id, "");
    carrier.send(&inv);
    let b_inv = pbx.expect_request("INVITE");
    let b_call = header(&b_inv, "Call-ID", Some("i"))
        .expect("Call-ID")
        .to_string();
    let via = header(&b_inv, "Via", Some("v")).expect("Via");
    let from = header(&b_inv, "From", Some("f")).expect("From");
    let to = header(&b_inv, "To", Some("t")).expect("To");
    let sdp = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\n";
    pbx.send(&format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to};tag=pbx-tag\r\nCall-ID: {b_call}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:pbx@{}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        pbx.addr(),
        sdp.len()
    ));
    let ok = carrier.expect_status(200);
    let to_a = header(&ok, "To", Some("t")).expect("To").to_string();
    carrier.send(&format!(
        "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-ack-{call_id}\r\nMax-Forwards: 70\r\n\
         From: <sip:mallory@{}>;tag=atk-{call_id}\r\nTo: {to_a}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        carrier.addr(),
        carrier.addr()
    ));
    pbx.expect_request("ACK");
    (ok, b_inv)
}

/// An in-dialog request: `from_hdr`/`to_hdr` as given, sent by `by`.
fn in_dialog(
    method: &str,
    by: &Party,
    call_id: &str,
    from_hdr: &str,
    to_hdr: &str,
    cseq: u32,
) -> String {
    format!(
        "{method} sip:x@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-{method}-{cseq}-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: {from_hdr}\r\nTo: {to_hdr}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:evil@{}>\r\nContent-Length: 0\r\n\r\n",
        by.to,
        by.addr(),
        by.addr()
    )
}

#[test]
fn blind_bye_and_reinvite_get_481_and_the_call_stays_up() {
    isolated(
        "blind_bye_and_reinvite_get_481_and_the_call_stays_up",
        true,
        |net| {
            let mut tl = start(net);
            let carrier = Party::bind("127.0.0.1", net.trunk(0), net.sip_addr());
            let pbx = Party::bind("127.0.0.1", net.trunk(1), net.sip_addr());
            let atk = Party::bind("127.0.0.66", net.spare(2), net.sip_addr());
            let (ok, b_inv) = call_up(&carrier, &pbx, "victim-1");
            let a_to = header(&ok, "To", Some("t")).expect("To").to_string();
            let a_from = "<sip:mallory@x>;tag=atk-victim-1";
            // 1. the victim's Call-ID and From tag, a guessed To tag
            atk.send(&in_dialog(
                "BYE",
                &atk,
                "victim-1",
                a_from,
                "<sip:x@y>;tag=1234abcd",
                2,
            ));
            atk.expect_status(481);
            // 2. every identifier right (sniffed), but not from the trunk's address
            atk.send(&in_dialog("BYE", &atk, "victim-1", a_from, &a_to, 3));
            atk.expect_status(481);
            // 3. a re-INVITE on leg B's identifiers, from the attacker's address
            let b_call = header(&b_inv, "Call-ID", Some("i"))
                .expect("Call-ID")
                .to_string();
            let b_from = header(&b_inv, "From", Some("f")).expect("From").to_string();
            let b_to = format!(
                "{};tag=pbx-tag",
                header(&b_inv, "To", Some("t")).expect("To")
            );
            atk.send(&in_dialog("INVITE", &atk, &b_call, &b_to, &b_from, 5));
            atk.expect_status(481);
            let leaked = pbx.gather(QUIET);
            assert_eq!(
                requests(&leaked, "BYE"),
                0,
                "a blind BYE reached the PBX: {leaked:?}"
            );
            assert_eq!(
                requests(&leaked, "INVITE"),
                0,
                "a blind re-INVITE went on: {leaked:?}"
            );
            let leaked = carrier.gather(Duration::from_millis(10));
            assert_eq!(requests(&leaked, "INVITE"), 0, "{leaked:?}");
            // The carrier's own BYE still ends the call: the identifiers above were the right ones.
            carrier.send(&in_dialog("BYE", &carrier, "victim-1", a_from, &a_to, 2));
            let bye = pbx.expect_request("BYE");
            assert!(bye.contains(&b_call), "{bye}");
            tl.assert_alive();
        },
    );
}

#[test]
fn replayed_credentials_and_guessed_passwords_get_nothing() {
    isolated(
        "replayed_credentials_and_guessed_passwords_get_nothing",
        true,
        |net| {
            let mut tl = start(net);
            let carrier = Party::bind("127.0.0.1", net.trunk(0), net.sip_addr());
            let phone = Party::bind("127.0.0.5", net.spare(3), net.sip_addr());
            let ruri = "sip:+12025550123@carrier.example";
            let first = request("INVITE", ruri, ruri, phone.addr(), "alice-1", "");
            phone.send(&first);
            let ch = phone.expect_status(407);
            let cred = credentials(&ch, "INVITE", ruri, "s3cret", 1);
            let signed = request("INVITE", ruri, ruri, phone.addr(), "alice-1", &cred);
            phone.send(&signed);
            let placed = carrier.expect_request("INVITE");
            let placed_call = header(&placed, "Call-ID", Some("i"))
                .expect("Call-ID")
                .to_string();
            // (the placed call's own retransmissions aside: the carrier does not answer it)
            let others = |seen: Vec<String>| -> Vec<String> {
                seen.into_iter()
                    .filter(|m| m.starts_with("INVITE ") && !m.contains(&placed_call))
                    .collect()
            };
            // Replayed with other numbers, from another address
            let atk = Party::bind("127.0.0.66", net.spare(4), net.sip_addr());
            let other = "sip:+442079460000@carrier.example";
            let moved = request("INVITE", other, other, atk.addr(), "replay-1", &cred);
            atk.send(&moved);
            assert_eq!(status_code(atk.expect_status(407).as_bytes()), Some(407));
            // Replayed unchanged (Request-URI and all) from alice's own address, another port
            let same_ip = Party::bind("127.0.0.5", net.spare(5), net.sip_addr());
            let again = request("INVITE", ruri, ruri, same_ip.addr(), "replay-2", &cred);
            same_ip.send(&again);
            same_ip.expect_status(407);
            let seen = others(carrier.gather(QUIET));
            assert!(seen.is_empty(), "a replay reached the carrier: {seen:?}");

            // Guessing: more than limits.auth_failures.max (10) wrong answers, then the right one.
            let guesser = Party::bind("127.0.0.77", net.spare(6), net.sip_addr());
            let mut challenged = 0;
            for i in 0..15 {
                let cid = format!("guess-{i}");
                guesser.send(&request("INVITE", ruri, ruri, guesser.addr(), &cid, ""));
                let got = guesser.gather(Duration::from_millis(300));
                let Some(ch) = got.iter().find(|m| status_code(m.as_bytes()) == Some(407)) else {
                    break;
                };
                challenged += 1;
                let bad = credentials(ch, "INVITE", ruri, &format!("guess{i}"), 1);
                guesser.send(&request("INVITE", ruri, ruri, guesser.addr(), &cid, &bad));
                let _ = guesser.gather(Duration::from_millis(300));
            }
            assert!(challenged <= 11, "challenged {challenged} times: no ban");
            guesser.send(&request(
                "INVITE",
                ruri,
                ruri,
                guesser.addr(),
                "guess-final",
                &cred,
            ));
            let after = guesser.gather(QUIET);
            assert!(after.is_empty(), "a banned source got an answer: {after:?}");
            let seen = others(carrier.gather(QUIET));
            assert!(
                seen.is_empty(),
                "a banned source reached the carrier: {seen:?}"
            );
            let m = scrape(net);
            assert!(
                metric(
                    &m,
                    "trunkline_sip_messages_rejected_total",
                    &[("reason", "auth_banned")]
                )
                .unwrap_or(0.0)
                    >= 1.0,
                "bans counted:\n{m}"
            );
            tl.assert_alive();
        },
    );
}

/// The svwar enumeration: a stranger cannot tell unknown users from known ones who are offline
/// (both challenged alike); a trunk still learns 404 and 480.
#[test]
fn answers_to_strangers_list_no_users() {
    isolated("answers_to_strangers_list_no_users", true, |net| {
        let mut tl = start(net);
        let carrier = Party::bind("127.0.0.1", net.trunk(0), net.sip_addr());
        let atk = Party::bind("127.0.0.66", net.spare(7), net.sip_addr());
        let shape = |m: &str| -> Vec<String> {
            m.split("\r\n")
                .map(|l| l.split(':').next().unwrap_or("").to_string())
                .collect()
        };
        let mut answers = Vec::new();
        for (i, user) in ["alice", "nobody"].iter().enumerate() {
            let ruri = format!("sip:{user}@pbx.example.com");
            for method in ["INVITE", "MESSAGE"] {
                let cid = format!("enum-{method}-{i}");
                atk.send(&request(method, &ruri, &ruri, atk.addr(), &cid, ""));
                let got = atk.gather(QUIET);
                assert_eq!(got.len(), 1, "{method} {user}: {got:?}");
                assert_eq!(status_code(got[0].as_bytes()), Some(407), "{method} {user}");
                answers.push((method, shape(&got[0]), got[0].len()));
            }
        }
        for m in ["INVITE", "MESSAGE"] {
            let same: Vec<_> = answers.iter().filter(|a| a.0 == m).collect();
            assert_eq!(same[0].1, same[1].1, "{m}: the same headers for both users");
            assert!(
                same[0].2.abs_diff(same[1].2) <= 8,
                "{m}: about the same size"
            );
        }
        for (user, code) in [("alice", 480), ("nobody", 404)] {
            let ruri = format!("sip:{user}@pbx.example.com");
            carrier.send(&request("INVITE", &ruri, &ruri, carrier.addr(), user, ""));
            carrier.expect_status(code);
        }
        tl.assert_alive();
    });
}
