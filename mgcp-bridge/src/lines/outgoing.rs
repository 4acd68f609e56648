//! Calls a line places: the digits checked against the digit map, CRCX, the INVITE to the
//! core, ringback, MDCX on answer, busy or reorder on failure, CANCEL or BYE on on-hook.

use std::time::Instant;

use mgcp::{Command, Match, Verb};
use signaling::message::{Method, Response};

use super::*;
use crate::uac::{self, Dialog};
use crate::{Bridge, Out, Pending};

impl Bridge {
    /// End a call the line placed: CANCEL or BYE to the core, DLCX when `dlcx`.
    pub(super) fn end_out(
        &mut self,
        key: &str,
        c: OutCall,
        dlcx: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let gw = self
            .lines
            .get(key)
            .map(|l| l.gw.clone())
            .unwrap_or_default();
        match (c.stage, c.dialog, c.invite) {
            (OutStage::Inviting | OutStage::Early, Some(d), Some(inv)) => {
                let cancel = d.cancel(&inv);
                let branch = uac::branch_of(&cancel).unwrap_or_default();
                self.send_sip(
                    &gw,
                    cancel,
                    d.core,
                    format!("{branch}{}", uac::CANCEL_SUFFIX),
                    Some(key),
                    now,
                    out,
                );
            }
            (OutStage::Up, Some(mut d), _) => {
                let branch = self.branch();
                let bye = d.request(Method::Bye, &branch);
                self.send_sip(&gw, bye, d.core, branch, Some(key), now, out);
            }
            _ => {}
        }
        if dlcx && c.conn.is_some() {
            self.dlcx(key, &c.mgcp_call, c.conn.as_deref(), now);
        }
    }

    pub(super) fn on_digits(&mut self, key: &str, digits: &str, now: Instant) {
        let Some(l) = self.lines.get(key) else {
            return;
        };
        if !matches!(l.phase, Phase::Dialling) {
            return;
        }
        let matched = self
            .gateways
            .get(&l.gw)
            .map(|g| g.cfg.digit_map.check(digits))
            .unwrap_or(Match::None);
        let number: String = digits
            .chars()
            .filter(|c| !c.eq_ignore_ascii_case(&'T'))
            .collect();
        if !matches!(matched, Match::Full | Match::FullButLonger)
            || number.is_empty()
            || self.core.is_none()
        {
            tracing::info!(line = %l.endpoint, digits, "mgcp: dialled digits match no digit map entry: reorder");
            self.hang(key, "L/ro", now);
            return;
        }
        let (gw, ep) = (l.gw.clone(), l.endpoint.clone());
        let mgcp_call = self.id();
        let cmd = Command::new(Verb::Crcx, &ep)
            .with("C", &mgcp_call)
            .with("L", "p:20, a:PCMU")
            .with("M", "recvonly");
        self.send(&gw, cmd, Pending::Line(key.to_string(), Op::Crcx), now);
        if let Some(l) = self.line(key) {
            l.phase = Phase::Out(Box::new(OutCall {
                mgcp_call,
                conn: None,
                gw_sdp: None,
                digits: number,
                dialog: None,
                invite: None,
                stage: OutStage::Creating,
            }));
        }
        // dial tone off, on-hook still reported
        self.line_rqnt(key, "L/hu(N)", "", None, Op::Signal, now);
    }

    /// A response from the core to the INVITE of a call the line placed.
    pub(crate) fn line_invite_response(
        &mut self,
        key: &str,
        resp: Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        let gw = l.gw.clone();
        let Phase::Out(c) = &mut l.phase else {
            // a late answer to a call already ended: ACK it; a 2xx also gets a BYE
            return self.stray_invite_response(key, resp, now, out);
        };
        if c.dialog.as_ref().map(|d| d.call_id.as_str()) != resp.call_id() {
            return self.stray_invite_response(key, resp, now, out);
        }
        let (Some(d), Some(inv)) = (c.dialog.as_mut(), c.invite.clone()) else {
            return;
        };
        match resp.status {
            180 | 183 if c.stage == OutStage::Inviting => {
                c.stage = OutStage::Early;
                self.line_rqnt(key, "L/hu(N)", "L/rt", None, Op::Signal, now);
            }
            100..=199 => {}
            200..=299 => {
                d.confirm(&resp);
                let branch = format!(
                    "z9hG4bKmg{:016x}",
                    rand_core::RngCore::next_u64(&mut self.rng)
                );
                let Some(Phase::Out(c)) = self.lines.get_mut(key).map(|l| &mut l.phase) else {
                    return;
                };
                let Some(d) = c.dialog.as_ref() else {
                    return;
                };
                let ack = d.ack(&inv, &resp, &branch);
                let core = d.core;
                let first = c.stage != OutStage::Up;
                c.stage = OutStage::Up;
                let (mc, conn) = (c.mgcp_call.clone(), c.conn.clone().unwrap_or_default());
                self.send_sip(&gw, ack, core, branch, None, now, out);
                if first {
                    let ep = self
                        .lines
                        .get(key)
                        .map(|l| l.endpoint.clone())
                        .unwrap_or_default();
                    let mut cmd = Command::new(Verb::Mdcx, &ep)
                        .with("C", &mc)
                        .with("I", &conn)
                        .with("M", "sendrecv");
                    if !resp.body.is_empty() {
                        cmd = cmd.with_sdp(&String::from_utf8_lossy(&resp.body));
                    }
                    self.send(&gw, cmd, Pending::Line(key.to_string(), Op::Mdcx), now);
                    self.line_rqnt(key, "L/hu(N)", "", None, Op::Signal, now);
                }
            }
            _ => {
                let ack = d.ack(&inv, &resp, "");
                let core = d.core;
                self.send_sip(&gw, ack, core, String::new(), None, now, out);
                let id = resp.call_id().unwrap_or("").to_string();
                self.line_invite_failed(key, &id, resp.status, now);
            }
        }
    }

