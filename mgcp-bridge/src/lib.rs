//! MGCP gateways as trunks and as phone lines. A trunk with an `mgcp:` section (or an entry
//! of `gateways:`) is a media gateway (RFC 3435) rather than a SIP peer, and this bridge is its
//! call agent. Each gateway has its own loopback SIP address in the bridge, so the core sees it
//! as a trunk like any other (it places calls to it, takes calls from it with `source_trunk` =
//! the gateway):
//!
//! * **Calls to the gateway** ([`trunking`]): for a number that is one of the gateway's lines
//!   the line rings (RQNT `L/rg` with the caller id, off-hook answers); any other number goes to
//!   the trunking endpoint: CRCX with leg B's SDP (the relay's), the dialled digits as DTMF
//!   signals (RQNT `S: D/<digits>`, RFC 3660), the INVITE answered with the gateway's SDP,
//!   MDCX on re-INVITE, DLCX at BYE or CANCEL.
//! * **Calls from a line** ([`lines`]): every idle line is armed for off-hook; off-hook gets
//!   dial tone and digit collection with the gateway's digit map; the digits become an INVITE
//!   to the core (as a UAC, [`uac`]) with the gateway's SDP, ringback while it rings, MDCX when
//!   it answers, busy or reorder tone when it fails; on-hook sends BYE.
//! * **Gateway lifecycle**: RSIP (restart, forced, graceful, disconnected) ends the calls on
//!   the affected endpoints and re-audits and re-arms them; a gateway's own DLCX ends its call;
//!   a gateway that stops answering is down (its calls are refused at once with 503, so the
//!   core fails over) until it answers again.
//!
//! Sans-IO: [`Bridge`] takes datagrams and the time and returns datagrams; the tokio shell
//! with its sockets (and the metrics export) is `src/mgcp_bridge.rs` in the binary. This crate
//! joins SIP (`signaling`) to MGCP (`mgcp`) so that `mgcp` itself knows no SIP.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mgcp::{Agent, Command, DigitMap, Event, Timers, Verb};
use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};
use signaling::b2bua::make_response;
use signaling::message::{Method, Request, Response, SipMessage};
use signaling::parse::parse;

mod lifecycle;
mod lines;
mod trunking;
mod uac;

pub use lines::LineState;

/// The host part the core puts in the Request-URI of a call to gateway trunk `name`:
/// `<name>.mgcp.invalid` (RFC 6761 `.invalid`: never resolvable, never leaves the process).
pub const HOST_SUFFIX: &str = ".mgcp.invalid";

/// A gateway the bridge drives.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// Its MGCP address.
    pub address: SocketAddr,
    /// This gateway's SIP address in the bridge (loopback): the core's calls to it arrive
    /// here and its lines' calls leave from here.
    pub sip: SocketAddr,
    /// Trunking endpoint (CRCX for numbers that are not lines).
    pub endpoint: Option<String>,
    /// Wildcard for audits (AUEP) and RSIP matching, e.g. `aaln/*@gw1`.
    pub endpoints: Option<String>,
    /// (number, endpoint) of its lines.
    pub lines: Vec<(String, String)>,
    pub digit_map: DigitMap,
    pub ring_time: Duration,
    /// How often it is audited.
    pub audit_every: Duration,
}

impl Gateway {
    /// A gateway with one trunking endpoint and no lines.
    pub fn trunking(address: SocketAddr, sip: SocketAddr, endpoint: &str) -> Gateway {
        Gateway {
            address,
            sip,
            endpoint: Some(endpoint.to_string()),
            endpoints: None,
            lines: Vec::new(),
            // the default map is valid (a test holds it so)
            digit_map: DigitMap::parse("x.T").unwrap_or_else(|_| unreachable!()),
            ring_time: Duration::from_secs(30),
            audit_every: AUDIT_EVERY,
        }
    }

    /// What AUEP audits: the endpoints wildcard, else the trunking endpoint.
    fn audited(&self) -> Option<&str> {
        self.endpoints.as_deref().or(self.endpoint.as_deref())
    }
}

/// Where a datagram goes: SIP from the named gateway's socket, or MGCP.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Sip(String, SocketAddr, Vec<u8>),
    Mgcp(SocketAddr, Vec<u8>),
}

