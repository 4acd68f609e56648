//! Phone lines of residential gateways (RFC 3435 with the line package `L` and DTMF package
//! `D` of RFC 3660): one state machine per line, in both directions.
//!
//! ```text
//!  Unarmed --RQNT R: L/hd ack--> Idle --NTFY L/hd--> Dialling (S: L/dl, D: digit map)
//!  Dialling --NTFY D/..., matches the map--> Out: CRCX, INVITE to the core
//!      180 -> S: L/rt;  200 -> ACK, MDCX sendrecv;  >= 300 -> ACK, S: L/bz | L/ro, DLCX
//!  Dialling --digits match nothing (timer T)--> Hanging (S: L/ro)
//!  Idle --INVITE from the core--> In: CRCX recvonly, S: L/rg + L/ci, 180
//!      NTFY L/hd -> MDCX sendrecv, 200;  no answer in ring_time -> 480;  CANCEL -> 487
//!  any call --NTFY L/hu--> BYE or CANCEL, DLCX, re-armed
//!  any call --BYE from the core--> 200, DLCX, Hanging (R: L/hu) --NTFY L/hu--> re-armed
//! ```
//!
//! RFC 3435 section 4.4.1: "the request identifier ... [links] the notifications to the
//! request"; a NTFY whose `X:` is not the one in force for the line is refused (538) and has
//! no effect, so a replayed or delayed notification cannot hang up or answer a call.

use std::net::SocketAddr;
use std::time::Instant;

use mgcp::endpoint::{dialled, parse_events};
use mgcp::{Command, Verb};
use signaling::b2bua::make_response;
use signaling::message::{Method, Request, SipMessage};

use crate::uac::Dialog;
use crate::{Bridge, Out, Pending};

/// What a line is doing (the metrics' `state` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineState {
    /// Not armed yet (at start, after a restart, while its gateway does not answer).
    Unarmed,
    /// On hook, armed for off-hook.
    Idle,
    /// Off hook, dial tone, digits being collected.
    Dialling,
    /// In a call it placed (being set up, ringing, or answered).
    Calling,
    /// Ringing for a call to it.
    Ringing,
    /// In a call to it that it answered.
    Talking,
    /// A call ended or failed; waiting for on-hook (maybe with busy or reorder tone).
    Hanging,
}

impl LineState {
    pub const ALL: [LineState; 7] = [
        LineState::Unarmed,
        LineState::Idle,
        LineState::Dialling,
        LineState::Calling,
        LineState::Ringing,
        LineState::Talking,
        LineState::Hanging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LineState::Unarmed => "unarmed",
            LineState::Idle => "idle",
            LineState::Dialling => "dialling",
            LineState::Calling => "calling",
            LineState::Ringing => "ringing",
            LineState::Talking => "talking",
            LineState::Hanging => "hanging",
        }
    }
}

/// A line command in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// RQNT arming for off-hook.
    Arm,
    /// RQNT changing signals or events during a call.
    Signal,
    Crcx,
    Mdcx,
    Dlcx,
}

#[derive(Debug, PartialEq, Eq)]
enum OutStage {
    Creating,
    Inviting,
    Early,
    Up,
}

/// A call the line placed (the bridge is the UAC towards the core).
struct OutCall {
    mgcp_call: String,
    conn: Option<String>,
    gw_sdp: Option<String>,
    digits: String,
    dialog: Option<Dialog>,
    invite: Option<Request>,
    stage: OutStage,
}

#[derive(Debug, PartialEq, Eq)]
enum InStage {
    Creating,
    Ringing(Instant),
    Answering,
    Up,
}

/// A call to the line (the bridge is the UAS for the core's INVITE).
struct InCall {
    mgcp_call: String,
    conn: Option<String>,
    gw_sdp: Option<String>,
    invite: Request,
    from: SocketAddr,
    to_tag: String,
    stage: InStage,
    last: Option<Vec<u8>>,
}

enum Phase {
    Unarmed { arming: bool },
    Idle,
    Dialling,
    Out(Box<OutCall>),
    In(Box<InCall>),
    Hanging,
}

pub(crate) struct LineRt {
    pub gw: String,
    pub number: String,
    pub endpoint: String,
    /// The request identifier in force (NTFYs must carry it).
    x: Option<String>,
    phase: Phase,
}

