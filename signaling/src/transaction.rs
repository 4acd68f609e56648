//! The SIP transaction layer (RFC 3261 §17, with the corrections of RFC 6026), sans-IO.
//!
//! > "SIP is a transactional protocol: interactions between components take place in a series of
//! > independent message exchanges. Specifically, a SIP transaction consists of a single request
//! > and any responses to that request, which include zero or more provisional responses and one
//! > or more final responses." — RFC 3261 §17
//!
//! [`Transactions`] holds every client and server transaction of one SIP element. It is driven in
//! the style of `quinn-proto`: the caller feeds it parsed messages ([`Transactions::handle_message`]),
//! requests and responses from the transaction user ([`Transactions::send_request`],
//! [`Transactions::send_response`]), transport errors and time ([`Transactions::handle_timeout`]);
//! then drains what it produced with [`Transactions::poll_transmit`] (bytes to put on the wire) and
//! [`Transactions::poll_event`] (what the TU must act on), and sleeps until
//! [`Transactions::poll_timeout`]. Nothing here reads the clock, sleeps or touches a socket.
//!
//! The four state machines:
//!
//! | machine | states | timers |
//! |---|---|---|
//! | INVITE client (§17.1.1, RFC 6026 §8.4) | Calling, Proceeding, Completed, Accepted, Terminated | A (retransmit, doubles without cap), B (64·T1), D (32 s / 0), M (64·T1) |
//! | non-INVITE client (§17.1.2) | Trying, Proceeding, Completed, Terminated | E (retransmit, doubles up to T2), F (64·T1), K (T4 / 0) |
//! | INVITE server (§17.2.1, RFC 6026 §8.7) | Proceeding, Completed, Confirmed, Accepted, Terminated | G (retransmit, doubles up to T2), H (64·T1), I (T4 / 0), L (64·T1) |
//! | non-INVITE server (§17.2.2) | Trying, Proceeding, Completed, Terminated | J (64·T1 / 0) |
//!
//! Retransmission timers (A, E, G) only run over unreliable transports (UDP); over TCP/TLS the
//! "wait for stragglers" timers D, I, J, K are zero, so those transactions end at once.
//!
//! Beyond §17 the layer also does, because every TU of trunkline needs them:
//! * the 2xx retransmissions of a UAS core (§13.3.1.4) with [`Transactions::send_2xx_reliably`],
//!   stopped by the matching ACK and reported as [`TuEvent::AckTimeout`] after 64·T1;
//! * the `received` / `rport` parameters of the top Via of each request (§18.2.1, RFC 3581 §4);
//! * CANCEL matching (§9.2) and destruction of an INVITE client transaction 64·T1 after it was
//!   cancelled if no final response comes (§9.1);
//! * RFC 2543 transaction matching for requests whose branch lacks the magic cookie (§17.2.3).
//!
//! Responses of server transactions go back to the address the request came from (symmetric
//! response routing, RFC 3581 §4), which is what an SBC facing NATed peers must do; over TCP/TLS the
//! [`Peer`] names the connection the request arrived on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::message::{Headers, Method, Request, Response, SipMessage};
use crate::{Peer, Transport};

/// The branch prefix of RFC 3261 requests: "The branch parameter value MUST be unique across space
/// and time for all requests sent by the UA ... (it) MUST always begin with the characters
/// "z9hG4bK"." — RFC 3261 §8.1.1.7
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Timer values of RFC 3261 §17.1.1.1 and Table 4 (Appendix A).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum duration a message will remain in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J (unreliable), L, M and the 2xx give-up of §13.3.1.4.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Timer D for unreliable transports: "at least 32 seconds" (RFC 3261 §17.1.1.2).
const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// Hasher for ids this crate hands out itself (sequential [`TxId`]s, call numbers). No peer chooses
/// them, so hash flooding is not a concern and a multiply-and-fold replaces SipHash (measured:
/// SipHash was ~3% of the core's CPU per call). Keys that peers choose (branches, Call-IDs) keep a
/// randomly keyed hasher.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher(u64);

const ID_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(ID_MUL);
        }
    }
    fn write_u64(&mut self, x: u64) {
        // Sequential ids: the odd multiplier spreads them over the low (bucket) bits and the
        // fold brings high bits down for the table's 7-bit tags.
        let h = (self.0 ^ x).wrapping_mul(ID_MUL);
        self.0 = h ^ (h >> 29);
    }
}

