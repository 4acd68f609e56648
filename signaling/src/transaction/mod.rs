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

mod incoming;
mod outgoing;
#[cfg(test)]
mod tests;
mod timers;
mod wire;

pub(crate) use wire::tag_param;
use wire::*;

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
    pub(super) fn flush_trying(&mut self) {
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
}
