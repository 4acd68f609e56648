//! Stateful chaos for the whole signaling core (transactions + B2BUA), in virtual time: random
//! but reproducible sequences of calls, answers, in-dialog requests from both sides, transport
//! errors, timer runs and mangled messages (bytes flipped, lines dropped or doubled, truncated),
//! built from what the core really sent so they reach deep call states.
//!
//! Invariants checked at every step ("nothing panics on network input", ARCHITECTURE.md invariant 2):
//! no panic; every message the core transmits parses (but an error response to a bad request,
//! which echoes that request's Via/From/To/Call-ID/CSeq); time runs without the core asking to be
//! woken in the past forever (no busy loop). At the end of each run, after ten quiet minutes:
//! no transaction is left, no call is still ringing or half set up, no call was answered twice
//! on leg A, and no call released its media twice.
//!
//! The runs are seeded (`CHAOS_SEEDS=N` runs, `CHAOS_STEPS=N` steps each, `CHAOS_FIRST=N` to
//! start at a seed, `CHAOS_TRACE=1` to print every message); a failure names its seed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use signaling::b2bua::{make_response, B2bua, CallEvent, CoreConfig, StaticPolicy, Target};
use signaling::message::{Request, SipMessage};
use signaling::parse::parse;
use signaling::testing::{peer, Sink};
use signaling::transaction::Transmit;
use signaling::Peer;

const A: &str = "127.0.0.1:5070";
const ME: &str = "127.0.0.1:5060";
const PBX: &str = "127.0.0.1:5080";
const PBX2: &str = "127.0.0.1:5090";

const SDP: &str = "v=0\r\no=x 1 1 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

/// xorshift64*: small, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            v.get(self.below(v.len()))
        }
    }
}

/// What the core sent, sorted for the next steps; every transmit must parse.
struct Wire {
    /// Requests the core sent, by destination.
    to_pbx: Vec<(Peer, Request)>,
    to_a: Vec<Request>,
    /// Leg A: Call-ID -> the To tag trunkline gave it (from a 1xx/2xx).
    a_tags: HashMap<String, String>,
    /// Leg A: Call-ID -> the RSeq of the last reliable provisional trunkline sent it.
    a_rseq: HashMap<String, u32>,
    start: Instant,
}

impl Sink for Wire {
    fn transmit(&mut self, t: Transmit, core: &B2bua) {
        let msg = match parse(&t.data) {
            Ok(m) => m,
            // An error response to a bad request (400, 505, 416, ...) copies Via, From, To,
            // Call-ID and CSeq from it verbatim (RFC 3261 §8.2.6.2), so it is as malformed as
            // the copied header that was the problem.
            Err(e)
                if (t.data.starts_with(b"SIP/2.0 4") || t.data.starts_with(b"SIP/2.0 5"))
                    && ["bad Via", "bad From", "bad To", "bad Call-ID", "bad CSeq"]
                        .iter()
                        .any(|h| format!("{e:?}").contains(h)) =>
            {
                return
            }
            Err(e) => panic!(
                "the core transmitted bytes that do not parse ({e:?}):\n{}",
                String::from_utf8_lossy(&t.data)
            ),
        };
        let to_a = t.to == peer(A);
        if std::env::var_os("CHAOS_TRACE").is_some() {
            let txt = String::from_utf8_lossy(&t.data);
            let first = txt.lines().next().unwrap_or("");
            let cseq = txt.lines().find(|l| l.starts_with("CSeq")).unwrap_or("");
            let cid = txt.lines().find(|l| l.starts_with("Call-ID")).unwrap_or("");
            eprintln!(
                "OUT {} {first} | {cseq} | {cid} | tx={}",
                t.to.addr,
                core.transactions()
            );
        }
        match msg {
            SipMessage::Request(r) => {
                if to_a {
                    self.to_a.push(r);
                } else {
                    self.to_pbx.push((t.to, r));
                }
            }
            SipMessage::Response(r) => {
                if to_a && (101..300).contains(&r.status) {
                    if let (Some(cid), Some(tag)) = (
                        r.call_id().map(str::to_string),
                        r.to().and_then(|t| t.tag().map(str::to_string)),
                    ) {
                        self.a_tags.insert(cid, tag);
                    }
                    if let (Some(cid), Some(rseq)) = (
                        r.call_id().map(str::to_string),
                        r.headers.get("RSeq").and_then(|v| v.parse::<u32>().ok()),
                    ) {
                        self.a_rseq.insert(cid, rseq);
                    }
                }
            }
        }
    }

