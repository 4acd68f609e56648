//! The back-to-back user agent core (sans-IO).
//!
//! Every call is two dialogs: leg A, which trunkline answers as a UAS, and leg B, which it places
//! as a UAC towards the trunk the dial plan picked. The legs share nothing on the wire: leg B gets
//! its own Call-ID, tags, branches, CSeq space and Contact, so no Via, Record-Route, Contact or
//! Call-ID of one side reaches the other (topology hiding). Responses are mapped from one leg to
//! the other by class; in-dialog requests (re-INVITE, UPDATE, INFO, BYE ...) are relayed per leg.
//!
//! The core owns the transaction layer. The I/O shell feeds datagrams, stream frames, transport
//! errors and time; it drains [`B2bua::poll_transmit`] and sleeps until [`B2bua::poll_timeout`].
//! Decisions that depend on configuration or on the media relay are delegated to a [`Policy`]
//! passed to each call, so the core never reads globals and the plan a call started with stays with
//! the call (the targets are copied into it).

use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::headers::NameAddr;
use crate::message::{Headers, Method, Request, Response, SipMessage};
use crate::parse;
use crate::registrar::{Denial, LookupMiss, Registrar, RegistrarSettings};
use crate::transaction::{
    tag_param, IdMap, PeerMap, TimerConfig, Transactions, Transmit, TuEvent, TxId,
};
use crate::uri::Uri;
use crate::{check, Peer, Transport};
use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

mod caps;
mod presence;

pub use caps::Caps;

/// Which side of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller's side, answered by trunkline.
    A,
    /// The callee's side, placed by trunkline.
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// One place to try for leg B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub trunk: String,
    pub peer: Peer,
    /// Host part (`host:port`) used in the Request-URI and To of leg B.
    pub host: String,
}

/// What the dial plan decided for a new call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Place leg B at these targets in failover order.
    Route {
        targets: Vec<Target>,
        to_user: String,
        from_user: String,
    },
    /// Answer leg A with a 3xx listing these contacts.
    Redirect { code: u16, contacts: Vec<String> },
    /// Answer leg A with this final status.
    Reject { code: u16, reason: String },
    /// Answer leg A 503 Service Unavailable with `Retry-After: retry_after` (seconds): an
    /// overload or a limit rather than a routing decision (RFC 3261 §21.5.4, §20.33).
    Unavailable { retry_after: u32 },
}

/// Why the media side refused an SDP offer.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaRefusal {
    /// The offer itself is unusable (bad SDP, unsupported address, ...): 488 Not Acceptable Here
    /// (RFC 3261 §21.4.26).
    NotAcceptable(String),
    /// The relay has no room now (ports exhausted, stopped): 503 with `Retry-After` (seconds),
    /// a condition of the server, not of the offer (RFC 3261 §21.5.4).
    Unavailable { retry_after: u32, detail: String },
}

impl MediaRefusal {
    /// The status, reason phrase and optional Retry-After to answer the offer with.
    pub fn answer(&self) -> (u16, &'static str, Option<u32>) {
        match self {
            MediaRefusal::NotAcceptable(_) => (488, "Not Acceptable Here", None),
            MediaRefusal::Unavailable { retry_after, .. } => {
                (503, "Service Unavailable", Some(*retry_after))
            }
        }
    }
}

impl std::fmt::Display for MediaRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaRefusal::NotAcceptable(d) => f.write_str(d),
            MediaRefusal::Unavailable { detail, .. } => f.write_str(detail),
        }
    }
}

/// Identity of a call as the media side knows it: leg A's Call-ID and From tag.
#[derive(Clone, Copy, Debug)]
pub struct CallRef<'a> {
    pub id: u64,
    pub call_id: &'a str,
    pub from_tag: &'a str,
    /// The signalling peer of leg A and of leg B (the target being tried or answered): the
    /// media side lets a NATed endpoint's media come from that IP.
    pub peers: [SocketAddr; 2],
}

impl CallRef<'_> {
    /// The signalling peer of `leg`.
    pub fn peer(&self, leg: Leg) -> SocketAddr {
        match leg {
            Leg::A => self.peers[0],
            Leg::B => self.peers[1],
        }
    }
}

/// What happened to a call, for metrics and logs.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    /// Leg B was tried at a target.
    Attempt { call: u64, trunk: String },
    /// The call got its final answer on leg A: `status` is what leg A was answered (200 for an
    /// answered call). `post_dial_delay` is INVITE to first ringing/answer.
    Finished {
        call: u64,
        trunk: Option<String>,
        status: u16,
        post_dial_delay: Option<Duration>,
    },
    /// A confirmed call ended (BYE from either side, media timeout, shutdown).
    Ended { call: u64, duration: Duration },
    /// A request was rejected before it became a call.
    Rejected { status: u16, reason: String },
}

/// The decisions the core delegates.
pub trait Policy {
    /// Route a new INVITE. `to_user`/`from_user` are the user parts of To and From.
    fn route(&mut self, req: &Request, from: Peer, to_user: &str, from_user: &str) -> RouteOutcome;
    /// An SDP offer arrived on leg `from`; return the SDP to send to the other leg.
    fn media_offer(
        &mut self,
        call: CallRef<'_>,
        from: Leg,
        sdp: &[u8],
    ) -> Result<Vec<u8>, MediaRefusal>;
    /// An SDP answer arrived on leg `from`; return the SDP to send to the other leg.
    fn media_answer(&mut self, call: CallRef<'_>, from: Leg, sdp: &[u8])
        -> Result<Vec<u8>, String>;
    /// The call is gone: release its media.
    fn media_release(&mut self, call: CallRef<'_>);
    /// For metrics.
    fn event(&mut self, ev: CallEvent);
    /// May leg B be tried at `target` now? Asked before a failover attempt (the first target
    /// was chosen by [`Policy::route`]); a refused target is skipped like a failed one, e.g. a
    /// trunk at its call or call-rate limit.
    fn admit_target(&mut self, _target: &Target) -> bool {
        true
    }
    /// Where an out-of-dialog MESSAGE (RFC 3428) goes. Default: as a call would
    /// ([`Policy::route`]); a live policy skips the call limits, a message is not a call.
    fn route_message(
        &mut self,
        req: &Request,
        from: Peer,
        to_user: &str,
        from_user: &str,
    ) -> RouteOutcome {
        self.route(req, from, to_user, from_user)
    }
    /// Whether `from` is one of the configured trunks (carriers, PBXs): their requests are not
    /// asked for a registrar user's credentials.
    fn is_trunk(&mut self, _from: Peer) -> bool {
        false
    }
    /// The registrar's settings when trunkline serves REGISTER (`None`: REGISTER gets 405 and
    /// every call follows [`Policy::route`]).
    fn registrar(&mut self) -> Option<Arc<RegistrarSettings>> {
        None
    }
    /// A call for a served domain whose user has registered: `targets` are the bindings, best
    /// first. The policy applies its admission checks (overload, limits) and returns the route
    /// (default: as given, the Request-URI user taken from each target's `host`).
    fn route_registered(
        &mut self,
        _req: &Request,
        _from: Peer,
        targets: Vec<Target>,
        from_user: &str,
    ) -> RouteOutcome {
        RouteOutcome::Route {
            targets,
            to_user: String::new(),
            from_user: from_user.to_string(),
        }
    }
}

/// A policy that routes every call to one target and passes SDP through unchanged (tests).
pub struct StaticPolicy {
    pub targets: Vec<Target>,
    pub events: Vec<CallEvent>,
    /// Call ids whose media was released, in order (tests check that every call releases once).
    pub released: Vec<u64>,
}

impl Policy for StaticPolicy {
    fn route(&mut self, _: &Request, _: Peer, to_user: &str, from_user: &str) -> RouteOutcome {
        if self.targets.is_empty() {
            return RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            };
        }
        RouteOutcome::Route {
            targets: self.targets.clone(),
            to_user: to_user.to_string(),
            from_user: from_user.to_string(),
        }
    }
    fn media_offer(&mut self, _: CallRef<'_>, _: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaRefusal> {
        Ok(sdp.to_vec())
    }
    fn media_answer(&mut self, _: CallRef<'_>, _: Leg, sdp: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn media_release(&mut self, call: CallRef<'_>) {
        self.released.push(call.id);
    }
    fn event(&mut self, ev: CallEvent) {
        self.events.push(ev);
    }
}

/// Static settings of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Our address per transport (what goes into Via and Contact).
    pub local_udp: Option<SocketAddr>,
    pub local_tcp: Option<SocketAddr>,
    pub local_tls: Option<SocketAddr>,
    pub timers: TimerConfig,
    /// Give up on a target that sent no response at all after this long and try the next one
    /// (a short fr_timer; Timer B still bounds the transaction).
    pub no_answer_failover: Duration,
    /// Give up on a target that is ringing (sent a provisional response) but gives no final
    /// answer after this long: CANCEL it and fail over as on 408 (RFC 3261 §16.6 step 11's
    /// Timer C, "greater than 3 minutes"; without it a callee that never answers nor stops
    /// ringing would hold the call, and the caller, forever).
    pub ringing_timeout: Duration,
    /// Seed of the core's CSPRNG (ChaCha12): tags, branches, Call-IDs, CSeqs and the Digest
    /// nonce key all come from it, so none can be predicted from another. The shell passes
    /// 32 bytes from the OS (getrandom); tests pass a fixed seed (virtual, repeatable runs).
    pub seed: [u8; 32],
    pub user_agent: String,
    /// Per-source and per-target caps.
    pub caps: Caps,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            local_udp: None,
            local_tcp: None,
            local_tls: None,
            timers: TimerConfig::default(),
            no_answer_failover: Duration::from_secs(4),
            ringing_timeout: Duration::from_secs(181),
            seed: *b"trunkline default seed: tests!!!",
            user_agent: concat!("trunkline/", env!("CARGO_PKG_VERSION")).to_string(),
            caps: Caps::default(),
        }
    }
}

/// The reasons [`CoreStats::rejected`] counts: `parse_error` (unparseable), `admission`
/// (RFC 3261 checks), `auth` (challenged or refused credentials), `auth_banned` (dropped: the
/// source failed too often), `no_dialog` (an in-dialog request in none of ours: 481), `caps`
/// (a per-source or per-target cap: 503).
pub const REJECT_REASONS: [&str; 6] = [
    "parse_error",
    "admission",
    "auth",
    "auth_banned",
    "no_dialog",
    "caps",
];

/// Counters the shell exports.
#[derive(Clone, Debug, Default)]
pub struct CoreStats {
    pub messages_in: u64,
    pub parse_errors: u64,
    pub rejected: HashMap<&'static str, u64>,
    pub calls_started: u64,
    /// REGISTER requests answered, by status.
    pub registers: HashMap<u16, u64>,
    /// Out-of-dialog MESSAGEs answered, by status (relayed answers and trunkline's own).
    pub messages: HashMap<u16, u64>,
    /// NAT keep-alive OPTIONS sent to registered phones.
    pub keepalives: u64,
}

/// Who sent a request that starts something, as far as routing may trust it
/// ([`B2bua::admit_caller`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Caller {
    /// No registrar that authenticates calls: every source is taken as it comes.
    Open,
    /// A configured trunk.
    Trunk,
    /// An unauthenticated source calling a served user with a live binding: the location
    /// service alone routes it.
    Local,
    /// Authenticated as registrar user `name` (of `domain`): the identity it calls with.
    User { name: String, domain: String },
}

impl Caller {
    /// May it assert identities (P-Asserted-Identity and kin) that cross to the other leg?
    fn trusted(&self) -> bool {
        matches!(self, Caller::Trunk)
    }
}

/// A request [`B2bua::admit_caller`] let through, and the location service's answer for its
/// Request-URI (`None`: not a served domain).
struct Admitted {
    caller: Caller,
    located: Option<Result<Vec<Target>, RouteOutcome>>,
}