/// What an MGCP transaction was for.
pub(crate) enum Pending {
    Crcx(String),
    Mdcx {
        call: String,
        reinvite: Request,
    },
    Dlcx,
    Rqnt,
    /// AUEP: is the gateway there, which endpoints has it?
    Audit,
    /// A command for a line (by its key).
    Line(String, lines::Op),
}

/// How often an idle gateway is audited by default.
pub const AUDIT_EVERY: Duration = Duration::from_secs(30);

pub(crate) struct GwState {
    pub cfg: Gateway,
    pub next_audit: Option<Instant>,
    pub endpoints: mgcp::Endpoints,
    /// Endpoint names (wildcards) under a graceful RSIP: they take no new calls.
    pub draining: Vec<String>,
}

pub struct Bridge {
    agent: Agent,
    gateways: HashMap<String, GwState>,
    calls: HashMap<String, trunking::BCall>,
    lines: HashMap<String, lines::LineRt>,
    /// SIP Call-ID -> line key, for the calls of lines.
    by_sip: HashMap<String, String>,
    /// Requests to the core being retransmitted, by branch.
    sip_tx: HashMap<String, uac::ClientTx>,
    pending: HashMap<u32, Pending>,
    /// The gateway each command in flight went to.
    pending_gw: HashMap<u32, String>,
    /// Where the lines' calls go: the core's UDP SIP address (None: lines cannot call out).
    core: Option<SocketAddr>,
    /// Gateway name -> answered its last command.
    pub up: HashMap<String, bool>,
    /// (verb, return code or "timeout") -> commands.
    pub commands: HashMap<(&'static str, String), u64>,
    /// (gateway, "inbound" | "outbound") -> calls: inbound from the PSTN (a line went
    /// off-hook and dialled), outbound to it.
    pub calls_total: HashMap<(String, &'static str), u64>,
    /// (gateway, restart method) -> RSIPs received.
    pub rsips: HashMap<(String, String), u64>,
    /// NTFYs refused: unknown endpoint (500) or a stale request identifier (538).
    pub bad_notifies: u64,
    /// What the gateways' DLCX answers said of the connections they deleted (RFC 3435
    /// section 3.2.2.16, `P:` connection parameters): packets sent, received, lost.
    pub connection_packets: [u64; 3],
    /// To tags, Call-IDs, request identifiers (CSPRNG, seeded by the shell).
    rng: ChaCha12Rng,
    /// MGCP datagrams dropped unread because they came from no configured gateway's address
    /// and port (forged answers, NTFY from elsewhere).
    pub foreign_datagrams: u64,
}

fn digits_of(user: &str) -> String {
    user.chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#'))
        .collect()
}

/// The user part of a SIP URI (`sip:+1555@host;x` -> `+1555`).
fn user_of(uri: &str) -> &str {
    let u = uri.split_once(':').map_or(uri, |(_, r)| r);
    u.split(['@', ';', '>']).next().unwrap_or("")
}

impl Bridge {
    /// `gateways`: by trunk name; `core`: the core's UDP SIP address, where calls from lines
    /// go; `seed`: 32 bytes of OS randomness from the shell (transaction ids, tags, ids).
    pub fn new(
        gateways: HashMap<String, Gateway>,
        core: Option<SocketAddr>,
        seed: [u8; 32],
    ) -> Bridge {
        let mut rng = ChaCha12Rng::from_seed(seed);
        let mut agent_seed = [0u8; 32];
        rng.fill_bytes(&mut agent_seed);
        let mut lines = HashMap::new();
        for (name, g) in &gateways {
            for (number, ep) in &g.lines {
                lines.insert(
                    ep.to_ascii_lowercase(),
                    lines::LineRt::new(name, number, ep),
                );
            }
        }
        Bridge {
            agent: Agent::from_seed(agent_seed, Timers::default()),
            gateways: gateways
                .into_iter()
                .map(|(n, cfg)| {
                    (
                        n,
                        GwState {
                            cfg,
                            next_audit: None,
                            endpoints: mgcp::Endpoints::default(),
                            draining: Vec::new(),
                        },
                    )
                })
                .collect(),
            calls: HashMap::new(),
            lines,
            by_sip: HashMap::new(),
            sip_tx: HashMap::new(),
            pending: HashMap::new(),
            pending_gw: HashMap::new(),
            core,
            up: HashMap::new(),
            commands: HashMap::new(),
            calls_total: HashMap::new(),
            rsips: HashMap::new(),
            bad_notifies: 0,
            connection_packets: [0; 3],
            rng,
            foreign_datagrams: 0,
        }
    }

    /// MGCP responses with a known transaction id that came from another address than the
    /// command's gateway (dropped).
    pub fn foreign_responses(&self) -> u64 {
        self.agent.foreign_responses
    }

    /// Lines per (gateway, state).
    pub fn line_states(&self) -> HashMap<(String, &'static str), u64> {
        let mut m = HashMap::new();
        for g in self.gateways.keys() {
            for s in LineState::ALL {
                m.insert((g.clone(), s.as_str()), 0);
            }
        }
        for l in self.lines.values() {
            *m.entry((l.gw.clone(), l.state().as_str())).or_insert(0) += 1;
        }
        m
    }

    /// The state of the line with endpoint `name`.
    pub fn line_state(&self, name: &str) -> Option<LineState> {
        self.lines
            .get(&name.to_ascii_lowercase())
            .map(|l| l.state())
    }

    /// Send `cmd` to gateway `gw`, remembering what it is for.
    fn send(&mut self, gw: &str, cmd: Command, p: Pending, now: Instant) -> Option<u32> {
        let addr = self.gateways.get(gw).map(|g| g.cfg.address)?;
        let t = self.agent.send(addr, cmd, now);
        self.pending.insert(t, p);
        self.pending_gw.insert(t, gw.to_string());
        Some(t)
    }

    fn tag(&mut self) -> String {
        format!("mg{:016x}", self.rng.next_u64())
    }

    /// A fresh id (request identifier, MGCP call id, Call-ID part): 16 hex digits.
    fn id(&mut self) -> String {
        format!("{:016X}", self.rng.next_u64())
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bKmg{:016x}", self.rng.next_u64())
    }

    fn respond(&self, req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Vec<u8> {
        SipMessage::Response(make_response(req, status, reason, to_tag)).to_bytes()
    }

    fn answer(&mut self, call_id: &str, resp: Response, out: &mut Vec<Out>) {
        let bytes = SipMessage::Response(resp).to_bytes();
        if let Some(c) = self.calls.get_mut(call_id) {
            c.last = Some(bytes.clone());
            out.push(Out::Sip(c.gw.clone(), c.from, bytes));
        }
    }

    fn contact_of(&self, gw: &str) -> String {
        match self.gateways.get(gw) {
            Some(g) => format!("<sip:gw@{}>", g.cfg.sip),
            None => "<sip:gw@invalid>".to_string(),
        }
    }

    fn count_call(&mut self, gw: &str, dir: &'static str) {
        *self.calls_total.entry((gw.to_string(), dir)).or_insert(0) += 1;
    }

    /// `ep` of `gw` is under a graceful restart (RFC 3435 section 2.3.7: "the endpoints
    /// will be taken out of service": no new calls).
    fn draining(&self, gw: &str, ep: &str) -> bool {
        self.gateways.get(gw).is_some_and(|g| {
            g.draining
                .iter()
                .any(|p| p.eq_ignore_ascii_case(ep) || mgcp::endpoint::name_matches(p, ep))
        })
    }

    fn is_up(&self, gw: &str) -> bool {
        self.up.get(gw).copied().unwrap_or(true)
    }

    /// A SIP datagram from the core to gateway `gw`'s address.
    pub fn handle_sip(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        gw: &str,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        if !self.gateways.contains_key(gw) {
            return out;
        }
        let req = match parse(data) {
            Ok(SipMessage::Request(req)) => req,
            Ok(SipMessage::Response(resp)) => {
                self.on_sip_response(resp, gw, now, &mut out);
                self.flush(now, &mut out);
                return out;
            }
            Err(_) => return out,
        };
        let Some(call_id) = req.call_id().map(str::to_string) else {
            return out;
        };
        if let Some(key) = self.by_sip.get(&call_id).cloned() {
            self.line_request(&key, req, from, now, &mut out);
            self.flush(now, &mut out);
            return out;
        }
        match req.method {
            Method::Invite => self.on_invite(req, call_id, from, gw, now, &mut out),
            Method::Ack => {}
            Method::Bye => {
                out.push(Out::Sip(
                    gw.to_string(),
                    from,
                    self.respond(&req, 200, "OK", None),
                ));
                self.delete(&call_id, now);
            }
            Method::Cancel => {
                out.push(Out::Sip(
                    gw.to_string(),
                    from,
                    self.respond(&req, 200, "OK", None),
                ));
                self.trunk_cancel(&call_id, &mut out);
            }
            Method::Options => out.push(Out::Sip(
                gw.to_string(),
                from,
                self.respond(&req, 200, "OK", None),
            )),
            _ => out.push(Out::Sip(
                gw.to_string(),
                from,
                self.respond(&req, 501, "Not Implemented", None),
            )),
        }
        self.flush(now, &mut out);
        out
    }

    fn on_invite(
        &mut self,
        req: Request,
        call_id: String,
        from: SocketAddr,
        gw: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let in_dialog = req
            .to()
            .is_some_and(|t| t.tag().is_some_and(|t| !t.is_empty()));
        if let Some(c) = self.calls.get(&call_id) {
            if !in_dialog {
                // A retransmission: the same answer again.
                if let Some(b) = &c.last {
                    out.push(Out::Sip(c.gw.clone(), from, b.clone()));
                }
                return;
            }
            if let Some(o) = self.trunk_reinvite(req, call_id, now) {
                out.push(o);
            }
            return;
        }
        let refuse = |b: &Bridge, code, reason| {
            Out::Sip(gw.to_string(), from, b.respond(&req, code, reason, None))
        };
        if in_dialog {
            out.push(refuse(self, 481, "Call/Transaction Does Not Exist"));
            return;
        }
        if !self.is_up(gw) {
            // a gateway that does not answer: refused at once, so the core fails over
            out.push(refuse(self, 503, "Gateway Down"));
            return;
        }
        let user = user_of(&req.uri).to_string();
        if let Some(key) = self.line_of_number(gw, &user) {
            self.line_invite(&key, req, call_id, from, now, out);
            return;
        }
        match self.gateways.get(gw).and_then(|g| g.cfg.endpoint.clone()) {
            Some(ep) if self.draining(gw, &ep) => {
                out.push(refuse(self, 503, "Endpoint Restarting"))
            }
            Some(ep) => self.trunk_invite(gw, ep, req, call_id, from, now, out),
            None => out.push(refuse(self, 404, "No Such Line")),
        }
    }

    /// The line of `gw` whose number is `user` (compared on digits: `+1555` = `1555`).
    fn line_of_number(&self, gw: &str, user: &str) -> Option<String> {
        let want = digits_of(user);
        if want.is_empty() {
            return None;
        }
        self.lines
            .iter()
            .find(|(_, l)| l.gw == gw && digits_of(&l.number) == want)
            .map(|(k, _)| k.clone())
    }

    /// An MGCP datagram from a gateway.
    pub fn handle_mgcp(&mut self, data: &[u8], from: SocketAddr, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        // Responses and the gateways' own commands (NTFY, RSIP) only from a configured gateway
        // address and port: anything else is dropped unanswered (no 5xx to a spoofed source).
        if !self.gateways.values().any(|g| g.cfg.address == from) {
            self.foreign_datagrams += 1;
            return out;
        }
        self.agent.handle_datagram(from, data, now);
        self.flush(now, &mut out);
        out
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        self.agent.handle_timeout(now);
        let due: Vec<String> = self
            .gateways
            .iter()
            .filter(|(_, g)| g.next_audit.is_none_or(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.audit(&name, now);
            // at start every line is armed; later the ones whose arming failed
            self.arm_unarmed(&name, now);
        }
        self.sip_timers(now, &mut out);
        self.line_timers(now, &mut out);
        self.flush(now, &mut out);
        out
    }

    fn audit(&mut self, name: &str, now: Instant) {
        let Some(g) = self.gateways.get_mut(name) else {
            return;
        };
        g.next_audit = Some(now + g.cfg.audit_every);
        if let Some(ep) = g.cfg.audited().map(str::to_string) {
            self.send(name, Command::new(Verb::Auep, &ep), Pending::Audit, now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let audits = self.gateways.values().filter_map(|g| g.next_audit);
        let sip = self.sip_tx.values().map(|t| {
            if t.proceeding {
                t.deadline
            } else {
                t.next.min(t.deadline)
            }
        });
        let lines = self.lines.values().filter_map(|l| l.deadline());
        [self.agent.poll_timeout()]
            .into_iter()
            .flatten()
            .chain(audits)
            .chain(sip)
            .chain(lines)
            .min()
            .or(if self.gateways.values().any(|g| g.next_audit.is_none()) {
                Some(Instant::now())
            } else {
                None
            })
    }

    /// Retransmit requests to the core; give up on the silent ones.
    fn sip_timers(&mut self, now: Instant, out: &mut Vec<Out>) {
        let mut expired = Vec::new();
        for (branch, t) in &mut self.sip_tx {
            if now >= t.deadline {
                expired.push((branch.clone(), t.call_id.clone(), t.method.clone()));
            } else if t.due(now) {
                out.push(Out::Sip(t.gw.clone(), t.to, t.bytes.clone()));
            }
        }
        for (branch, call_id, method) in expired {
            self.sip_tx.remove(&branch);
            if method == Method::Invite {
                if let Some(key) = self.by_sip.get(&call_id).cloned() {
                    self.line_invite_failed(&key, &call_id, 408, now);
                }
            }
            self.forget_if_done(&call_id);
        }
    }

    /// Drive the agent's events and datagrams into `out`.
    fn flush(&mut self, now: Instant, out: &mut Vec<Out>) {
        loop {
            let events: Vec<Event> = std::iter::from_fn(|| self.agent.poll_event()).collect();
            if events.is_empty() {
                break;
            }
            for ev in events {
                self.on_event(ev, now, out);
            }
        }
        while let Some(t) = self.agent.poll_transmit() {
            out.push(Out::Mgcp(t.to, t.bytes));
        }
    }

    fn gateway_at(&self, addr: SocketAddr) -> Option<String> {
        self.gateways
            .iter()
            .find(|(_, g)| g.cfg.address == addr)
            .map(|(n, _)| n.clone())
    }

    fn on_event(&mut self, ev: Event, now: Instant, out: &mut Vec<Out>) {
        match ev {
            Event::Command { from, command } => {
                let code = match self.gateway_at(from) {
                    Some(gw) => self.on_gateway_command(&gw, &command, now, out),
                    None => 500,
                };
                let comment = match code {
                    200 => "OK",
                    500 => "Endpoint unknown",
                    538 => "Event/signal parameter error",
                    _ => "Error",
                };
                self.agent
                    .respond(from, mgcp::Response::new(code, command.txid, comment), now);
            }
            Event::Timeout { txid, verb } => {
                if let Some(gw) = self.pending_gw.remove(&txid) {
                    if self.up.insert(gw.clone(), false) != Some(false) {
                        tracing::warn!(gateway = %gw, "mgcp: gateway does not answer: down");
                    }
                }
                *self
                    .commands
                    .entry((verb.as_str(), "timeout".to_string()))
                    .or_insert(0) += 1;
                self.on_timeout(txid, now, out);
            }
            Event::Response {
                txid,
                verb,
                response,
            } => {
                if let Some(gw) = self.pending_gw.remove(&txid) {
                    if self.up.insert(gw.clone(), true) == Some(false) {
                        tracing::info!(gateway = %gw, "mgcp: gateway answers again: up");
                        // it may have restarted without telling: its lines are armed anew
                        self.arm_all(&gw, now);
                    }
                }
                *self
                    .commands
                    .entry((verb.as_str(), response.code.to_string()))
                    .or_insert(0) += 1;
                self.on_response(txid, response, now, out);
            }
        }
    }

    fn on_timeout(&mut self, txid: u32, now: Instant, out: &mut Vec<Out>) {
        match self.pending.remove(&txid) {
            Some(Pending::Crcx(call)) => {
                if let Some(r) = self
                    .calls
                    .get(&call)
                    .map(|c| make_response(&c.invite, 408, "Gateway Timeout", Some(&c.to_tag)))
                {
                    self.answer(&call, r, out);
                }
                self.calls.remove(&call);
            }
            Some(Pending::Mdcx { call, reinvite }) => {
                if let Some(c) = self.calls.get(&call) {
                    out.push(Out::Sip(
                        c.gw.clone(),
                        c.from,
                        self.respond(&reinvite, 408, "Gateway Timeout", None),
                    ));
                }
            }
            Some(Pending::Line(key, op)) => self.line_command_failed(&key, op, 406, now, out),
            _ => {}
        }
    }

    fn on_response(
        &mut self,
        txid: u32,
        response: mgcp::Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        match self.pending.remove(&txid) {
            Some(Pending::Crcx(call)) => self.on_trunk_crcx(call, response, now, out),
            Some(Pending::Mdcx { call, reinvite }) => {
                self.on_trunk_mdcx(&call, &reinvite, response, out)
            }
            Some(Pending::Dlcx) => self.dlcx_done(&response),
            Some(Pending::Rqnt) if !response.is_success() => {
                tracing::info!(code = response.code, "mgcp: RQNT (dial digits) refused");
            }
            Some(Pending::Audit) => self.on_audit(txid, &response),
            Some(Pending::Line(key, op)) => {
                if response.is_success() {
                    self.line_command_done(&key, op, response, now, out);
                } else {
                    self.line_command_failed(&key, op, response.code, now, out);
                }
            }
            Some(Pending::Rqnt) | None => {}
        }
    }

    /// Send a request to the core from `gw`'s address and retransmit it until answered.
    #[allow(clippy::too_many_arguments)]
    fn send_sip(
        &mut self,
        gw: &str,
        req: Request,
        to: SocketAddr,
        branch: String,
        line: Option<&str>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let tx = uac::ClientTx::new(&req, gw, to, now);
        out.push(Out::Sip(gw.to_string(), to, tx.bytes.clone()));
        if let Some(key) = line {
            self.by_sip.insert(tx.call_id.clone(), key.to_string());
        }
        if req.method != Method::Ack {
            self.sip_tx.insert(branch, tx);
        }
    }

    /// A response from the core: stops its request's retransmission; for a line's call,
    /// drives the line.
    fn on_sip_response(&mut self, resp: Response, gw: &str, now: Instant, out: &mut Vec<Out>) {
        let branch = resp.headers.get("Via").and_then(uac::via_branch);
        let method = uac::cseq_method(&resp);
        if let Some(b) = &branch {
            let final_ = resp.status >= 200;
            // a CANCEL shares its INVITE's branch (RFC 3261 9.1): kept apart by a suffix
            let key = if method == Some(Method::Cancel) {
                format!("{b}{}", uac::CANCEL_SUFFIX)
            } else {
                b.clone()
            };
            if final_ {
                self.sip_tx.remove(&key);
            } else if let Some(t) = self.sip_tx.get_mut(&key) {
                // RFC 3261 17.1.1.2: a provisional response stops the INVITE's retransmission
                t.proceeding = true;
                t.deadline = now + uac::PROCEEDING_LIMIT;
            }
        }
        let Some(call_id) = resp.call_id().map(str::to_string) else {
            return;
        };
        if let Some(key) = self.by_sip.get(&call_id).cloned() {
            if method == Some(Method::Invite) {
                self.line_invite_response(&key, resp, now, out);
            } else if resp.status >= 200 {
                // the BYE or CANCEL of an ended call answered
                self.forget_if_done(&call_id);
            }
        }
        let _ = gw;
    }
}

impl Bridge {
    /// A gateway answered a DLCX: its connection parameters counted and logged.
    pub(crate) fn dlcx_done(&mut self, response: &mgcp::Response) {
        let p = response
            .param("P")
            .map(mgcp::ConnectionParams::parse)
            .unwrap_or_default();
        for (slot, v) in self.connection_packets.iter_mut().zip([
            p.packets_sent,
            p.packets_received,
            p.packets_lost.map(|l| l.max(0) as u64),
        ]) {
            *slot = slot.saturating_add(v.unwrap_or(0));
        }
        log_dlcx(&p, response.code);
    }
}

fn log_dlcx(p: &mgcp::ConnectionParams, code: u16) {
    tracing::info!(
        code,
        packets_sent = p.packets_sent.unwrap_or(0),
        packets_received = p.packets_received.unwrap_or(0),
        packets_lost = p.packets_lost.unwrap_or(0),
        "mgcp: connection deleted"
    );
}

/// The MGCP CallId for a SIP Call-ID: hex, at most 32 characters (RFC 3435 section 3.2.2.2).
fn call_tag(call_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016X}")
}

#[cfg(test)]
mod tests;
