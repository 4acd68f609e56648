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

mod answer;
mod api;
mod authz;
mod call;
mod caps;
mod carriers;
mod cdr;
mod dialog;
mod dtmf;
mod failover;
mod forks;
mod handoff;
mod header_policy;
mod invite;
mod join;
mod location;
mod message;
mod offline;
mod owners;
mod pa;
mod prack;
mod presence;
mod redirect;
mod refresh;
mod reoffer;
mod replica;
mod snapshot;
mod timers;
mod transfer;
mod uac_auth;
mod wire;

pub use api::*;
use authz::{ruri_user, Admitted, Caller};
use call::{Attempt, Call, CallId, CallState};
use dialog::Dialog;
use owners::TxOwner;
use presence::SubId;
use wire::*;
pub use wire::{make_response, reason_phrase, HOP_HEADERS};

pub use caps::Caps;
pub use carriers::CarrierTrunk;
pub use cdr::{AttemptRecord, CallRecord, Hangup};
use header_policy::Crossing;
pub use header_policy::HeaderPolicy;
pub use replica::{AdoptError, CallChange, CallReplica, LegReplica, CSEQ_STEP};
pub use snapshot::{CallSummary, RegistrationSummary};

/// Why an out-of-dialog request is not relayed.
enum Refusal {
    Plain(u16, String),
    Unavailable(u32),
    Redirect(u16, Vec<String>),
}