impl Admitted {
    /// The From user leg B carries: the authenticated user's name, whatever the From said
    /// (an authenticated bob cannot call as alice); else the From's.
    fn caller_user(&self, from: &NameAddr) -> String {
        match &self.caller {
            Caller::User { name, .. } => name.clone(),
            _ => from.uri.user().unwrap_or_default().to_string(),
        }
    }
    /// The P-Asserted-Identity trunkline sets: the authenticated user's AoR.
    fn asserted(&self) -> Option<String> {
        match &self.caller {
            Caller::User { name, domain } => Some(cat(&["<sip:", &user_at(name), domain, ">"])),
            _ => None,
        }
    }
}

/// The user part of a Request-URI (empty when it has none).
fn ruri_user(uri: &str) -> String {
    Uri::parse(uri)
        .ok()
        .and_then(|u| u.user().map(str::to_string))
        .unwrap_or_default()
}

/// Identity headers only trunkline or a trunk may set (RFC 3325 §5: a network "MUST remove"
/// P-Asserted-Identity from requests of untrusted sources).
const IDENTITY_HEADERS: &[&str] = &[
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Remote-Party-ID",
];

/// Remove what an untrusted caller claims about itself; assert `user` (authenticated) instead.
fn strip_identity(req: &mut Request, asserted: Option<String>) {
    for h in IDENTITY_HEADERS {
        req.headers.remove(h);
    }
    if let Some(a) = asserted {
        req.headers.push("P-Asserted-Identity", a);
    }
}

/// Why an out-of-dialog request is not relayed.
enum Refusal {
    Plain(u16, String),
    Unavailable(u32),
    Redirect(u16, Vec<String>),
}

/// A MESSAGE relayed to leg B, waiting for its final answer.
struct PendingMessage {
    server_tx: TxId,
    a_req: Request,
    to_tag: String,
}

/// Largest MESSAGE body sent over UDP (RFC 3428 section 8: 1300 bytes unless the path is
/// congestion-controlled); larger ones get 513.
pub const MESSAGE_UDP_MAX: usize = 1300;

/// The `Target::trunk` of a call routed to a registered contact.
pub const REGISTERED: &str = "registered";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// Leg B's INVITE is out; nothing final yet.
    Proceeding,
    /// Leg A was answered 2xx.
    Confirmed,
    /// BYE sent / call over; waiting for transactions to finish.
    Terminated,
}

/// Dialog state of one leg, as seen from trunkline.
#[derive(Clone, Debug)]
struct LegDialog {
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// The From/To as sent by us on this leg, without tags (name-addr text).
    local_uri: String,
    remote_uri: String,
    /// Remote target (Contact of the peer), the Request-URI of in-dialog requests.
    remote_target: String,
    /// Route set (from Record-Route), already in the order to put in Route headers.
    route_set: Vec<String>,
    peer: Peer,
    /// The peer is a configured trunk: its in-dialog requests are taken from its address only.
    trunk: bool,
    local_cseq: u32,
    remote_cseq: Option<u32>,
}

impl LegDialog {
    /// RFC 3261 §12.2.2: a request is in this dialog when its Call-ID (matched by the caller),
    /// its To tag (ours) and its From tag (the peer's) all match; and a trunk's leg takes
    /// requests from the trunk's address only (a stranger who learnt the identifiers cannot
    /// end or redirect its calls).
    fn accepts(&self, from_tag: &str, to_tag: &str, from: Peer) -> bool {
        self.local_tag == to_tag
            && self.remote_tag.as_deref().unwrap_or("") == from_tag
            && (!self.trunk || from.addr.ip() == self.peer.addr.ip())
    }
}

enum ClientPurpose {
    /// The initial INVITE of leg B at target `idx`.
    Invite,
    Cancel,
    Bye,
    /// A request relayed from the other leg: answer `server_tx` with the final response.
    Relay {
        server_tx: TxId,
        method: Method,
    },
}

struct Call {
    id: u64,
    state: CallState,
    started: Instant,
    answered: Option<Instant>,
    pdd: Option<Duration>,
    a: LegDialog,
    /// Leg A's initial INVITE server transaction and its request.
    a_invite_tx: Option<TxId>,
    a_invite: Request,
    a_offer: Option<Vec<u8>>,
    b: LegDialog,
    b_invite_tx: Option<TxId>,
    b_invite: Option<Request>,
    b_got_provisional: bool,
    /// The media (relay ports, trunk slot) was released: once per call, whichever end path
    /// gets there first.
    media_released: bool,
    /// Body/Content-Type of leg B's INVITE (already rewritten for B) for failover retries.
    b_offer: Option<(String, Vec<u8>)>,
    targets: Vec<Target>,
    target_idx: usize,
    to_user: String,
    cancelled: bool,
    /// ACK we sent for B's 2xx, re-sent when B retransmits its 2xx.
    b_ack: Option<Request>,
    /// Late offer: B's 2xx carried the offer; wait for A's ACK with the answer before ACKing B.
    b_ack_pending: bool,
    last_failure: Option<(u16, String)>,
    /// Leg A's INVITE server transaction whose 2xx is being retransmitted until ACK.
    a_2xx_tx: Option<TxId>,
    trunk: Option<String>,
    /// The unauthenticated source this unanswered call counts against (`caps`).
    early_source: Option<std::net::IpAddr>,
}

impl Call {
    fn leg(&self, leg: Leg) -> &LegDialog {
        match leg {
            Leg::A => &self.a,
            Leg::B => &self.b,
        }
    }
    fn leg_mut(&mut self, leg: Leg) -> &mut LegDialog {
        match leg {
            Leg::A => &mut self.a,
            Leg::B => &mut self.b,
        }
    }
    fn media_ref(&self) -> CallRef<'_> {
        CallRef {
            id: self.id,
            call_id: &self.a.call_id,
            from_tag: self.a.remote_tag.as_deref().unwrap_or(""),
            peers: [self.a.peer.addr, self.b.peer.addr],
        }
    }
}

/// Our client transactions and what each is for, with a count per call so that "does this call
/// still wait for a response?" is a lookup, not a scan of every pending transaction (with many
/// calls ringing at once that scan ran on every call teardown).
#[derive(Default)]
struct ClientTxs {
    map: IdMap<TxId, (u64, ClientPurpose)>,
    per_call: IdMap<u64, u32>,
    /// Calls whose last client transaction just went: the pump collects them if they are over
    /// (whichever handler removed the transaction, the call is not left behind).
    drained: Vec<u64>,
}

impl ClientTxs {
    fn insert(&mut self, tx: TxId, v: (u64, ClientPurpose)) {
        let call = v.0;
        if let Some((old, _)) = self.map.insert(tx, v) {
            self.release(old);
        }
        *self.per_call.entry(call).or_insert(0) += 1;
    }
    fn remove(&mut self, tx: &TxId) -> Option<(u64, ClientPurpose)> {
        let v = self.map.remove(tx)?;
        self.release(v.0);
        Some(v)
    }
    fn release(&mut self, call: u64) {
        if let Some(n) = self.per_call.get_mut(&call) {
            *n -= 1;
            if *n == 0 {
                self.per_call.remove(&call);
                self.drained.push(call);
            }
        }
    }
    fn get(&self, tx: &TxId) -> Option<&(u64, ClientPurpose)> {
        self.map.get(tx)
    }
    fn has_call(&self, call: u64) -> bool {
        self.per_call.contains_key(&call)
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: std::cmp::Reverse<Instant>,
    call: u64,
    target_idx: usize,
    /// `false`: no answer at all yet ([`CoreConfig::no_answer_failover`]); `true`: ringing
    /// without a final answer ([`CoreConfig::ringing_timeout`]).
    ringing: bool,
}

/// A leg B INVITE the call moved on from (no answer, or ringing too long). A late provisional
/// response gets it CANCELled (RFC 3261 §9.1: only once something was heard), a late 2xx is
/// ACKed and ended with BYE; the transaction layer destroys it after 64·T1 at the latest.
struct Abandoned {
    invite: Request,
    peer: Peer,
    cancelled: bool,
}

/// The B2BUA.
pub struct B2bua {
    cfg: CoreConfig,
    tx: Transactions,
    calls: IdMap<u64, Call>,
    /// leg A Call-ID -> [(leg A From tag, call)]: keyed by the Call-ID alone so a lookup borrows
    /// the received text instead of building an owned (Call-ID, tag) pair per message.
    by_a: PeerMap<String, Vec<(String, u64)>>,
    /// leg B Call-ID (ours) -> call
    by_b: PeerMap<String, u64>,
    client: ClientTxs,
    /// Server transactions of relayed in-dialog requests: tx -> (call, leg it came from)
    server: IdMap<TxId, (u64, Leg)>,
    /// The original requests of relayed in-dialog transactions, by server transaction.
    relayed_requests: IdMap<TxId, Request>,
    /// Per transport: Via up to the branch value, and Contact (formatted once, not per message).
    local_via: [String; 3],
    local_contact: [String; 3],
    /// Our host (IP) for the From of leg B.
    local_host: String,
    deadlines: BinaryHeap<Deadline>,
    abandoned: IdMap<TxId, Abandoned>,
    next_call: u64,
    rng: ChaCha12Rng,
    /// The Digest nonce key (drawn from `rng` at start).
    nonce_key: [u8; 32],
    out: Vec<Transmit>,
    stats: CoreStats,
    /// The location service, created at the first REGISTER or lookup.
    registrar: Option<Registrar>,
    /// When the next NAT keep-alive round is due (registrar bindings over UDP).
    next_keepalive: Option<Instant>,
    /// MESSAGEs relayed to leg B, by their client transaction: the leg A request and its
    /// server transaction, answered with leg B's final status.
    messages: HashMap<TxId, PendingMessage>,
    /// Relayed subscriptions (SUBSCRIBE/NOTIFY, `presence.rs`), by id; their dialogs by
    /// (Call-ID, our tag); their client transactions.
    subs: HashMap<u64, presence::Subscription>,
    sub_keys: HashMap<(String, String), (u64, Leg)>,
    sub_client: HashMap<TxId, presence::SubClient>,
    next_sub: u64,
    draining: bool,
    /// Unanswered calls per unauthenticated source; subscriptions per source and per target.
    early: caps::Counts<std::net::IpAddr>,
    sub_sources: caps::Counts<std::net::IpAddr>,
    sub_targets: caps::Counts<String>,
}

impl B2bua {
    pub fn new(cfg: CoreConfig) -> B2bua {
        let tx = Transactions::new(cfg.timers);
        let mut rng = ChaCha12Rng::from_seed(cfg.seed);
        let mut nonce_key = [0u8; 32];
        rng.fill_bytes(&mut nonce_key);
        let ts = [Transport::Udp, Transport::Tcp, Transport::Tls];
        let local_via = ts.map(|t| {
            format!(
                "SIP/2.0/{} {};branch=",
                t.via_token(),
                local_addr_text(&cfg, t)
            )
        });
        let local_contact = ts.map(|t| {
            let addr = local_addr_text(&cfg, t);
            match t {
                Transport::Udp => format!("<sip:{addr}>"),
                Transport::Tcp => format!("<sip:{addr};transport=tcp>"),
                Transport::Tls => format!("<sips:{addr}>"),
            }
        });
        let local_host = cfg
            .local_udp
            .or(cfg.local_tcp)
            .or(cfg.local_tls)
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        B2bua {
            cfg,
            tx,
            calls: IdMap::default(),
            by_a: PeerMap::default(),
            by_b: PeerMap::default(),
            client: ClientTxs::default(),
            server: IdMap::default(),
            relayed_requests: IdMap::default(),
            local_via,
            local_contact,
            local_host,
            deadlines: BinaryHeap::new(),
            abandoned: IdMap::default(),
            next_call: 1,
            rng,
            nonce_key,
            out: Vec::new(),
            stats: CoreStats::default(),
            registrar: None,
            next_keepalive: None,
            messages: HashMap::new(),
            subs: HashMap::new(),
            sub_keys: HashMap::new(),
            sub_client: HashMap::new(),
            next_sub: 1,
            draining: false,
            early: caps::Counts::default(),
            sub_sources: caps::Counts::default(),
            sub_targets: caps::Counts::default(),
        }
    }