impl LineRt {
    pub fn new(gw: &str, number: &str, endpoint: &str) -> LineRt {
        LineRt {
            gw: gw.to_string(),
            number: number.to_string(),
            endpoint: endpoint.to_string(),
            x: None,
            phase: Phase::Unarmed { arming: false },
        }
    }

    pub fn state(&self) -> LineState {
        match &self.phase {
            Phase::Unarmed { .. } => LineState::Unarmed,
            Phase::Idle => LineState::Idle,
            Phase::Dialling => LineState::Dialling,
            Phase::Out(_) => LineState::Calling,
            Phase::In(c) => match c.stage {
                InStage::Creating | InStage::Ringing(_) => LineState::Ringing,
                InStage::Answering | InStage::Up => LineState::Talking,
            },
            Phase::Hanging => LineState::Hanging,
        }
    }

    /// The ringing deadline.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::In(c) => match c.stage {
                InStage::Ringing(t) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    /// The SIP Call-ID of the line's call.
    pub fn call_id(&self) -> Option<&str> {
        match &self.phase {
            Phase::Out(c) => c.dialog.as_ref().map(|d| d.call_id.as_str()),
            Phase::In(c) => c.invite.call_id(),
            _ => None,
        }
    }

    fn conn(&self) -> Option<&str> {
        match &self.phase {
            Phase::Out(c) => c.conn.as_deref(),
            Phase::In(c) => c.conn.as_deref(),
            _ => None,
        }
    }

    /// The line's call holds connection `conn` (or, without `I:`, is on `endpoint`).
    pub fn has_connection(&self, conn: Option<&str>, endpoint: &str) -> bool {
        match (conn, self.conn()) {
            (Some(c), Some(mine)) => c.eq_ignore_ascii_case(mine),
            (None, Some(_)) => self.endpoint.eq_ignore_ascii_case(endpoint),
            _ => false,
        }
    }
}

/// A caller id safe inside `L/ci(...)`: digits, `+*#`, letters, at most 32.
fn caller_id(req: &Request) -> String {
    let user = req
        .headers
        .get("From")
        .and_then(|f| {
            let s = f.find("sip:").or_else(|| f.find("tel:"))? + 4;
            Some(crate::user_of(&f[s - 4..]).to_string())
        })
        .unwrap_or_default();
    user.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '*' | '#'))
        .take(32)
        .collect()
}

mod incoming;
mod outgoing;

impl Bridge {
    fn line(&mut self, key: &str) -> Option<&mut LineRt> {
        self.lines.get_mut(key)
    }

    /// RQNT on a line with a new request identifier: `events` requested, `signals` played.
    fn line_rqnt(
        &mut self,
        key: &str,
        events: &str,
        signals: &str,
        extra: Option<(&str, &str)>,
        op: Op,
        now: Instant,
    ) {
        let x = self.id();
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        l.x = Some(x.clone());
        let (gw, ep) = (l.gw.clone(), l.endpoint.clone());
        let mut cmd = Command::new(Verb::Rqnt, &ep)
            .with("X", &x)
            .with("R", events);
        if let Some((k, v)) = extra {
            cmd = cmd.with(k, v);
        }
        if !signals.is_empty() {
            cmd = cmd.with("S", signals);
        }
        self.send(&gw, cmd, Pending::Line(key.to_string(), op), now);
    }

    /// Forget the SIP Call-ID of a call a line no longer has once nothing is sent for it.
    pub(crate) fn forget_if_done(&mut self, call_id: &str) {
        let Some(key) = self.by_sip.get(call_id) else {
            return;
        };
        let current = self.lines.get(key).and_then(|l| l.call_id()) == Some(call_id);
        if !current && !self.sip_tx.values().any(|t| t.call_id == call_id) {
            self.by_sip.remove(call_id);
        }
    }

    /// Arm the line for off-hook (RFC 3660 `L/hd`, action N: notify).
    pub(crate) fn arm(&mut self, key: &str, now: Instant) {
        if let Some(l) = self.line(key) {
            l.phase = Phase::Unarmed { arming: true };
        }
        self.line_rqnt(key, "L/hd(N)", "", None, Op::Arm, now);
    }

