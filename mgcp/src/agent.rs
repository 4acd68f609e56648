//! The call agent's transaction layer (RFC 3435 sections 3.5 and 4): transaction ids,
//! retransmission of commands over UDP with exponential back-off, provisional responses,
//! duplicate detection, and answers to the gateways' own commands (NTFY, RSIP) kept for
//! retransmitted duplicates.
//!
//! Sans-IO in the manner of quinn-proto: the caller feeds datagrams and the time in
//! ([`Agent::handle_datagram`], [`Agent::handle_timeout`]) and takes datagrams, events and the
//! next deadline out ([`Agent::poll_transmit`], [`Agent::poll_event`], [`Agent::poll_timeout`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::msg::{self, Command, Message, Response, Verb, MAX_TXID};

/// Retransmission settings (section 4.3 defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// First retransmission after this long (RFC: "initial ... 200 ms").
    pub initial: Duration,
    /// Doubling stops here (RFC T-MAX).
    pub max: Duration,
    /// Sends of a command (first + retransmissions) before it is given up.
    pub max_sends: u32,
    /// After a provisional response, how long the final one may take.
    pub provisional_wait: Duration,
    /// How long answers to received commands are kept for duplicates (RFC T-HIST, 30 s).
    pub history: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(4),
            max_sends: 6,
            provisional_wait: Duration::from_secs(30),
            history: Duration::from_secs(30),
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The final response to a command this agent sent.
    Response {
        txid: u32,
        verb: Verb,
        response: Response,
    },
    /// No final response after every retransmission (or after the provisional wait).
    Timeout { txid: u32, verb: Verb },
    /// A gateway's command (NTFY, RSIP, ...): answer it with [`Agent::respond`].
    Command { from: SocketAddr, command: Command },
}

struct Pending {
    to: SocketAddr,
    verb: Verb,
    bytes: Vec<u8>,
    sends: u32,
    interval: Duration,
    next: Instant,
    /// A provisional response came: no more retransmissions; give up at `next`.
    provisional: bool,
}

/// The call agent side of MGCP transactions.
pub struct Agent {
    timers: Timers,
    next_txid: u32,
    pending: HashMap<u32, Pending>,
    /// Answers to received commands, by (sender, transaction id), with their expiry.
    answered: HashMap<(SocketAddr, u32), (Vec<u8>, Instant)>,
    /// Received commands not yet answered (a duplicate is then dropped, not re-reported).
    unanswered: HashMap<(SocketAddr, u32), Instant>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Agent {
    /// `first_txid`: where this agent's transaction ids start (pick it at random per start, so
    /// that a restarted agent does not reuse the ids a gateway still remembers).
    pub fn new(first_txid: u32, timers: Timers) -> Agent {
        Agent {
            timers,
            next_txid: first_txid.clamp(1, MAX_TXID),
            pending: HashMap::new(),
            answered: HashMap::new(),
            unanswered: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn take_txid(&mut self) -> u32 {
        loop {
            let t = self.next_txid;
            self.next_txid = if t >= MAX_TXID { 1 } else { t + 1 };
            if !self.pending.contains_key(&t) {
                return t;
            }
        }
    }

    /// Send `cmd` to the gateway at `to`; returns its transaction id.
    pub fn send(&mut self, to: SocketAddr, mut cmd: Command, now: Instant) -> u32 {
        let txid = self.take_txid();
        cmd.txid = txid;
        let bytes = cmd.encode().into_bytes();
        self.out.push_back(Transmit {
            to,
            bytes: bytes.clone(),
        });
        self.pending.insert(
            txid,
            Pending {
                to,
                verb: cmd.verb,
                bytes,
                sends: 1,
                interval: self.timers.initial,
                next: now + self.timers.initial,
                provisional: false,
            },
        );
        txid
    }

    /// Commands sent and not finally answered yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Answer a gateway's command; the answer is resent for duplicates of it.
    pub fn respond(&mut self, to: SocketAddr, response: Response, now: Instant) {
        let key = (to, response.txid);
        self.unanswered.remove(&key);
        let bytes = response.encode().into_bytes();
        self.out.push_back(Transmit {
            to,
            bytes: bytes.clone(),
        });
        if !response.is_provisional() {
            self.answered
                .insert(key, (bytes, now + self.timers.history));
        }
    }

    /// A datagram from `from`.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let msgs = match msg::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                // Answer what can be answered (section 2.4): 504 unknown command, 510 protocol
                // error; without a transaction id there is no one to answer.
                if let Some(txid) = e.txid {
                    let code = if e.unknown_verb { 504 } else { 510 };
                    if !bytes.first().is_some_and(|b| b.is_ascii_digit()) {
                        self.respond(from, Response::new(code, txid, e.reason), now);
                    }
                }
                return;
            }
        };
        for m in msgs {
            match m {
                Message::Response(r) => self.on_response(r, now),
                Message::Command(c) => self.on_command(from, c, now),
            }
        }
    }

