//! MGCP call agent benches (criterion), sans-IO, one core: what the bridge costs per MGCP
//! transaction and per call setup from a phone line.
//!
//! `cargo bench --bench mgcp -- --warm-up-time 1 --measurement-time 3`
//!
//! * `hook_cycle`: a line goes off-hook (NTFY L/hd, answered 200) and gets dial tone (RQNT,
//!   answered 200), then on-hook (NTFY L/hu) and is armed again (RQNT): 4 transactions.
//! * `offhook_to_invite`: off-hook, dial tone, the digits (NTFY D/1,D/0,D/0,D/1), CRCX and its
//!   answer with the gateway's SDP, to the INVITE towards the core: the agent's share of
//!   call setup (5 transactions and the INVITE), then the call is abandoned on-hook.
//!
//! The gateway's answers are built (and the core's: 100 to the INVITE, 200 and 487 to the
//! CANCEL of the abandoned call) by the bench from the commands the bridge sends. Virtual
//! time advances 1 ms per iteration and the bridge's timers run every 256 iterations, so the
//! agent holds what 30 s of history (T-HIST) at 1,000 cycles a second leaves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mgcp::{DigitMap, Message};
use mgcp_bridge::{Bridge, Gateway, Out};
use signaling::b2bua::make_response;
use signaling::message::{Method, SipMessage};
use signaling::parse::parse;

const GW: &str = "127.0.0.1:2427";
const LINES: usize = 256;

fn bridge() -> Bridge {
    let mut g = Gateway::trunking(
        GW.parse().unwrap(),
        "127.0.0.1:40000".parse().unwrap(),
        "ds/*@gw1",
    );
    g.endpoint = None;
    g.endpoints = Some("aaln/*@gw1".into());
    g.lines = (1..=LINES)
        .map(|i| (format!("+1555123{i:04}"), format!("aaln/{i}@gw1")))
        .collect();
    g.digit_map = DigitMap::parse("(0T|[1-7]xxx|9x.T)").unwrap();
    g.audit_every = Duration::from_secs(3600);
    Bridge::new(
        HashMap::from([("gw1".to_string(), g)]),
        Some("127.0.0.1:5060".parse().unwrap()),
        [3; 32],
    )
}

/// The gateway: answers every command 200 (CRCX with an SDP), remembers each line's X:.
struct Gw {
    x: HashMap<String, String>,
    txid: u32,
    gw: SocketAddr,
}

impl Gw {
    fn answer(&mut self, b: &mut Bridge, out: Vec<Out>, now: Instant) -> usize {
        let mut invites = 0;
        let mut pending = out;
        while !pending.is_empty() {
            let mut next = Vec::new();
            for o in pending {
                match o {
                    Out::Mgcp(_, bytes) => {
                        let Ok(msgs) = mgcp::parse(&bytes) else {
                            continue;
                        };
                        for m in msgs {
                            let Message::Command(c) = m else { continue };
                            if let Some(x) = c.param("X") {
                                self.x.insert(c.endpoint.clone(), x.to_string());
                            }
                            let text = if c.verb == mgcp::Verb::Crcx {
                                format!(
                                    "200 {} OK\r\nI: 1A\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 41000 RTP/AVP 0\r\n",
                                    c.txid
                                )
                            } else {
                                format!("200 {} OK\r\n", c.txid)
                            };
                            next.extend(b.handle_mgcp(text.as_bytes(), self.gw, now));
                        }
                    }
                    Out::Sip(_, _, bytes) => {
                        // the core: 100 to an INVITE, 200 to CANCEL and 487 to its INVITE
                        let Ok(SipMessage::Request(r)) = parse(&bytes) else {
                            continue;
                        };
                        let core: SocketAddr = "127.0.0.1:5060".parse().unwrap();
                        let mut answers = Vec::new();
                        match r.method {
                            Method::Invite => {
                                invites += 1;
                                answers.push(make_response(&r, 100, "Trying", None));
                            }
                            Method::Cancel => {
                                answers.push(make_response(&r, 200, "OK", Some("c")));
                                let mut t = make_response(&r, 487, "Terminated", Some("c"));
                                let n = r
                                    .headers
                                    .get("CSeq")
                                    .unwrap_or("1")
                                    .split(' ')
                                    .next()
                                    .unwrap_or("1")
                                    .to_string();
                                t.headers.set("CSeq", format!("{n} INVITE"));
                                answers.push(t);
                            }
                            Method::Bye => answers.push(make_response(&r, 200, "OK", None)),
                            _ => {}
                        }
                        for a in answers {
                            let bytes = SipMessage::Response(a).to_bytes();
                            next.extend(b.handle_sip(&bytes, core, "gw1", now));
                        }
                    }
                }
            }
            pending = next;
        }
        invites
    }

    fn ntfy(&mut self, b: &mut Bridge, ep: &str, o: &str, now: Instant) -> Vec<Out> {
        self.txid += 1;
        let x = self.x.get(ep).cloned().unwrap_or_default();
        let msg = format!("NTFY {} {ep} MGCP 1.0\r\nX: {x}\r\nO: {o}\r\n", self.txid);
        b.handle_mgcp(msg.as_bytes(), self.gw, now)
    }
}

fn setup() -> (Bridge, Gw, Vec<String>, Instant) {
    let now = Instant::now();
    let mut b = bridge();
    let mut gw = Gw {
        x: HashMap::new(),
        txid: 0,
        gw: GW.parse().unwrap(),
    };
    let out = b.handle_timeout(now);
    gw.answer(&mut b, out, now);
    let eps = (1..=LINES).map(|i| format!("aaln/{i}@gw1")).collect();
    (b, gw, eps, now)
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("mgcp");
    let (mut b, mut gw, eps, mut now) = setup();
    let mut i = 0usize;
    g.throughput(Throughput::Elements(4));
    g.bench_function("hook_cycle", |bench| {
        bench.iter(|| {
            let ep = &eps[i % LINES];
            i += 1;
            now += Duration::from_millis(1);
            if i.is_multiple_of(256) {
                let out = b.handle_timeout(now);
                gw.answer(&mut b, out, now);
            }
            let out = gw.ntfy(&mut b, ep, "L/hd", now);
            gw.answer(&mut b, out, now);
            let out = gw.ntfy(&mut b, ep, "L/hu", now);
            gw.answer(&mut b, out, now);
        })
    });
    let (mut b, mut gw, eps, mut now) = setup();
    let mut i = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("offhook_to_invite", |bench| {
        bench.iter(|| {
            let ep = &eps[i % LINES];
            i += 1;
            now += Duration::from_millis(1);
            if i.is_multiple_of(256) {
                let out = b.handle_timeout(now);
                gw.answer(&mut b, out, now);
            }
            let out = gw.ntfy(&mut b, ep, "L/hd", now);
            gw.answer(&mut b, out, now);
            let out = gw.ntfy(&mut b, ep, "D/1,D/0,D/0,D/1", now);
            let invites = gw.answer(&mut b, out, now);
            assert_eq!(invites, 1, "an INVITE towards the core");
            let out = gw.ntfy(&mut b, ep, "L/hu", now);
            gw.answer(&mut b, out, now);
        })
    });
    g.finish();
}

criterion_group!(mgcp_benches, benches);
criterion_main!(mgcp_benches);