    fn drained(&mut self) {
        for v in [&mut self.to_a] {
            if v.len() > 64 {
                v.drain(..32);
            }
        }
        if self.to_pbx.len() > 64 {
            self.to_pbx.drain(..32);
        }
    }

    fn timer(&mut self, now: Instant, _: &B2bua) {
        if std::env::var_os("CHAOS_TRACE").is_some() {
            eprintln!("  t={:?}", now.duration_since(self.start));
        }
    }
}

struct World {
    sim: signaling::testing::World<StaticPolicy, Wire>,
    rng: Rng,
    a_calls: Vec<String>,
    /// Everything fed in so far (mutation material).
    fed: Vec<(Peer, Vec<u8>)>,
    next_call: u32,
    cseq: u32,
}

impl World {
    fn new(seed: u64) -> World {
        let cfg = CoreConfig {
            local_udp: Some(ME.parse().expect("me")),
            seed: {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&seed.to_le_bytes());
                k
            },
            ..CoreConfig::default()
        };
        let policy = StaticPolicy {
            targets: vec![
                Target {
                    trunk: "pbx".into(),
                    peer: peer(PBX),
                    host: PBX.into(),
                },
                Target {
                    trunk: "pbx2".into(),
                    peer: peer(PBX2),
                    host: PBX2.into(),
                },
            ],
            events: Vec::new(),
            released: Vec::new(),
        };
        let wire = Wire {
            to_pbx: Vec::new(),
            to_a: Vec::new(),
            a_tags: HashMap::new(),
            a_rseq: HashMap::new(),
            start: Instant::now(),
        };
        let mut sim = signaling::testing::World::with_sink(cfg, policy, wire);
        sim.sink.start = sim.now;
        World {
            sim,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            a_calls: Vec::new(),
            fed: Vec::new(),
            next_call: 0,
            cseq: 10,
        }
    }

    /// Feed `bytes` from `from`, mangled now and then.
    fn feed(&mut self, from: Peer, mut bytes: Vec<u8>) {
        if self.rng.chance(15) {
            bytes = self.mangle(bytes);
        }
        if std::env::var_os("CHAOS_TRACE").is_some() {
            let t = String::from_utf8_lossy(&bytes);
            let first = t.lines().next().unwrap_or("");
            let cseq = t.lines().find(|l| l.starts_with("CSeq")).unwrap_or("");
            let cid = t.lines().find(|l| l.starts_with("Call-ID")).unwrap_or("");
            eprintln!(
                "IN  {} {first} | {cseq} | {cid} | tx={}",
                from.addr,
                self.sim.core.transactions()
            );
        }
        self.fed.push((from, bytes.clone()));
        if self.fed.len() > 64 {
            self.fed.drain(..32);
        }
        self.sim.feed_peer(from, &bytes);
    }

    fn mangle(&mut self, mut b: Vec<u8>) -> Vec<u8> {
        match self.rng.below(6) {
            0 => {
                for _ in 0..1 + self.rng.below(4) {
                    if !b.is_empty() {
                        let i = self.rng.below(b.len());
                        b[i] = (self.rng.next() & 0xff) as u8;
                    }
                }
                b
            }
            1 => {
                let n = self.rng.below(b.len() + 1);
                b.truncate(n);
                b
            }
            2 | 3 => {
                // drop or double a header line
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = text.split("\r\n").collect();
                if lines.len() > 2 {
                    let i = 1 + self.rng.below(lines.len() - 2);
                    if self.rng.chance(50) {
                        lines.remove(i);
                    } else {
                        let l = lines[i];
                        lines.insert(i, l);
                    }
                }
                lines.join("\r\n").into_bytes()
            }
            4 => {
                // a header value replaced by junk
                let text = String::from_utf8_lossy(&b).into_owned();
                let junk = [
                    "",
                    ";;;",
                    "<>",
                    "\"",
                    "sip:",
                    "0",
                    "4294967296",
                    "z9hG4bK",
                    "tag=",
                ];
                let j = junk[self.rng.below(junk.len())];
                let mut out = String::new();
                let target = self.rng.below(12);
                for (k, line) in text.split("\r\n").enumerate() {
                    if k == target + 1 {
                        if let Some((name, _)) = line.split_once(':') {
                            out.push_str(name);
                            out.push_str(": ");
                            out.push_str(j);
                            out.push_str("\r\n");
                            continue;
                        }
                    }
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                out.truncate(out.len().saturating_sub(2));
                out.into_bytes()
            }
            _ => {
                // the body length lies
                let text = String::from_utf8_lossy(&b).into_owned();
                text.replacen("Content-Length: ", "Content-Length: 1", 1)
                    .into_bytes()
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.sim.advance(d);
        if std::env::var_os("CHAOS_TRACE").is_some() {
            eprintln!("... advanced {d:?}, tx={}", self.sim.core.transactions());
        }
    }

    fn new_invite(&mut self) {
        self.next_call += 1;
        let cid = format!("chaos-{}", self.next_call);
        let body = if self.rng.chance(80) { SDP } else { "" };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let user = ["+15551234567", "1000", "911", "x"][self.rng.below(4)];
        let ct = match self.rng.below(5) {
            0 => format!("Supported: 100rel\r\n{ct}"),
            1 => format!("Require: 100rel\r\n{ct}"),
            _ => ct.to_string(),
        };
        let m = format!(
            "INVITE sip:{user}@{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-c{cid};rport\r\n\
             Max-Forwards: {}\r\nFrom: <sip:alice@10.1.1.1>;tag=a{cid}\r\nTo: <sip:{user}@{ME}>\r\n\
             Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{A}>\r\n{ct}\
             Content-Length: {}\r\n\r\n{body}",
            [70, 1, 0][self.rng.below(3)],
            body.len()
        );
        self.a_calls.push(cid);
        self.feed(peer(A), m.into_bytes());
    }

    /// An out-of-dialog MESSAGE from A (relayed to a trunk; answered or not by pbx_answers).
    fn new_message(&mut self) {
        self.next_call += 1;
        let cid = format!("chaos-im-{}", self.next_call);
        let body = ["hi", "", &"z".repeat(1400)][self.rng.below(3)].to_string();
        let user = ["+15551234567", "1000", "x"][self.rng.below(3)];
        let m = format!(
            "MESSAGE sip:{user}@{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-m{cid};rport\r\n\
             Max-Forwards: {}\r\nFrom: <sip:alice@10.1.1.1>;tag=a{cid}\r\nTo: <sip:{user}@{ME}>\r\n\
             Call-ID: {cid}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            [70, 1, 0][self.rng.below(3)],
            body.len()
        );
        self.feed(peer(A), m.into_bytes());
    }

    /// A watcher's SUBSCRIBE from A (short-lived: Expires 60).
    fn new_subscribe(&mut self) {
        self.next_call += 1;
        let cid = format!("chaos-sub-{}", self.next_call);
        let event = if self.rng.chance(90) {
            "Event: presence\r\n"
        } else {
            ""
        };
        let m = format!(
            "SUBSCRIBE sip:1000@{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-s{cid};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@10.1.1.1>;tag=a{cid}\r\nTo: <sip:1000@{ME}>\r\n\
             Call-ID: {cid}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:alice@{A}>\r\n{event}\
             Expires: 60\r\nContent-Length: 0\r\n\r\n"
        );
        self.a_calls.push(cid);
        self.feed(peer(A), m.into_bytes());
    }

    /// The notifier sends a NOTIFY in the dialog of a SUBSCRIBE it received (before or after
    /// answering it), now and then the final one.
    fn pbx_notify(&mut self) {
        let subs: Vec<(Peer, Request)> = self
            .sim
            .sink
            .to_pbx
            .iter()
            .filter(|(_, r)| r.method.as_str() == "SUBSCRIBE")
            .cloned()
            .collect();
        let Some((to, req)) = self.rng.pick(&subs).cloned() else {
            return;
        };
        let (Some(cid), Some(our_tag)) = (
            req.call_id().map(str::to_string),
            req.from().and_then(|f| f.tag().map(str::to_string)),
        ) else {
            return;
        };
        self.cseq += 1;
        let state = [
            "active;expires=30",
            "terminated;reason=noresource",
            "pending",
        ][self.rng.below(3)];
        let m = format!(
            "NOTIFY sip:x@{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-n{};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1000@pbx>;tag=btag\r\nTo: <sip:x@{ME}>;tag={our_tag}\r\n\
             Call-ID: {cid}\r\nCSeq: {} NOTIFY\r\nContact: <sip:1000@{}>\r\nEvent: presence\r\n\
             Subscription-State: {state}\r\nContent-Length: 0\r\n\r\n",
            to.addr, self.cseq, self.cseq, to.addr
        );
        self.feed(to, m.into_bytes());
    }

    fn pbx_answers(&mut self) {
        let Some((to, req)) = self.rng.pick(&self.sim.sink.to_pbx).cloned() else {
            return;
        };
        let statuses = [
            100, 180, 183, 200, 200, 200, 202, 302, 404, 408, 480, 486, 487, 500, 503, 600, 603,
        ];
        let status = statuses[self.rng.below(statuses.len())];
        // A forking trunk answers on another branch now and then (its own To tag).
        let tag = if self.rng.chance(15) { "btag2" } else { "btag" };
        let mut r = make_response(&req, status, "Chaos", Some(tag));
        if (101..300).contains(&status) {
            r.headers.push("Contact", format!("<sip:bob@{}>", to.addr));
        }
        if (101..200).contains(&status) && self.rng.chance(40) {
            r.headers.push("Require", "100rel");
            r.headers.push("RSeq", (1 + self.rng.below(3)).to_string());
        }
        if (300..400).contains(&status) {
            r.headers.push(
                "Contact",
                "<sip:+15557770000@198.51.100.9>;q=0.5, <sip:x@y>",
            );
        }
        if status < 300 && req.method.as_str() == "INVITE" && self.rng.chance(70) {
            r.headers.push("Content-Type", "application/sdp");
            r.body = SDP.as_bytes().to_vec();
        }
        let bytes = SipMessage::Response(r).to_bytes();
        self.feed(to, bytes);
    }

    fn a_answers(&mut self) {
        let Some(req) = self.rng.pick(&self.sim.sink.to_a).cloned() else {
            return;
        };
        let status = [200, 200, 481, 486, 500][self.rng.below(5)];
        let r = make_response(
            &req,
            status,
            "Chaos",
            Some(&format!("a-{}", req.method.as_str())),
        );
        let bytes = SipMessage::Response(r).to_bytes();
        self.feed(peer(A), bytes);
    }

    fn a_in_dialog(&mut self) {
        let Some(cid) = self.rng.pick(&self.a_calls).cloned() else {
            return;
        };
        let tag = self.sim.sink.a_tags.get(&cid).cloned().unwrap_or_default();
        let methods = [
            "BYE", "ACK", "CANCEL", "INVITE", "UPDATE", "INFO", "OPTIONS", "PRACK",
        ];
        let method = methods[self.rng.below(methods.len())];
        self.cseq += 1;
        let cseq = match method {
            "ACK" | "CANCEL" => 1,
            _ => self.cseq,
        };
        let branch = match method {
            "CANCEL" => format!("z9hG4bK-c{cid}"),
            _ => format!("z9hG4bK-c{cid}-{method}-{}", self.cseq),
        };
        let to_tag = if method == "CANCEL" || tag.is_empty() {
            String::new()
        } else {
            format!(";tag={tag}")
        };
        let body = if matches!(method, "INVITE" | "UPDATE") && self.rng.chance(70) {
            SDP
        } else {
            ""
        };
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        // A PRACK acknowledges the last reliable provisional (or one that never was).
        let ct = match (method, self.sim.sink.a_rseq.get(&cid)) {
            ("PRACK", Some(r)) if self.rng.chance(80) => format!("RAck: {r} 1 INVITE\r\n{ct}"),
            ("PRACK", _) => format!("RAck: {} 1 INVITE\r\n{ct}", self.rng.below(5)),
            _ => ct,
        };
        let m = format!(
            "{method} sip:{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@10.1.1.1>;tag=a{cid}\r\nTo: <sip:x@{ME}>{to_tag}\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:alice@{A}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.feed(peer(A), m.into_bytes());
    }

    /// An in-dialog request from the callee, built from a request trunkline sent it.
    fn pbx_in_dialog(&mut self) {
        let Some((to, req)) = self.rng.pick(&self.sim.sink.to_pbx).cloned() else {
            return;
        };
        let (Some(from), Some(to_h), Some(cid)) = (
            req.headers.get("From").map(str::to_string),
            req.headers.get("To").map(str::to_string),
            req.call_id().map(str::to_string),
        ) else {
            return;
        };
        let to_h = if to_h.contains("tag=") {
            to_h
        } else {
            format!("{to_h};tag=btag")
        };
        let method = ["BYE", "INVITE", "UPDATE", "INFO"][self.rng.below(4)];
        self.cseq += 1;
        let body = if method != "BYE" && method != "INFO" && self.rng.chance(70) {
            SDP
        } else {
            ""
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let m = format!(
            "{method} sip:{ME} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-b{}\r\nMax-Forwards: 70\r\n\
             From: {to_h}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: {} {method}\r\n\
             Contact: <sip:bob@{}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            to.addr,
            self.cseq,
            self.cseq,
            to.addr,
            body.len()
        );
        self.feed(to, m.into_bytes());
    }

    fn replay(&mut self) {
        let Some((from, bytes)) = self.rng.pick(&self.fed).cloned() else {
            return;
        };
        self.feed(from, bytes);
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=14 => self.new_invite(),
            15..=44 => self.pbx_answers(),
            45..=59 => self.a_in_dialog(),
            60..=67 => self.pbx_in_dialog(),
            68..=74 => self.a_answers(),
            75..=79 => self.replay(),
            83..=85 => self.new_message(),
            86..=87 => self.new_subscribe(),
            88..=89 => self.pbx_notify(),
            80..=82 => {
                let to = if self.rng.chance(50) { PBX } else { PBX2 };
                self.sim.transport_error(peer(to));
            }
            _ => {
                let ms = [0, 10, 100, 500, 2_000, 4_500, 33_000][self.rng.below(7)];
                self.advance(Duration::from_millis(ms));
            }
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }
    w.advance(Duration::from_secs(600));
    assert_eq!(
        w.sim.core.transactions(),
        0,
        "transactions left after ten quiet minutes: {:#?}",
        w.sim.core.describe_transactions()
    );
    assert_eq!(
        w.sim.core.pending_messages(),
        0,
        "MESSAGEs still waiting for an answer after ten quiet minutes"
    );
    // Subscriptions live as long as their Expires says (60 s here, but a mangled or dropped
    // Expires means the default hour, at most a day): none outlives its lifetime.
    w.advance(Duration::from_secs(86_400 + 60));
    assert_eq!(
        w.sim.core.subscriptions(),
        0,
        "subscriptions held beyond any lifetime they were given"
    );
    assert_eq!(
        w.sim.core.pending_client_transactions(),
        0,
        "client transactions still owned by something after ten quiet minutes"
    );
    assert_eq!(
        w.sim.core.active_calls(),
        w.sim.core.live_calls().len(),
        "ended or cancelled calls still held: {:#?}",
        w.sim.core.describe_calls()
    );
    assert_eq!(
        w.sim.core.capped_keys(),
        0,
        "early calls or subscriptions still counted against a source or target (calls {}: {:?})",
        w.sim.core.active_calls(),
        w.sim.core.live_calls()
    );
    // A call either came up (and stays until a BYE or media timeout) or is gone: none is still
    // ringing or half set up after ten quiet minutes.
    assert_eq!(
        w.sim.core.live_calls().len(),
        w.sim.core.confirmed_calls().len(),
        "calls neither answered nor ended after ten quiet minutes"
    );
    let mut finished: HashMap<u64, u32> = HashMap::new();
    for e in &w.sim.policy.events {
        if let CallEvent::Finished { call, .. } = e {
            if *call != 0 {
                *finished.entry(*call).or_default() += 1;
            }
        }
    }
    if let Some((call, n)) = finished.iter().find(|(_, n)| **n > 1) {
        panic!("call {call} got {n} final answers on leg A");
    }
    let mut released = w.sim.policy.released.clone();
    released.sort_unstable();
    let twice: Vec<u64> = released
        .windows(2)
        .filter(|p| p[0] == p[1])
        .map(|p| p[0])
        .collect();
    assert!(
        twice.is_empty(),
        "calls {twice:?} released their media twice; events: {:?}",
        w.sim
            .policy
            .events
            .iter()
            .filter(|e| match e {
                CallEvent::Attempt { call, .. }
                | CallEvent::Finished { call, .. }
                | CallEvent::Ended { call, .. } => twice.contains(call),
                _ => false,
            })
            .collect::<Vec<_>>()
    );
    // One call record per call, each just before that call's media release; an INVITE
    // refused before it became a call has one of its own, with no media; no number twice.
    let records: Vec<(u64, bool)> = w
        .sim
        .policy
        .events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Record(r) => Some((r.call, r.refused)),
            _ => None,
        })
        .collect();
    let mut recorded: Vec<u64> = records.iter().filter(|r| !r.1).map(|r| r.0).collect();
    recorded.sort_unstable();
    assert_eq!(recorded, released, "one record per released call");
    let mut all: Vec<u64> = records.iter().map(|r| r.0).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), records.len(), "one record per call number");
}

#[test]
fn random_call_flows_with_mangled_messages_keep_the_invariants() {
    let seeds: u64 = std::env::var("CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let first: u64 = std::env::var("CHAOS_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let steps: usize = std::env::var("CHAOS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for seed in first..=seeds {
        let r = std::panic::catch_unwind(|| run(seed, steps));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("seed {seed}: {msg}");
        }
    }
}