    /// Live calls (any state).
    /// NAT keep-alives (RFC 3261 OPTIONS, stateless): every `keepalive` seconds one OPTIONS
    /// to each binding registered over UDP, at the address its REGISTER came from, so the
    /// phone's NAT mapping stays open for incoming calls. Answers are absorbed.
    fn keepalives(&mut self, now: Instant, policy: &mut dyn Policy) {
        let every = policy.registrar().map_or(0, |s| s.keepalive);
        let Some(reg) = &self.registrar else {
            self.next_keepalive = None;
            return;
        };
        if every == 0 {
            self.next_keepalive = None;
            return;
        }
        let period = Duration::from_secs(u64::from(every));
        match self.next_keepalive {
            Some(t) if t > now => return,
            None => {
                self.next_keepalive = Some(now + period);
                return;
            }
            Some(_) => {}
        }
        let targets = reg.udp_bindings(now);
        self.next_keepalive =
            (!targets.is_empty() || reg.binding_count(now) > 0).then_some(now + period);
        for (peer, contact) in targets {
            let via = self.via_for(Transport::Udp);
            let tag = self.new_tag();
            let call_id = self.new_call_id();
            let mut h = Headers::with_capacity(8);
            h.push("Via", via);
            h.push("Max-Forwards", "70");
            h.push(
                "From",
                cat(&["<sip:keepalive@", self.our_host(), ">;tag=", &tag]),
            );
            h.push("To", cat(&["<", &contact, ">"]));
            h.push("Call-ID", call_id);
            h.push("CSeq", cseq_value(1, "OPTIONS"));
            h.push("Content-Length", "0");
            let req = Request {
                method: Method::Options,
                uri: contact,
                headers: h,
                body: Vec::new(),
            };
            self.tx.send_stateless(&SipMessage::Request(req), peer);
            self.stats.keepalives += 1;
        }
    }

    /// MESSAGEs relayed and not answered yet.
    pub fn pending_messages(&self) -> usize {
        self.messages.len()
    }

    /// Live registered contacts (location service bindings).
    pub fn registered_contacts(&self, now: Instant) -> usize {
        self.registrar.as_ref().map_or(0, |r| r.binding_count(now))
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }
    /// Is call `id` (as named in [`CallEvent`]s) still known to the core?
    pub fn has_call(&self, id: u64) -> bool {
        self.calls.contains_key(&id)
    }
    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.tx.len()
    }
    /// The live transactions, one line each (leak tests).
    pub fn describe_transactions(&self) -> Vec<String> {
        self.tx.describe()
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }
    pub fn tx_stats(&self) -> crate::transaction::TxStats {
        self.tx.stats()
    }
    /// Stop taking new calls (graceful shutdown): new INVITEs get 503.
    /// New values for [`CoreConfig::no_answer_failover`] and [`CoreConfig::ringing_timeout`]
    /// (a reloaded configuration); they apply to the attempts started from now on.
    pub fn set_call_timers(&mut self, no_answer: Duration, ringing: Duration) {
        self.cfg.no_answer_failover = no_answer;
        self.cfg.ringing_timeout = ringing;
    }

    /// New caps (a reloaded configuration); what is held already stays.
    pub fn set_caps(&mut self, caps: Caps) {
        self.cfg.caps = caps;
    }