    fn on_response(&mut self, r: Response, now: Instant) {
        let Some(p) = self.pending.get_mut(&r.txid) else {
            return; // a duplicate, or too late: the transaction is over
        };
        if r.is_provisional() {
            p.provisional = true;
            p.next = now + self.timers.provisional_wait;
            return;
        }
        let verb = p.verb;
        self.pending.remove(&r.txid);
        self.events.push_back(Event::Response {
            txid: r.txid,
            verb,
            response: r,
        });
    }

    fn on_command(&mut self, from: SocketAddr, c: Command, now: Instant) {
        let key = (from, c.txid);
        if let Some((bytes, _)) = self.answered.get(&key) {
            let bytes = bytes.clone();
            self.out.push_back(Transmit { to: from, bytes });
            return;
        }
        if self.unanswered.contains_key(&key) {
            return; // being handled
        }
        self.unanswered.insert(key, now + self.timers.history);
        self.events.push_back(Event::Command { from, command: c });
    }

    /// Retransmit, give up, and forget old answers, as due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (&txid, p) in self.pending.iter_mut() {
            if p.next > now {
                continue;
            }
            if p.provisional || p.sends >= self.timers.max_sends {
                gone.push((txid, p.verb));
                continue;
            }
            p.sends += 1;
            p.interval = (p.interval * 2).min(self.timers.max);
            p.next = now + p.interval;
            self.out.push_back(Transmit {
                to: p.to,
                bytes: p.bytes.clone(),
            });
        }
        gone.sort_unstable_by_key(|(t, _)| *t);
        for (txid, verb) in gone {
            self.pending.remove(&txid);
            self.events.push_back(Event::Timeout { txid, verb });
        }
        self.answered.retain(|_, (_, until)| *until > now);
        self.unanswered.retain(|_, until| *until > now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Agent::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let p = self.pending.values().map(|p| p.next).min();
        let a = self.answered.values().map(|(_, t)| *t).min();
        let u = self.unanswered.values().copied().min();
        [p, a, u].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw() -> SocketAddr {
        "127.0.0.1:2427".parse().unwrap()
    }

    fn drain(a: &mut Agent) -> Vec<Transmit> {
        std::iter::from_fn(|| a.poll_transmit()).collect()
    }

    /// Virtual time: the retransmission schedule doubles from 200 ms up to 4 s, then the
    /// command is given up with one Timeout event.
    #[test]
    fn retransmits_with_backoff_then_times_out() {
        let t0 = Instant::now();
        let mut a = Agent::new(1000, Timers::default());
        let txid = a.send(gw(), Command::new(Verb::Auep, "rtpbridge/1@mgw"), t0);
        assert_eq!(txid, 1000);
        let first = drain(&mut a);
        assert_eq!(first.len(), 1);
        assert!(first[0]
            .bytes
            .starts_with(b"AUEP 1000 rtpbridge/1@mgw MGCP 1.0\r\n"));
        let mut sends_at = vec![Duration::ZERO];
        let mut now = t0;
        while let Some(next) = a.poll_timeout() {
            now = next;
            a.handle_timeout(now);
            for tx in drain(&mut a) {
                assert_eq!(tx.bytes, first[0].bytes, "the same bytes again");
                sends_at.push(now - t0);
            }
            if a.in_flight() == 0 {
                break;
            }
        }
        let ms: Vec<u128> = sends_at.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 200, 600, 1400, 3000, 6200]);
        assert_eq!(
            a.poll_event(),
            Some(Event::Timeout {
                txid,
                verb: Verb::Auep
            })
        );
        assert_eq!(now - t0, Duration::from_millis(6200 + 4000));
    }

    #[test]
    fn final_response_ends_the_transaction_once() {
        let t0 = Instant::now();
        let mut a = Agent::new(5, Timers::default());
        let txid = a.send(gw(), Command::new(Verb::Crcx, "rtpbridge/*@mgw"), t0);
        drain(&mut a);
        a.handle_datagram(gw(), format!("100 {txid} pending\r\n").as_bytes(), t0);
        assert_eq!(a.poll_event(), None, "provisional: no event");
        a.handle_timeout(t0 + Duration::from_secs(5));
        assert!(
            drain(&mut a).is_empty(),
            "no retransmission after a provisional"
        );
        let ok = format!("200 {txid} OK\r\nI: 1F\r\nZ: rtpbridge/1@mgw\r\n");
        a.handle_datagram(gw(), ok.as_bytes(), t0 + Duration::from_secs(6));
        match a.poll_event() {
            Some(Event::Response {
                txid: t,
                verb,
                response,
            }) => {
                assert_eq!((t, verb), (txid, Verb::Crcx));
                assert_eq!(response.param("I"), Some("1F"));
            }
            e => panic!("{e:?}"),
        }
        a.handle_datagram(gw(), ok.as_bytes(), t0 + Duration::from_secs(7));
        assert_eq!(a.poll_event(), None, "duplicate final response ignored");
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn gateway_commands_are_reported_once_and_answers_repeated() {
        let t0 = Instant::now();
        let mut a = Agent::new(1, Timers::default());
        let ntfy = b"NTFY 2002 aaln/1@rgw MGCP 1.0\r\nX: 0123\r\nO: L/hd\r\n";
        a.handle_datagram(gw(), ntfy, t0);
        let Some(Event::Command { from, command }) = a.poll_event() else {
            panic!("command event")
        };
        assert_eq!((from, command.verb, command.txid), (gw(), Verb::Ntfy, 2002));
        a.handle_datagram(gw(), ntfy, t0);
        assert_eq!(
            a.poll_event(),
            None,
            "retransmission before the answer: dropped"
        );
        a.respond(gw(), Response::new(200, 2002, "OK"), t0);
        assert_eq!(drain(&mut a)[0].bytes, b"200 2002 OK\r\n");
        a.handle_datagram(gw(), ntfy, t0 + Duration::from_secs(1));
        assert_eq!(a.poll_event(), None);
        assert_eq!(
            drain(&mut a)[0].bytes,
            b"200 2002 OK\r\n",
            "answer repeated"
        );
        // forgotten after T-HIST: a new command with that id is new again
        a.handle_timeout(t0 + Duration::from_secs(31));
        a.handle_datagram(gw(), ntfy, t0 + Duration::from_secs(32));
        assert!(matches!(a.poll_event(), Some(Event::Command { .. })));
    }

    #[test]
    fn bad_commands_get_an_error_answer() {
        let t0 = Instant::now();
        let mut a = Agent::new(1, Timers::default());
        a.handle_datagram(gw(), b"ZZZZ 17 ep@gw MGCP 1.0\r\n", t0);
        assert_eq!(drain(&mut a)[0].bytes, b"504 17 unknown verb\r\n");
        a.handle_datagram(gw(), b"NTFY 18 ep@gw MGCP 1.0\r\nnot a parameter\r\n", t0);
        assert!(drain(&mut a)[0].bytes.starts_with(b"510 18 "));
        a.handle_datagram(gw(), b"garbage", t0);
        a.handle_datagram(gw(), b"999 x", t0);
        assert!(drain(&mut a).is_empty(), "nothing to answer");
        assert_eq!(a.poll_event(), None);
    }

    #[test]
    fn transaction_ids_wrap_and_skip_those_in_flight() {
        let t0 = Instant::now();
        let mut a = Agent::new(MAX_TXID, Timers::default());
        let t1 = a.send(gw(), Command::new(Verb::Auep, "x@gw"), t0);
        let t2 = a.send(gw(), Command::new(Verb::Auep, "x@gw"), t0);
        assert_eq!((t1, t2), (MAX_TXID, 1));
        let mut b = Agent::new(0, Timers::default());
        assert_eq!(b.send(gw(), Command::new(Verb::Auep, "x@gw"), t0), 1);
    }
}