/// Reports a request refused before it became a call.
fn rejected(policy: &mut dyn Policy, status: u16, reason: &str, now: Instant) {
    policy.event(
        CallEvent::Rejected {
            status,
            reason: reason.to_string(),
        },
        now,
    );
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

enum ClientPurpose {
    /// Leg B's INVITE to the call's current target.
    Invite,
    Cancel,
    Bye,
    /// Leg B's PRACK for a reliable provisional response (RFC 3262 §4).
    Prack,
    /// A session refresh of ours on a leg (RFC 4028, `refresh.rs`).
    Refresh(Leg),
    /// A transfer's INVITE to its target, and leg A's re-INVITE that connects it (`handoff.rs`).
    TransferInvite,
    TransferReinvite,
    /// A NOTIFY of a REFER's subscription.
    Notify,
    /// An INFO with a DTMF digit (`dtmf.rs`).
    Info,
    /// A request relayed from the other leg: answer `server_tx` with the final response.
    Relay {
        server_tx: TxId,
        method: Method,
    },
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: std::cmp::Reverse<Instant>,
    call: CallId,
    target_idx: usize,
    kind: DeadlineKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DeadlineKind {
    /// No answer at all yet ([`CoreConfig::no_answer_failover`]).
    NoAnswer,
    /// Ringing without a final answer ([`CoreConfig::ringing_timeout`]).
    Ringing,
    /// Leg A's reliable provisional response is due for retransmission (`prack.rs`).
    Reliable1xx,
    /// A leg's session timer: a refresh of ours, or the session's end (`refresh.rs`).
    Session(Leg),
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
    calls: IdMap<CallId, Call>,
    /// leg A Call-ID -> [(leg A From tag, call)]: keyed by the Call-ID alone so a lookup borrows
    /// the received text instead of building an owned (Call-ID, tag) pair per message.
    by_a: PeerMap<String, Vec<(String, CallId)>>,
    /// leg B Call-ID (ours) -> call
    by_b: PeerMap<String, CallId>,
    /// Leg A's INVITE server transaction -> call (CANCEL and a missing ACK find the call by it).
    by_a_tx: IdMap<TxId, CallId>,
    /// Every client transaction's owner (calls, MESSAGEs, subscriptions, abandoned branches).
    owners: owners::Owners,
    /// Server transactions of relayed in-dialog requests: tx -> (call, leg it came from)
    server: IdMap<TxId, (CallId, Leg)>,
    /// The original requests of relayed in-dialog transactions, by server transaction.
    relayed_requests: IdMap<TxId, Request>,
    /// Per family (IPv4, IPv6) and transport: Via up to the branch value, and Contact
    /// (formatted once, not per message).
    local_via: [[String; 3]; 2],
    local_contact: [[String; 3]; 2],
    /// Per family: our host (IP, an IPv6 one as a reference) for the From of leg B.
    local_host: [String; 2],
    deadlines: BinaryHeap<Deadline>,
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
    /// Relayed subscriptions (SUBSCRIBE/NOTIFY, `presence.rs`), by id; their dialogs by
    /// (Call-ID, our tag); (their client transactions are in `owners`).
    subs: HashMap<SubId, presence::Subscription>,
    sub_keys: HashMap<(String, String), (SubId, Leg)>,
    /// Subscription expiries, earliest first (lazy: stale entries are skipped when due).
    sub_expiry: BinaryHeap<std::cmp::Reverse<(Instant, SubId)>>,
    next_sub: u64,
    draining: bool,
    /// Unanswered calls per unauthenticated source; subscriptions per source and per target.
    early: caps::Counts<std::net::IpAddr>,
    sub_sources: caps::Counts<std::net::IpAddr>,
    sub_targets: caps::Counts<String>,
    /// Registrations with carriers and trunk probes.
    carriers: carriers::Carriers,
    /// Leg B's in-dialog requests of calls whose trunk has credentials, until their final
    /// answer (`uac_auth.rs`).
    b_sent: IdMap<TxId, Request>,
    /// MESSAGEs and first SUBSCRIBEs to trunks with credentials, until their final answer.
    b_sent_standalone: IdMap<TxId, uac_auth::Standalone>,
    /// Leg A's reliable provisional responses (RFC 3262), per call whose caller supports them.
    rel_a: IdMap<CallId, prack::RelA>,
    /// Server transactions of relayed re-INVITEs whose 2xx carries the other leg's offer, until
    /// their ACK brings the answer (`reoffer.rs`).
    reack_txs: IdMap<TxId, CallId>,
    /// Messages kept for users who are offline (`offline.rs`).
    mailbox: crate::mailbox::Mailbox,
    /// The wall clock as the shell last gave it (for the `Date` of held messages).
    wall: Option<offline::WallClock>,
    /// The presence agent of the served users (`pa.rs`).
    pa: pa::Agent,
    /// Records of confirmed calls for another node (`replica.rs`), when enabled.
    replication: Option<replica::Replication>,
}

impl B2bua {
    pub fn new(cfg: CoreConfig) -> B2bua {
        let tx = Transactions::new(cfg.timers);
        let mut rng = ChaCha12Rng::from_seed(cfg.seed);
        let mut nonce_key = [0u8; 32];
        rng.fill_bytes(&mut nonce_key);
        let ts = [Transport::Udp, Transport::Tcp, Transport::Tls];
        let local_via = [false, true].map(|v6| {
            ts.map(|t| {
                format!(
                    "SIP/2.0/{} {};branch=",
                    t.via_token(),
                    local_addr_text(&cfg, t, v6)
                )
            })
        });
        let local_contact = [false, true].map(|v6| {
            ts.map(|t| {
                let addr = local_addr_text(&cfg, t, v6);
                match t {
                    Transport::Udp => format!("<sip:{addr}>"),
                    Transport::Tcp => format!("<sip:{addr};transport=tcp>"),
                    Transport::Tls => format!("<sips:{addr}>"),
                }
            })
        });
        let local_host = [false, true].map(|v6| {
            let addr = [Transport::Udp, Transport::Tcp, Transport::Tls]
                .into_iter()
                .find_map(|t| local_addr(&cfg, t, v6));
            match addr {
                Some(SocketAddr::V6(a)) => format!("[{}]", a.ip()),
                Some(SocketAddr::V4(a)) => a.ip().to_string(),
                None => "127.0.0.1".into(),
            }
        });
        B2bua {
            cfg,
            tx,
            calls: IdMap::default(),
            by_a: PeerMap::default(),
            by_b: PeerMap::default(),
            by_a_tx: IdMap::default(),
            owners: owners::Owners::default(),
            server: IdMap::default(),
            relayed_requests: IdMap::default(),
            local_via,
            local_contact,
            local_host,
            deadlines: BinaryHeap::new(),
            next_call: 1,
            rng,
            nonce_key,
            out: Vec::new(),
            stats: CoreStats::default(),
            registrar: None,
            next_keepalive: None,
            subs: HashMap::new(),
            sub_keys: HashMap::new(),
            sub_expiry: BinaryHeap::new(),
            next_sub: 1,
            draining: false,
            early: caps::Counts::default(),
            sub_sources: caps::Counts::default(),
            sub_targets: caps::Counts::default(),
            carriers: carriers::Carriers::default(),
            b_sent: IdMap::default(),
            b_sent_standalone: IdMap::default(),
            rel_a: IdMap::default(),
            reack_txs: IdMap::default(),
            mailbox: Default::default(),
            wall: None,
            pa: Default::default(),
            replication: None,
        }
    }

    /// MESSAGEs relayed and not answered yet.
    pub fn pending_messages(&self) -> usize {
        self.owners.messages()
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
        self.calls.contains_key(&CallId(id))
    }
    /// Client transactions something still waits on (leak tests: 0 once quiet).
    pub fn pending_client_transactions(&self) -> usize {
        self.owners.len()
    }
    /// Deadlines held (calls' timers, stale ones included until swept; leak tests).
    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
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

    /// New session timer defaults (a reloaded configuration): for calls answered from now on.
    pub fn set_session_timer(&mut self, t: Option<SessionTimer>) {
        self.cfg.session_timer = t;
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

    /// Our Via (a new branch) on a request to `to`: our address of `to`'s family and transport.
    fn via_for(&mut self, to: Peer) -> String {
        let head = &self.local_via[usize::from(is_v6(&to))][to.transport as usize];
        let mut v = String::with_capacity(head.len() + 32);
        v.push_str(head);
        self.push_branch(&mut v);
        v.push_str(";rport");
        v
    }

    /// Our Contact towards `to` (its family and transport).
    fn contact_for(&self, to: Peer) -> String {
        self.local_contact[usize::from(is_v6(&to))][to.transport as usize].clone()
    }

    /// Our host for the URIs of a leg towards `to` (an IPv6 address as a reference).
    fn our_host(&self, to: Peer) -> &str {
        &self.local_host[usize::from(is_v6(&to))]
    }

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
        self.drive_carriers(now, policy);
        self.retry_deliveries(now, policy);
        self.pa_timers(now, policy);
        while let Some(d) = self.deadlines.peek() {
            if d.at.0 > now {
                break;
            }
            let Some(d) = self.deadlines.pop() else { break };
            match d.kind {
                DeadlineKind::Ringing => self.ringing_deadline(d.call, d.target_idx, now, policy),
                DeadlineKind::NoAnswer => {
                    self.no_answer_deadline(d.call, d.target_idx, now, policy)
                }
                DeadlineKind::Reliable1xx => self.reliable_1xx_due(d.call, d.at.0, now, policy),
                DeadlineKind::Session(leg) => self.session_due(d.call, leg, d.at.0, now, policy),
            }
        }
        self.pump(now, policy);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.tx.poll_timeout();
        let b = self.deadlines.peek().map(|d| d.at.0);
        let c = self.next_sub_expiry();
        let d = self.carriers.poll_timeout();
        let e = self.mailbox.poll_timeout();
        let f = self.pa.poll_timeout();
        [a, b, c, d, e, f, self.next_keepalive]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.out.pop() {
            return Some(t);
        }
        self.tx.poll_transmit()
    }

    /// End a call from outside (an operator): BYE both legs.
    pub fn terminate_call(&mut self, call: u64, now: Instant, policy: &mut dyn Policy) {
        self.terminate_call_for(call, Hangup::Admin, now, policy);
    }

    /// End a call from outside (media timeout, operator, shutdown: `why`, for its record): BYE
    /// both legs of an answered call, 503 to leg A and CANCEL to leg B of a ringing one.
    pub fn terminate_call_for(
        &mut self,
        call: u64,
        why: Hangup,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let call = CallId(call);
        if let Some(c) = self.calls.get_mut(&call) {
            if !c.is_terminating() {
                c.log.hangup(why, now);
            }
            match c.state {
                CallState::Confirmed(_) => {
                    self.end_both(call, now, policy);
                }
                // Not answered yet (shutdown): 503 + Retry-After to A so it tries elsewhere or
                // later (RFC 3261 §21.5.4), CANCEL to B.
                CallState::Proceeding(_) => {
                    self.abort_ringing(call, 503, "Service Unavailable", Some(30), now, policy)
                }
                CallState::Terminating(_) => {}
            }
        }
        self.pump(now, policy);
    }

    /// Ids of the calls still in progress: answered or ringing (for shutdown).
    pub fn live_calls(&self) -> Vec<u64> {
        self.calls
            .values()
            .filter(|c| match &c.state {
                CallState::Proceeding(a) => !a.cancelled,
                CallState::Confirmed(_) => true,
                CallState::Terminating(_) => false,
            })
            .map(|c| c.id.raw())
            .collect()
    }

    /// One line per call held: state and what it still waits for (leak tests).
    pub fn describe_calls(&self) -> Vec<String> {
        self.calls
            .values()
            .map(|c| c.describe(self.owners.has_call(c.id)))
            .collect()
    }

    /// The id that ties a message to its call across both legs (for capture): leg A's Call-ID
    /// for a message of either leg of a call; `None` when `call_id` is no call's leg B.
    pub fn correlation_id(&self, call_id: &str) -> Option<&str> {
        let id = self.by_b.get(call_id)?;
        self.calls.get(id).map(|c| c.a.call_id.as_str())
    }

    /// Find a call by leg A's Call-ID and From tag (the media side's key).
    pub fn find_call(&self, a_call_id: &str, a_from_tag: &str) -> Option<u64> {
        self.call_of(a_call_id, a_from_tag).map(CallId::raw)
    }

    /// The newest call with leg A's Call-ID and From tag (a call that is over may still be
    /// held beside a new one on the same identifiers).
    fn call_of(&self, a_call_id: &str, a_from_tag: &str) -> Option<CallId> {
        self.calls_of(a_call_id, a_from_tag).last()
    }

    /// Every call held with leg A's Call-ID and From tag, oldest first.
    fn calls_of<'a>(
        &'a self,
        a_call_id: &str,
        a_from_tag: &'a str,
    ) -> impl Iterator<Item = CallId> + 'a {
        self.by_a
            .get(a_call_id)
            .into_iter()
            .flatten()
            .filter(move |(tag, _)| tag == a_from_tag)
            .map(|(_, id)| *id)
    }

    /// Ids of confirmed calls (for shutdown).
    pub fn confirmed_calls(&self) -> Vec<u64> {
        self.calls
            .values()
            .filter(|c| c.is_confirmed())
            .map(|c| c.id.raw())
            .collect()
    }

    fn pump(&mut self, now: Instant, policy: &mut dyn Policy) {
        self.pump_events(now, policy);
        while let Some(id) = self.owners.drained.pop() {
            self.maybe_collect_with_media(id, now, policy);
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
        // An out-of-dialog OPTIONS is addressed to trunkline itself, not forwarded: RFC 3261
        // §11 lets a UAS answer one with Max-Forwards 0 (a proxy's probe of its next hop).
        let to_us = req.method == Method::Options && to_tag.is_none();
        let rules = check::Admission {
            supported: SUPPORTED,
            reject_zero_max_forwards: !to_us,
            ..check::Admission::default()
        };
        if let Err(rej) = check::check_request(&req, &rules) {
            // In-dialog requests still must be well formed.
            *self.stats.rejected.entry("admission").or_insert(0) += 1;
            rejected(policy, rej.status, &rej.reason, now);
            let mut resp = make_response(&req, rej.status, &rej.reason, Some(&self.new_tag()));
            for (n, v) in &rej.headers {
                resp.headers.push(n, v.clone());
            }
            self.tx.send_response(tx, resp, now);
            if to_tag.is_none() {
                // A new call refused (an in-dialog request is no attempt of its own).
                self.refused_invite(&req, from, rej.status, now, policy);
            }
            return;
        }
        if let Some(tag) = to_tag {
            let Some(req) = self.pa_in_dialog(tx, req, from, &tag, now, policy) else {
                return;
            };
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
                resp.headers.push("Supported", "100rel, timer");
                resp.headers.push("Server", self.cfg.user_agent.clone());
                self.tx.send_response(tx, resp, now);
            }
            Method::Register if policy.registrar(now).is_some() => {
                self.on_register(tx, req, from, now, policy)
            }
            Method::Message => self.on_message(tx, req, from, now, policy),
            Method::Subscribe => self.on_subscribe(tx, req, from, now, policy),
            Method::Publish if policy.registrar(now).is_some() => {
                self.on_publish(tx, req, from, now, policy)
            }
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

    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        tx: TxId,
        req: &Request,
        from: Peer,
        code: u16,
        reason: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let tag = self.new_tag();
        let resp = make_response(req, code, reason, Some(&tag));
        self.tx.send_response(tx, resp, now);
        rejected(policy, code, reason, now);
        self.refused_invite(req, from, code, now, policy);
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