    /// Sources and targets with something counted against a cap (leak tests: 0 when quiet).
    pub fn capped_keys(&self) -> usize {
        self.early.len() + self.sub_sources.len() + self.sub_targets.len()
    }

    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// 64 bits from the CSPRNG: an output tells nothing of the next (RFC 3261 §19.3: tags and
    /// Call-IDs must be "cryptographically random"; a blind BYE or re-INVITE needs them).
    fn rand(&mut self) -> u64 {
        self.rng.next_u64()
    }
    fn new_tag(&mut self) -> String {
        let mut s = String::with_capacity(16);
        push_hex(&mut s, self.rand(), 1);
        s
    }
    /// `z9hG4bK` + random hex (RFC 3261 §8.1.1.7).
    fn push_branch(&mut self, s: &mut String) {
        s.push_str("z9hG4bK");
        push_hex(s, self.rand(), 1);
        push_hex(s, self.rand() & 0xffff, 1);
    }
    /// 128 random bits.
    fn new_call_id(&mut self) -> String {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, self.rand(), 16);
        push_hex(&mut s, self.rand(), 16);
        s
    }

    fn via_for(&mut self, t: Transport) -> String {
        let mut v = String::with_capacity(self.local_via[t as usize].len() + 32);
        v.push_str(&self.local_via[t as usize]);
        self.push_branch(&mut v);
        v.push_str(";rport");
        v
    }

    fn contact_for(&self, t: Transport) -> String {
        self.local_contact[t as usize].clone()
    }

    fn our_host(&self) -> &str {
        &self.local_host
    }

    // ------------------------------------------------------------------ inputs

    /// A datagram (UDP) or one framed message (TCP/TLS) arrived.
    pub fn handle_bytes(&mut self, data: &[u8], from: Peer, now: Instant, policy: &mut dyn Policy) {
        self.stats.messages_in += 1;
        match parse::parse(data) {
            Ok(msg) => self.tx.handle_message(msg, from, now),
            Err(err) => {
                self.stats.parse_errors += 1;
                *self.stats.rejected.entry("parse_error").or_insert(0) += 1;
                if let Some(resp) = parse::bad_request_response(&err) {
                    self.tx.send_stateless(&SipMessage::Response(resp), from);
                }
            }
        }
        self.pump(now, policy);
    }

    /// The transport could not deliver to `to` (ICMP port unreachable, TCP refused).
    pub fn transport_error(&mut self, to: Peer, now: Instant, policy: &mut dyn Policy) {
        self.tx.transport_error(to, now);
        self.pump(now, policy);
    }

    pub fn handle_timeout(&mut self, now: Instant, policy: &mut dyn Policy) {
        self.tx.handle_timeout(now);
        self.expire_subs(now);
        self.keepalives(now, policy);
        while let Some(d) = self.deadlines.peek() {
            if d.at.0 > now {
                break;
            }
            let Some(d) = self.deadlines.pop() else { break };
            if d.ringing {
                self.ringing_deadline(d.call, d.target_idx, now, policy);
            } else {
                self.no_answer_deadline(d.call, d.target_idx, now, policy);
            }
        }
        // Branches given up on whose transaction is gone need no more care.
        let txs = &self.tx;
        self.abandoned.retain(|t, _| txs.state(*t).is_some());
        self.pump(now, policy);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.tx.poll_timeout();
        let b = self.deadlines.peek().map(|d| d.at.0);
        let c = self.next_sub_expiry();
        [a, b, c, self.next_keepalive].into_iter().flatten().min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.out.pop() {
            return Some(t);
        }
        self.tx.poll_transmit()
    }

    /// End a call from outside (media timeout, operator, shutdown): BYE both legs.
    pub fn terminate_call(&mut self, call: u64, now: Instant, policy: &mut dyn Policy) {
        if let Some(c) = self.calls.get(&call) {
            match c.state {
                CallState::Confirmed => {
                    self.send_bye(call, Leg::A, now);
                    self.send_bye(call, Leg::B, now);
                    self.finish_confirmed(call, now, policy);
                }
                // Not answered yet (shutdown): 503 + Retry-After to A so it tries elsewhere or
                // later (RFC 3261 §21.5.4), CANCEL to B.
                CallState::Proceeding => {
                    self.abort_ringing(call, 503, "Service Unavailable", Some(30), now, policy)
                }
                CallState::Terminated => {}
            }
        }
        self.pump(now, policy);
    }

    /// Ids of the calls still in progress: answered or ringing (for shutdown).
    pub fn live_calls(&self) -> Vec<u64> {
        self.calls
            .values()
            .filter(|c| c.state != CallState::Terminated && !c.cancelled)
            .map(|c| c.id)
            .collect()
    }

    /// One line per call held: state and what it still waits for (leak tests).
    pub fn describe_calls(&self) -> Vec<String> {
        self.calls
            .values()
            .map(|c| {
                format!(
                    "call {} {:?} cancelled={} a_tx={:?} b_tx={:?} a_2xx={:?} client_txs={} media_released={} ack_pending={}",
                    c.id,
                    c.state,
                    c.cancelled,
                    c.a_invite_tx,
                    c.b_invite_tx,
                    c.a_2xx_tx,
                    self.client.has_call(c.id),
                    c.media_released,
                    c.b_ack_pending
                )
            })
            .collect()
    }

    /// Find a call by leg A's Call-ID and From tag (the media side's key).
    pub fn find_call(&self, a_call_id: &str, a_from_tag: &str) -> Option<u64> {
        self.by_a
            .get(a_call_id)?
            .iter()
            .find(|(tag, _)| tag == a_from_tag)
            .map(|(_, id)| *id)
    }

    /// Ids of confirmed calls (for shutdown).
    pub fn confirmed_calls(&self) -> Vec<u64> {
        self.calls
            .values()
            .filter(|c| c.state == CallState::Confirmed)
            .map(|c| c.id)
            .collect()
    }

    // ------------------------------------------------------------------ event pump

    fn pump(&mut self, now: Instant, policy: &mut dyn Policy) {
        self.pump_events(now, policy);
        while let Some(id) = self.client.drained.pop() {
            self.maybe_collect_with_media(id, policy);
        }
    }

    fn pump_events(&mut self, now: Instant, policy: &mut dyn Policy) {
        while let Some(ev) = self.tx.poll_event() {
            match ev {
                TuEvent::Request {
                    tx,
                    req,
                    from,
                    cancels,
                } => self.on_request(tx, req, from, cancels, now, policy),
                TuEvent::Ack { req, from } => self.on_ack(req, from, now, policy),
                TuEvent::Response { tx, resp } => self.on_response(tx, resp, now, policy),
                TuEvent::Timeout { tx } => {
                    self.on_client_failure(tx, 408, "Request Timeout", now, policy)
                }
                TuEvent::TransportError { tx } => {
                    self.on_client_failure(tx, 503, "Service Unavailable", now, policy)
                }
                TuEvent::AckTimeout { tx } => self.on_ack_timeout(tx, now, policy),
                TuEvent::ServerTerminated { tx, .. } => {
                    self.server.remove(&tx);
                }
            }
        }
    }

    // ------------------------------------------------------------------ requests

    fn on_request(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        cancels: Option<TxId>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if req.method == Method::Cancel {
            self.on_cancel(tx, &req, cancels, now, policy);
            return;
        }
        let to_tag = req
            .headers
            .get("To")
            .and_then(tag_param)
            .map(str::to_string);
        if let Err(rej) = check::admission(&req) {
            // In-dialog requests still must be well formed.
            *self.stats.rejected.entry("admission").or_insert(0) += 1;
            policy.event(CallEvent::Rejected {
                status: rej.status,
                reason: rej.reason.to_string(),
            });
            let mut resp = make_response(&req, rej.status, &rej.reason, Some(&self.new_tag()));
            for (n, v) in &rej.headers {
                resp.headers.push(n, v.clone());
            }
            self.tx.send_response(tx, resp, now);
            return;
        }
        if let Some(tag) = to_tag {
            let Some(req) = self.on_sub_in_dialog(tx, req, from, &tag, now) else {
                return;
            };
            self.on_in_dialog(tx, req, from, &tag, now, policy);
            return;
        }
        match req.method {
            Method::Invite => self.on_invite(tx, req, from, now, policy),
            Method::Options => {
                let tag = self.new_tag();
                let mut resp = make_response(&req, 200, "OK", Some(&tag));
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", "application/sdp");
                resp.headers.push("Server", self.cfg.user_agent.clone());
                self.tx.send_response(tx, resp, now);
            }
            Method::Register if policy.registrar().is_some() => {
                let Some(settings) = policy.registrar() else {
                    return;
                };
                let answer = match self.registrar_mut(now).register(&req, from, &settings, now) {
                    Ok(a) => a,
                    Err(denial) => {
                        let status = self.deny(tx, &req, denial, now);
                        *self.stats.registers.entry(status).or_insert(0) += 1;
                        return;
                    }
                };
                if answer.status == 200 && settings.keepalive > 0 && self.next_keepalive.is_none() {
                    self.next_keepalive =
                        Some(now + Duration::from_secs(u64::from(settings.keepalive)));
                }
                let tag = self.new_tag();
                let mut resp = make_response(&req, answer.status, answer.reason, Some(&tag));
                for (n, v) in answer.headers {
                    resp.headers.push(n, v);
                }
                self.tx.send_response(tx, resp, now);
                *self.stats.registers.entry(answer.status).or_insert(0) += 1;
            }
            Method::Message => self.on_message(tx, req, from, now, policy),
            Method::Subscribe => self.on_subscribe(tx, req, from, now, policy),
            Method::Ack => {}
            Method::Bye => {
                let tag = self.new_tag();
                let resp = make_response(&req, 481, "Call/Transaction Does Not Exist", Some(&tag));
                self.tx.send_response(tx, resp, now);
            }
            _ => {
                let tag = self.new_tag();
                let mut resp = make_response(&req, 405, "Method Not Allowed", Some(&tag));
                resp.headers.push("Allow", ALLOW);
                self.tx.send_response(tx, resp, now);
            }
        }
    }

    /// An out-of-dialog MESSAGE (RFC 3428): relayed as a new request on leg B (topology
    /// hidden like a call's), its final answer relayed back; no dialog, no media.
    fn on_message(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if req.max_forwards().unwrap_or(70) == 0 {
            self.answer_own(tx, &req, 483, "Too Many Hops", now);
            return;
        }
        let (Some(from_na), Some(_to)) = (req.from(), req.to()) else {
            self.answer_own(tx, &req, 400, "Bad Request", now);
            return;
        };
        let admitted = match self.admit_caller(tx, &req, from, now, policy) {
            Ok(a) => a,
            Err(status) => {
                *self.stats.messages.entry(status).or_insert(0) += 1;
                return;
            }
        };
        let mut req = req;
        if !admitted.caller.trusted() {
            strip_identity(&mut req, admitted.asserted());
        }
        let (target, to_user, from_user) =
            match self.route_standalone(&req, &from_na, admitted, from, policy) {
                Ok(t) => t,
                Err(refusal) => {
                    let status = self.refuse(tx, &req, refusal, now);
                    *self.stats.messages.entry(status).or_insert(0) += 1;
                    return;
                }
            };
        if target.peer.transport == Transport::Udp && req.body.len() > MESSAGE_UDP_MAX {
            self.answer_own(tx, &req, 513, "Message Too Large", now);
            return;
        }
        let via = self.via_for(target.peer.transport);
        let from_tag = self.new_tag();
        let call_id = self.new_call_id();
        let user = user_at(&to_user);
        let mut h = Headers::with_capacity(12);
        h.push("Via", via);
        h.push(
            "Max-Forwards",
            req.max_forwards()
                .unwrap_or(70)
                .saturating_sub(1)
                .to_string(),
        );
        h.push(
            "From",
            cat(&[
                "<sip:",
                &user_at(&from_user),
                self.our_host(),
                ">;tag=",
                &from_tag,
            ]),
        );
        h.push("To", cat(&["<sip:", &user, &target.host, ">"]));
        h.push("Call-ID", call_id);
        h.push("CSeq", cseq_value(1, "MESSAGE"));
        copy_passthrough(&req.headers, &mut h);
        if let Some(ct) = req.headers.get("Content-Type") {
            h.push("Content-Type", ct.to_string());
        }
        let out = Request {
            method: Method::Message,
            uri: cat(&["sip:", &user, &target.host]),
            headers: h,
            body: req.body.clone(),
        };
        let ctx = self.tx.send_request(out, target.peer, now);
        let to_tag = self.new_tag();
        self.messages.insert(
            ctx,
            PendingMessage {
                server_tx: tx,
                a_req: req,
                to_tag,
            },
        );
    }

    /// Where an out-of-dialog request that is not a call (MESSAGE, SUBSCRIBE) goes: the
    /// location service for a served domain, else the policy's plan. The first target only.
    fn route_standalone(
        &mut self,
        req: &Request,
        from_na: &NameAddr,
        admitted: Admitted,
        from: Peer,
        policy: &mut dyn Policy,
    ) -> Result<(Target, String, String), Refusal> {
        let from_user = admitted.caller_user(from_na);
        let to_user = ruri_user(&req.uri);
        let outcome = match admitted.located {
            None => policy.route_message(req, from, &to_user, &from_user),
            Some(Err(miss)) => miss,
            Some(Ok(targets)) => RouteOutcome::Route {
                targets,
                to_user: String::new(),
                from_user: from_user.clone(),
            },
        };
        match outcome {
            RouteOutcome::Route {
                mut targets,
                to_user,
                from_user,
            } if !targets.is_empty() => Ok((targets.swap_remove(0), to_user, from_user)),
            RouteOutcome::Route { .. } => Err(Refusal::Plain(404, "Not Found".into())),
            RouteOutcome::Reject { code, reason } => Err(Refusal::Plain(code, reason)),
            RouteOutcome::Unavailable { retry_after } => Err(Refusal::Unavailable(retry_after)),
            RouteOutcome::Redirect { code, contacts } => Err(Refusal::Redirect(code, contacts)),
        }
    }

    /// The location service, created with the nonce key every use of it shares.
    fn registrar_mut(&mut self, now: Instant) -> &mut Registrar {
        let key = self.nonce_key;
        self.registrar
            .get_or_insert_with(|| Registrar::new(key, now))
    }

    /// The location service's answer for a request to `uri`: `None` when no registrar serves
    /// its domain (the dial plan decides); else the AoR's bindings as targets, best first, or
    /// the refusal (404 no such user, 480 not registered).
    fn locate(
        &self,
        uri: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<Result<Vec<Target>, RouteOutcome>> {
        let settings = policy.registrar()?;
        let uri = Uri::parse(uri).ok()?;
        let found = match &self.registrar {
            Some(reg) => reg.lookup(&uri, &settings, now),
            None => Registrar::new([0; 32], now).lookup(&uri, &settings, now),
        }?;
        Some(match found {
            Ok(bindings) => Ok(bindings
                .into_iter()
                .map(|b| Target {
                    trunk: REGISTERED.to_string(),
                    peer: b.source,
                    host: b.target,
                })
                .collect()),
            Err(LookupMiss::Unknown) => Err(RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            }),
            Err(LookupMiss::Offline) => Err(RouteOutcome::Reject {
                code: 480,
                reason: "Temporarily Unavailable".into(),
            }),
        })
    }

    /// The one authorization decision for a request that starts something (INVITE, MESSAGE,
    /// SUBSCRIBE), made on the identity that routes, the Request-URI (invariant 9):
    ///
    /// * from a trunk: trusted; the location service or the dial plan routes it;
    /// * from anywhere else, to a served user with a live binding: `Local`, and only the
    ///   location service routes it (never the dial plan, so never a trunk);
    /// * anything else must authenticate as a registrar user (RFC 3261 §22.3,
    ///   `Proxy-Authorization`); a challenge is sent once and no state kept. An unknown user
    ///   and a known one who is offline get the same challenge, so answers list no users.
    ///
    /// `Err(status)`: the request was answered (a challenge, 400) or dropped (a banned
    /// source: status 0).
    fn admit_caller(
        &mut self,
        tx: TxId,
        req: &Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Result<Admitted, u16> {
        let located = self.locate(&req.uri, now, policy);
        let trunk = policy.is_trunk(from);
        let settings = policy.registrar().filter(|s| s.authenticate_calls);
        let Some(s) = settings else {
            let caller = if trunk { Caller::Trunk } else { Caller::Open };
            return Ok(Admitted { caller, located });
        };
        if trunk {
            let caller = Caller::Trunk;
            return Ok(Admitted { caller, located });
        }
        if matches!(located, Some(Ok(_))) {
            let caller = Caller::Local;
            return Ok(Admitted { caller, located });
        }
        match self
            .registrar_mut(now)
            .authenticate_caller(req, from, &s, now)
        {
            Ok(name) => {
                let domain = s
                    .domains
                    .first()
                    .cloned()
                    .unwrap_or_else(|| s.realm.clone());
                let caller = Caller::User { name, domain };
                Ok(Admitted { caller, located })
            }
            Err(denial) => Err(self.deny(tx, req, denial, now)),
        }
    }

    /// Answer (or not) a request whose credentials failed; the status sent, 0 for none.
    /// Challenges go out once with no transaction kept (a forged source gets one packet per
    /// packet it sent, not a 100 and eleven retransmissions).
    fn deny(&mut self, tx: TxId, req: &Request, denial: Denial, now: Instant) -> u16 {
        match denial {
            Denial::Challenge(a) => {
                let tag = self.new_tag();
                let mut resp = make_response(req, a.status, a.reason, Some(&tag));
                for (n, v) in a.headers {
                    resp.headers.push(n, v);
                }
                self.tx.respond_once(tx, resp);
                *self.stats.rejected.entry("auth").or_insert(0) += 1;
                a.status
            }
            Denial::Answer(a) => {
                let tag = self.new_tag();
                let mut resp = make_response(req, a.status, a.reason, Some(&tag));
                for (n, v) in a.headers {
                    resp.headers.push(n, v);
                }
                self.tx.send_response(tx, resp, now);
                *self.stats.rejected.entry("auth").or_insert(0) += 1;
                a.status
            }
            Denial::Banned => {
                self.tx.discard(tx);
                *self.stats.rejected.entry("auth_banned").or_insert(0) += 1;
                0
            }
        }
    }

    /// 503 + Retry-After for a request over a per-source or per-target cap.
    fn refuse_capped(&mut self, tx: TxId, req: &Request, now: Instant) {
        let retry_after = self.cfg.caps.retry_after;
        self.refuse(tx, req, Refusal::Unavailable(retry_after), now);
        *self.stats.rejected.entry("caps").or_insert(0) += 1;
    }

    /// Answer a request trunkline will not relay; the status sent.
    fn refuse(&mut self, tx: TxId, req: &Request, refusal: Refusal, now: Instant) -> u16 {
        let tag = self.new_tag();
        let resp = match refusal {
            Refusal::Plain(code, reason) => make_response(req, code, &reason, Some(&tag)),
            Refusal::Unavailable(retry_after) => {
                let mut r = make_response(req, 503, "Service Unavailable", Some(&tag));
                r.headers.push("Retry-After", retry_after.to_string());
                r
            }
            Refusal::Redirect(code, contacts) => {
                let mut r = make_response(req, code, reason_phrase(code), Some(&tag));
                for c in &contacts {
                    r.headers.push("Contact", cat(&["<", c, ">"]));
                }
                r
            }
        };
        let status = resp.status;
        self.tx.send_response(tx, resp, now);
        status
    }

    fn answer_message(&mut self, pm: PendingMessage, status: u16, reason: &str, now: Instant) {
        let resp = make_response(&pm.a_req, status, reason, Some(&pm.to_tag));
        self.tx.send_response(pm.server_tx, resp, now);
        *self.stats.messages.entry(status).or_insert(0) += 1;
    }

    /// trunkline's own answer to a MESSAGE.
    fn answer_own(&mut self, tx: TxId, req: &Request, status: u16, reason: &str, now: Instant) {
        let tag = self.new_tag();
        let resp = make_response(req, status, reason, Some(&tag));
        self.tx.send_response(tx, resp, now);
        *self.stats.messages.entry(status).or_insert(0) += 1;
    }

    fn reject(
        &mut self,
        tx: TxId,
        req: &Request,
        code: u16,
        reason: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let tag = self.new_tag();
        let resp = make_response(req, code, reason, Some(&tag));
        self.tx.send_response(tx, resp, now);
        policy.event(CallEvent::Rejected {
            status: code,
            reason: reason.to_string(),
        });
    }

    fn on_invite(
        &mut self,
        tx: TxId,
        mut req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if self.draining {
            let tag = self.new_tag();
            let mut resp = make_response(&req, 503, "Service Unavailable", Some(&tag));
            resp.headers.push("Retry-After", "30");
            self.tx.send_response(tx, resp, now);
            policy.event(CallEvent::Rejected {
                status: 503,
                reason: "Service Unavailable".into(),
            });
            return;
        }
        // RFC 3261 §16.3 / §8.2: Max-Forwards 0 -> 483. trunkline is the request's target only
        // for OPTIONS, so every INVITE is on its way elsewhere.
        let max_forwards = req.max_forwards().unwrap_or(70);
        if max_forwards == 0 {
            self.reject(tx, &req, 483, "Too Many Hops", now, policy);
            return;
        }
        let (Some(from_na), Some(to_na), Some(call_id)) = (req.from(), req.to(), req.call_id())
        else {
            self.reject(tx, &req, 400, "Bad Request", now, policy);
            return;
        };
        // RFC 3261 §12.2.1.1 / RFC 4475 §3.4 (inv2543): an RFC 2543 peer sends no From tag; the
        // dialog is then identified by Call-ID alone (an empty tag), as §12 allows.
        let a_from_tag = from_na.tag().unwrap_or("").to_string();
        let call_id = call_id.to_string();
        // A retransmission is absorbed by the transaction layer; a second INVITE with the same
        // Call-ID and tag but a new branch (a merged request, RFC 3261 §8.2.2.2) gets 482.
        if self.find_call(&call_id, &a_from_tag).is_some() {
            self.reject(tx, &req, 482, "Loop Detected", now, policy);
            return;
        }
        let admitted = match self.admit_caller(tx, &req, from, now, policy) {
            Ok(a) => a,
            Err(status) => {
                if status != 0 {
                    policy.event(CallEvent::Rejected {
                        status,
                        reason: reason_phrase(status).into(),
                    });
                }
                return;
            }
        };
        let from_user = admitted.caller_user(&from_na);
        if !admitted.caller.trusted() {
            strip_identity(&mut req, admitted.asserted());
        }
        // Calls nobody vouches for (a stranger calling a registered phone: no trunk, no
        // credentials) hold relay ports and a ringing phone: a few at a time per source.
        // (Without a registrar that authenticates, the operator takes every source as it
        // comes, as a peer of the dial plan: no cap.)
        let early_source = (admitted.caller == Caller::Local).then(|| from.addr.ip());
        if let Some(ip) = early_source {
            if !self.early.room(&ip, self.cfg.caps.early_calls_per_source) {
                self.refuse_capped(tx, &req, now);
                policy.event(CallEvent::Rejected {
                    status: 503,
                    reason: "Service Unavailable".into(),
                });
                return;
            }
        }
        // The dial plan routes on the Request-URI's user: the field the authorization
        // decision was made on. A served domain: the location service decides, not the plan.
        let ruri_user = ruri_user(&req.uri);
        let outcome = match admitted.located {
            None => policy.route(&req, from, &ruri_user, &from_user),
            Some(Err(miss)) => miss,
            Some(Ok(targets)) => policy.route_registered(&req, from, targets, &from_user),
        };
        let (targets, to_user, from_user) = match outcome {
            RouteOutcome::Reject { code, reason } => {
                self.reject(tx, &req, code, &reason, now, policy);
                return;
            }
            RouteOutcome::Unavailable { retry_after } => {
                let tag = self.new_tag();
                let mut resp = make_response(&req, 503, "Service Unavailable", Some(&tag));
                resp.headers.push("Retry-After", retry_after.to_string());
                self.tx.send_response(tx, resp, now);
                policy.event(CallEvent::Rejected {
                    status: 503,
                    reason: "Service Unavailable".into(),
                });
                return;
            }
            RouteOutcome::Redirect { code, contacts } => {
                let tag = self.new_tag();
                let mut resp = make_response(&req, code, reason_phrase(code), Some(&tag));
                for c in contacts {
                    resp.headers.push("Contact", format!("<{c}>"));
                }
                self.tx.send_response(tx, resp, now);
                policy.event(CallEvent::Finished {
                    call: 0,
                    trunk: None,
                    status: code,
                    post_dial_delay: None,
                });
                return;
            }
            RouteOutcome::Route {
                targets,
                to_user,
                from_user,
            } => (targets, to_user, from_user),
        };
        if targets.is_empty() {
            self.reject(tx, &req, 404, "Not Found", now, policy);
            return;
        }
        let id = self.next_call;
        self.next_call += 1;
        self.stats.calls_started += 1;

        let a_local_tag = self.new_tag();
        let a_contact = req
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| req.uri.clone());
        let a_route: Vec<String> = req
            .headers
            .get_all("Record-Route")
            .flat_map(crate::headers::split_comma_list)
            .map(|s| s.trim().to_string())
            .collect();
        let a = LegDialog {
            call_id: call_id.clone(),
            local_tag: a_local_tag,
            remote_tag: Some(a_from_tag.clone()).filter(|t| !t.is_empty()),
            local_uri: without_tag(&to_na),
            remote_uri: without_tag(&from_na),
            remote_target: a_contact,
            route_set: a_route,
            peer: from,
            trunk: admitted.caller == Caller::Trunk,
            local_cseq: self.rand() as u32 & 0xffff,
            remote_cseq: req.cseq().map(|c| c.seq),
        };
        let first = targets[0].clone();
        let b_call_id = self.new_call_id();
        let b_tag = self.new_tag();
        let display = from_na
            .display
            .as_ref()
            .map(|d| format!("{} ", quote_display(d)))
            .unwrap_or_default();
        let our_host = self.our_host();
        let b = LegDialog {
            call_id: b_call_id.clone(),
            local_tag: b_tag,
            remote_tag: None,
            local_uri: cat(&[&display, "<sip:", &user_at(&from_user), our_host, ">"]),
            // Set (for the target being tried) by send_b_invite.
            remote_uri: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            peer: first.peer,
            trunk: first.trunk != REGISTERED,
            local_cseq: 1,
            remote_cseq: None,
        };
        let a_offer = if req.body.is_empty() {
            None
        } else {
            Some(req.body.clone())
        };
        let mut call = Call {
            id,
            state: CallState::Proceeding,
            started: now,
            answered: None,
            pdd: None,
            a,
            a_invite_tx: Some(tx),
            a_invite: req,
            a_offer,
            b,
            b_invite_tx: None,
            b_invite: None,
            b_got_provisional: false,
            media_released: false,
            b_offer: None,
            targets,
            target_idx: 0,
            to_user,
            cancelled: false,
            b_ack: None,
            b_ack_pending: false,
            last_failure: None,
            a_2xx_tx: None,
            trunk: None,
            early_source,
        };
        // Media: the offer from A is rewritten once for B (the same SDP serves every target).
        if let Some(offer) = call.a_offer.clone() {
            match policy.media_offer(call.media_ref(), Leg::A, &offer) {
                Ok(sdp) => {
                    let ct = call
                        .a_invite
                        .headers
                        .get("Content-Type")
                        .unwrap_or("application/sdp")
                        .to_string();
                    call.b_offer = Some((ct, sdp));
                }
                Err(e) => {
                    let req = call.a_invite.clone();
                    let (code, reason, retry_after) = e.answer();
                    let tag = self.new_tag();
                    let mut resp = make_response(&req, code, reason, Some(&tag));
                    if let Some(ra) = retry_after {
                        resp.headers.push("Retry-After", ra.to_string());
                    }
                    self.tx.send_response(tx, resp, now);
                    policy.event(CallEvent::Rejected {
                        status: code,
                        reason: reason.to_string(),
                    });
                    policy.media_release(call.media_ref());
                    return;
                }
            }
        }
        if let Some(ip) = early_source {
            self.early.add(ip);
        }
        self.by_a.entry(call_id).or_default().push((a_from_tag, id));
        self.by_b.insert(b_call_id, id);
        self.calls.insert(id, call);
        self.send_b_invite(id, now, policy);
    }

    /// Send (or re-send, on failover) leg B's INVITE to the current target.
    fn send_b_invite(&mut self, id: u64, now: Instant, policy: &mut dyn Policy) {
        let via;
        let contact;
        {
            let Some(call) = self.calls.get(&id) else {
                return;
            };
            let t = call.targets[call.target_idx].peer.transport;
            let _ = call;
            via = self.via_for(t);
            contact = self.contact_for(t);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let target = call.targets[call.target_idx].clone();
        let max_fwd = call.a_invite.max_forwards().unwrap_or(70).saturating_sub(1);
        call.b.peer = target.peer;
        call.b.trunk = target.trunk != REGISTERED;
        let user = user_at(&call.to_user);
        call.b.remote_uri = cat(&["<sip:", &user, &target.host, ">"]);
        call.b.remote_target = cat(&["sip:", &user, &target.host]);
        call.b.remote_tag = None;
        call.b.route_set.clear();
        call.b_got_provisional = false;
        let cseq = call.b.local_cseq;
        let mut h = Headers::with_capacity(16);
        h.push("Via", via);
        h.push("Max-Forwards", max_fwd.to_string());
        h.push(
            "From",
            cat(&[&call.b.local_uri, ";tag=", &call.b.local_tag]),
        );
        h.push("To", call.b.remote_uri.clone());
        h.push("Call-ID", call.b.call_id.clone());
        h.push("CSeq", cseq_value(cseq, "INVITE"));
        h.push("Contact", contact);
        copy_passthrough(&call.a_invite.headers, &mut h);
        let mut body = Vec::new();
        if let Some((ct, sdp)) = &call.b_offer {
            h.push("Content-Type", ct.clone());
            body = sdp.clone();
        }
        let req = Request {
            method: Method::Invite,
            uri: call.b.remote_target.clone(),
            headers: h,
            body,
        };
        call.trunk = Some(target.trunk.clone());
        let idx = call.target_idx;
        let txid = self.tx.send_request_ref(&req, target.peer, now);
        call.b_invite = Some(req);
        if let Some(call) = self.calls.get_mut(&id) {
            call.b_invite_tx = Some(txid);
        }
        self.client.insert(txid, (id, ClientPurpose::Invite));
        self.deadlines.push(Deadline {
            at: std::cmp::Reverse(now + self.cfg.no_answer_failover),
            call: id,
            target_idx: idx,
            ringing: false,
        });
        policy.event(CallEvent::Attempt {
            call: id,
            trunk: target.trunk,
        });
    }

    fn no_answer_deadline(&mut self, id: u64, idx: usize, now: Instant, policy: &mut dyn Policy) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.state != CallState::Proceeding || call.target_idx != idx || call.b_got_provisional {
            return;
        }
        // No response at all from this target: treat as 408 and fail over.
        if call.b_invite_tx.is_some() {
            self.abandon_branch(id, false, now);
            self.b_invite_failed(id, 408, "Request Timeout".into(), now, policy);
        }
    }

    /// The target rang for [`CoreConfig::ringing_timeout`] without a final answer: CANCEL it and
    /// go on as after a 408 (next target, or 408 to A).
    fn ringing_deadline(&mut self, id: u64, idx: usize, now: Instant, policy: &mut dyn Policy) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.state != CallState::Proceeding
            || call.target_idx != idx
            || call.cancelled
            || call.b_invite_tx.is_none()
        {
            return;
        }
        self.abandon_branch(id, true, now);
        self.b_invite_failed(id, 408, "Request Timeout".into(), now, policy);
    }

    /// Detach the call's current leg B INVITE from it (see [`Abandoned`]); with `cancel`, CANCEL
    /// it now (it has sent a provisional response).
    fn abandon_branch(&mut self, id: u64, cancel: bool, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(tx) = call.b_invite_tx.take() else {
            return;
        };
        self.client.remove(&tx);
        let Some(invite) = call.b_invite.clone() else {
            return;
        };
        let peer = call.b.peer;
        self.tx.guard_invite(tx, now);
        if cancel {
            let c = cancel_for(&invite);
            self.tx.send_request(c, peer, now);
        }
        self.abandoned.insert(
            tx,
            Abandoned {
                invite,
                peer,
                cancelled: cancel,
            },
        );
    }

    /// A response on a branch the call moved on from.
    fn on_abandoned_response(&mut self, tx: TxId, resp: &Response, now: Instant) {
        if resp.status < 200 {
            if let Some(ab) = self.abandoned.get_mut(&tx) {
                if !ab.cancelled {
                    ab.cancelled = true;
                    let (c, peer) = (cancel_for(&ab.invite), ab.peer);
                    self.tx.send_request(c, peer, now);
                }
            }
            return;
        }
        let Some(ab) = self.abandoned.remove(&tx) else {
            return;
        };
        if resp.status >= 300 {
            // The transaction layer ACKs a non-2xx final itself (§17.1.1.3).
            return;
        }
        // A late 2xx: the callee thinks the call is up. ACK it (§13.2.2.4) and hang up.
        let target = resp
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| ab.invite.uri.clone());
        let seq = ab.invite.cseq().map(|c| c.seq).unwrap_or(1);
        let mut routes: Vec<String> = resp
            .headers
            .get_all("Record-Route")
            .flat_map(crate::headers::split_comma_list)
            .map(|s| s.trim().to_string())
            .collect();
        routes.reverse();
        for (method, cseq) in [(Method::Ack, seq), (Method::Bye, seq.wrapping_add(1))] {
            let mut h = Headers::with_capacity(12);
            h.push("Via", self.via_for(ab.peer.transport));
            h.push("Max-Forwards", "70");
            for r in &routes {
                h.push("Route", r.clone());
            }
            if let Some(v) = ab.invite.headers.get("From") {
                h.push("From", v.to_string());
            }
            if let Some(v) = resp.headers.get("To") {
                h.push("To", v.to_string());
            }
            if let Some(v) = ab.invite.headers.get("Call-ID") {
                h.push("Call-ID", v.to_string());
            }
            h.push("CSeq", cseq_value(cseq, method.as_str()));
            let req = Request {
                method: method.clone(),
                uri: target.clone(),
                headers: h,
                body: Vec::new(),
            };
            if method == Method::Ack {
                self.tx.send_stateless(&SipMessage::Request(req), ab.peer);
            } else {
                self.tx.send_request(req, ab.peer, now);
            }
        }
    }

    fn on_cancel(
        &mut self,
        tx: TxId,
        req: &Request,
        cancels: Option<TxId>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(inv_tx) = cancels else {
            let tag = self.new_tag();
            let resp = make_response(req, 481, "Call/Transaction Does Not Exist", Some(&tag));
            self.tx.send_response(tx, resp, now);
            return;
        };
        // RFC 3261 §9.2: answer the CANCEL 200, then the INVITE 487.
        let call_id = self
            .calls
            .values()
            .find(|c| c.a_invite_tx == Some(inv_tx))
            .map(|c| c.id);
        let Some(id) = call_id else {
            // A relayed re-INVITE or unknown: 200 for the CANCEL only.
            let resp = make_response(req, 200, "OK", None);
            self.tx.send_response(tx, resp, now);
            return;
        };
        let resp = make_response(req, 200, "OK", None);
        self.tx.send_response(tx, resp, now);
        self.abort_ringing(id, 487, "Request Terminated", None, now, policy);
    }

    /// Ends a call that is not answered yet: `status` to leg A now, CANCEL to leg B (once it
    /// may be sent), leg B's final answer is then ACKed and the call collected as after a
    /// CANCEL from A.
    fn abort_ringing(
        &mut self,
        id: u64,
        status: u16,
        reason: &str,
        retry_after: Option<u32>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state != CallState::Proceeding || call.cancelled {
            return;
        }
        call.cancelled = true;
        // The final answer to A now.
        let a_tag = call.a.local_tag.clone();
        let inv = call.a_invite.clone();
        if let Some(inv_tx) = call.a_invite_tx.take() {
            let mut resp = make_response(&inv, status, reason, Some(&a_tag));
            if let Some(ra) = retry_after {
                resp.headers.push("Retry-After", ra.to_string());
            }
            self.tx.send_response(inv_tx, resp, now);
        }
        // CANCEL leg B (RFC 3261 §9.1: only once a provisional response arrived; otherwise the
        // CANCEL is sent when one does, or the INVITE times out).
        let got_prov = self
            .calls
            .get(&id)
            .map(|c| c.b_got_provisional)
            .unwrap_or(false);
        if got_prov {
            self.send_b_cancel(id, now);
        }
        policy.event(CallEvent::Finished {
            call: id,
            trunk: self.calls.get(&id).and_then(|c| c.trunk.clone()),
            status,
            post_dial_delay: None,
        });
    }

    fn send_b_cancel(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(inv) = &call.b_invite else { return };
        let req = cancel_for(inv);
        let peer = call.b.peer;
        let t = self.tx.send_request(req, peer, now);
        self.client.insert(t, (id, ClientPurpose::Cancel));
    }

    fn on_ack(&mut self, req: Request, from: Peer, now: Instant, policy: &mut dyn Policy) {
        let Some(call_id) = req.call_id() else { return };
        let Some(id) = self.lookup_dialog(&req, call_id, from) else {
            return;
        };
        let Some((id, leg)) = Some(id) else { return };
        if leg != Leg::A {
            return;
        }
        // Late offer: A's ACK carries the answer to B's offer (from B's 2xx).
        let pending = self
            .calls
            .get(&id)
            .map(|c| c.b_ack_pending)
            .unwrap_or(false);
        if pending {
            let body = if req.body.is_empty() {
                None
            } else {
                let Some(call) = self.calls.get(&id) else {
                    return;
                };
                policy
                    .media_answer(call.media_ref(), Leg::A, &req.body)
                    .ok()
            };
            if let Some(call) = self.calls.get_mut(&id) {
                call.b_ack_pending = false;
            }
            self.send_b_ack(id, body, now);
        }
    }

    /// Which call and leg an in-dialog message from `from` belongs to: Call-ID, both tags and,
    /// for a trunk's leg, the source must match ([`LegDialog::accepts`]).
    fn lookup_dialog(&self, req: &Request, call_id: &str, from: Peer) -> Option<(u64, Leg)> {
        let from_tag = req.headers.get("From").map(tag_param)?.unwrap_or("");
        let to_tag = req.headers.get("To").and_then(tag_param).unwrap_or("");
        let (id, leg) = match self.by_b.get(call_id) {
            Some(id) => (*id, Leg::B),
            None => (self.find_call(call_id, from_tag)?, Leg::A),
        };
        let d = self.calls.get(&id)?.leg(leg);
        d.accepts(from_tag, to_tag, from).then_some((id, leg))
    }

    fn on_in_dialog(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        _to_tag: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call_id) = req.call_id().map(str::to_string) else {
            return;
        };
        let Some((id, leg)) = self.lookup_dialog(&req, &call_id, from) else {
            let resp = make_response(&req, 481, "Call/Transaction Does Not Exist", None);
            self.tx.send_response(tx, resp, now);
            *self.stats.rejected.entry("no_dialog").or_insert(0) += 1;
            return;
        };
        // RFC 3261 §12.2.2: CSeq must grow.
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        if let Some(call) = self.calls.get_mut(&id) {
            let d = call.leg_mut(leg);
            if let Some(prev) = d.remote_cseq {
                if seq < prev || (seq == prev && req.method != Method::Ack) {
                    let resp = make_response(&req, 500, "Server Internal Error", None);
                    self.tx.send_response(tx, resp, now);
                    return;
                }
            }
            d.remote_cseq = Some(seq);
            // RFC 3261 §12.2.2: "When a UAS receives a target refresh request, it MUST replace
            // the dialog's remote target URI with the URI from the Contact header field in
            // that request, if present." A phone's leg also moves to where the refresh came
            // from (its NAT mapping or connection may have changed); nothing else moves a leg.
            if matches!(req.method, Method::Invite | Method::Update) {
                if let Some(c) = req
                    .headers
                    .get("Contact")
                    .and_then(|c| NameAddr::parse(c).ok())
                {
                    d.remote_target = c.uri.to_string();
                    if !d.trunk {
                        d.peer = from;
                    }
                }
            }
        }
        match req.method {
            Method::Bye => {
                let resp = make_response(&req, 200, "OK", None);
                self.tx.send_response(tx, resp, now);
                let state = self.calls.get(&id).map(|c| c.state);
                match state {
                    Some(CallState::Confirmed) => {
                        self.send_bye(id, leg.other(), now);
                        self.finish_confirmed(id, now, policy);
                    }
                    Some(CallState::Proceeding) if leg == Leg::A => {
                        // BYE on A's early dialog (RFC 3261 §15.1.2): the INVITE is answered
                        // 487 Request Terminated, and leg B is cancelled as for a CANCEL.
                        self.abort_ringing(id, 487, "Request Terminated", None, now, policy);
                    }
                    _ => {}
                }
            }
            _ => self.relay_in_dialog(tx, req, id, leg, now, policy),
        }
    }

    /// Build an in-dialog request on `leg` with our dialog state.
    fn dialog_request(&mut self, id: u64, leg: Leg, method: Method) -> Option<(Request, Peer)> {
        let t = self.calls.get(&id)?.leg(leg).peer.transport;
        let via = self.via_for(t);
        let contact = self.contact_for(t);
        let call = self.calls.get_mut(&id)?;
        let d = call.leg_mut(leg);
        if method != Method::Ack {
            d.local_cseq = d.local_cseq.wrapping_add(1);
        }
        let mut h = Headers::with_capacity(16);
        h.push("Via", via);
        h.push("Max-Forwards", "70");
        for r in &d.route_set {
            h.push("Route", r.clone());
        }
        h.push("From", cat(&[&d.local_uri, ";tag=", &d.local_tag]));
        match &d.remote_tag {
            Some(t) => h.push("To", cat(&[&d.remote_uri, ";tag=", t])),
            None => h.push("To", d.remote_uri.clone()),
        }
        h.push("Call-ID", d.call_id.clone());
        h.push("CSeq", cseq_value(d.local_cseq, method.as_str()));
        if matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Refer
        ) {
            h.push("Contact", contact);
        }
        let req = Request {
            method,
            uri: d.remote_target.clone(),
            headers: h,
            body: Vec::new(),
        };
        Some((req, d.peer))
    }

    fn send_bye(&mut self, id: u64, leg: Leg, now: Instant) {
        if let Some((req, peer)) = self.dialog_request(id, leg, Method::Bye) {
            let t = self.tx.send_request(req, peer, now);
            self.client.insert(t, (id, ClientPurpose::Bye));
        }
    }

    fn send_b_ack(&mut self, id: u64, body: Option<Vec<u8>>, _now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let seq = call
            .b_invite
            .as_ref()
            .and_then(|r| r.cseq())
            .map(|c| c.seq)
            .unwrap_or(1);
        let Some((mut ack, peer)) = self.dialog_request(id, Leg::B, Method::Ack) else {
            return;
        };
        ack.headers.set("CSeq", cseq_value(seq, "ACK"));
        if let Some(b) = body {
            ack.headers.push("Content-Type", "application/sdp");
            ack.body = b;
        }
        let msg = SipMessage::Request(ack);
        self.tx.send_stateless(&msg, peer);
        if let (Some(c), SipMessage::Request(ack)) = (self.calls.get_mut(&id), msg) {
            c.b_ack = Some(ack);
        }
    }

    fn relay_in_dialog(
        &mut self,
        tx: TxId,
        req: Request,
        id: u64,
        from_leg: Leg,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let to_leg = from_leg.other();
        let Some((mut out, peer)) = self.dialog_request(id, to_leg, req.method.clone()) else {
            return;
        };
        copy_passthrough(&req.headers, &mut out.headers);
        if !req.body.is_empty() {
            let is_sdp = req
                .headers
                .get("Content-Type")
                .map(|c| c.to_ascii_lowercase().starts_with("application/sdp"))
                .unwrap_or(false);
            let body = if is_sdp && matches!(req.method, Method::Invite | Method::Update) {
                let Some(call) = self.calls.get(&id) else {
                    return;
                };
                match policy.media_offer(call.media_ref(), from_leg, &req.body) {
                    Ok(b) => b,
                    Err(e) => {
                        // The dialog goes on unchanged (RFC 3261 §14.2: a refused re-INVITE
                        // leaves the session as it was).
                        let (code, reason, retry_after) = e.answer();
                        let mut resp = make_response(&req, code, reason, None);
                        if let Some(ra) = retry_after {
                            resp.headers.push("Retry-After", ra.to_string());
                        }
                        self.tx.send_response(tx, resp, now);
                        return;
                    }
                }
            } else {
                req.body.clone()
            };
            if let Some(ct) = req.headers.get("Content-Type") {
                out.headers.push("Content-Type", ct.to_string());
            }
            out.body = body;
        }
        self.server.insert(tx, (id, from_leg));
        let method = req.method.clone();
        let t = self.tx.send_request(out, peer, now);
        if method == Method::Invite {
            // A re-INVITE is answered at once (no ringing): one still pending after 64·T1
            // (even after a provisional) ends as a timeout, answered 408 on the origin leg.
            self.tx.guard_invite(t, now);
        }
        self.client.insert(
            t,
            (
                id,
                ClientPurpose::Relay {
                    server_tx: tx,
                    method,
                },
            ),
        );
        // Keep the original request for building the response on the origin leg.
        self.relayed_requests.insert(tx, req);
    }

    // ------------------------------------------------------------------ responses

    fn on_response(&mut self, tx: TxId, resp: Response, now: Instant, policy: &mut dyn Policy) {
        if self.on_sub_response(tx, &resp, now) {
            return;
        }
        if self.messages.contains_key(&tx) {
            if resp.status >= 200 {
                if let Some(pm) = self.messages.remove(&tx) {
                    self.answer_message(pm, resp.status, &resp.reason, now);
                }
            }
            return;
        }
        let Some((id, purpose)) = self.client.get(&tx).map(|(id, p)| {
            (
                *id,
                match p {
                    ClientPurpose::Invite => 0,
                    ClientPurpose::Cancel => 1,
                    ClientPurpose::Bye => 2,
                    ClientPurpose::Relay { .. } => 3,
                },
            )
        }) else {
            if self.abandoned.contains_key(&tx) {
                self.on_abandoned_response(tx, &resp, now);
                return;
            }
            // A 2xx retransmission for an INVITE whose client tx is gone: re-ACK if it is ours.
            self.maybe_reack(&resp);
            return;
        };
        match purpose {
            0 => self.on_b_invite_response(tx, id, resp, now, policy),
            3 => self.on_relay_response(tx, id, resp, now, policy),
            _ => {
                if resp.status >= 200 {
                    self.client.remove(&tx);
                }
                self.maybe_collect(id);
            }
        }
    }

    fn maybe_reack(&mut self, resp: &Response) {
        if !(200..300).contains(&resp.status) {
            return;
        }
        // Only an INVITE's 2xx is ACKed (a late 200 to a CANCEL or BYE is not).
        if resp.cseq().map(|c| c.method) != Some(Method::Invite) {
            return;
        }
        let Some(cid) = resp.call_id() else { return };
        let Some(id) = self.by_b.get(cid).copied() else {
            return;
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if let Some(ack) = &call.b_ack {
            let peer = call.b.peer;
            self.tx
                .send_stateless(&SipMessage::Request(ack.clone()), peer);
        }
    }

    fn on_b_invite_response(
        &mut self,
        tx: TxId,
        id: u64,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let status = resp.status;
        if status < 200 {
            // The first provisional from this target starts its ringing timeout.
            if let Some(c) = self.calls.get(&id) {
                if !c.b_got_provisional && c.state == CallState::Proceeding {
                    self.deadlines.push(Deadline {
                        at: std::cmp::Reverse(now + self.cfg.ringing_timeout),
                        call: id,
                        target_idx: c.target_idx,
                        ringing: true,
                    });
                }
            }
            if status == 100 {
                let cancel_now = match self.calls.get_mut(&id) {
                    Some(c) => {
                        let first = !c.b_got_provisional;
                        c.b_got_provisional = true;
                        // A CANCEL held back until leg B had answered anything (§9.1) goes now.
                        first && c.cancelled
                    }
                    None => false,
                };
                if cancel_now {
                    self.send_b_cancel(id, now);
                }
                return;
            }
            self.on_b_provisional(id, resp, now, policy);
            return;
        }
        if status < 300 {
            self.on_b_success(tx, id, resp, now, policy);
            return;
        }
        self.client.remove(&tx);
        self.b_invite_failed(id, status, resp.reason.clone(), now, policy);
        // Keep the response for mapping if it's final for A.
        let _ = resp;
    }

    fn on_b_provisional(&mut self, id: u64, resp: Response, now: Instant, policy: &mut dyn Policy) {
        let (cancelled, first) = {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            let first = !c.b_got_provisional;
            c.b_got_provisional = true;
            if let Some(tag) = resp.headers.get("To").and_then(tag_param) {
                c.b.remote_tag = Some(tag.to_string());
            }
            if c.pdd.is_none() {
                c.pdd = Some(now.saturating_duration_since(c.started));
            }
            (c.cancelled, first)
        };
        if cancelled {
            if first {
                self.send_b_cancel(id, now);
            }
            return;
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(a_tx) = call.a_invite_tx else { return };
        let body = if resp.body.is_empty() {
            None
        } else {
            policy
                .media_answer(call.media_ref(), Leg::B, &resp.body)
                .ok()
        };
        let mut out = self.a_response(id, resp.status, &resp.reason, &resp);
        if let Some(b) = body {
            out.headers.push("Content-Type", "application/sdp");
            out.body = b;
        }
        self.tx.send_response(a_tx, out, now);
    }

    /// A response for leg A's INVITE built from leg B's response.
    fn a_response(&self, id: u64, status: u16, reason: &str, from_b: &Response) -> Response {
        let Some(call) = self.calls.get(&id) else {
            return Response {
                status,
                reason: reason.into(),
                headers: Headers::new(),
                body: Vec::new(),
            };
        };
        let mut resp = make_response(&call.a_invite, status, reason, Some(&call.a.local_tag));
        if status > 100 && status < 300 {
            resp.headers
                .push("Contact", self.contact_for(call.a.peer.transport));
        }
        copy_passthrough(&from_b.headers, &mut resp.headers);
        resp
    }

    fn on_b_success(
        &mut self,
        tx: TxId,
        id: u64,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state != CallState::Proceeding {
            // Retransmitted 2xx (RFC 6026 Accepted state): re-send our ACK.
            if let Some(ack) = call.b_ack.clone() {
                let peer = call.b.peer;
                self.tx.send_stateless(&SipMessage::Request(ack), peer);
            }
            return;
        }
        // Learn leg B's dialog (RFC 3261 §12.1.2).
        if let Some(tag) = resp.headers.get("To").and_then(tag_param) {
            call.b.remote_tag = Some(tag.to_string());
        }
        if let Some(c) = resp
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
        {
            call.b.remote_target = c.uri.to_string();
        }
        let mut rr: Vec<String> = resp
            .headers
            .get_all("Record-Route")
            .flat_map(crate::headers::split_comma_list)
            .map(|s| s.trim().to_string())
            .collect();
        rr.reverse();
        call.b.route_set = rr;
        call.b_got_provisional = true;
        if call.cancelled {
            // The 2xx crossed our CANCEL: ACK and BYE it.
            call.state = CallState::Confirmed;
            if let Some(ip) = call.early_source.take() {
                self.early.remove(&ip);
            }
            self.send_b_ack(id, None, now);
            self.send_bye(id, Leg::B, now);
            if let Some(c) = self.calls.get_mut(&id) {
                c.state = CallState::Terminated;
                if let Some(ip) = c.early_source.take() {
                    self.early.remove(&ip);
                }
            }
            self.client.remove(&tx);
            // The call never came up: its relay ports and trunk slot go now.
            self.maybe_collect_with_media(id, policy);
            return;
        }
        call.state = CallState::Confirmed;
        call.answered = Some(now);
        if let Some(ip) = call.early_source.take() {
            self.early.remove(&ip);
        }
        if call.pdd.is_none() {
            call.pdd = Some(now.saturating_duration_since(call.started));
        }
        let late_offer = call.a_offer.is_none() && !resp.body.is_empty();
        let a_tx = call.a_invite_tx.take();
        let pdd = call.pdd;
        let trunk = call.trunk.clone();
        // SDP for A.
        let body = if resp.body.is_empty() {
            None
        } else {
            let call = &self.calls[&id];
            let r = if late_offer {
                policy
                    .media_offer(call.media_ref(), Leg::B, &resp.body)
                    .map_err(|e| e.to_string())
            } else {
                policy.media_answer(call.media_ref(), Leg::B, &resp.body)
            };
            r.ok()
        };
        if late_offer {
            if let Some(c) = self.calls.get_mut(&id) {
                c.b_ack_pending = true;
            }
        } else {
            self.send_b_ack(id, None, now);
        }
        let mut out = self.a_response(id, resp.status, &resp.reason, &resp);
        if let Some(b) = body {
            out.headers.push("Content-Type", "application/sdp");
            out.body = b;
        }
        if let Some(a_tx) = a_tx {
            self.tx.send_2xx_reliably(a_tx, out, now);
            if let Some(c) = self.calls.get_mut(&id) {
                c.a_2xx_tx = Some(a_tx);
            }
        }
        self.client.remove(&tx);
        policy.event(CallEvent::Finished {
            call: id,
            trunk,
            status: 200,
            post_dial_delay: pdd,
        });
    }

    /// Leg B's INVITE failed at the current target with `status`: fail over or answer A.
    fn b_invite_failed(
        &mut self,
        id: u64,
        status: u16,
        reason: String,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state != CallState::Proceeding {
            return;
        }
        call.b_invite_tx = None;
        call.last_failure = Some((status, reason.clone()));
        // RFC 3261 §16.7 + the dial plan contract: 408, 5xx and transport errors fail over; 6xx
        // stops; any other final is the answer.
        let failover = status == 408 || (500..600).contains(&status);
        // The next target the policy admits (one at a limit is skipped like a failed one).
        let next = if !call.cancelled && failover {
            (call.target_idx + 1..call.targets.len())
                .find(|&i| policy.admit_target(&call.targets[i]))
        } else {
            None
        };
        if let Some(next) = next {
            call.target_idx = next;
            call.b.local_cseq = call.b.local_cseq.wrapping_add(1);
            self.send_b_invite(id, now, policy);
            return;
        }
        let cancelled = call.cancelled;
        let trunk = call.trunk.clone();
        let pdd = call.pdd;
        if !cancelled {
            if let Some(a_tx) = call.a_invite_tx.take() {
                // A 503 from downstream becomes 500 upstream? A B2BUA terminates the transaction,
                // so it answers what it means: "no route worked" is 503 for transport failures and
                // timeouts, otherwise the last target's status.
                let inv = call.a_invite.clone();
                let a_tag = call.a.local_tag.clone();
                let resp = make_response(&inv, status, &reason, Some(&a_tag));
                self.tx.send_response(a_tx, resp, now);
                policy.event(CallEvent::Finished {
                    call: id,
                    trunk,
                    status,
                    post_dial_delay: pdd,
                });
            }
        }
        if let Some(call) = self.calls.get_mut(&id) {
            call.state = CallState::Terminated;
            if let Some(ip) = call.early_source.take() {
                self.early.remove(&ip);
            }
        }
        self.maybe_collect_with_media(id, policy);
    }

    fn on_client_failure(
        &mut self,
        tx: TxId,
        status: u16,
        reason: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if let Some(pm) = self.messages.remove(&tx) {
            self.answer_message(pm, status, reason, now);
            return;
        }
        if self.on_sub_failure(tx, status, reason, now) {
            return;
        }
        let Some((id, purpose)) = self.client.remove(&tx) else {
            return;
        };
        match purpose {
            ClientPurpose::Invite => {
                self.b_invite_failed(id, status, reason.to_string(), now, policy);
            }
            ClientPurpose::Relay { server_tx, .. } => {
                if let Some(orig) = self.relayed_requests.remove(&server_tx) {
                    let resp = make_response(&orig, status, reason, None);
                    self.tx.send_response(server_tx, resp, now);
                }
                self.server.remove(&server_tx);
                // A dead peer in a confirmed call: end it (RFC 5057 §5.1 for 408/481).
                if status == 408 {
                    if let Some(c) = self.calls.get(&id) {
                        if c.state == CallState::Confirmed {
                            self.send_bye(id, Leg::A, now);
                            self.send_bye(id, Leg::B, now);
                            self.finish_confirmed(id, now, policy);
                        }
                    }
                }
            }
            ClientPurpose::Bye | ClientPurpose::Cancel => {
                self.maybe_collect(id);
            }
        }
    }

    fn on_ack_timeout(&mut self, tx: TxId, now: Instant, policy: &mut dyn Policy) {
        // RFC 3261 §13.3.1.4: no ACK for our 2xx on leg A: end the call with BYE on both legs.
        let id = self
            .calls
            .values()
            .find(|c| c.a_2xx_tx == Some(tx))
            .map(|c| c.id);
        if let Some(id) = id {
            self.send_bye(id, Leg::A, now);
            self.send_bye(id, Leg::B, now);
            self.finish_confirmed(id, now, policy);
        }
    }

    fn on_relay_response(
        &mut self,
        tx: TxId,
        id: u64,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some((_, ClientPurpose::Relay { server_tx, method })) = self.client.get(&tx) else {
            return;
        };
        let server_tx = *server_tx;
        let method = method.clone();
        let Some(&(_, from_leg)) = self.server.get(&server_tx) else {
            return;
        };
        let Some(orig) = self.relayed_requests.get(&server_tx).cloned() else {
            return;
        };
        if resp.status == 100 {
            return;
        }
        let final_ = resp.status >= 200;
        let to_leg = from_leg.other();
        // Target refresh from the other leg's 2xx.
        if (200..300).contains(&resp.status) {
            if let Some(c) = resp
                .headers
                .get("Contact")
                .and_then(|c| NameAddr::parse(c).ok())
            {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.leg_mut(to_leg).remote_target = c.uri.to_string();
                }
            }
        }
        let body = if !resp.body.is_empty() && matches!(method, Method::Invite | Method::Update) {
            let Some(call) = self.calls.get(&id) else {
                return;
            };
            policy
                .media_answer(call.media_ref(), to_leg, &resp.body)
                .ok()
        } else if !resp.body.is_empty() {
            Some(resp.body.clone())
        } else {
            None
        };
        let local_tag = self
            .calls
            .get(&id)
            .map(|c| c.leg(from_leg).local_tag.clone());
        let mut out = make_response(&orig, resp.status, &resp.reason, local_tag.as_deref());
        if (101..300).contains(&resp.status) && matches!(method, Method::Invite | Method::Update) {
            let t = self
                .calls
                .get(&id)
                .map(|c| c.leg(from_leg).peer.transport)
                .unwrap_or(Transport::Udp);
            out.headers.push("Contact", self.contact_for(t));
        }
        copy_passthrough(&resp.headers, &mut out.headers);
        if let Some(b) = body {
            if let Some(ct) = resp.headers.get("Content-Type") {
                out.headers.push("Content-Type", ct.to_string());
            }
            out.body = b;
        }
        if method == Method::Invite && (200..300).contains(&resp.status) {
            // ACK the other leg's 2xx ourselves; the origin's ACK is absorbed.
            let seq = resp.cseq().map(|c| c.seq).unwrap_or(0);
            if let Some((mut ack, peer)) = self.dialog_request(id, to_leg, Method::Ack) {
                ack.headers.set("CSeq", format!("{seq} ACK"));
                self.tx.send_stateless(&SipMessage::Request(ack), peer);
            }
            self.tx.send_2xx_reliably(server_tx, out, now);
        } else {
            self.tx.send_response(server_tx, out, now);
        }
        if final_ {
            self.client.remove(&tx);
            self.server.remove(&server_tx);
            self.relayed_requests.remove(&server_tx);
        }
    }

    // ------------------------------------------------------------------ teardown

    fn finish_confirmed(&mut self, id: u64, now: Instant, policy: &mut dyn Policy) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state == CallState::Confirmed {
            call.state = CallState::Terminated;
            let dur = call
                .answered
                .map(|a| now.saturating_duration_since(a))
                .unwrap_or_default();
            policy.event(CallEvent::Ended {
                call: id,
                duration: dur,
            });
        }
        self.maybe_collect_with_media(id, policy);
    }

    fn maybe_collect_with_media(&mut self, id: u64, policy: &mut dyn Policy) {
        if let Some(call) = self.calls.get_mut(&id) {
            if call.state == CallState::Terminated && !call.media_released {
                call.media_released = true;
                policy.media_release(call.media_ref());
            }
        }
        self.maybe_collect(id);
    }

    /// Forget a terminated call once none of its client transactions is pending.
    fn maybe_collect(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.state != CallState::Terminated {
            return;
        }
        if self.client.has_call(id) {
            return;
        }
        if let Some(call) = self.calls.remove(&id) {
            if let Some(ip) = call.early_source {
                self.early.remove(&ip);
            }
            let tag = call.a.remote_tag.unwrap_or_default();
            if let Some(list) = self.by_a.get_mut(&call.a.call_id) {
                list.retain(|(t, cid)| !(*t == tag && *cid == id));
                if list.is_empty() {
                    self.by_a.remove(&call.a.call_id);
                }
            }
            self.by_b.remove(&call.b.call_id);
        }
    }

    /// The stream (TCP/TLS) peers a live call's dialog is on (either leg), for the transport
    /// shell's idle timeout: their connections are kept however quiet. Called once a second
    /// by the shell, not per message.
    pub fn stream_peers_in_use(&self) -> Vec<Peer> {
        self.calls
            .values()
            .flat_map(|c| [c.a.peer, c.b.peer])
            .filter(|p| p.transport != Transport::Udp)
            .collect()
    }
}

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, MESSAGE, SUBSCRIBE, NOTIFY";