    /// The INVITE of the line's call `call_id` failed with `status` (or timed out: 408);
    /// nothing when the line has moved on to another call.
    pub(crate) fn line_invite_failed(
        &mut self,
        key: &str,
        call_id: &str,
        status: u16,
        now: Instant,
    ) {
        let Some(l) = self.lines.get_mut(key) else {
            return;
        };
        if l.call_id() != Some(call_id) || !matches!(l.phase, Phase::Out(_)) {
            return;
        }
        let Phase::Out(c) = std::mem::replace(&mut l.phase, Phase::Hanging) else {
            return;
        };
        if let Some(id) = c.dialog.as_ref().map(|d| d.call_id.clone()) {
            self.by_sip.remove(&id);
        }
        self.dlcx(key, &c.mgcp_call, c.conn.as_deref(), now);
        let tone = if matches!(status, 486 | 600 | 603) {
            "L/bz"
        } else {
            "L/ro"
        };
        self.hang(key, tone, now);
    }

    pub(super) fn stray_invite_response(
        &mut self,
        key: &str,
        resp: Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if resp.status < 200 {
            return;
        }
        if let Some(id) = resp.call_id() {
            self.forget_if_done(id);
        }
        let Some(l) = self.lines.get(key) else {
            return;
        };
        let (gw, Some(me), Some(core)) = (
            l.gw.clone(),
            self.gateways.get(&l.gw).map(|g| g.cfg.sip),
            self.core,
        ) else {
            return;
        };
        // ACK in the dialog the response names, and end it
        let mut d = Dialog::new(
            resp.call_id().unwrap_or("").to_string(),
            "x",
            &gw,
            "x",
            "x",
            me,
            core,
        );
        if let Some(f) = resp.headers.get("From") {
            d.local = f.to_string();
        }
        d.confirm(&resp);
        let cseq = resp
            .headers
            .get("CSeq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut inv = d.invite("", "x", "");
        inv.headers.set("CSeq", format!("{cseq} INVITE"));
        if let Some(v) = resp.headers.get("Via") {
            inv.headers.set("Via", v.to_string());
        }
        let branch = self.branch();
        let ack = d.ack(&inv, &resp, &branch);
        self.send_sip(&gw, ack, core, branch, None, now, out);
        if (200..300).contains(&resp.status) {
            d.cseq = cseq;
            let branch = self.branch();
            let bye = d.request(Method::Bye, &branch);
            self.send_sip(&gw, bye, core, branch, None, now, out);
        }
    }

    /// The CRCX of a line's own call came back: INVITE to the core with the gateway's SDP.
    pub(super) fn line_call_out(&mut self, key: &str, now: Instant, out: &mut Vec<Out>) {
        let (Some(core), Some(l)) = (self.core, self.lines.get(key)) else {
            return;
        };
        let (gw, number) = (l.gw.clone(), l.number.clone());
        let Some(me) = self.gateways.get(&gw).map(|g| g.cfg.sip) else {
            return;
        };
        let call_id = format!("{}@mgcp", self.id());
        let tag = self.tag();
        let branch = self.branch();
        let Some(Phase::Out(c)) = self.lines.get_mut(key).map(|l| &mut l.phase) else {
            return;
        };
        let mut d = Dialog::new(call_id, &tag, &gw, &number, &c.digits, me, core);
        let sdp = c.gw_sdp.clone().unwrap_or_default();
        let invite = d.invite(&branch, &number, &sdp);
        c.dialog = Some(d);
        c.invite = Some(invite.clone());
        c.stage = OutStage::Inviting;
        self.count_call(&gw, "inbound");
        self.send_sip(&gw, invite, core, branch, Some(key), now, out);
    }
}
