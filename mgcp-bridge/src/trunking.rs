//! Calls the core places to a gateway's trunking endpoint (or an RTP bridge endpoint): CRCX
//! with the relay's SDP, the dialled digits as DTMF signals (RQNT `S: D/...`), the answer with
//! the gateway's SDP, MDCX on re-INVITE, DLCX at BYE or CANCEL.

use std::net::SocketAddr;
use std::time::Instant;

use mgcp::{Command, Verb};
use signaling::b2bua::make_response;
use signaling::message::{Request, SipMessage};

use crate::{call_tag, digits_of, Bridge, Out, Pending};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// CRCX sent, INVITE unanswered.
    Creating,
    /// Answered 200.
    Up,
    /// CANCEL came before the CRCX answer: delete the connection when it comes.
    Cancelled,
}

pub(crate) struct BCall {
    pub gw: String,
    pub invite: Request,
    pub from: SocketAddr,
    pub to_tag: String,
    pub endpoint: Option<String>,
    pub conn: Option<String>,
    pub state: State,
    /// The last final response sent for the INVITE (resent on a retransmission).
    pub last: Option<Vec<u8>>,
    pub digits: String,
}

impl Bridge {
    /// A re-INVITE of a trunking call: MDCX with the new SDP.
    pub(crate) fn trunk_reinvite(
        &mut self,
        req: Request,
        call_id: String,
        now: Instant,
    ) -> Option<Out> {
        let c = self.calls.get(&call_id)?;
        let (Some(ep), Some(conn)) = (c.endpoint.clone(), c.conn.clone()) else {
            let b = self.respond(&req, 491, "Request Pending", None);
            return Some(Out::Sip(c.gw.clone(), c.from, b));
        };
        let mut cmd = Command::new(Verb::Mdcx, &ep)
            .with("C", &call_tag(&call_id))
            .with("I", &conn)
            .with("M", "sendrecv");
        if !req.body.is_empty() {
            cmd = cmd.with_sdp(&String::from_utf8_lossy(&req.body));
        }
        let name = c.gw.clone();
        self.send(
            &name,
            cmd,
            Pending::Mdcx {
                call: call_id,
                reinvite: req,
            },
            now,
        );
        None
    }

    /// A new INVITE for the trunking endpoint of `gw`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn trunk_invite(
        &mut self,
        gw: &str,
        endpoint: String,
        req: Request,
        call_id: String,
        from: SocketAddr,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let user = req
            .uri
            .strip_prefix("sip:")
            .and_then(|u| u.split('@').next())
            .unwrap_or("");
        let digits = digits_of(user);
        let mut cmd = Command::new(Verb::Crcx, &endpoint)
            .with("C", &call_tag(&call_id))
            .with("L", "p:20, a:PCMU")
            .with("M", "sendrecv");
        if !req.body.is_empty() {
            cmd = cmd.with_sdp(&String::from_utf8_lossy(&req.body));
        }
        self.send(gw, cmd, Pending::Crcx(call_id.clone()), now);
        let to_tag = self.tag();
        let trying = self.respond(&req, 100, "Trying", None);
        out.push(Out::Sip(gw.to_string(), from, trying));
        self.count_call(gw, "outbound");
        self.calls.insert(
            call_id,
            BCall {
                gw: gw.to_string(),
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

    /// DLCX of a trunking call's connection (the call is forgotten).
    pub(crate) fn delete(&mut self, call_id: &str, now: Instant) {
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

    /// The CANCEL of a trunking call not answered yet: 487 now, DLCX when the CRCX answers.
    pub(crate) fn trunk_cancel(&mut self, call_id: &str, out: &mut Vec<Out>) {
        let mut terminated = None;
        if let Some(c) = self.calls.get_mut(call_id) {
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
            self.answer(call_id, r, out);
        }
    }

    pub(crate) fn on_trunk_crcx(
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
            // 505/506/534: the gateway takes none of the offer's codecs: 488, not silence
            let (code, reason) = if matches!(response.code, 505 | 506 | 534) {
                (488, "Not Acceptable Here")
            } else if (400..500).contains(&response.code) {
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
        let trunking = self
            .gateways
            .get(&c.gw)
            .and_then(|g| g.cfg.endpoint.clone());
        c.endpoint = response.param("Z").map(str::to_string).or(trunking);
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
        let contact = self.contact_of(&c.gw);
        let mut r = make_response(&c.invite, 200, "OK", Some(&c.to_tag));
        r.headers.push("Contact", contact);
        if let Some(sdp) = response.sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp.into_bytes();
        }
        self.answer(&call, r, out);
    }

    pub(crate) fn on_trunk_mdcx(
        &mut self,
        call: &str,
        reinvite: &Request,
        response: mgcp::Response,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get(call) else {
            return;
        };
        let (gw, to) = (c.gw.clone(), c.from);
        let ok = response.is_success();
        let mut r = make_response(
            reinvite,
            if ok { 200 } else { 488 },
            if ok { "OK" } else { "Not Acceptable Here" },
            None,
        );
        if ok {
            if let Some(sdp) = response.sdp {
                r.headers.push("Content-Type", "application/sdp");
                r.body = sdp.into_bytes();
            }
            r.headers.push("Contact", self.contact_of(&gw));
        }
        out.push(Out::Sip(gw, to, SipMessage::Response(r).to_bytes()));
    }
}
