//! The virtual-time test world (feature `test-util`): one [`B2bua`] core, the test's [`Policy`],
//! a clock that only moves when the test says so, and what the core transmitted. The flow,
//! registrar, chaos and limits tests drive the core through it: feed bytes from a peer, advance
//! time (running every timer that falls due, in order), take the messages sent to a peer,
//! answer a request. Nothing here opens a socket or reads the clock but [`World::new`]'s start.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::b2bua::{make_response, B2bua, CoreConfig, Policy};
use crate::message::{Request, Response, SipMessage};
use crate::parse::parse;
use crate::transaction::Transmit;
use crate::{Peer, Transport};

/// A UDP peer at `addr` (`"127.0.0.1:5070"`).
pub fn peer(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse::<SocketAddr>().expect("a socket address"),
    }
}

/// Where the world puts what the core transmits.
pub trait Sink {
    /// One datagram the core emitted (`core` as it is right after emitting it).
    fn transmit(&mut self, t: Transmit, core: &B2bua);
    /// The world is about to run the core's timers at `now`.
    fn timer(&mut self, _now: Instant, _core: &B2bua) {}
    /// The world has handed over everything the core had to transmit.
    fn drained(&mut self) {}
}

/// The default sink: every transmitted message, parsed, in order. The core must only emit
/// bytes that parse.
#[derive(Default)]
pub struct Sent {
    pub sent: Vec<(Peer, SipMessage)>,
}

impl Sink for Sent {
    fn transmit(&mut self, t: Transmit, _: &B2bua) {
        let msg = parse(&t.data).expect("core emitted unparseable bytes");
        self.sent.push((t.to, msg));
    }
}

/// One core in virtual time. `P` is the test's policy; `S` receives the transmits.
pub struct World<P: Policy, S: Sink = Sent> {
    pub core: B2bua,
    pub policy: P,
    pub now: Instant,
    pub sink: S,
    /// Called with the policy and the time before each call into the core, for policies that
    /// keep the current time themselves.
    clock: Option<fn(&mut P, Instant)>,
}

impl<P: Policy> World<P, Sent> {
    /// A core with `cfg` and `policy`, starting at the real `Instant::now()`.
    pub fn new(cfg: CoreConfig, policy: P) -> Self {
        World::with_sink(cfg, policy, Sent::default())
    }

    /// Everything sent and not taken yet, in order.
    pub fn sent(&mut self) -> &mut Vec<(Peer, SipMessage)> {
        &mut self.sink.sent
    }

    /// Take every message sent so far to `to`.
    pub fn take_to(&mut self, to: &str) -> Vec<SipMessage> {
        let p = peer(to);
        let (mine, rest): (Vec<_>, Vec<_>) = self.sink.sent.drain(..).partition(|(t, _)| *t == p);
        self.sink.sent = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    /// Take the first `method` request sent to `to` (the others stay); panics if there is none.
    pub fn take_request(&mut self, to: &str, method: &str) -> Request {
        let p = peer(to);
        let i = self
            .sink
            .sent
            .iter()
            .position(|(t, m)| {
                *t == p && matches!(m, SipMessage::Request(r) if r.method.as_str() == method)
            })
            .unwrap_or_else(|| panic!("no {method} sent to {to}; sent: {:?}", self.sink.sent));
        match self.sink.sent.remove(i).1 {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => unreachable!("position matched a request"),
        }
    }

    /// Take every message sent to `to`; return its responses.
    pub fn take_responses(&mut self, to: &str) -> Vec<Response> {
        self.take_to(to)
            .into_iter()
            .filter_map(|m| match m {
                SipMessage::Response(r) => Some(r),
                SipMessage::Request(_) => None,
            })
            .collect()
    }

    /// Take every message sent to `to`; return the first final response; panics if none.
    pub fn final_to(&mut self, to: &str) -> Response {
        self.take_to(to)
            .into_iter()
            .filter_map(|m| match m {
                SipMessage::Response(r) if r.status >= 200 => Some(r),
                _ => None,
            })
            .next()
            .unwrap_or_else(|| panic!("no final response to {to}"))
    }

    /// Take the first final response sent to `to`, leaving every other message; panics if
    /// there is none.
    pub fn take_final(&mut self, to: &str) -> Response {
        let p = peer(to);
        let i = self
            .sink
            .sent
            .iter()
            .position(|(t, m)| *t == p && matches!(m, SipMessage::Response(r) if r.status >= 200))
            .unwrap_or_else(|| panic!("no final response to {to}; sent: {:?}", self.sink.sent));
        match self.sink.sent.remove(i).1 {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => unreachable!("position matched a response"),
        }
    }

    /// `to` answers `req` with `status` (reason "X", To tag "btag", a Contact at `to` on 1xx/2xx
    /// but 100).
    pub fn respond(&mut self, to: &str, req: &Request, status: u16) {
        let mut r = make_response(req, status, "X", Some("btag"));
        if status < 300 && status > 100 {
            r.headers.push("Contact", format!("<sip:b@{to}>"));
        }
        self.feed_msg(to, &SipMessage::Response(r));
    }
}

impl<P: Policy, S: Sink> World<P, S> {
    /// A world whose transmits go to `sink`.
    pub fn with_sink(cfg: CoreConfig, policy: P, sink: S) -> Self {
        World {
            core: B2bua::new(cfg),
            policy,
            now: Instant::now(),
            sink,
            clock: None,
        }
    }

    /// Set `clock(policy, now)` before each call into the core.
    pub fn with_clock(mut self, clock: fn(&mut P, Instant)) -> Self {
        self.clock = Some(clock);
        self
    }

    fn tick(&mut self) {
        if let Some(c) = self.clock {
            c(&mut self.policy, self.now);
        }
    }

    /// Bytes arrive from `from` (UDP) now; then drain.
    pub fn feed(&mut self, from: &str, bytes: &[u8]) {
        self.feed_peer(peer(from), bytes);
    }

    /// A message arrives from `from` (UDP) now; then drain.
    pub fn feed_msg(&mut self, from: &str, msg: &SipMessage) {
        let b = msg.to_bytes();
        self.feed(from, &b);
    }

    /// Bytes arrive from `from` now; then drain.
    pub fn feed_peer(&mut self, from: Peer, bytes: &[u8]) {
        self.tick();
        self.core
            .handle_bytes(bytes, from, self.now, &mut self.policy);
        self.drain();
    }

    /// A transport error towards `to` now; then drain.
    pub fn transport_error(&mut self, to: Peer) {
        self.tick();
        self.core.transport_error(to, self.now, &mut self.policy);
        self.drain();
    }

    /// Run every timer due within `d` of now, in order (draining after each), then set the
    /// clock to now + `d`. Panics when the core keeps asking to be woken without time
    /// passing (a busy loop).
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut spins = 0u32;
        while let Some(t) = self.core.poll_timeout() {
            if t > end {
                break;
            }
            spins += 1;
            assert!(
                spins < 100_000,
                "the core keeps asking to be woken at {:?} (now {:?}): a busy loop",
                t,
                self.now
            );
            self.now = t.max(self.now);
            self.sink.timer(self.now, &self.core);
            self.tick();
            self.core.handle_timeout(self.now, &mut self.policy);
            self.drain();
        }
        self.now = end;
        self.tick();
    }

    /// Hand everything the core has to transmit to the sink.
    pub fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            self.sink.transmit(t, &self.core);
        }
        self.sink.drained();
    }
}