/// A map keyed by our own ids (see [`IdHasher`]).
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A map keyed by text peers choose (branches, Call-IDs): foldhash, randomly keyed per map, so
/// colliding keys cannot be precomputed, at a fraction of SipHash's cost per lookup.
pub(crate) type PeerMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A transaction handle. Ids are never reused within one [`Transactions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u64);

impl TxId {
    /// The numeric value (for logs).
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// Bytes to send. `data` is the message serialized once when the TU handed it over; the same bytes
/// are reused for every retransmission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub data: Vec<u8>,
}

/// What the transaction user must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TuEvent {
    /// A new request created a server transaction (not for ACK). CANCEL comes here too, with
    /// `cancels: Some(id)` of the INVITE server transaction it matches (RFC 3261 §9.2), if any.
    Request {
        tx: TxId,
        req: Request,
        from: Peer,
        cancels: Option<TxId>,
    },
    /// An ACK that matched no server transaction in Completed/Confirmed (the ACK for a 2xx, end to
    /// end, §13.2.2.4 / §17.2.3), or an ACK received in the RFC 6026 Accepted state.
    Ack { req: Request, from: Peer },
    /// A response for a client transaction: 1xx, 2xx (including 2xx retransmissions in the RFC
    /// 6026 Accepted state) and a final non-2xx once.
    Response { tx: TxId, resp: Response },
    /// Timer B/F fired (no final response), or a cancelled INVITE got no final response within
    /// 64·T1 (§9.1): the TU treats it as 408.
    Timeout { tx: TxId },
    /// The transport reported an error for this client transaction (§17.1.4): the TU treats it as
    /// 503 / tries the next target.
    TransportError { tx: TxId },
    /// No ACK arrived for a 2xx sent with [`Transactions::send_2xx_reliably`] within 64·T1
    /// (§13.3.1.4): "the dialog is confirmed, but the session SHOULD be terminated" (BYE).
    AckTimeout { tx: TxId },
    /// A server transaction ended (its id is no longer valid). `ack_received` is false only when an
    /// ACK was expected and never came (Timer H for a non-2xx, or no ACK for a reliably sent 2xx).
    ServerTerminated { tx: TxId, ack_received: bool },
}

/// Which of the four state machines a transaction runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxKind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

impl TxKind {
    pub fn is_client(self) -> bool {
        matches!(self, TxKind::InviteClient | TxKind::NonInviteClient)
    }
}

/// Transaction states (RFC 3261 figures 5-8, RFC 6026 figures 5 and 7). A transaction in
/// `Terminated` is destroyed at once, so [`Transactions::state`] never returns it; it exists for
/// completeness of the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

//= rfc3261#section-18.1.1
//# If a request is within 200 bytes of the path MTU, or if it is larger than 1300 bytes
//# and the path MTU is unknown, the request MUST be sent using an RFC 2914 [43]
//# congestion controlled transport protocol, such as TCP.
const UDP_SIZE_LIMIT: usize = 1300;

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    pub client_created: u64,
    pub server_created: u64,
    /// Requests, responses and ACKs sent again (timer-driven or in answer to a retransmission).
    pub retransmissions_sent: u64,
    /// Retransmitted requests and responses received and swallowed by a transaction.
    pub retransmissions_absorbed: u64,
    /// Timer B / F / cancel-guard expiries reported as [`TuEvent::Timeout`].
    pub timeouts: u64,
    /// Timer H expiries and 2xx give-ups ([`TuEvent::AckTimeout`]).
    pub ack_timeouts: u64,
    pub transport_errors: u64,
    /// Responses that matched no client transaction (dropped).
    pub stray_responses: u64,
    /// Messages without the headers transaction matching needs (Via, CSeq): dropped.
    pub malformed: u64,
    /// Final responses sent once with no transaction kept ([`Transactions::respond_once`]).
    pub stateless_answers: u64,
    /// Requests over 1300 bytes sent over UDP all the same (RFC 3261 §18.1.1 asks for TCP: the
    /// peer offers none, or its trunk has no `tcp_fallback`); IP fragments, which many NATs and
    /// firewalls drop.
    pub udp_oversize: u64,
}

// ------------------------------------------------------------------------------------------------
// internal types

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    A,
    B,
    D,
    E,
    F,
    K,
    G,
    H,
    I,
    J,
    L,
    M,
    /// §9.1: destroy a cancelled INVITE client transaction after 64·T1 without final response.
    CancelGuard,
    /// §13.3.1.4: 2xx retransmission by the UAS core.
    Retx2xx,
}

const TIMER_COUNT: usize = 14;

impl Timer {
    fn idx(self) -> usize {
        self as usize
    }
}

/// §17.1.3: a response matches a client transaction by the branch of its top Via and the method
/// of its CSeq.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

/// §17.2.3: how a request finds its server transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ServerKey {
    /// Branch starting with the magic cookie: branch + sent-by + method (ACK counts as INVITE).
    Branch {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 peers: Request-URI, To tag, From tag, Call-ID, CSeq, top Via.
    Legacy {
        uri: String,
        to_tag: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        method: Method,
        via: String,
    },
}

impl ServerKey {
    fn with_method(&self, m: Method) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Branch { method, .. } | ServerKey::Legacy { method, .. } => *method = m,
        }
        k
    }
    fn with_to_tag(&self, tag: &str) -> ServerKey {
        let mut k = self.clone();
        if let ServerKey::Legacy { to_tag, .. } = &mut k {
            *to_tag = tag.to_string();
        }
        k
    }
}

#[derive(Clone, Debug)]
enum Key {
    Client(ClientKey),
    Server(ServerKey),
}

/// What an INVITE client transaction keeps to build the ACK for a non-2xx final (§17.1.1.3).
#[derive(Clone, Debug)]
struct AckTemplate {
    uri: String,
    via: String,
    from: String,
    call_id: String,
    cseq: u32,
    routes: Vec<String>,
}

/// The 2xx a UAS core retransmits until ACK (§13.3.1.4).
#[derive(Clone, Debug)]
struct Reliable2xx {
    call_id: String,
    cseq: u32,
    from_tag: String,
    acked: bool,
}

#[derive(Debug)]
struct Tx {
    kind: TxKind,
    state: TxState,
    peer: Peer,
    reliable: bool,
    key: Key,
    /// Client: the request. Server: the last response sent.
    bytes: Vec<u8>,
    /// INVITE client: ACK template, then the ACK bytes once built.
    ack_template: Option<Box<AckTemplate>>,
    ack: Option<Vec<u8>>,
    /// INVITE server (RFC 2543 matching): To tag of the final response sent.
    response_to_tag: Option<String>,
    /// Current retransmission interval of A / E / G / 2xx.
    interval: Duration,
    timers: [Option<Instant>; TIMER_COUNT],
    ack_received: bool,
    reliable_2xx: Option<Box<Reliable2xx>>,
    /// Server: the TU has passed a response (its 100 (Trying) is then not needed).
    tu_answered: bool,
}

impl Tx {
    fn new(kind: TxKind, state: TxState, peer: Peer, key: Key, bytes: Vec<u8>, t1: Duration) -> Tx {
        Tx {
            kind,
            state,
            peer,
            reliable: peer.transport.is_reliable(),
            key,
            bytes,
            ack_template: None,
            ack: None,
            response_to_tag: None,
            interval: t1,
            timers: [None; TIMER_COUNT],
            ack_received: false,
            reliable_2xx: None,
            tu_answered: false,
        }
    }
}

/// The transaction layer of one SIP element. See the module documentation.
pub struct Transactions {
    cfg: TimerConfig,
    next_id: u64,
    txs: IdMap<TxId, Tx>,
    clients: PeerMap<ClientKey, TxId>,
    servers: PeerMap<ServerKey, TxId>,
    /// (Call-ID, CSeq number) of 2xx responses awaiting their ACK -> INVITE server transaction.
    pending_2xx: PeerMap<(String, u32), TxId>,
    /// Min-heap of timers; entries are valid only while the transaction still holds the same
    /// deadline for that timer (lazy deletion).
    timers: BinaryHeap<Reverse<(Instant, TxId, Timer)>>,
    transmits: VecDeque<Transmit>,
    /// INVITE server transactions whose 100 (Trying) is due unless the TU answers first.
    trying_due: Vec<TxId>,
    events: VecDeque<TuEvent>,
    stats: TxStats,
}

impl Transactions {
    pub fn new(cfg: TimerConfig) -> Self {
        Transactions {
            cfg,
            next_id: 1,
            txs: IdMap::default(),
            clients: PeerMap::default(),
            servers: PeerMap::default(),
            pending_2xx: PeerMap::default(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            trying_due: Vec::new(),
            events: VecDeque::new(),
            stats: TxStats::default(),
        }
    }

    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    /// Live transactions (for metrics and leak tests).
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// One line per live transaction: kind, state, armed timers and the first line of its
    /// message (for leak tests that must say what was left).
    pub fn describe(&self) -> Vec<String> {
        self.txs
            .iter()
            .map(|(id, t)| {
                let first = t.bytes.split(|&b| b == b'\r').next().unwrap_or(&[]);
                let timers: Vec<usize> = (0..t.timers.len())
                    .filter(|&i| t.timers[i].is_some())
                    .collect();
                format!(
                    "{id:?} {:?} {:?} timers {timers:?} {:?}: {}",
                    t.kind,
                    t.state,
                    t.key,
                    String::from_utf8_lossy(first)
                )
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// The state of a live transaction.
    pub fn state(&self, tx: TxId) -> Option<TxState> {
        self.txs.get(&tx).map(|t| t.state)
    }

    /// Which state machine a live transaction runs.
    pub fn kind(&self, tx: TxId) -> Option<TxKind> {
        self.txs.get(&tx).map(|t| t.kind)
    }

    /// The peer a live transaction talks to.
    pub fn peer(&self, tx: TxId) -> Option<Peer> {
        self.txs.get(&tx).map(|t| t.peer)
    }

    /// Entries in the timer heap, stale ones included (for metrics; bounded by compaction).
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// Earliest pending timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.trying_due.is_empty() {
            self.flush_trying();
        }
        self.transmits.pop_front()
    }

    /// Send the 100 (Trying) of every INVITE server transaction the TU has not answered yet.
    fn flush_trying(&mut self) {
        for id in std::mem::take(&mut self.trying_due) {
            if let Some(tx) = self.txs.get(&id) {
                if tx.state == TxState::Proceeding && !tx.tu_answered {
                    self.transmits.push_back(Transmit {
                        to: tx.peer,
                        data: tx.bytes.clone(),
                    });
                }
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<TuEvent> {
        self.events.pop_front()
    }

    // --------------------------------------------------------------------------------- input

    /// A message (already parsed) arrived from `from` at `now`.
    ///
    /// Requests: retransmissions are absorbed (re-sending the last response where the state
    /// machine says so), ACKs are matched to INVITE server transactions, new requests create a
    /// server transaction and go up as [`TuEvent::Request`] with `received`/`rport` set on their top
    /// Via (§18.2.1, RFC 3581 §4). Responses are matched to client transactions (§17.1.3); stray
    /// responses are dropped (a B2BUA does not forward them).
    pub fn handle_message(&mut self, msg: SipMessage, from: Peer, now: Instant) {
        match msg {
            SipMessage::Request(req) => self.handle_request(req, from, now),
            SipMessage::Response(resp) => self.handle_response(resp, now),
        }
        self.prune();
    }

    fn handle_request(&mut self, mut req: Request, from: Peer, now: Instant) {
        let Some(key) = server_key(&req) else {
            self.stats.malformed += 1;
            return;
        };
        set_received(&mut req.headers, from);

        if req.method == Method::Ack {
            self.handle_ack(req, key, from, now);
            return;
        }

        if let Some(&id) = self.servers.get(&key) {
            self.absorb_request(id);
            return;
        }

        // §9.2: "the CANCEL request matches a transaction ... using the procedures of §17.2.3 with
        // the method INVITE".
        let cancels = if req.method == Method::Cancel {
            self.servers.get(&key.with_method(Method::Invite)).copied()
        } else {
            None
        };

        let id = self.alloc_id();
        self.stats.server_created += 1;
        if req.method == Method::Invite {
            // §17.2.1: "the server transaction MUST generate a 100 (Trying) response unless it
            // knows that the TU will generate a provisional or final response within 200 ms".
            // The TU handles the request before the next transmit is polled: the 100 goes out
            // then, unless the TU has answered (a challenge or a refusal is one packet, not two).
            let bytes = trying_for(&req);
            self.trying_due.push(id);
            let tx = Tx::new(
                TxKind::InviteServer,
                TxState::Proceeding,
                from,
                Key::Server(key.clone()),
                bytes,
                self.cfg.t1,
            );
            self.txs.insert(id, tx);
        } else {
            let tx = Tx::new(
                TxKind::NonInviteServer,
                TxState::Trying,
                from,
                Key::Server(key.clone()),
                Vec::new(),
                self.cfg.t1,
            );
            self.txs.insert(id, tx);
        }
        self.servers.insert(key, id);
        self.events.push_back(TuEvent::Request {
            tx: id,
            req,
            from,
            cancels,
        });
    }

    /// A request matched a live server transaction: a retransmission.
    fn absorb_request(&mut self, id: TxId) {
        let Some(tx) = self.txs.get(&id) else { return };
        self.stats.retransmissions_absorbed += 1;
        let resend = match (tx.kind, tx.state) {
            // §17.2.1: "If a request retransmission is received while in the "Proceeding" state,
            // the most recent provisional response that was received from the TU MUST be passed
            // to the transport layer for retransmission." And in "Completed": "the server SHOULD
            // pass the response to the transport for retransmission".
            (TxKind::InviteServer, TxState::Proceeding | TxState::Completed) => true,
            // RFC 6026 §7.1: in "Accepted", retransmitted INVITEs are absorbed without a resend
            // (the TU retransmits the 2xx itself).
            (TxKind::InviteServer, _) => false,
            // §17.2.2: in "Trying" "any retransmissions of the request received while in this
            // state MUST be discarded"; in "Proceeding"/"Completed" the last response is resent.
            (TxKind::NonInviteServer, TxState::Proceeding | TxState::Completed) => true,
            _ => false,
        };
        if resend && !tx.bytes.is_empty() {
            let t = Transmit {
                to: tx.peer,
                data: tx.bytes.clone(),
            };
            self.transmits.push_back(t);
            self.stats.retransmissions_sent += 1;
        }
    }

    fn handle_ack(&mut self, req: Request, key: ServerKey, from: Peer, now: Instant) {
        let inv_key = key.with_method(Method::Invite);
        let mut found = self.servers.get(&inv_key).copied();
        if found.is_none() {
            if let ServerKey::Legacy { to_tag, .. } = &key {
                // RFC 2543 matching: the ACK carries the To tag of our response while the INVITE
                // (and so the key) had none: "the To tag of the ACK matches the To tag of the
                // response sent by the server transaction" (§17.2.3).
                if let Some(&id) = self.servers.get(&inv_key.with_to_tag("")) {
                    let ok = self
                        .txs
                        .get(&id)
                        .and_then(|t| t.response_to_tag.as_deref())
                        .is_some_and(|t| t == to_tag.as_str());
                    if ok {
                        found = Some(id);
                    }
                }
            }
        }
        if let Some(id) = found {
            let state = self.txs.get(&id).map(|t| t.state);
            match state {
                Some(TxState::Completed) => {
                    // §17.2.1: "If an ACK is received while the server transaction is in the
                    // "Completed" state, the server transaction MUST transition to the
                    // "Confirmed" state. As Timer G is ignored in this state, any
                    // retransmissions of the response will cease." Timer I = T4 (0 reliable).
                    let t4 = self.cfg.t4;
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Confirmed;
                        tx.ack_received = true;
                        tx.timers[Timer::G.idx()] = None;
                        tx.timers[Timer::H.idx()] = None;
                        if tx.reliable {
                            self.terminate(id);
                        } else {
                            self.arm(id, Timer::I, now + t4);
                        }
                    }
                    return;
                }
                Some(TxState::Confirmed) => {
                    // "The purpose of the "Confirmed" state is to absorb any additional ACK
                    // messages that arrive" (§17.2.1).
                    self.stats.retransmissions_absorbed += 1;
                    return;
                }
                Some(TxState::Proceeding) => {
                    // An ACK before any final response: meaningless, drop it.
                    self.stats.retransmissions_absorbed += 1;
                    return;
                }
                // RFC 6026 §7.1 Accepted: the ACK is passed to the TU (below).
                _ => {}
            }
        }
        self.match_2xx_ack(&req);
        self.events.push_back(TuEvent::Ack { req, from });
    }

    /// An ACK for a 2xx: stop the 2xx retransmissions of §13.3.1.4 when Call-ID, CSeq number and
    /// From tag match a pending 2xx.
    fn match_2xx_ack(&mut self, ack: &Request) {
        let Some(call_id) = ack.headers.get("Call-ID").map(str::trim) else {
            return;
        };
        let Some((cseq, _)) = ack.headers.get("CSeq").and_then(parse_cseq) else {
            return;
        };
        let Some(&id) = self.pending_2xx.get(&(call_id.to_string(), cseq)) else {
            return;
        };
        let from_tag = ack.headers.get("From").and_then(tag_param).unwrap_or("");
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if let Some(r) = tx.reliable_2xx.as_mut() {
            if r.from_tag == from_tag {
                r.acked = true;
                tx.ack_received = true;
                tx.timers[Timer::Retx2xx.idx()] = None;
                self.pending_2xx.remove(&(call_id.to_string(), cseq));
            }
        }
    }

    /// Tell the layer that the ACK for the 2xx of (Call-ID, CSeq number) arrived (when the TU
    /// matched it by other means): 2xx retransmissions stop.
    pub fn ack_received(&mut self, call_id: &str, cseq: u32) {
        if let Some(id) = self.pending_2xx.remove(&(call_id.trim().to_string(), cseq)) {
            if let Some(tx) = self.txs.get_mut(&id) {
                tx.ack_received = true;
                tx.timers[Timer::Retx2xx.idx()] = None;
                if let Some(r) = tx.reliable_2xx.as_mut() {
                    r.acked = true;
                }
            }
        }
        self.prune();
    }

    fn handle_response(&mut self, resp: Response, now: Instant) {
        let key = (|| {
            let via = top_via(&resp.headers)?;
            let branch = via.param("branch")?.to_string();
            let (_, method) = resp.headers.get("CSeq").and_then(parse_cseq)?;
            Some(ClientKey { branch, method })
        })();
        let Some(key) = key else {
            self.stats.malformed += 1;
            return;
        };
        let Some(&id) = self.clients.get(&key) else {
            self.stats.stray_responses += 1;
            return;
        };
        let Some(tx) = self.txs.get(&id) else {
            return;
        };
        let status = resp.status;
        if !(100..=699).contains(&status) {
            self.stats.malformed += 1;
            return;
        }
        let (kind, state, reliable) = (tx.kind, tx.state, tx.reliable);
        match kind {
            TxKind::InviteClient => match (state, status) {
                (TxState::Calling | TxState::Proceeding, 100..=199) => {
                    // §17.1.1.2: "If the client transaction receives a provisional response
                    // while in the "Calling" state, it transitions to the "Proceeding" state. In
                    // the "Proceeding" state, the client transaction SHOULD NOT retransmit the
                    // request any longer."
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Proceeding;
                        tx.timers[Timer::A.idx()] = None;
                        tx.timers[Timer::B.idx()] = None;
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Calling | TxState::Proceeding, 200..=299) => {
                    // RFC 6026 §8.4: "If a 2xx response is received while the client INVITE
                    // state machine is in the "Calling" or "Proceeding" states, it MUST
                    // transition to the "Accepted" state, pass the 2xx response to the TU, and
                    // set Timer M to 64*T1."
                    let m = now + self.cfg.t1x64();
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Accepted;
                        tx.timers[Timer::A.idx()] = None;
                        tx.timers[Timer::B.idx()] = None;
                        tx.timers[Timer::CancelGuard.idx()] = None;
                    }
                    self.arm(id, Timer::M, m);
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Calling | TxState::Proceeding, _) => {
                    // §17.1.1.2: "reception of a response with status code from 300-699 MUST
                    // cause the client transaction to transition to "Completed". The client
                    // transaction MUST pass the received response up to the TU, and the client
                    // transaction MUST generate an ACK request". Timer D: >= 32 s / 0.
                    let ack = self
                        .txs
                        .get(&id)
                        .and_then(|t| t.ack_template.as_deref())
                        .map(|tpl| encode(&SipMessage::Request(build_ack(tpl, &resp))))
                        .unwrap_or_default();
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Completed;
                        tx.timers[Timer::A.idx()] = None;
                        tx.timers[Timer::B.idx()] = None;
                        tx.timers[Timer::CancelGuard.idx()] = None;
                        self.transmits.push_back(Transmit {
                            to: tx.peer,
                            data: ack.clone(),
                        });
                        tx.ack = Some(ack);
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.arm(id, Timer::D, now + TIMER_D_UNRELIABLE);
                    }
                }
                (TxState::Accepted, 200..=299) => {
                    // RFC 6026 §8.4: "any 2xx responses that match this client transaction ...
                    // MUST be passed up to the TU" while in "Accepted".
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Completed, 300..=699) => {
                    // §17.1.1.2: "Any retransmissions of the final response that are received
                    // while in the "Completed" state MUST cause the ACK to be re-passed to the
                    // transport layer for retransmission, but the newly received response MUST
                    // NOT be passed up to the TU."
                    self.stats.retransmissions_absorbed += 1;
                    if let Some(tx) = self.txs.get(&id) {
                        if let Some(ack) = &tx.ack {
                            self.transmits.push_back(Transmit {
                                to: tx.peer,
                                data: ack.clone(),
                            });
                            self.stats.retransmissions_sent += 1;
                        }
                    }
                }
                _ => {
                    self.stats.retransmissions_absorbed += 1;
                }
            },
            TxKind::NonInviteClient => match (state, status) {
                (TxState::Trying | TxState::Proceeding, 100..=199) => {
                    // §17.1.2.2: "If a provisional response is received while in the "Trying"
                    // state, the response MUST be passed to the TU, and then the client
                    // transaction SHOULD move to the "Proceeding" state."
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Proceeding;
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                }
                (TxState::Trying | TxState::Proceeding, _) => {
                    // "If a final response (status codes 200-699) is received while in the
                    // "Trying" [or "Proceeding"] state, the response MUST be passed to the TU,
                    // and the client transaction MUST transition to the "Completed" state."
                    // Timer K: T4 for unreliable transports, zero for reliable ones.
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.state = TxState::Completed;
                        tx.timers[Timer::E.idx()] = None;
                        tx.timers[Timer::F.idx()] = None;
                    }
                    self.events.push_back(TuEvent::Response { tx: id, resp });
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.arm(id, Timer::K, now + self.cfg.t4);
                    }
                }
                _ => {
                    // "The "Completed" state exists to buffer any additional response
                    // retransmissions that may be received".
                    self.stats.retransmissions_absorbed += 1;
                }
            },
            TxKind::InviteServer | TxKind::NonInviteServer => {}
        }
    }

    // ----------------------------------------------------------------------------- TU → wire

    /// Start a client transaction for `req` towards `to`. The TU has already put the top Via (with
    /// a fresh branch starting with [`MAGIC_COOKIE`]) on `req`. INVITE runs the INVITE client
    /// machine (Timers A, B, D, M), anything else the non-INVITE one (E, F, K). The ACK for a
    /// non-2xx final is generated here (§17.1.1.3); the ACK for a 2xx is the TU's business
    /// ([`Transactions::send_stateless`]). An ACK passed here is sent statelessly and the id
    /// returned names no transaction.
    pub fn send_request(&mut self, req: Request, to: Peer, now: Instant) -> TxId {
        self.send_request_ref(&req, to, now)
    }

    /// [`Transactions::send_request`] for a TU that keeps the request (the layer only reads it:
    /// it is serialised once and the transaction keeps those bytes), saving the TU a clone.
    pub fn send_request_ref(&mut self, req: &Request, to: Peer, now: Instant) -> TxId {
        let id = self.alloc_id();
        let bytes = encode_request(req);
        if to.transport == Transport::Udp && bytes.len() > UDP_SIZE_LIMIT {
            self.stats.udp_oversize += 1;
        }
        self.transmits.push_back(Transmit {
            to,
            data: bytes.clone(),
        });
        if req.method == Method::Ack {
            self.prune();
            return id;
        }
        let branch = top_via(&req.headers)
            .and_then(|v| v.param("branch").map(str::to_string))
            // Without a branch no response can match; keep a unique key so timers still run.
            .unwrap_or_else(|| format!("\0{}", id.0));
        let key = ClientKey {
            branch,
            method: req.method.clone(),
        };
        self.stats.client_created += 1;
        let reliable = to.transport.is_reliable();
        let t1 = self.cfg.t1;
        let timeout = now + self.cfg.t1x64();
        if req.method == Method::Invite {
            // §17.1.1.2: "The "Calling" state MUST be entered when the TU initiates a new client
            // transaction with an INVITE request. ... If an unreliable transport is being used,
            // the client transaction MUST start timer A with a value of T1. ... the client
            // transaction MUST start timer B with a value of 64*T1 seconds".
            let mut tx = Tx::new(
                TxKind::InviteClient,
                TxState::Calling,
                to,
                Key::Client(key.clone()),
                bytes,
                t1,
            );
            tx.ack_template = Some(Box::new(ack_template(req)));
            self.txs.insert(id, tx);
            if !reliable {
                self.arm(id, Timer::A, now + t1);
            }
            self.arm(id, Timer::B, timeout);
        } else {
            // §17.1.2.2: "The "Trying" state is entered when the TU initiates a new client
            // transaction with a request. When entering this state, the client transaction
            // SHOULD set timer F to fire in 64*T1 seconds. ... If an unreliable transport is in
            // use, the client transaction MUST set timer E to fire in T1 seconds."
            if req.method == Method::Cancel {
                self.guard_cancelled_invite(&key.branch, now);
            }
            let tx = Tx::new(
                TxKind::NonInviteClient,
                TxState::Trying,
                to,
                Key::Client(key.clone()),
                bytes,
                t1,
            );
            self.txs.insert(id, tx);
            if !reliable {
                self.arm(id, Timer::E, now + t1);
            }
            self.arm(id, Timer::F, timeout);
        }
        self.clients.insert(key, id);
        self.prune();
        id
    }

    /// Bound INVITE client transaction `tx`: like a cancelled one (§9.1), it is destroyed (with
    /// a [`TuEvent::Timeout`]) 64·T1 from now unless a final response ends it first, so a peer
    /// that answers only 1xx cannot keep it forever (in "Proceeding" no timer of §17.1.1 runs).
    /// For a branch the TU gave up on, and for re-INVITEs, which are answered at once.
    pub fn guard_invite(&mut self, tx: TxId, now: Instant) {
        let Some(Key::Client(key)) = self.txs.get(&tx).map(|t| t.key.clone()) else {
            return;
        };
        if key.method == Method::Invite {
            self.guard_cancelled_invite(&key.branch, now);
        }
    }

    /// §9.1: "If there is no final response for the original request in 64*T1 seconds ... the
    /// client SHOULD then consider the original transaction cancelled and SHOULD destroy the
    /// client transaction handling the original request."
    fn guard_cancelled_invite(&mut self, branch: &str, now: Instant) {
        let key = ClientKey {
            branch: branch.to_string(),
            method: Method::Invite,
        };
        let Some(&id) = self.clients.get(&key) else {
            return;
        };
        let live = self
            .txs
            .get(&id)
            .is_some_and(|t| matches!(t.state, TxState::Calling | TxState::Proceeding));
        let already = self
            .txs
            .get(&id)
            .is_some_and(|t| t.timers[Timer::CancelGuard.idx()].is_some());
        if live && !already {
            let at = now + self.cfg.t1x64();
            self.arm(id, Timer::CancelGuard, at);
        }
    }

    /// Send a response on server transaction `tx`: provisional responses any number of times, then
    /// one final. On an INVITE server transaction a 2xx moves it to RFC 6026's "Accepted" state
    /// (Timer L = 64·T1) in which retransmitted INVITEs are absorbed and further 2xx from the TU
    /// are sent; a 3xx-6xx moves it to "Completed" and is retransmitted with Timer G until the ACK
    /// (Timer H bounds the wait). Responses on a transaction that no longer accepts them are
    /// dropped.
    pub fn send_response(&mut self, tx: TxId, resp: Response, now: Instant) {
        self.respond(tx, resp, now);
        self.prune();
    }

    /// Answer server transaction `tx` with a final response sent once, and forget the
    /// transaction at once: no retransmission of the response, no state kept (a retransmitted
    /// request is then a new one and gets its own answer). For answers to sources that have not
    /// shown who they are (challenges): whoever forges their address gets one packet per packet.
    pub fn respond_once(&mut self, tx: TxId, resp: Response) {
        let Some(t) = self.txs.get(&tx) else {
            return;
        };
        if t.kind.is_client() || resp.status < 200 {
            return;
        }
        self.transmits.push_back(Transmit {
            to: t.peer,
            data: encode_response(&resp),
        });
        self.stats.stateless_answers += 1;
        self.terminate(tx);
        self.prune();
    }

    /// Forget server transaction `tx` without answering it (a request from a banned source).
    pub fn discard(&mut self, tx: TxId) {
        if self.txs.get(&tx).is_some_and(|t| !t.kind.is_client()) {
            self.terminate(tx);
            self.prune();
        }
    }

    fn respond(&mut self, id: TxId, resp: Response, now: Instant) -> bool {
        let Some(tx) = self.txs.get_mut(&id) else {
            return false;
        };
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return false;
        }
        tx.tu_answered = true;
        let t1 = self.cfg.t1;
        let t64 = self.cfg.t1x64();
        let reliable = tx.reliable;
        match (tx.kind, tx.state) {
            (TxKind::InviteServer, TxState::Proceeding) => {
                let bytes = encode_response(&resp);
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: bytes.clone(),
                });
                tx.bytes = bytes;
                match status {
                    100..=199 => {}
                    200..=299 => {
                        // RFC 6026 §7.1: "If, while in the "Proceeding" state, the TU passes a
                        // 2xx response to the server transaction, the server transaction MUST
                        // pass this response to the transport layer for transmission. ... The
                        // server transaction MUST then transition to the "Accepted" state" and
                        // start Timer L = 64*T1.
                        tx.state = TxState::Accepted;
                        self.arm(id, Timer::L, now + t64);
                    }
                    _ => {
                        // §17.2.1: "While in the "Proceeding" state, if the TU passes a response
                        // with status code from 300 to 699 to the server transaction, the
                        // response MUST be passed to the transport layer for transmission, and
                        // the state machine MUST enter the "Completed" state. For unreliable
                        // transports, timer G is set to fire in T1 seconds ... timer H MUST be
                        // set to fire in 64*T1 seconds for all transports."
                        tx.state = TxState::Completed;
                        tx.response_to_tag = resp
                            .headers
                            .get("To")
                            .and_then(tag_param)
                            .map(str::to_string);
                        tx.interval = t1;
                        if !reliable {
                            self.arm(id, Timer::G, now + t1);
                        }
                        self.arm(id, Timer::H, now + t64);
                    }
                }
                true
            }
            (TxKind::InviteServer, TxState::Accepted) if (200..=299).contains(&status) => {
                // RFC 6026 §7.1: "2xx from TU / send response" in "Accepted".
                let bytes = encode_response(&resp);
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: bytes.clone(),
                });
                tx.bytes = bytes;
                true
            }
            (TxKind::NonInviteServer, TxState::Trying | TxState::Proceeding) => {
                let bytes = encode_response(&resp);
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: bytes.clone(),
                });
                tx.bytes = bytes;
                if status < 200 {
                    // §17.2.2: "While in the "Trying" state, if the TU passes a provisional
                    // response to the server transaction, the server transaction MUST enter the
                    // "Proceeding" state."
                    tx.state = TxState::Proceeding;
                } else {
                    // "If the TU passes a final response (status codes 200-699) to the server
                    // while in the "Proceeding" state, the transaction MUST enter the
                    // "Completed" state ... When the server transaction enters the "Completed"
                    // state, it MUST set Timer J to fire in 64*T1 seconds for unreliable
                    // transports, and zero seconds for reliable transports."
                    tx.state = TxState::Completed;
                    if reliable {
                        self.terminate(id);
                    } else {
                        self.arm(id, Timer::J, now + t64);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Send a 2xx to an INVITE on server transaction `tx` and keep retransmitting it as the UAS
    /// core must (RFC 3261 §13.3.1.4): "the 2xx response is passed to the transport with an
    /// interval that starts at T1 seconds and doubles for each retransmission until it reaches T2
    /// seconds ... The response can be considered a final response ... once an ACK is received
    /// ... If the server retransmits the 2xx response for 64*T1 seconds without receiving an ACK,
    /// the dialog is confirmed, but the session SHOULD be terminated."
    ///
    /// An ACK whose Call-ID, CSeq number and From tag match stops the retransmissions (and still
    /// goes up as [`TuEvent::Ack`]); [`Transactions::ack_received`] does the same on the TU's word.
    /// Without an ACK, [`TuEvent::AckTimeout`] is emitted after 64·T1. No retransmissions over
    /// reliable transports, but the ACK wait still applies.
    pub fn send_2xx_reliably(&mut self, tx: TxId, resp: Response, now: Instant) {
        let is_2xx = (200..=299).contains(&resp.status);
        let call_id = resp.headers.get("Call-ID").map(|s| s.trim().to_string());
        let cseq = resp.headers.get("CSeq").and_then(parse_cseq).map(|c| c.0);
        let from_tag = resp
            .headers
            .get("From")
            .and_then(tag_param)
            .unwrap_or("")
            .to_string();
        let invite = self
            .txs
            .get(&tx)
            .is_some_and(|t| t.kind == TxKind::InviteServer);
        let sent = self.respond(tx, resp, now);
        if !(sent && is_2xx && invite) {
            self.prune();
            return;
        }
        let (Some(call_id), Some(cseq)) = (call_id, cseq) else {
            self.prune();
            return;
        };
        let t1 = self.cfg.t1;
        let Some(t) = self.txs.get_mut(&tx) else {
            self.prune();
            return;
        };
        let reliable = t.reliable;
        if t.reliable_2xx.is_none() {
            t.reliable_2xx = Some(Box::new(Reliable2xx {
                call_id: call_id.clone(),
                cseq,
                from_tag,
                acked: false,
            }));
            t.interval = t1;
            self.pending_2xx.insert((call_id, cseq), tx);
            if !reliable {
                self.arm(tx, Timer::Retx2xx, now + t1);
            }
        }
        self.prune();
    }

    /// Send a message outside any transaction (the ACK for a 2xx, stateless replies). Requests
    /// are sent as they are; the caller has put the Via it wants.
    pub fn send_stateless(&mut self, msg: &SipMessage, to: Peer) {
        self.transmits.push_back(Transmit {
            to,
            data: encode(msg),
        });
    }

    /// ICMP port unreachable / connection refused for `to` (§17.1.4, §18.4): every client
    /// transaction still waiting for a final response from `to` reports
    /// [`TuEvent::TransportError`] and terminates.
    ///
    /// INVITE server transactions that keep retransmitting a final response to `to` give up too
    /// (§17.2.4: "the server transaction ... SHOULD inform the TU that a failure has occurred, and
    /// MUST transition to the Terminated state"): one in "Completed" ends with
    /// `ServerTerminated { ack_received: false }`; one in "Accepted" whose 2xx is sent with
    /// [`Transactions::send_2xx_reliably`] and not yet ACKed reports [`TuEvent::AckTimeout`] first
    /// (the TU ends the session). Server transactions still waiting for the TU are left alone.
    pub fn transport_error(&mut self, to: Peer, _now: Instant) {
        let mut hit: Vec<(TxId, bool)> = self
            .txs
            .iter()
            .filter(|(_, t)| t.peer == to)
            .filter_map(|(id, t)| match (t.kind, t.state) {
                (
                    TxKind::InviteClient | TxKind::NonInviteClient,
                    TxState::Calling | TxState::Trying | TxState::Proceeding,
                ) => Some((*id, true)),
                (TxKind::InviteServer, TxState::Completed) => Some((*id, false)),
                (TxKind::InviteServer, TxState::Accepted)
                    if t.reliable_2xx.as_ref().is_some_and(|r| !r.acked) =>
                {
                    Some((*id, false))
                }
                _ => None,
            })
            .collect();
        hit.sort_unstable();
        for (id, client) in hit {
            self.stats.transport_errors += 1;
            if client {
                self.events.push_back(TuEvent::TransportError { tx: id });
            } else if self.state(id) == Some(TxState::Accepted) {
                self.events.push_back(TuEvent::AckTimeout { tx: id });
            }
            self.terminate(id);
        }
        self.prune();
    }

    // ----------------------------------------------------------------------------------- time

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let valid = self
                .txs
                .get(&id)
                .is_some_and(|t| t.timers[timer.idx()] == Some(at));
            if !valid {
                continue;
            }
            if let Some(t) = self.txs.get_mut(&id) {
                t.timers[timer.idx()] = None;
            }
            self.fire(id, timer, now);
        }
        self.prune();
    }

    fn fire(&mut self, id: TxId, timer: Timer, now: Instant) {
        let cfg = self.cfg;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        match (timer, tx.state) {
            (Timer::A, TxState::Calling) => {
                // §17.1.1.2: "When timer A fires, the client transaction MUST retransmit the
                // request by passing it to the transport layer, and MUST reset the timer with a
                // value of 2*T1." (It doubles on every firing, with no cap: T1, 2T1, 4T1 ...)
                tx.interval = tx.interval.saturating_mul(2);
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::A, next);
            }
            (Timer::B, TxState::Calling) | (Timer::F, TxState::Trying | TxState::Proceeding) => {
                // §17.1.1.2: "If the client transaction is still in the "Calling" state when
                // timer B fires, the client transaction SHOULD inform the TU that a timeout has
                // occurred." §17.1.2.2: "If Timer F fires while the client transaction is still
                // in the "Trying" [or "Proceeding"] state, the client transaction SHOULD inform
                // the TU about the timeout, and then it SHOULD enter the "Terminated" state."
                self.stats.timeouts += 1;
                self.events.push_back(TuEvent::Timeout { tx: id });
                self.terminate(id);
            }
            (Timer::CancelGuard, TxState::Calling | TxState::Proceeding) => {
                self.stats.timeouts += 1;
                self.events.push_back(TuEvent::Timeout { tx: id });
                self.terminate(id);
            }
            (Timer::E, TxState::Trying | TxState::Proceeding) => {
                // §17.1.2.2: in "Trying", Timer E is reset "with a value of MIN(2*T1, T2)" each
                // time (doubling up to T2); in "Proceeding" it is reset "with a value of T2".
                tx.interval = if tx.state == TxState::Trying {
                    tx.interval.saturating_mul(2).min(cfg.t2)
                } else {
                    cfg.t2
                };
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::E, next);
            }
            (Timer::G, TxState::Completed) => {
                // §17.2.1: "If timer G fires, the response is passed to the transport layer once
                // more for retransmission, and timer G is set to fire in MIN(2*T1, T2) seconds."
                tx.interval = tx.interval.saturating_mul(2).min(cfg.t2);
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::G, next);
            }
            (Timer::H, TxState::Completed) => {
                // §17.2.1: "If timer H fires while in the "Completed" state, it implies that the
                // ACK was never received. In this case, the server transaction MUST transition
                // to the "Terminated" state, and MUST indicate to the TU that a transaction
                // failure has occurred."
                self.stats.ack_timeouts += 1;
                self.terminate(id);
            }
            (Timer::Retx2xx, TxState::Accepted)
                if tx.reliable_2xx.as_ref().is_some_and(|r| !r.acked) =>
            {
                // §13.3.1.4: the interval "starts at T1 seconds and doubles for each
                // retransmission until it reaches T2 seconds".
                tx.interval = tx.interval.saturating_mul(2).min(cfg.t2);
                let next = now + tx.interval;
                self.transmits.push_back(Transmit {
                    to: tx.peer,
                    data: tx.bytes.clone(),
                });
                self.stats.retransmissions_sent += 1;
                self.arm(id, Timer::Retx2xx, next);
            }
            (Timer::L, TxState::Accepted) => {
                // RFC 6026 §7.1: "If Timer L fires while the INVITE server transaction is in the
                // "Accepted" state, the transaction MUST transition to the "Terminated" state."
                // The 2xx of §13.3.1.4 has been retransmitted for 64*T1 too: give up on it.
                if tx.reliable_2xx.as_ref().is_some_and(|r| !r.acked) {
                    self.stats.ack_timeouts += 1;
                    self.events.push_back(TuEvent::AckTimeout { tx: id });
                }
                self.terminate(id);
            }
            // D (§17.1.1.2), K (§17.1.2.2), I (§17.2.1), J (§17.2.2), M (RFC 6026 §8.4): the
            // transaction has absorbed stragglers long enough.
            (Timer::D, TxState::Completed)
            | (Timer::K, TxState::Completed)
            | (Timer::I, TxState::Confirmed)
            | (Timer::J, TxState::Completed)
            | (Timer::M, TxState::Accepted) => self.terminate(id),
            _ => {}
        }
    }

    // -------------------------------------------------------------------------------- helpers

    fn alloc_id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    fn arm(&mut self, id: TxId, timer: Timer, at: Instant) {
        if let Some(t) = self.txs.get_mut(&id) {
            t.timers[timer.idx()] = Some(at);
            self.timers.push(Reverse((at, id, timer)));
        }
    }

    /// "The client [server] transaction MUST be destroyed the instant it enters the "Terminated"
    /// state" (§17.1.1.2, RFC 6026). Server transactions report it to the TU.
    fn terminate(&mut self, id: TxId) {
        let Some(tx) = self.txs.remove(&id) else {
            return;
        };
        match &tx.key {
            Key::Client(k) => {
                if self.clients.get(k) == Some(&id) {
                    self.clients.remove(k);
                }
            }
            Key::Server(k) => {
                if self.servers.get(k) == Some(&id) {
                    self.servers.remove(k);
                }
            }
        }
        if let Some(r) = &tx.reliable_2xx {
            let k = (r.call_id.clone(), r.cseq);
            if self.pending_2xx.get(&k) == Some(&id) {
                self.pending_2xx.remove(&k);
            }
        }
        if !tx.kind.is_client() {
            let ack_received = match tx.kind {
                TxKind::InviteServer => match tx.state {
                    TxState::Completed => false,
                    TxState::Accepted => tx.reliable_2xx.as_ref().is_none_or(|r| r.acked),
                    _ => true,
                },
                _ => true,
            };
            self.events.push_back(TuEvent::ServerTerminated {
                tx: id,
                ack_received,
            });
        }
    }

    /// Drop stale timer entries from the top of the heap so that [`Self::poll_timeout`] is exact,
    /// and compact the heap when stale entries dominate it.
    fn prune(&mut self) {
        while let Some(Reverse((at, id, timer))) = self.timers.peek().copied() {
            let valid = self
                .txs
                .get(&id)
                .is_some_and(|t| t.timers[timer.idx()] == Some(at));
            if valid {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 1024 && self.timers.len() > 8 * (self.txs.len() + 1) {
            let txs = &self.txs;
            self.timers.retain(|Reverse((at, id, timer))| {
                txs.get(id)
                    .is_some_and(|t| t.timers[timer.idx()] == Some(*at))
            });
        }
    }
}

// ------------------------------------------------------------------------------------------------
// message helpers (private; the structured views of `crate::headers` are not needed for the few
// fields transaction matching reads)

/// The first value of the first Via header line, and the rest of that line.
fn split_first_element(value: &str) -> (&str, &str) {
    // Bytes, not chars: the three delimiters are ASCII, so a match is always a char boundary
    // (decoding chars made this scan ~4% of the core's instructions per call).
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &c) in value.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b',' if !in_quote => return (&value[..i], &value[i..]),
            _ => {}
        }
    }
    (value, "")
}

/// A view of one Via value: `SIP/2.0/UDP host:port;param=value;...` (§20.42). Whitespace is
/// allowed around the slashes.
struct ViaView<'a> {
    /// Everything before the first `;` (protocol and sent-by), as on the wire.
    head: &'a str,
    sent_by: &'a str,
    params: &'a str,
}

impl<'a> ViaView<'a> {
    fn parse(value: &'a str) -> Option<ViaView<'a>> {
        let value = value.trim();
        let (head, params) = match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        let slash = head.rfind('/')?;
        let after = head.get(slash + 1..)?.trim_start();
        let ws = after.find(|c: char| c.is_ascii_whitespace())?;
        let sent_by = after.get(ws..)?.trim();
        if sent_by.is_empty() {
            return None;
        }
        Some(ViaView {
            head,
            sent_by,
            params,
        })
    }

    fn params(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        self.params
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.find('=') {
                Some(i) => (p[..i].trim(), Some(p[i + 1..].trim())),
                None => (p, None),
            })
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.unwrap_or(""))
    }

    fn has_param(&self, name: &str) -> bool {
        self.params().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The host of sent-by, without brackets or port.
    fn host(&self) -> &'a str {
        let s = self.sent_by;
        if let Some(rest) = s.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        s.split(':').next().unwrap_or(s)
    }
}

fn top_via(headers: &Headers) -> Option<ViaView<'_>> {
    let line = headers.get("Via")?;
    ViaView::parse(split_first_element(line).0)
}

/// `CSeq: 4711 INVITE` (§20.16).
fn parse_cseq(value: &str) -> Option<(u32, Method)> {
    let mut it = value.split_ascii_whitespace();
    let num = it.next()?.parse().ok()?;
    let method = Method::from_token(it.next()?);
    Some((num, method))
}

/// The `tag` parameter of a From/To value (name-addr or addr-spec, §20.20, §20.39).
pub(crate) fn tag_param(value: &str) -> Option<&str> {
    // Header parameters start after the closing '>' of a name-addr, or after the first ';' of
    // a bare addr-spec (whose own URI parameters are then header parameters, §20.10).
    // Bytes, not chars: every delimiter is ASCII, so each match is a char boundary.
    let mut in_quote = false;
    let mut escaped = false;
    let mut params_at = None;
    let mut open = false;
    for (i, &c) in value.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if in_quote => escaped = true,
            b'"' if !open => in_quote = !in_quote,
            b'<' if !in_quote => open = true,
            b'>' if open => {
                params_at = Some(i + 1);
                break;
            }
            b';' if !in_quote && !open => {
                params_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let params = value.get(params_at?..)?;
    params.split(';').find_map(|p| {
        let p = p.trim();
        let (n, v) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// §17.2.3 matching key of a request (ACK keeps its own method here; callers map it to INVITE).
fn server_key(req: &Request) -> Option<ServerKey> {
    let via = top_via(&req.headers)?;
    let (cseq, _) = req.headers.get("CSeq").and_then(parse_cseq)?;
    let method = if req.method == Method::Ack {
        Method::Invite
    } else {
        req.method.clone()
    };
    if let Some(branch) = via.param("branch") {
        // "The branch parameter in the topmost Via header field of the request is examined. If
        // it is present and begins with the magic cookie "z9hG4bK", the request was generated by
        // a client transaction compliant to this specification." A branch that is the bare
        // cookie identifies nothing (the shape of RFC 4475's "badbranch"): treat it as RFC 2543.
        if branch.len() > MAGIC_COOKIE.len() && branch.starts_with(MAGIC_COOKIE) {
            return Some(ServerKey::Branch {
                branch: branch.to_string(),
                sent_by: via.sent_by.to_ascii_lowercase(),
                method,
            });
        }
    }
    let h = &req.headers;
    Some(ServerKey::Legacy {
        uri: req.uri.trim().to_string(),
        to_tag: h.get("To").and_then(tag_param).unwrap_or("").to_string(),
        from_tag: h.get("From").and_then(tag_param).unwrap_or("").to_string(),
        call_id: h.get("Call-ID").unwrap_or("").trim().to_string(),
        cseq,
        method,
        via: split_first_element(h.get("Via").unwrap_or(""))
            .0
            .trim()
            .to_string(),
    })
}

/// §18.2.1: "When the server transport receives a request over any transport, it MUST examine the
/// value of the "sent-by" parameter in the top Via header field value. If the host portion of the
/// "sent-by" parameter contains a domain name, or if it contains an IP address that differs from
/// the packet source address, the server MUST add a "received" parameter to that Via header field
/// value." RFC 3581 §4: if the top Via has an "rport" parameter with no value, "it MUST set the
/// value of the parameter to the source port of the request" and add "received" "even if it is
/// identical to the value of the "sent-by" component".
fn set_received(headers: &mut Headers, from: Peer) {
    let Some(pos) = headers
        .0
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case("Via"))
    else {
        return;
    };
    let Some(line) = headers.0.get(pos) else {
        return;
    };
    let (first, rest) = split_first_element(&line.value);
    let Some(via) = ViaView::parse(first) else {
        return;
    };
    let src_ip = from.addr.ip().to_canonical();
    let rport = via.has_param("rport");
    let host_matches = via.host().parse::<IpAddr>().is_ok_and(|ip| ip == src_ip);
    if host_matches && !rport {
        return;
    }
    let mut out = String::with_capacity(first.len() + 40);
    out.push_str(via.head.trim());
    for (name, value) in via.params() {
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        out.push(';');
        if name.eq_ignore_ascii_case("rport") {
            out.push_str(name);
            let _ = write!(out, "={}", from.addr.port());
        } else {
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
    }
    let _ = write!(out, ";received={src_ip}");
    out.push_str(rest);
    if let Some(h) = headers.0.get_mut(pos) {
        h.value = out;
    }
}

/// The 100 (Trying) of §17.2.1, built as §8.2.6 says: "the From, Call-ID, CSeq and Via header
/// fields (and the To header field, with no tag added) ... copied from the request", plus the
/// Timestamp (§8.2.6.1).
fn trying_for(req: &Request) -> Vec<u8> {
    // Written straight to bytes (the same bytes `Response::to_bytes` gives for this response):
    // no intermediate header list to build and drop for every INVITE.
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"SIP/2.0 100 Trying\r\n");
    for h in req.headers.iter() {
        let n = h.name.as_str();
        if ["Via", "From", "To", "Call-ID", "CSeq", "Timestamp"]
            .iter()
            .any(|k| n.eq_ignore_ascii_case(k))
        {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

fn ack_template(req: &Request) -> AckTemplate {
    let h = &req.headers;
    AckTemplate {
        uri: req.uri.clone(),
        via: h
            .get("Via")
            .map(|v| split_first_element(v).0.trim().to_string())
            .unwrap_or_default(),
        from: h.get("From").unwrap_or("").to_string(),
        call_id: h.get("Call-ID").unwrap_or("").to_string(),
        cseq: h.get("CSeq").and_then(parse_cseq).map(|c| c.0).unwrap_or(0),
        routes: h.get_all("Route").map(str::to_string).collect(),
    }
}

/// §17.1.1.3: "The ACK request constructed by the client transaction MUST contain values for the
/// Call-ID, From, and Request-URI that are equal to the values of those header fields in the
/// request passed to the transport by the client transaction ... The To header field in the ACK
/// MUST equal the To header field in the response being acknowledged ... The ACK MUST contain a
/// single Via header field, and this MUST be equal to the top Via header field of the original
/// request. The CSeq header field in the ACK MUST contain the same value for the sequence number
/// as was present in the original request, but the method parameter MUST be equal to "ACK". If
/// the INVITE request whose response is being acknowledged had Route header fields, those header
/// fields MUST appear in the ACK."
fn build_ack(tpl: &AckTemplate, resp: &Response) -> Request {
    let mut headers = Headers::with_capacity(8);
    headers.push("Via", tpl.via.clone());
    for r in &tpl.routes {
        headers.push("Route", r.clone());
    }
    headers.push("Max-Forwards", "70");
    headers.push("From", tpl.from.clone());
    headers.push("To", resp.headers.get("To").unwrap_or("").to_string());
    headers.push("Call-ID", tpl.call_id.clone());
    headers.push("CSeq", format!("{} ACK", tpl.cseq));
    Request {
        method: Method::Ack,
        uri: tpl.uri.clone(),
        headers,
        body: Vec::new(),
    }
}

/// Serialize once (`crate::parse`'s writer: headers in order, Content-Length equal to the body).
fn encode_request(req: &Request) -> Vec<u8> {
    req.to_bytes()
}

fn encode_response(resp: &Response) -> Vec<u8> {
    resp.to_bytes()
}

fn encode(msg: &SipMessage) -> Vec<u8> {
    msg.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    fn peer(s: &str) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: s.parse().unwrap(),
        }
    }

    #[test]
    fn via_view_parses_spaced_protocol_and_params() {
        let v =
            ViaView::parse("SIP / 2.0 / UDP  192.0.2.1:5060 ; branch = z9hG4bKabc ;rport").unwrap();
        assert_eq!(v.sent_by, "192.0.2.1:5060");
        assert_eq!(v.host(), "192.0.2.1");
        assert_eq!(v.param("branch"), Some("z9hG4bKabc"));
        assert_eq!(v.param("rport"), Some(""));
        let v6 = ViaView::parse("SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx").unwrap();
        assert_eq!(v6.host(), "2001:db8::1");
        assert!(ViaView::parse("garbage").is_none());
        assert!(ViaView::parse("").is_none());
    }

    #[test]
    fn tag_param_handles_quotes_and_addr_spec() {
        assert_eq!(
            tag_param("\"a;tag=x>\" <sip:a@b;tag=no>;tag=yes"),
            Some("yes")
        );
        assert_eq!(tag_param("sip:a@b;tag=t1"), Some("t1"));
        assert_eq!(tag_param("<sip:a@b>"), None);
        assert_eq!(tag_param("<sip:a@b"), None);
    }

    #[test]
    fn received_and_rport_are_set_on_top_via_only() {
        let mut h = Headers::new();
        h.push(
            "Via",
            "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;rport, SIP/2.0/UDP other;branch=z9hG4bK2",
        );
        h.push("Via", "SIP/2.0/UDP third;branch=z9hG4bK3");
        set_received(&mut h, peer("192.0.2.9:3333"));
        let vias: Vec<_> = h.get_all("Via").collect();
        assert_eq!(
            vias[0],
            "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;rport=3333;received=192.0.2.9, SIP/2.0/UDP other;branch=z9hG4bK2"
        );
        assert_eq!(vias[1], "SIP/2.0/UDP third;branch=z9hG4bK3");

        // Same IP, no rport: untouched.
        let mut h = Headers::new();
        h.push("Via", "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1");
        set_received(&mut h, peer("192.0.2.9:5060"));
        assert_eq!(
            h.get("Via"),
            Some("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1")
        );
    }
}
