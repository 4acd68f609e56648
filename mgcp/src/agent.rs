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

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

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
    /// Transaction ids are drawn from this CSPRNG (seeded by the shell): a forged response
    /// must guess one of the ids in flight, out of 999,999,999.
    rng: ChaCha12Rng,
    pending: HashMap<u32, Pending>,
    /// Responses dropped because they came from another address than the command went to.
    pub foreign_responses: u64,
    /// Answers to received commands, by (sender, transaction id), with their expiry.
    answered: HashMap<(SocketAddr, u32), (Vec<u8>, Instant)>,
    /// Received commands not yet answered (a duplicate is then dropped, not re-reported).
    unanswered: HashMap<(SocketAddr, u32), Instant>,
    /// When entries of `answered` and `unanswered` expire, in insertion order, which is expiry
    /// order (the window is constant and time only moves forward): the next expiry is the
    /// front, and expiring costs what expires, not a scan of 30 s of history.
    expiries: VecDeque<(Instant, (SocketAddr, u32))>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Agent {
    /// An agent whose transaction ids come from a ChaCha12 stream seeded with `seed` (the
    /// shell passes OS randomness; tests a constant). See [`Agent::from_seed`].
    pub fn new(seed: u64, timers: Timers) -> Agent {
        Agent::with_rng(ChaCha12Rng::seed_from_u64(seed), timers)
    }

    /// An agent seeded with 32 bytes of randomness (what the shell should pass): transaction
    /// ids are random in 1..=999999999 (RFC 3435 section 3.2.1.2), unique among those in
    /// flight, so a restarted agent does not reuse ids a gateway remembers and an off-path
    /// attacker cannot predict them.
    pub fn from_seed(seed: [u8; 32], timers: Timers) -> Agent {
        Agent::with_rng(ChaCha12Rng::from_seed(seed), timers)
    }

    fn with_rng(rng: ChaCha12Rng, timers: Timers) -> Agent {
        Agent {
            timers,
            rng,
            foreign_responses: 0,
            pending: HashMap::new(),
            answered: HashMap::new(),
            unanswered: HashMap::new(),
            expiries: VecDeque::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn take_txid(&mut self) -> u32 {
        loop {
            // Rejection sampling: uniform in 1..=MAX_TXID (2^30 > MAX_TXID, so fewer than one
            // draw in ten is rejected).
            let t = self.rng.next_u32() >> 2;
            if (1..=MAX_TXID).contains(&t) && !self.pending.contains_key(&t) {
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
            let until = now + self.timers.history;
            self.answered.insert(key, (bytes, until));
            self.expiries.push_back((until, key));
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
                Message::Response(r) => self.on_response(from, r, now),
                Message::Command(c) => self.on_command(from, c, now),
            }
        }
    }

    fn on_response(&mut self, from: SocketAddr, r: Response, now: Instant) {
        let Some(p) = self.pending.get_mut(&r.txid) else {
            return; // a duplicate, or too late: the transaction is over
        };
        // Only the gateway the command went to answers it (a forged answer from elsewhere
        // would otherwise end the transaction with the forger's SDP).
        if p.to != from {
            self.foreign_responses += 1;
            return;
        }
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
        let until = now + self.timers.history;
        self.unanswered.insert(key, until);
        self.expiries.push_back((until, key));
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
        while let Some(&(until, key)) = self.expiries.front() {
            if until > now {
                break;
            }
            self.expiries.pop_front();
            if self.answered.get(&key).is_some_and(|(_, t)| *t <= now) {
                self.answered.remove(&key);
            }
            if self.unanswered.get(&key).is_some_and(|t| *t <= now) {
                self.unanswered.remove(&key);
            }
        }
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
        let h = self.expiries.front().map(|(t, _)| *t);
        [p, h].into_iter().flatten().min()
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
        let first = drain(&mut a);
        assert_eq!(first.len(), 1);
        assert!(first[0]
            .bytes
            .starts_with(format!("AUEP {txid} rtpbridge/1@mgw MGCP 1.0\r\n").as_bytes()));
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

    /// Ids are random in 1..=999999999, unique among those in flight, differ between seeds,
    /// and are the same for the same seed (the shell's seed is the only source of randomness).
    #[test]
    fn transaction_ids_are_random_unique_and_seeded() {
        let t0 = Instant::now();
        let mut a = Agent::new(1, Timers::default());
        let ids: Vec<u32> = (0..2000)
            .map(|_| a.send(gw(), Command::new(Verb::Auep, "x@gw"), t0))
            .collect();
        assert!(ids.iter().all(|t| (1..=MAX_TXID).contains(t)));
        let set: std::collections::HashSet<u32> = ids.iter().copied().collect();
        assert_eq!(
            set.len(),
            ids.len(),
            "unique among outstanding transactions"
        );
        assert_eq!(a.in_flight(), 2000);
        // Not a counter: consecutive ids are far apart, and spread over the range.
        let close = ids
            .windows(2)
            .filter(|w| w[0].abs_diff(w[1]) < 1000)
            .count();
        assert!(
            close < 5,
            "{close} consecutive ids within 1000 of each other"
        );
        assert!(ids.iter().any(|&t| t > MAX_TXID / 2) && ids.iter().any(|&t| t < MAX_TXID / 2));
        let mut b = Agent::new(2, Timers::default());
        let other: Vec<u32> = (0..20)
            .map(|_| b.send(gw(), Command::new(Verb::Auep, "x@gw"), t0))
            .collect();
        assert_ne!(other, ids[..20].to_vec());
        let mut c = Agent::from_seed([7; 32], Timers::default());
        let mut d = Agent::from_seed([7; 32], Timers::default());
        let tc = c.send(gw(), Command::new(Verb::Auep, "x@gw"), t0);
        assert_eq!(tc, d.send(gw(), Command::new(Verb::Auep, "x@gw"), t0));
    }

    /// A response with the right transaction id from any other address than the command's
    /// destination is dropped (and counted); the gateway's own answer still ends it.
    #[test]
    fn responses_only_from_the_address_the_command_went_to() {
        let t0 = Instant::now();
        let mut a = Agent::new(9, Timers::default());
        let txid = a.send(gw(), Command::new(Verb::Crcx, "aaln/*@gw"), t0);
        drain(&mut a);
        let forged = format!("200 {txid} OK\r\nI: 66\r\n\r\nv=0\r\nc=IN IP4 127.0.0.66\r\n");
        for from in ["127.0.0.66:2427", "127.0.0.1:2428"] {
            a.handle_datagram(from.parse().unwrap(), forged.as_bytes(), t0);
        }
        assert_eq!(a.poll_event(), None, "forged answers ignored");
        assert_eq!(a.foreign_responses, 2);
        assert_eq!(a.in_flight(), 1, "the transaction is still open");
        // a forged provisional does not stop the retransmissions either
        a.handle_datagram(
            "127.0.0.66:2427".parse().unwrap(),
            format!("100 {txid} pending\r\n").as_bytes(),
            t0,
        );
        a.handle_timeout(t0 + Duration::from_millis(200));
        assert_eq!(drain(&mut a).len(), 1, "still retransmitted");
        a.handle_datagram(gw(), format!("200 {txid} OK\r\nI: 1\r\n").as_bytes(), t0);
        match a.poll_event() {
            Some(Event::Response { response, .. }) => assert_eq!(response.param("I"), Some("1")),
            e => panic!("{e:?}"),
        }
    }
}
