//! MGCP gateways as trunks. A trunk with an `mgcp:` section is a media gateway (RFC 3435)
//! rather than a SIP peer: the B2BUA places leg B, as for any trunk, as a SIP INVITE, here to
//! this bridge on a private loopback port, and the bridge acts as the call agent: it creates a
//! connection on the gateway's endpoint with leg B's SDP (the relay's), asks the gateway to
//! signal the dialled digits (RQNT `S: D/<digits>`, the DTMF package of RFC 3660, for line
//! endpoints that dial out), answers the INVITE with the gateway's SDP, and deletes the
//! connection (DLCX, logging the gateway's packet counts) at BYE or CANCEL. A re-INVITE
//! modifies the connection (MDCX). The core keeps everything else: anchoring, topology hiding,
//! limits, failover, metrics.
//!
//! Sans-IO: [`Bridge`] takes datagrams and the time and returns datagrams; the tokio shell
//! with its two sockets (and the metrics export) is `src/mgcp_bridge.rs` in the binary. This
//! crate joins SIP (`signaling`) to MGCP (`mgcp`) so that `mgcp` itself knows no SIP.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mgcp::{Agent, Command, Event, Timers, Verb};
use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};
use signaling::b2bua::make_response;
use signaling::message::{Method, Request, Response, SipMessage};
use signaling::parse::parse;

/// The host part the core puts in the Request-URI of a call to gateway trunk `name`:
/// `<name>.mgcp.invalid` (RFC 6761 `.invalid`: never resolvable, never leaves the process).
pub const HOST_SUFFIX: &str = ".mgcp.invalid";

/// A gateway the bridge drives.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub address: SocketAddr,
    pub endpoint: String,
}

/// Where a datagram goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Sip(SocketAddr, Vec<u8>),
    Mgcp(SocketAddr, Vec<u8>),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// CRCX sent, INVITE unanswered.
    Creating,
    /// Answered 200.
    Up,
    /// CANCEL came before the CRCX answer: delete the connection when it comes.
    Cancelled,
}

struct BCall {
    gw: String,
    invite: Request,
    from: SocketAddr,
    to_tag: String,
    endpoint: Option<String>,
    conn: Option<String>,
    state: State,
    /// The last final response sent for the INVITE (resent on a retransmission).
    last: Option<Vec<u8>>,
    digits: String,
}

/// What an MGCP transaction was for.
enum Pending {
    Crcx(String),
    Mdcx {
        call: String,
        reinvite: Request,
    },
    Dlcx,
    Rqnt,
    /// Idle-time AUEP: is the gateway there?
    Audit,
}

/// How often an idle gateway is audited.
const AUDIT_EVERY: Duration = Duration::from_secs(30);