/// `user@` for a SIP URI (RFC 3261 §25.1 `userinfo`), or nothing for an empty user (a dial plan
/// may rewrite the user away, a peer may send none): "sip:@host" is not a URI. Characters the
/// grammar does not allow in a user part are %-escaped (rewrites insert captured text as is).
fn user_at(user: &str) -> String {
    if user.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(user.len() + 1);
    for b in user.bytes() {
        let ok = b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b);
        if ok {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out.push('@');
    out
}

/// RFC 3261 §9.1: a CANCEL for `inv`: same Request-URI, top Via (branch), From, To, Call-ID
/// and CSeq number, method CANCEL.
fn cancel_for(inv: &Request) -> Request {
    let mut h = Headers::with_capacity(8);
    if let Some(v) = inv.headers.get("Via") {
        h.push("Via", v.to_string());
    }
    h.push("Max-Forwards", "70");
    for n in ["From", "To", "Call-ID"] {
        if let Some(v) = inv.headers.get(n) {
            h.push(n, v.to_string());
        }
    }
    let seq = inv.cseq().map(|c| c.seq).unwrap_or(1);
    h.push("CSeq", format!("{seq} CANCEL"));
    Request {
        method: Method::Cancel,
        uri: inv.uri.clone(),
        headers: h,
        body: Vec::new(),
    }
}

/// RFC 3261 §8.2.6: a response copies Via, From, To, Call-ID and CSeq from the request and adds a
/// To tag when the request had none.
pub fn make_response(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut h = Headers::with_capacity(16);
    for v in req.headers.get_all("Via") {
        h.push("Via", v.to_string());
    }
    if let Some(v) = req.headers.get("From") {
        h.push("From", v.to_string());
    }
    if let Some(v) = req.headers.get("To") {
        let has_tag = tag_param(v).is_some();
        match (has_tag, to_tag) {
            (false, Some(tag)) if status > 100 => h.push("To", cat(&[v, ";tag=", tag])),
            _ => h.push("To", v.to_string()),
        }
    }
    if let Some(v) = req.headers.get("Call-ID") {
        h.push("Call-ID", v.to_string());
    }
    if let Some(v) = req.headers.get("CSeq") {
        h.push("CSeq", v.to_string());
    }
    Response {
        status,
        reason: reason.to_string(),
        headers: h,
        body: Vec::new(),
    }
}

/// Headers that describe one hop or one dialog and never cross from one leg to the other.
const HOP_HEADERS: &[&str] = &[
    "Via",
    "Route",
    "Record-Route",
    "Contact",
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "RSeq",
    "RAck",
    "Path",
    "Service-Route",
    "Warning",
    "Server",
    "Allow",
    "Session-Expires",
    "Min-SE",
    "Replaces",
];

/// Copy end-to-end headers (everything but [`HOP_HEADERS`]) from one leg's message to the other's.
fn copy_passthrough(src: &Headers, dst: &mut Headers) {
    for h in src.iter() {
        if HOP_HEADERS.iter().any(|n| n.eq_ignore_ascii_case(&h.name)) {
            continue;
        }
        dst.push(&h.name, h.value.clone());
    }
}

/// `host:port` we put in Via/Contact for transport `t` (the UDP address when `t` has no listener).
fn local_addr_text(cfg: &CoreConfig, t: Transport) -> String {
    let addr = match t {
        Transport::Udp => cfg.local_udp,
        Transport::Tcp => cfg.local_tcp,
        Transport::Tls => cfg.local_tls,
    };
    addr.or(cfg.local_udp)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Append `v` in lower-case hex, zero-padded to at least `width` digits (what `{:0width$x}`
/// gives, without the formatting machinery).
fn push_hex(s: &mut String, v: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut n = 0;
    let mut x = v;
    loop {
        buf[15 - n] = DIGITS[(x & 0xf) as usize];
        n += 1;
        x >>= 4;
        if x == 0 {
            break;
        }
    }
    for _ in n..width.min(16) {
        s.push('0');
    }
    for &d in &buf[16 - n..] {
        s.push(char::from(d));
    }
}

/// The concatenation of `parts`, allocated once at its final size (the `format!` machinery was
/// ~4% of the core's instructions for these simple joins).
fn cat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// `CSeq` value `<seq> <method>` (RFC 3261 §20.16).
fn cseq_value(seq: u32, method: &str) -> String {
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut x = seq;
    loop {
        digits[9 - n] = b'0' + (x % 10) as u8;
        n += 1;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(n + 1 + method.len());
    for &d in &digits[10 - n..] {
        s.push(char::from(d));
    }
    s.push(' ');
    s.push_str(method);
    s
}

/// A From/To value without its tag, as we send it back on that leg.
fn without_tag(na: &NameAddr) -> String {
    let mut na = na.clone();
    na.params.retain(|(k, _)| !k.eq_ignore_ascii_case("tag"));
    na.to_string()
}

fn quote_display(d: &str) -> String {
    let t = d.trim();
    if t.starts_with('"') {
        t.to_string()
    } else {
        format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn push_hex_matches_format() {
        for v in [
            0u64,
            1,
            0xf,
            0x10,
            0xabc,
            u64::from(u32::MAX),
            u64::MAX,
            0x0123_4567_89ab_cdef,
        ] {
            for w in [1usize, 8, 16] {
                let mut s = String::new();
                push_hex(&mut s, v, w);
                assert_eq!(s, format!("{v:0w$x}"), "{v} width {w}");
            }
        }
    }

    #[test]
    fn cseq_value_and_cat_match_format() {
        for seq in [0u32, 1, 9, 10, 99, 100, 4711, u32::MAX] {
            assert_eq!(super::cseq_value(seq, "INVITE"), format!("{seq} INVITE"));
        }
        assert_eq!(super::cat(&["<sip:", "a", "@", "b", ">"]), "<sip:a@b>");
        assert_eq!(super::cat(&[]), "");
    }

    #[test]
    fn user_part_is_omitted_when_empty_and_escaped_otherwise() {
        assert_eq!(super::user_at(""), "");
        assert_eq!(super::user_at("+15551234567"), "+15551234567@");
        assert_eq!(super::user_at("a b@c"), "a%20b%40c@");
        assert_eq!(super::user_at("x;np=1%41"), "x;np=1%41@");
    }
}
