//! Reliable provisional responses (RFC 3262, 100rel), per leg: each leg has its own RSeq space
//! and its own PRACKs, nothing of one crosses to the other.
//!
//! * Leg B (trunkline the UAC): its INVITE offers (`Supported`) or requires 100rel as the
//!   trunk's `100rel:` says; a reliable provisional is PRACKed in its early dialog (RAck), once
//!   per RSeq, and relayed to leg A (its SDP through the media policy as any early answer).
//! * Leg A (trunkline the UAS): when the caller supports 100rel, its non-100 provisionals are
//!   sent reliably with trunkline's own RSeq, retransmitted until the caller's PRACK, one at a
//!   time; when it does not, they go unreliably (leg B still got its PRACK).

use super::*;

/// Leg A's reliable provisional responses of one call (the caller supports 100rel).
pub(super) struct RelA {
    /// RSeq of the next reliable provisional.
    next_rseq: u32,
    /// The one sent and not PRACKed yet.
    pending: Option<Pending>,
    /// The newest provisional that came while one was pending.
    queued: Option<(TxId, Response)>,
    /// Leg A's 2xx, held until the PRACK of a reliable provisional that carried SDP.
    held_2xx: Option<(TxId, Response)>,
}

struct Pending {
    rseq: u32,
    tx: TxId,
    resp: Response,
    sdp: bool,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// A final response to the request `ok` answers (its Via, From, To, Call-ID and CSeq).
fn final_like(ok: &Response, status: u16, reason: &str) -> Response {
    let mut headers = Headers::with_capacity(8);
    for h in ok.headers.iter() {
        if ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&h.name))
        {
            headers.push(&h.name, h.value.clone());
        }
    }
    Response {
        status,
        reason: reason.to_string(),
        headers,
        body: Vec::new(),
    }
}

/// Does a Supported or Require header of `h` list 100rel?
fn lists_100rel(h: &Headers, name: &str) -> bool {
    h.get_all(name)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
}

impl B2bua {
    /// Leg A's reliability state for a new call whose INVITE is `req`: `Some` when the caller
    /// supports or requires 100rel.
    pub(super) fn rel_a_for(&mut self, req: &Request) -> Option<RelA> {
        let wants =
            lists_100rel(&req.headers, "Supported") || lists_100rel(&req.headers, "Require");
        //= rfc3262#section-3
        //# The value of the header field for the first reliable provisional response in a
        //# transaction MUST be between 1 and 2**31 - 1.
        wants.then(|| RelA {
            next_rseq: (self.rand() as u32 & 0x3fff_ffff) + 1,
            pending: None,
            queued: None,
            held_2xx: None,
        })
    }