pub struct Bridge {
    agent: Agent,
    gateways: HashMap<String, Gateway>,
    calls: HashMap<String, BCall>,
    pending: HashMap<u32, Pending>,
    /// The gateway each command in flight went to.
    pending_gw: HashMap<u32, String>,
    /// Gateway name -> answered its last command.
    pub up: HashMap<String, bool>,
    /// (verb, return code or "timeout") -> commands.
    pub commands: HashMap<(&'static str, String), u64>,
    next_audit: Option<Instant>,
    /// `host` of this bridge's SIP side, for Contact.
    local: SocketAddr,
    /// To tags (CSPRNG, seeded by the shell).
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

impl Bridge {
    /// `seed`: 32 bytes of OS randomness from the shell (transaction ids and tags).
    pub fn new(gateways: HashMap<String, Gateway>, local: SocketAddr, seed: [u8; 32]) -> Bridge {
        let mut rng = ChaCha12Rng::from_seed(seed);
        let mut agent_seed = [0u8; 32];
        rng.fill_bytes(&mut agent_seed);
        Bridge {
            agent: Agent::from_seed(agent_seed, Timers::default()),
            gateways,
            calls: HashMap::new(),
            pending: HashMap::new(),
            pending_gw: HashMap::new(),
            up: HashMap::new(),
            commands: HashMap::new(),
            next_audit: None,
            local,
            rng,
            foreign_datagrams: 0,
        }
    }

    /// MGCP responses with a known transaction id that came from another address than the
    /// command's gateway (dropped).
    pub fn foreign_responses(&self) -> u64 {
        self.agent.foreign_responses
    }

    /// Send `cmd` to gateway `gw`, remembering what it is for.
    fn send(&mut self, gw: &str, cmd: Command, p: Pending, now: Instant) {
        let Some(addr) = self.gateways.get(gw).map(|g| g.address) else {
            return;
        };
        let t = self.agent.send(addr, cmd, now);
        self.pending.insert(t, p);
        self.pending_gw.insert(t, gw.to_string());
    }

    fn tag(&mut self) -> String {
        format!("mg{:016x}", self.rng.next_u64())
    }

    fn respond(&self, req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Vec<u8> {
        SipMessage::Response(make_response(req, status, reason, to_tag)).to_bytes()
    }

    fn answer(&mut self, call_id: &str, resp: Response, out: &mut Vec<Out>) {
        let bytes = SipMessage::Response(resp).to_bytes();
        if let Some(c) = self.calls.get_mut(call_id) {
            c.last = Some(bytes.clone());
            out.push(Out::Sip(c.from, bytes));
        }
    }

    /// A SIP datagram from the core.
    pub fn handle_sip(&mut self, data: &[u8], from: SocketAddr, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let Ok(SipMessage::Request(req)) = parse(data) else {
            return out; // responses (to nothing we send) and garbage
        };
        let Some(call_id) = req.call_id().map(str::to_string) else {
            return out;
        };
        match req.method {
            Method::Invite => self.on_invite(req, call_id, from, now, &mut out),
            Method::Ack => {}
            Method::Bye => {
                out.push(Out::Sip(from, self.respond(&req, 200, "OK", None)));
                self.delete(&call_id, now);
            }
            Method::Cancel => {
                out.push(Out::Sip(from, self.respond(&req, 200, "OK", None)));
                let mut terminated = None;
                if let Some(c) = self.calls.get_mut(&call_id) {
                    if c.state == State::Creating {
                        c.state = State::Cancelled;
                        terminated = Some(make_response(
                            &c.invite,
                            487,
                            "Request Terminated",
                            Some(&c.to_tag.clone()),
                        ));
                    }
                }
                if let Some(r) = terminated {
                    self.answer(&call_id, r, &mut out);
                }
            }
            Method::Options => out.push(Out::Sip(from, self.respond(&req, 200, "OK", None))),
            _ => out.push(Out::Sip(
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
                    out.push(Out::Sip(from, b.clone()));
                }
                return;
            }
            // re-INVITE: MDCX with the new SDP
            let (Some(gw), Some(ep), Some(conn)) = (
                self.gateways.get(&c.gw).cloned(),
                c.endpoint.clone(),
                c.conn.clone(),
            ) else {
                out.push(Out::Sip(
                    from,
                    self.respond(&req, 491, "Request Pending", None),
                ));
                return;
            };
            let mut cmd = Command::new(Verb::Mdcx, &ep)
                .with("C", &call_tag(&call_id))
                .with("I", &conn)
                .with("M", "sendrecv");
            if !req.body.is_empty() {
                cmd = cmd.with_sdp(&String::from_utf8_lossy(&req.body));
            }
            let name = c.gw.clone();
            let _ = gw;
            self.send(
                &name,
                cmd,
                Pending::Mdcx {
                    call: call_id,
                    reinvite: req,
                },
                now,
            );
            return;
        }
        let gw_name = req
            .uri
            .rsplit('@')
            .next()
            .and_then(|h| h.split([';', '>']).next())
            .and_then(|h| h.strip_suffix(HOST_SUFFIX))
            .unwrap_or("")
            .to_string();
        let Some(gw) = self.gateways.get(&gw_name).cloned() else {
            out.push(Out::Sip(
                from,
                self.respond(&req, 404, "No Such Gateway", None),
            ));
            return;
        };
        let user = req
            .uri
            .strip_prefix("sip:")
            .and_then(|u| u.split('@').next())
            .unwrap_or("");
        let digits = digits_of(user);
        let mut cmd = Command::new(Verb::Crcx, &gw.endpoint)
            .with("C", &call_tag(&call_id))
            .with("L", "p:20, a:PCMU")
            .with("M", "sendrecv");
        if !req.body.is_empty() {
            cmd = cmd.with_sdp(&String::from_utf8_lossy(&req.body));
        }
        self.send(&gw_name, cmd, Pending::Crcx(call_id.clone()), now);
        let to_tag = self.tag();
        let trying = self.respond(&req, 100, "Trying", None);
        out.push(Out::Sip(from, trying));
        self.calls.insert(
            call_id,
            BCall {
                gw: gw_name,
                invite: req,
                from,
                to_tag,
                endpoint: None,
                conn: None,
                state: State::Creating,
                last: None,
                digits,
            },
        );
    }

    fn delete(&mut self, call_id: &str, now: Instant) {
        let Some(c) = self.calls.remove(call_id) else {
            return;
        };
        let (Some(ep), Some(conn)) = (c.endpoint, c.conn) else {
            return;
        };
        let cmd = Command::new(Verb::Dlcx, &ep)
            .with("C", &call_tag(call_id))
            .with("I", &conn);
        self.send(&c.gw, cmd, Pending::Dlcx, now);
    }

    /// An MGCP datagram from a gateway.
    pub fn handle_mgcp(&mut self, data: &[u8], from: SocketAddr, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        // Responses and the gateways' own commands (NTFY, RSIP) only from a configured gateway
        // address and port: anything else is dropped unanswered (no 5xx to a spoofed source).
        if !self.gateways.values().any(|g| g.address == from) {
            self.foreign_datagrams += 1;
            return out;
        }
        self.agent.handle_datagram(from, data, now);
        self.flush(now, &mut out);
        out
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Out> {
        self.agent.handle_timeout(now);
        if self.next_audit.is_none_or(|t| t <= now) {
            self.next_audit = Some(now + AUDIT_EVERY);
            let names: Vec<(String, String)> = self
                .gateways
                .iter()
                .map(|(n, g)| (n.clone(), g.endpoint.clone()))
                .collect();
            for (name, ep) in names {
                self.send(&name, Command::new(Verb::Auep, &ep), Pending::Audit, now);
            }
        }
        let mut out = Vec::new();
        self.flush(now, &mut out);
        out
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.agent.poll_timeout(), self.next_audit]
            .into_iter()
            .flatten()
            .min()
    }

    /// Drive the agent's events and datagrams into `out`.
    fn flush(&mut self, now: Instant, out: &mut Vec<Out>) {
        let events: Vec<Event> = std::iter::from_fn(|| self.agent.poll_event()).collect();
        for ev in events {
            self.on_event(ev, now, out);
        }
        while let Some(t) = self.agent.poll_transmit() {
            out.push(Out::Mgcp(t.to, t.bytes));
        }
    }

    fn on_event(&mut self, ev: Event, now: Instant, out: &mut Vec<Out>) {
        match ev {
            Event::Command { from, command } => {
                // RSIP, NTFY: acknowledged (this bridge keeps no endpoint state to change).
                self.agent
                    .respond(from, mgcp::Response::new(200, command.txid, "OK"), now);
            }
            Event::Timeout { txid, verb } => {
                if let Some(gw) = self.pending_gw.remove(&txid) {
                    self.up.insert(gw, false);
                }
                *self
                    .commands
                    .entry((verb.as_str(), "timeout".to_string()))
                    .or_insert(0) += 1;
                self.on_timeout(txid, out);
            }
            Event::Response {
                txid,
                verb,
                response,
            } => {
                if let Some(gw) = self.pending_gw.remove(&txid) {
                    self.up.insert(gw, true);
                }
                *self
                    .commands
                    .entry((verb.as_str(), response.code.to_string()))
                    .or_insert(0) += 1;
                self.on_response(txid, response, now, out);
            }
        }
    }

    fn on_timeout(&mut self, txid: u32, out: &mut Vec<Out>) {
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
                        c.from,
                        self.respond(&reinvite, 408, "Gateway Timeout", None),
                    ));
                }
            }
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
            Some(Pending::Crcx(call)) => self.on_crcx(call, response, now, out),
            Some(Pending::Mdcx { call, reinvite }) => {
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let to = c.from;
                let ok = response.is_success();
                let mut r = make_response(
                    &reinvite,
                    if ok { 200 } else { 488 },
                    if ok { "OK" } else { "Not Acceptable Here" },
                    None,
                );
                if ok {
                    if let Some(sdp) = response.sdp {
                        r.headers.push("Content-Type", "application/sdp");
                        r.body = sdp.into_bytes();
                    }
                    r.headers
                        .push("Contact", format!("<sip:gw@{}>", self.local));
                }
                out.push(Out::Sip(to, SipMessage::Response(r).to_bytes()));
            }
            Some(Pending::Dlcx) => {
                let p = response
                    .param("P")
                    .map(mgcp::ConnectionParams::parse)
                    .unwrap_or_default();
                tracing::info!(
                    code = response.code,
                    packets_sent = p.packets_sent.unwrap_or(0),
                    packets_received = p.packets_received.unwrap_or(0),
                    packets_lost = p.packets_lost.unwrap_or(0),
                    "mgcp: connection deleted"
                );
            }
            Some(Pending::Rqnt) if !response.is_success() => {
                tracing::info!(code = response.code, "mgcp: RQNT (dial digits) refused");
            }
            Some(Pending::Rqnt) | Some(Pending::Audit) | None => {}
        }
    }

    fn on_crcx(
        &mut self,
        call: String,
        response: mgcp::Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if !response.is_success() {
            // RFC 3435 section 2.4: 4xx transient (e.g. 403 no resources) -> try elsewhere;
            // 5xx permanent.
            let (code, reason) = if (400..500).contains(&response.code) {
                (503, "Gateway Busy")
            } else {
                (502, "Gateway Refused")
            };
            let r = make_response(&c.invite, code, reason, Some(&c.to_tag));
            tracing::info!(mgcp_code = response.code, "mgcp: CRCX refused");
            self.answer(&call, r, out);
            self.calls.remove(&call);
            return;
        }
        c.endpoint = response
            .param("Z")
            .map(str::to_string)
            .or_else(|| self.gateways.get(&c.gw).map(|g| g.endpoint.clone()));
        c.conn = response.param("I").map(str::to_string);
        if c.state == State::Cancelled {
            self.delete(&call, now);
            return;
        }
        c.state = State::Up;
        // Dial out: the digits as DTMF signals on the endpoint (a line endpoint of a
        // residential or FXO gateway dials them; an RTP bridge accepts and ignores them).
        if let (Some(gwn), Some(ep)) = (Some(c.gw.clone()), c.endpoint.clone()) {
            if !c.digits.is_empty() {
                let signals = c
                    .digits
                    .chars()
                    .map(|d| format!("D/{d}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let cmd = Command::new(Verb::Rqnt, &ep)
                    .with("X", &call_tag(&call))
                    .with("S", &signals);
                self.send(&gwn, cmd, Pending::Rqnt, now);
            }
        }
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let mut r = make_response(&c.invite, 200, "OK", Some(&c.to_tag));
        r.headers
            .push("Contact", format!("<sip:gw@{}>", self.local));
        if let Some(sdp) = response.sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp.into_bytes();
        }
        self.answer(&call, r, out);
    }
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
mod tests {
    use super::*;

    const CORE: &str = "127.0.0.1:5060";
    const GW: &str = "127.0.0.1:2427";

    fn bridge() -> Bridge {
        let gws = HashMap::from([(
            "pstn".to_string(),
            Gateway {
                address: GW.parse().unwrap(),
                endpoint: "aaln/*@gw".into(),
            },
        )]);
        Bridge::new(gws, "127.0.0.1:40000".parse().unwrap(), [7; 32])
    }

    fn invite(call_id: &str, branch: &str, to_tag: &str) -> Vec<u8> {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
        format!(
            "INVITE sip:+1555123@pstn{HOST_SUFFIX} SIP/2.0\r\nVia: SIP/2.0/UDP {CORE};branch={branch}\r\n\
             Max-Forwards: 69\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:+1555123@pstn{HOST_SUFFIX}>{to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:tl@{CORE}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes()
    }

    fn mgcp_out(out: &[Out]) -> Vec<mgcp::Command> {
        out.iter()
            .filter_map(|o| match o {
                Out::Mgcp(_, b) => match mgcp::parse(b).ok()?.remove(0) {
                    mgcp::Message::Command(c) => Some(c),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn sip_out(out: &[Out]) -> Vec<Response> {
        out.iter()
            .filter_map(|o| match o {
                Out::Sip(_, b) => match parse(b).ok()? {
                    SipMessage::Response(r) => Some(r),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn gw_answer(b: &mut Bridge, txid: u32, text: &str, now: Instant) -> Vec<Out> {
        let msg = format!("{} {txid} {}", &text[..3], &text[4..]);
        b.handle_mgcp(msg.as_bytes(), GW.parse().unwrap(), now)
    }

    #[test]
    fn invite_creates_a_connection_dials_and_answers_with_the_gateways_sdp() {
        let t0 = Instant::now();
        let mut b = bridge();
        let core: SocketAddr = CORE.parse().unwrap();
        let out = b.handle_sip(&invite("c1", "z9hG4bK1", ""), core, t0);
        assert_eq!(sip_out(&out)[0].status, 100);
        let crcx = &mgcp_out(&out)[0];
        assert_eq!(
            (crcx.verb, crcx.endpoint.as_str()),
            (Verb::Crcx, "aaln/*@gw")
        );
        assert_eq!(crcx.param("M"), Some("sendrecv"));
        assert!(crcx.sdp.as_deref().unwrap().contains("m=audio 30000"));
        // a retransmitted INVITE before the answer: nothing new to the gateway
        let again = b.handle_sip(&invite("c1", "z9hG4bK1", ""), core, t0);
        assert!(mgcp_out(&again).is_empty());
        let out = gw_answer(
            &mut b,
            crcx.txid,
            "200 OK\r\nI: 1F\r\nZ: aaln/3@gw\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 41000 RTP/AVP 0\r\n",
            t0,
        );
        let ok = &sip_out(&out)[0];
        assert_eq!(ok.status, 200);
        assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 41000"));
        let rqnt = &mgcp_out(&out)[0];
        assert_eq!(
            (rqnt.verb, rqnt.endpoint.as_str()),
            (Verb::Rqnt, "aaln/3@gw")
        );
        assert_eq!(rqnt.param("S"), Some("D/1,D/5,D/5,D/5,D/1,D/2,D/3"));
        // a retransmitted INVITE now gets the same 200
        let again = b.handle_sip(&invite("c1", "z9hG4bK1", ""), core, t0);
        assert_eq!(sip_out(&again)[0].status, 200);
        // BYE: 200 at once, DLCX of the connection
        let bye = "BYE sip:gw@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb\r\n\
            Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:b@y>;tag=t\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n\
            Content-Length: 0\r\n\r\n";
        let out = b.handle_sip(bye.as_bytes(), core, t0);
        assert_eq!(sip_out(&out)[0].status, 200);
        let dlcx = &mgcp_out(&out)[0];
        assert_eq!((dlcx.verb, dlcx.param("I")), (Verb::Dlcx, Some("1F")));
        assert!(b.calls.is_empty());
    }

    #[test]
    fn refusals_timeouts_and_cancel() {
        let t0 = Instant::now();
        let mut b = bridge();
        let core: SocketAddr = CORE.parse().unwrap();
        // the gateway has no free endpoint (403, transient): 503, so the core fails over
        let out = b.handle_sip(&invite("c2", "z9hG4bK2", ""), core, t0);
        let crcx = mgcp_out(&out)[0].txid;
        let out = gw_answer(&mut b, crcx, "403 no endpoint available\r\n", t0);
        assert_eq!(sip_out(&out)[0].status, 503);
        // no answer at all: 408 after the MGCP retransmissions
        b.handle_sip(&invite("c3", "z9hG4bK3", ""), core, t0);
        let mut last = Vec::new();
        while let Some(t) = b.poll_timeout() {
            if t - t0 > Duration::from_secs(20) {
                break;
            }
            last.extend(b.handle_timeout(t));
        }
        assert!(sip_out(&last).iter().any(|r| r.status == 408));
        assert_eq!(b.up.get("pstn"), Some(&false), "a silent gateway is down");
        assert!(b.commands.contains_key(&("CRCX", "timeout".to_string())));
        // CANCEL while the CRCX is out: 200 + 487, and the connection is deleted when it comes
        let out = b.handle_sip(&invite("c4", "z9hG4bK4", ""), core, t0);
        let crcx = mgcp_out(&out)[0].txid;
        let cancel = "CANCEL sip:+1555123@pstn.mgcp.invalid SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK4\r\n\
            Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=f1\r\nTo: <sip:+1555123@pstn.mgcp.invalid>\r\nCall-ID: c4\r\n\
            CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
        let out = b.handle_sip(cancel.as_bytes(), core, t0);
        let codes: Vec<u16> = sip_out(&out).iter().map(|r| r.status).collect();
        assert_eq!(codes, vec![200, 487]);
        let out = gw_answer(&mut b, crcx, "200 OK\r\nI: 2A\r\nZ: aaln/1@gw\r\n", t0);
        let dl = mgcp_out(&out);
        assert_eq!((dl[0].verb, dl[0].param("I")), (Verb::Dlcx, Some("2A")));
        assert!(sip_out(&out).is_empty(), "no 200 after the 487");
        // unknown gateway, garbage
        let mut bad = String::from_utf8(invite("c5", "z9hG4bK5", "")).unwrap();
        bad = bad.replace("pstn.mgcp.invalid", "nope.mgcp.invalid");
        assert_eq!(
            sip_out(&b.handle_sip(bad.as_bytes(), core, t0))[0].status,
            404
        );
        assert!(b.handle_sip(b"\x00\xffgarbage", core, t0).is_empty());
        assert!(b
            .handle_mgcp(b"\x00\xffgarbage", GW.parse().unwrap(), t0)
            .is_empty());
    }

    #[test]
    fn idle_gateways_are_audited() {
        let t0 = Instant::now();
        let mut b = bridge();
        let out = b.handle_timeout(t0);
        let auep = &mgcp_out(&out)[0];
        assert_eq!(
            (auep.verb, auep.endpoint.as_str()),
            (Verb::Auep, "aaln/*@gw")
        );
        gw_answer(&mut b, auep.txid, "200 OK\r\n", t0);
        assert_eq!(b.up.get("pstn"), Some(&true));
        assert_eq!(b.commands.get(&("AUEP", "200".to_string())), Some(&1));
        assert_eq!(b.poll_timeout(), Some(t0 + AUDIT_EVERY));
        assert!(mgcp_out(&b.handle_timeout(t0 + Duration::from_secs(10))).is_empty());
        assert_eq!(mgcp_out(&b.handle_timeout(t0 + AUDIT_EVERY)).len(), 1);
    }

    #[test]
    fn reinvite_modifies_the_connection() {
        let t0 = Instant::now();
        let mut b = bridge();
        let core: SocketAddr = CORE.parse().unwrap();
        let out = b.handle_sip(&invite("c6", "z9hG4bK6", ""), core, t0);
        let crcx = mgcp_out(&out)[0].txid;
        gw_answer(
            &mut b,
            crcx,
            "200 OK\r\nI: 3B\r\nZ: aaln/2@gw\r\n\r\nv=0\r\nm=audio 41002 RTP/AVP 0\r\n",
            t0,
        );
        let out = b.handle_sip(&invite("c6", "z9hG4bK7", ";tag=x"), core, t0);
        let mdcx = &mgcp_out(&out)[0];
        assert_eq!((mdcx.verb, mdcx.param("I")), (Verb::Mdcx, Some("3B")));
        let out = gw_answer(
            &mut b,
            mdcx.txid,
            "200 OK\r\n\r\nv=0\r\nm=audio 41002 RTP/AVP 0\r\n",
            t0,
        );
        let ok = &sip_out(&out)[0];
        assert_eq!(ok.status, 200);
        assert!(String::from_utf8_lossy(&ok.body).contains("41002"));
    }

    /// A forged `200 <txid>` with the attacker's SDP, from another address (or the gateway's
    /// IP with another port), is dropped: the INVITE is answered with the gateway's SDP. A
    /// NTFY from elsewhere gets no answer; the gateway's own does.
    #[test]
    fn answers_and_ntfy_only_from_the_gateway() {
        let t0 = Instant::now();
        let mut b = bridge();
        let core: SocketAddr = CORE.parse().unwrap();
        let out = b.handle_sip(&invite("c9", "z9hG4bK9", ""), core, t0);
        let crcx = mgcp_out(&out)[0].txid;
        let forged = format!(
            "200 {crcx} OK\r\nI: 66\r\n\r\nv=0\r\nc=IN IP4 127.0.0.66\r\nm=audio 6666 RTP/AVP 0\r\n"
        );
        for from in ["127.0.0.66:2427", "127.0.0.1:2428"] {
            let out = b.handle_mgcp(forged.as_bytes(), from.parse().unwrap(), t0);
            assert!(out.is_empty(), "nothing answers a forged datagram: {out:?}");
        }
        assert_eq!(b.foreign_datagrams, 2);
        let ntfy = b"NTFY 4242 aaln/1@gw MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n";
        assert!(b
            .handle_mgcp(ntfy, "127.0.0.66:2427".parse().unwrap(), t0)
            .is_empty());
        assert_eq!(b.foreign_datagrams, 3);
        let out = b.handle_mgcp(ntfy, GW.parse().unwrap(), t0);
        assert!(
            matches!(&out[..], [Out::Mgcp(to, bytes)] if *to == GW.parse::<SocketAddr>().unwrap() && bytes.starts_with(b"200 4242")),
            "{out:?}"
        );
        let out = gw_answer(
            &mut b,
            crcx,
            "200 OK\r\nI: 1F\r\nZ: aaln/3@gw\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 41000 RTP/AVP 0\r\n",
            t0,
        );
        let ok = &sip_out(&out)[0];
        assert_eq!(ok.status, 200);
        let body = String::from_utf8_lossy(&ok.body);
        assert!(
            body.contains("m=audio 41000") && !body.contains("127.0.0.66"),
            "{body}"
        );
    }

    /// Two bridges with different seeds use different transaction ids and tags.
    #[test]
    fn ids_come_from_the_seed() {
        let gws = || {
            HashMap::from([(
                "pstn".to_string(),
                Gateway {
                    address: GW.parse().unwrap(),
                    endpoint: "aaln/*@gw".into(),
                },
            )])
        };
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let t0 = Instant::now();
        let mut a = Bridge::new(gws(), local, [1; 32]);
        let mut b = Bridge::new(gws(), local, [2; 32]);
        let ta = mgcp_out(&a.handle_timeout(t0))[0].txid;
        let tb = mgcp_out(&b.handle_timeout(t0))[0].txid;
        assert_ne!(ta, tb);
        assert_ne!(a.tag(), b.tag());
    }
}