    /// Arm every line of `gw` that is in no call.
    pub(crate) fn arm_all(&mut self, gw: &str, now: Instant) {
        let keys: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, l)| l.gw == gw && matches!(l.phase, Phase::Unarmed { .. } | Phase::Idle))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.arm(&k, now);
        }
    }

    /// Wait for on-hook, maybe playing `tone` (`L/bz` busy, `L/ro` reorder).
    fn hang(&mut self, key: &str, tone: &str, now: Instant) {
        if let Some(l) = self.line(key) {
            l.phase = Phase::Hanging;
        }
        self.line_rqnt(key, "L/hu(N)", tone, None, Op::Signal, now);
    }

    fn dlcx(&mut self, key: &str, mgcp_call: &str, conn: Option<&str>, now: Instant) {
        let Some(l) = self.lines.get(key) else {
            return;
        };
        let (gw, ep) = (l.gw.clone(), l.endpoint.clone());
        let mut cmd = Command::new(Verb::Dlcx, &ep).with("C", mgcp_call);
        if let Some(c) = conn {
            cmd = cmd.with("I", c);
        }
        self.send(&gw, cmd, Pending::Line(key.to_string(), Op::Dlcx), now);
    }

    /// A NTFY from `gw`: the answer's return code.
    pub(crate) fn on_notify(
        &mut self,
        gw: &str,
        c: &Command,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> u16 {
        let key = c.endpoint.to_ascii_lowercase();
        let Some(l) = self.lines.get(&key).filter(|l| l.gw == gw) else {
            let trunking = self.gateways.get(gw).and_then(|g| g.cfg.endpoint.clone());
            if trunking.is_some_and(|t| mgcp::endpoint::name_matches(&t, &c.endpoint)) {
                return 200; // digits or tones on a trunking endpoint: nothing to do
            }
            self.bad_notifies += 1;
            return 500;
        };
        if c.param("X").map(str::trim) != l.x.as_deref() || l.x.is_none() {
            self.bad_notifies += 1;
            return 538;
        }
        let Some(events) = c.param("O").and_then(parse_events) else {
            self.bad_notifies += 1;
            return 538;
        };
        if events.iter().any(|e| e.is("L", "hu")) {
            self.on_hook(&key, now, out);
        } else if events.iter().any(|e| e.is("L", "hd")) {
            self.off_hook(&key, now, out);
        } else {
            let digits = dialled(&events);
            if !digits.is_empty() {
                self.on_digits(&key, &digits, now);
            }
        }
        200
    }

    fn off_hook(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        let (gw, ep) = (l.gw.clone(), l.endpoint.clone());
        if matches!(l.phase, Phase::Unarmed { .. } | Phase::Idle) && self.draining(&gw, &ep) {
            // out of service after a graceful restart: no dial tone, reorder
            self.hang(key, "L/ro", now);
            return;
        }
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        match &mut l.phase {
            Phase::Unarmed { .. } | Phase::Idle => {
                l.phase = Phase::Dialling;
                let map = self
                    .gateways
                    .get(&l.gw)
                    .map(|g| g.cfg.digit_map.as_str().to_string())
                    .unwrap_or_default();
                self.line_rqnt(
                    key,
                    "L/hu(N),D/[0-9#*T](D)",
                    "L/dl",
                    Some(("D", &map)),
                    Op::Signal,
                    now,
                );
            }
            Phase::In(c) if matches!(c.stage, InStage::Ringing(_)) => {
                // answered: media both ways, ringing stops
                c.stage = InStage::Answering;
                let (mc, conn) = (c.mgcp_call.clone(), c.conn.clone().unwrap_or_default());
                let (gw, ep) = (l.gw.clone(), l.endpoint.clone());
                let cmd = Command::new(Verb::Mdcx, &ep)
                    .with("C", &mc)
                    .with("I", &conn)
                    .with("M", "sendrecv");
                self.send(&gw, cmd, Pending::Line(key.to_string(), Op::Mdcx), now);
                self.line_rqnt(key, "L/hu(N)", "", None, Op::Signal, now);
            }
            _ => {}
        }
        let _ = out;
    }

    fn on_hook(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        let phase = std::mem::replace(&mut l.phase, Phase::Unarmed { arming: false });
        match phase {
            Phase::Out(c) => self.end_out(key, *c, true, now, out),
            Phase::In(c) => self.end_in(key, *c, true, now, out),
            Phase::Unarmed { .. } | Phase::Idle => {}
            Phase::Dialling | Phase::Hanging => {}
        }
        self.arm(key, now);
    }

    /// The line's call is gone on the gateway's side (RSIP, its own DLCX): end the SIP side;
    /// the caller re-arms the line.
    pub(crate) fn line_lost(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        let phase = std::mem::replace(&mut l.phase, Phase::Unarmed { arming: false });
        match phase {
            Phase::Out(c) => self.end_out(key, *c, false, now, out),
            Phase::In(c) => self.end_in(key, *c, false, now, out),
            _ => {}
        }
    }

    /// A request from the core in a line's call.
    pub(crate) fn line_request(
        &mut self,
        key: &str,
        req: Request,
        from: SocketAddr,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        let gw = l.gw.clone();
        let ok = |b: &Bridge, code, reason| {
            Out::Sip(gw.clone(), from, b.respond(&req, code, reason, None))
        };
        let same_call = match &l.phase {
            Phase::Out(c) => c.dialog.as_ref().map(|d| d.call_id.as_str()) == req.call_id(),
            Phase::In(c) => c.invite.call_id() == req.call_id(),
            _ => false,
        };
        if !same_call {
            // an old call of this line, already ended here
            if !matches!(req.method, Method::Ack) {
                out.push(ok(self, 481, "Call/Transaction Does Not Exist"));
            }
            return;
        }
        match req.method {
            Method::Ack => {}
            Method::Bye => {
                out.push(ok(self, 200, "OK"));
                if let Some(id) = req.call_id() {
                    self.by_sip.remove(id);
                }
                let Some(l) = self.lines.get_mut(key) else {
                    return;
                };
                let phase = std::mem::replace(&mut l.phase, Phase::Hanging);
                let (mc, conn) = match &phase {
                    Phase::Out(c) => (c.mgcp_call.clone(), c.conn.clone()),
                    Phase::In(c) => (c.mgcp_call.clone(), c.conn.clone()),
                    _ => return,
                };
                self.dlcx(key, &mc, conn.as_deref(), now);
                self.hang(key, "", now);
            }
            Method::Cancel => {
                let ringing = matches!(&l.phase, Phase::In(c) if matches!(c.stage, InStage::Creating | InStage::Ringing(_)));
                out.push(ok(self, 200, "OK"));
                if ringing {
                    self.in_answer(key, 487, "Request Terminated", false, out);
                    self.line_lost(key, now, out);
                    self.arm(key, now);
                }
            }
            Method::Invite | Method::Update => {
                let tagged = req
                    .to()
                    .is_some_and(|t| t.tag().is_some_and(|t| !t.is_empty()));
                let retransmission = req.method == Method::Invite && !tagged;
                if retransmission {
                    if let Phase::In(c) = &l.phase {
                        if let Some(b) = &c.last {
                            out.push(Out::Sip(gw, from, b.clone()));
                        }
                    }
                    return;
                }
                // a refresh or re-offer: the gateway's SDP stands (its connection is unchanged)
                let sdp = match &l.phase {
                    Phase::Out(c) => c.gw_sdp.clone(),
                    Phase::In(c) => c.gw_sdp.clone(),
                    _ => None,
                };
                let number = l.number.clone();
                let me = self.gateways.get(&gw).map(|g| g.cfg.sip);
                let mut r = make_response(&req, 200, "OK", None);
                if let Some(me) = me {
                    r.headers.push("Contact", format!("<sip:{number}@{me}>"));
                }
                if let (Some(sdp), false) = (sdp, req.body.is_empty()) {
                    r.headers.push("Content-Type", "application/sdp");
                    r.body = sdp.into_bytes();
                }
                out.push(Out::Sip(gw, from, SipMessage::Response(r).to_bytes()));
            }
            Method::Options => out.push(ok(self, 200, "OK")),
            _ => out.push(ok(self, 501, "Not Implemented")),
        }
    }

    /// A line command succeeded.
    pub(crate) fn line_command_done(
        &mut self,
        key: &str,
        op: Op,
        resp: mgcp::Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        match (op, &mut l.phase) {
            (Op::Arm, Phase::Unarmed { .. }) => l.phase = Phase::Idle,
            (Op::Crcx, Phase::Out(c)) if c.stage == OutStage::Creating && c.conn.is_none() => {
                c.conn = resp.param("I").map(str::to_string);
                c.gw_sdp = resp.sdp.clone();
                self.line_call_out(key, now, out);
            }
            (Op::Crcx, Phase::In(c)) if c.stage == InStage::Creating && c.conn.is_none() => {
                c.conn = resp.param("I").map(str::to_string);
                c.gw_sdp = resp.sdp.clone();
                let ring = self
                    .gateways
                    .get(&l.gw)
                    .map(|g| g.cfg.ring_time)
                    .unwrap_or_default();
                c.stage = InStage::Ringing(now + ring);
                let ci = format!("L/rg,L/ci(,\"{}\",)", caller_id(&c.invite));
                self.line_rqnt(key, "L/hd(N)", &ci, None, Op::Signal, now);
                self.in_answer(key, 180, "Ringing", false, out);
            }
            (Op::Crcx, _) => {
                // the call ended while the connection was being made: delete it
                if let (Some(conn), Some(c)) = (resp.param("I"), l.endpoint.clone().into()) {
                    let conn = conn.to_string();
                    let gw = l.gw.clone();
                    let cmd = Command::new(Verb::Dlcx, &c).with("I", &conn);
                    self.send(&gw, cmd, Pending::Line(key.to_string(), Op::Dlcx), now);
                }
            }
            (Op::Mdcx, Phase::In(c)) if c.stage == InStage::Answering => {
                c.stage = InStage::Up;
                self.in_answer(key, 200, "OK", true, out);
            }
            (Op::Dlcx, _) => self.dlcx_done(&resp),
            _ => {}
        }
    }

    /// A line command failed (`code`: the gateway's return code, 406 for no answer).
    pub(crate) fn line_command_failed(
        &mut self,
        key: &str,
        op: Op,
        code: u16,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        tracing::info!(line = %l.endpoint, ?op, code, "mgcp: line command failed");
        match (op, &l.phase) {
            (Op::Arm, _) if code == 401 => {
                // RFC 3435 section 2.4 "401 The phone is already off hook": wait for on-hook
                self.hang(key, "", now);
            }
            (Op::Arm, _) => l.phase = Phase::Unarmed { arming: false },
            (Op::Crcx, Phase::Out(_)) => {
                l.phase = Phase::Hanging;
                self.hang(key, "L/ro", now);
            }
            (Op::Crcx, Phase::In(_)) => {
                // RFC 3435 codes 505/506/534: the gateway cannot take the offer's codecs
                let (status, reason) = if matches!(code, 505 | 506 | 534) {
                    (488, "Not Acceptable Here")
                } else {
                    (503, "Line Unavailable")
                };
                self.in_answer(key, status, reason, false, out);
                if let Some(l) = self.lines.get_mut(key) {
                    if let Phase::In(c) = &l.phase {
                        if let Some(id) = c.invite.call_id() {
                            self.by_sip.remove(id);
                        }
                    }
                    l.phase = Phase::Unarmed { arming: false };
                }
                self.arm(key, now);
            }
            (Op::Mdcx, Phase::In(c)) if c.stage == InStage::Answering => {
                // the gateway cannot take the relay's media (RFC 3435 534 codec negotiation
                // failure, ...): the caller gets 488, not a silent call
                self.in_answer(key, 488, "Not Acceptable Here", false, out);
                if let Some(l) = self.lines.get_mut(key) {
                    if let Phase::In(c) = std::mem::replace(&mut l.phase, Phase::Hanging) {
                        if let Some(id) = c.invite.call_id() {
                            self.by_sip.remove(id);
                        }
                        self.dlcx(key, &c.mgcp_call, c.conn.as_deref(), now);
                    }
                }
                self.hang(key, "L/ro", now);
            }
            (Op::Mdcx, Phase::Out(c)) if c.stage == OutStage::Up => {
                // answered, but the gateway refuses the far side's media: end it, reorder
                if let Phase::Out(c) = std::mem::replace(&mut l.phase, Phase::Hanging) {
                    self.end_out(key, *c, true, now, out);
                }
                self.hang(key, "L/ro", now);
            }
            _ => {}
        }
    }

    /// Lines of `gw` whose arming failed (or never started): armed again (at each audit).
    pub(crate) fn arm_unarmed(&mut self, gw: &str, now: Instant) {
        let keys: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, l)| l.gw == gw && matches!(l.phase, Phase::Unarmed { arming: false }))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.arm(&k, now);
        }
    }
}