    /// The 100rel header of leg B's INVITE to `trunk` (none for `off`).
    pub(super) fn b_100rel(
        &mut self,
        trunk: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<(&'static str, &'static str)> {
        if trunk == REGISTERED {
            return Some(("Supported", "100rel"));
        }
        match policy.rel100_mode(trunk, now) {
            Rel100Mode::Supported => Some(("Supported", "100rel")),
            Rel100Mode::Required => Some(("Require", "100rel")),
            Rel100Mode::Off => None,
        }
    }

    /// A provisional response from leg B: PRACK it when it is reliable. `false`: a reliable
    /// one out of sequence (a retransmission, or one that skipped), to be taken no further.
    pub(super) fn b_reliable(&mut self, id: CallId, resp: &Response, now: Instant) -> bool {
        //= rfc3262#section-4
        //# If a provisional response is received for an initial request, and that response
        //# contains a Require header field containing the option tag 100rel, the response is
        //# to be sent reliably.
        if !lists_100rel(&resp.headers, "Require") {
            return true;
        }
        let Some(rseq) = resp
            .headers
            .get("RSeq")
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            // A "reliable" response without RSeq cannot be PRACKed: taken as unreliable.
            return true;
        };
        let tag = resp
            .headers
            .get("To")
            .and_then(tag_param)
            .unwrap_or("")
            .to_string();
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(at) = call.attempt_mut() else {
            return false;
        };
        //= rfc3262#section-4
        //# If the UAC receives another reliable provisional response to the same request, and
        //# its RSeq value is not one higher than the value of the sequence number, that
        //# response MUST NOT be acknowledged with a PRACK, and MUST NOT be processed further
        //# by the UAC.
        let known = at.b_rseq.len();
        match at.b_rseq.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, last)) if rseq != last.wrapping_add(1) => return false,
            Some((_, last)) => *last = rseq,
            None if known >= forks::MAX_FORKS => return false,
            None => at.b_rseq.push((tag, rseq)),
        }
        let invite_seq = at
            .invite
            .as_ref()
            .and_then(|r| r.cseq())
            .map_or(1, |c| c.seq);
        // The early dialog (RFC 3261 §12.1.2): the PRACK goes to its Contact, on its route.
        if let Some(c) = resp
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
        {
            call.b.remote_target = c.uri.to_string();
        }
        call.b.route_set = dialog::uac_route_set(&resp.headers);
        //= rfc3262#section-7.2
        //# The first number is the value from the RSeq header in the provisional response
        //# that is being acknowledged.  The next number, and the method, are copied from the
        //# CSeq in the response that is being acknowledged.
        if let Some((mut prack, peer)) = self.dialog_request(id, Leg::B, Method::Prack) {
            prack
                .headers
                .push("RAck", format!("{rseq} {invite_seq} INVITE"));
            let t = self.tx.send_request_ref(&prack, peer, now);
            self.owners
                .insert(t, TxOwner::Call(id, ClientPurpose::Prack));
        }
        true
    }

    /// Send leg A's provisional `resp` on `a_tx`: reliably when the caller supports 100rel
    /// (one at a time: a newer one waits for the PRACK of the one out), else as it is.
    pub(super) fn send_a_provisional(
        &mut self,
        id: CallId,
        a_tx: TxId,
        resp: Response,
        now: Instant,
    ) {
        let Some(rel) = self.rel_a.get_mut(&id) else {
            self.tx.send_response(a_tx, resp, now);
            return;
        };
        //= rfc3262#section-3
        //# The UAS MUST NOT send a second reliable provisional response until the first is
        //# acknowledged.
        if rel.pending.is_some() {
            rel.queued = Some((a_tx, resp));
            return;
        }
        self.send_reliable(id, a_tx, resp, now);
    }

    fn send_reliable(&mut self, id: CallId, a_tx: TxId, mut resp: Response, now: Instant) {
        let t1 = self.cfg.timers.t1;
        let give_up = now + self.cfg.timers.t1x64();
        let Some(rel) = self.rel_a.get_mut(&id) else {
            return;
        };
        let rseq = rel.next_rseq;
        rel.next_rseq = rel.next_rseq.wrapping_add(1);
        resp.headers.push("Require", "100rel");
        resp.headers.push("RSeq", rseq.to_string());
        //= rfc3262#section-3
        //# The reliable provisional response is passed to the transaction layer periodically
        //# with an interval that starts at T1 seconds and doubles for each retransmission
        //# (T1 is defined in Section 17 of RFC 3261).
        rel.pending = Some(Pending {
            rseq,
            tx: a_tx,
            resp: resp.clone(),
            sdp: !resp.body.is_empty(),
            interval: t1,
            next: now + t1,
            give_up,
        });
        self.deadlines.push(Deadline {
            at: std::cmp::Reverse(now + t1),
            call: id,
            target_idx: 0,
            kind: DeadlineKind::Reliable1xx,
        });
        self.tx.send_response(a_tx, resp, now);
    }

    /// A retransmission of leg A's reliable provisional is due (a deadline set for `at`).
    pub(super) fn reliable_1xx_due(
        &mut self,
        id: CallId,
        at: Instant,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let open = self
            .calls
            .get(&id)
            .and_then(Call::attempt)
            .and_then(|a| a.a_invite_tx);
        let live = self.calls.get(&id).is_some_and(|c| !c.is_terminating());
        let Some(rel) = self.rel_a.get_mut(&id) else {
            return;
        };
        let Some(p) = rel.pending.as_mut() else {
            return;
        };
        if p.next != at {
            return;
        }
        if !live {
            // The call ended (BYE, shutdown) before the PRACK: nothing waits for it.
            rel.pending = None;
            rel.queued = None;
            rel.held_2xx = None;
            return;
        }
        // Leg A's INVITE has its final answer (and no 2xx waits for this PRACK): done.
        if open != Some(p.tx) && rel.held_2xx.is_none() {
            rel.pending = None;
            rel.queued = None;
            return;
        }
        //= rfc3262#section-3
        //# If a reliable provisional response is retransmitted for 64*T1 seconds without
        //# reception of a corresponding PRACK, the UAS SHOULD reject the original request
        //# with a 5xx response.
        if now >= p.give_up {
            rel.pending = None;
            rel.queued = None;
            let held = rel.held_2xx.take();
            self.unacked_reliable(id, held, now, policy);
            return;
        }
        p.interval = p.interval.saturating_mul(2);
        // Woken at the give-up time at the latest.
        p.next = (now + p.interval).min(p.give_up);
        let (tx, resp, next) = (p.tx, p.resp.clone(), p.next);
        self.deadlines.push(Deadline {
            at: std::cmp::Reverse(next),
            call: id,
            target_idx: 0,
            kind: DeadlineKind::Reliable1xx,
        });
        self.tx.send_response(tx, resp, now);
    }

    /// No PRACK for leg A's reliable provisional in 64·T1: leg A's INVITE is refused 500 (and a
    /// held 2xx never goes: leg B, answered already, gets BYE).
    fn unacked_reliable(
        &mut self,
        id: CallId,
        held: Option<(TxId, Response)>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some((a_tx, ok)) = held else {
            self.abort_ringing(id, 500, "Server Internal Error", None, now, policy);
            return;
        };
        let resp = final_like(&ok, 500, "Server Internal Error");
        self.tx.send_response(a_tx, resp, now);
        self.send_bye(id, Leg::B, now);
        self.finish_confirmed(id, now, policy);
    }

    /// Leg A's 2xx `out` on `a_tx`: sent, or held when a reliable provisional with SDP waits
    /// for its PRACK (sent then).
    pub(super) fn send_a_2xx(&mut self, id: CallId, a_tx: TxId, out: Response, now: Instant) {
        //= rfc3262#section-3
        //# The UAS MAY send a final response to the initial request before having received
        //# PRACKs for all unacknowledged reliable provisional responses, unless the final
        //# response is 2xx and any of the unacknowledged reliable provisional responses
        //# contained a session description.  In that case, it MUST NOT send a final response
        //# until those provisional responses are acknowledged.
        if let Some(rel) = self.rel_a.get_mut(&id) {
            rel.queued = None;
            if rel.pending.as_ref().is_some_and(|p| p.sdp) {
                rel.held_2xx = Some((a_tx, out));
                return;
            }
            rel.pending = None;
        }
        self.tx.send_2xx_reliably(a_tx, out, now);
        if let Some(h) = self.calls.get_mut(&id).and_then(Call::handshake_mut) {
            h.a_2xx_tx = Some(a_tx);
        }
    }

    /// Is leg A's 2xx held (leg A has no confirmed dialog yet)?
    pub(super) fn holds_2xx(&self, id: CallId) -> bool {
        self.rel_a.get(&id).is_some_and(|r| r.held_2xx.is_some())
    }

    /// The call ends (BYE from leg B, shutdown, ...) while leg A's 2xx is held: leg A never
    /// gets it; its INVITE is answered 487 instead (as for a BYE on its early dialog, RFC 3261
    /// §15.1.2), and nothing more is retransmitted.
    pub(super) fn drop_held_2xx(&mut self, id: CallId, now: Instant) {
        let Some(rel) = self.rel_a.get_mut(&id) else {
            return;
        };
        let Some((a_tx, ok)) = rel.held_2xx.take() else {
            return;
        };
        rel.pending = None;
        rel.queued = None;
        let resp = final_like(&ok, 487, "Request Terminated");
        self.tx.send_response(a_tx, resp, now);
    }

    /// A PRACK from leg A: answered here (leg B has PRACKs of its own), 200 when it matches
    /// the reliable provisional waiting for it, else 481.
    pub(super) fn on_a_prack(&mut self, tx: TxId, req: &Request, id: CallId, now: Instant) {
        let rack: Option<(u32, u32)> = req.headers.get("RAck").and_then(|v| {
            let mut it = v.split_whitespace();
            let rseq = it.next()?.parse().ok()?;
            let cseq = it.next()?.parse().ok()?;
            it.next()?
                .eq_ignore_ascii_case("INVITE")
                .then_some((rseq, cseq))
        });
        let local_tag = self.calls.get(&id).map(|c| c.a.local_tag.clone());
        let matched = self.rel_a.get_mut(&id).is_some_and(|rel| {
            let ok = match (&rel.pending, rack) {
                (Some(p), Some((rseq, cseq))) => {
                    p.rseq == rseq && p.resp.cseq().map(|c| c.seq) == Some(cseq)
                }
                _ => false,
            };
            if ok {
                rel.pending = None;
            }
            ok
        });
        //= rfc3262#section-3
        //# If a PRACK request is received by the UA core that does not match any
        //# unacknowledged reliable provisional response, the UAS MUST respond to the PRACK
        //# with a 481 response.
        let (code, reason) = if matched {
            (200, "OK")
        } else {
            (481, "Call/Transaction Does Not Exist")
        };
        let resp = make_response(req, code, reason, local_tag.as_deref());
        self.tx.send_response(tx, resp, now);
        if matched {
            self.after_prack(id, now);
        }
    }

    /// Leg A PRACKed: the held 2xx goes, or the queued provisional (reliably).
    fn after_prack(&mut self, id: CallId, now: Instant) {
        let Some(rel) = self.rel_a.get_mut(&id) else {
            return;
        };
        if let Some((a_tx, out)) = rel.held_2xx.take() {
            rel.queued = None;
            self.tx.send_2xx_reliably(a_tx, out, now);
            if let Some(h) = self.calls.get_mut(&id).and_then(Call::handshake_mut) {
                h.a_2xx_tx = Some(a_tx);
            }
            return;
        }
        let Some((a_tx, resp)) = rel.queued.take() else {
            return;
        };
        let open = self
            .calls
            .get(&id)
            .and_then(Call::attempt)
            .and_then(|a| a.a_invite_tx);
        if open == Some(a_tx) {
            self.send_reliable(id, a_tx, resp, now);
        }
    }
}
