//! Calls to a line: ring it (busy when it is not idle), answer on off-hook, 480 when nobody
//! answers in the ring time, end with a final error or BYE.

use std::net::SocketAddr;
use std::time::Instant;

use mgcp::{Command, Verb};
use signaling::b2bua::make_response;
use signaling::message::{Method, Request, SipMessage};

use super::*;
use crate::uac::Dialog;
use crate::{Bridge, Out, Pending};

impl Bridge {
    /// End a call to the line: a final error (unanswered) or BYE (answered) to the core.
    pub(super) fn end_in(
        &mut self,
        key: &str,
        c: InCall,
        dlcx: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let gw = self
            .lines
            .get(key)
            .map(|l| l.gw.clone())
            .unwrap_or_default();
        match c.stage {
            InStage::Creating | InStage::Ringing(_) | InStage::Answering => {
                let r = make_response(&c.invite, 503, "Line Unavailable", Some(&c.to_tag));
                out.push(Out::Sip(gw, c.from, SipMessage::Response(r).to_bytes()));
                if let Some(id) = c.invite.call_id() {
                    self.by_sip.remove(id);
                }
            }
            InStage::Up => {
                if let Some(me) = self.gateways.get(&gw).map(|g| g.cfg.sip) {
                    let mut d = Dialog::of_uas(&c.invite, &c.to_tag, me, c.from);
                    let branch = self.branch();
                    let bye = d.request(Method::Bye, &branch);
                    self.send_sip(&gw, bye, c.from, branch, Some(key), now, out);
                }
            }
        }
        if dlcx && c.conn.is_some() {
            self.dlcx(key, &c.mgcp_call, c.conn.as_deref(), now);
        }
    }

    /// A new INVITE from the core for the line: ring it (busy when it is not idle).
    pub(crate) fn line_invite(
        &mut self,
        key: &str,
        req: Request,
        call_id: String,
        from: SocketAddr,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(l) = self.lines.get(key) else {
            return;
        };
        let gw = l.gw.clone();
        if !matches!(l.phase, Phase::Idle) {
            let busy = self.respond(&req, 486, "Busy Here", None);
            out.push(Out::Sip(gw, from, busy));
            return;
        }
        if self.draining(&gw, &l.endpoint) {
            let r = self.respond(&req, 503, "Endpoint Restarting", None);
            out.push(Out::Sip(gw, from, r));
            return;
        }
        let ep = l.endpoint.clone();
        let mgcp_call = self.id();
        let mut cmd = Command::new(Verb::Crcx, &ep)
            .with("C", &mgcp_call)
            .with("L", "p:20, a:PCMU")
            .with("M", "recvonly");
        if !req.body.is_empty() {
            cmd = cmd.with_sdp(&String::from_utf8_lossy(&req.body));
        }
        self.send(&gw, cmd, Pending::Line(key.to_string(), Op::Crcx), now);
        out.push(Out::Sip(
            gw.clone(),
            from,
            self.respond(&req, 100, "Trying", None),
        ));
        self.count_call(&gw, "outbound");
        let to_tag = self.tag();
        self.by_sip.insert(call_id, key.to_string());
        if let Some(l) = self.line(key) {
            l.phase = Phase::In(Box::new(InCall {
                mgcp_call,
                conn: None,
                gw_sdp: None,
                invite: req,
                from,
                to_tag,
                stage: InStage::Creating,
                last: None,
            }));
        }
    }

    /// Answer the core's INVITE of a call to the line (kept for retransmissions).
    pub(super) fn in_answer(
        &mut self,
        key: &str,
        status: u16,
        reason: &str,
        with_sdp: bool,
        out: &mut Vec<Out>,
    ) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        let gw = l.gw.clone();
        let contact = match self.gateways.get(&gw) {
            Some(g) => format!("<sip:{}@{}>", l.number, g.cfg.sip),
            None => return,
        };
        let Phase::In(c) = &mut l.phase else {
            return;
        };
        let mut r = make_response(&c.invite, status, reason, Some(&c.to_tag));
        if status < 300 {
            r.headers.push("Contact", contact);
        }
        if with_sdp {
            if let Some(sdp) = &c.gw_sdp {
                r.headers.push("Content-Type", "application/sdp");
                r.body = sdp.clone().into_bytes();
            }
        }
        let bytes = SipMessage::Response(r).to_bytes();
        if status >= 200 {
            c.last = Some(bytes.clone());
        }
        out.push(Out::Sip(gw, c.from, bytes));
    }

    /// Ringing lines past their ring time: 480 to the caller, ringing stops.
    pub(crate) fn line_timers(&mut self, now: Instant, out: &mut Vec<Out>) {
        let due: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, l)| l.deadline().is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.in_answer(&key, 480, "Temporarily Unavailable", false, out);
            if let Some(l) = self.lines.get_mut(&key) {
                if let Phase::In(c) =
                    std::mem::replace(&mut l.phase, Phase::Unarmed { arming: false })
                {
                    if let Some(id) = c.invite.call_id() {
                        self.by_sip.remove(id);
                    }
                    self.dlcx(&key, &c.mgcp_call, c.conn.as_deref(), now);
                }
            }
            self.arm(&key, now);
        }
    }
}
