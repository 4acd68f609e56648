//! When a target does not answer, rings too long or fails: the next target of the call's
//! list (failover), the abandoned branch cancelled or ended.

use super::*;

/// How leg B's INVITE ended at a target (`b_invite_ended`).
pub(super) struct TargetEnd<'a> {
    pub(super) status: u16,
    pub(super) reason: String,
    /// Try the route's next target.
    pub(super) failover: bool,
    /// A 3xx relayed to leg A: its Contacts go along.
    pub(super) from_b: Option<&'a Response>,
}

impl B2bua {
    pub(super) fn no_answer_deadline(
        &mut self,
        id: CallId,
        idx: usize,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(at) = self.calls.get(&id).and_then(Call::attempt) else {
            return;
        };
        if at.target_idx != idx || at.got_provisional {
            return;
        }
        // No response at all from this target: treat as 408 and fail over.
        if at.tx.is_some() {
            self.abandon_branch(id, false, now);
            self.b_invite_failed(id, 408, "Request Timeout".into(), now, policy);
        }
    }

    /// The target rang for [`CoreConfig::ringing_timeout`] without a final answer: CANCEL it and
    /// go on as after a 408 (next target, or 408 to A).
    pub(super) fn ringing_deadline(
        &mut self,
        id: CallId,
        idx: usize,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(at) = self.calls.get(&id).and_then(Call::attempt) else {
            return;
        };
        if at.target_idx != idx || at.cancelled || at.tx.is_none() {
            return;
        }
        self.abandon_branch(id, true, now);
        self.b_invite_failed(id, 408, "Request Timeout".into(), now, policy);
    }

    /// Detach the call's current leg B INVITE from it (see [`Abandoned`]); with `cancel`, CANCEL
    /// it now (it has sent a provisional response).
    pub(super) fn abandon_branch(&mut self, id: CallId, cancel: bool, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let peer = call.b.peer;
        let Some(at) = call.attempt_mut() else {
            return;
        };
        let Some(tx) = at.tx.take() else {
            return;
        };
        self.owners.remove(&tx);
        let Some(invite) = at.invite.clone() else {
            return;
        };
        self.tx.guard_invite(tx, now);
        if cancel {
            let c = cancel_for(&invite);
            self.tx.send_request(c, peer, now);
        }
        self.owners.insert(
            tx,
            TxOwner::Abandoned(Abandoned {
                invite,
                peer,
                cancelled: cancel,
            }),
        );
    }

    /// A response on a branch the call moved on from.
    pub(super) fn on_abandoned_response(&mut self, tx: TxId, resp: &Response, now: Instant) {
        if resp.status < 200 {
            if let Some(ab) = self.owners.abandoned_mut(&tx) {
                if !ab.cancelled {
                    ab.cancelled = true;
                    let (c, peer) = (cancel_for(&ab.invite), ab.peer);
                    self.tx.send_request(c, peer, now);
                }
            }
            return;
        }
        let Some(TxOwner::Abandoned(ab)) = self.owners.remove(&tx) else {
            return;
        };
        if resp.status >= 300 {
            // The transaction layer ACKs a non-2xx final itself (§17.1.1.3).
            return;
        }
        // A late 2xx: the callee thinks the call is up. ACK it (§13.2.2.4) and hang up, in its
        // own dialog: remembered by the call (its retransmissions get the same ACK again).
        let call = ab.invite.call_id().and_then(|c| self.by_b.get(c)).copied();
        if let Some(id) = call.filter(|id| self.calls.contains_key(id)) {
            self.ack_other_2xx(id, resp, Some(ab.peer), now);
            return;
        }
        let target = resp
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| ab.invite.uri.clone());
        let seq = ab.invite.cseq().map(|c| c.seq).unwrap_or(1);
        let routes = dialog::uac_route_set(&resp.headers);
        for (method, cseq) in [(Method::Ack, seq), (Method::Bye, seq.wrapping_add(1))] {
            let mut h = Headers::with_capacity(12);
            h.push("Via", self.via_for(ab.peer));
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

    /// Leg B's INVITE failed at the current target with `status`: fail over or answer A.
    pub(super) fn b_invite_failed(
        &mut self,
        id: CallId,
        status: u16,
        reason: String,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        // RFC 3261 §16.7 + the dial plan contract: 408, 5xx and transport errors fail over; 6xx
        // stops; any other final is the answer.
        let failover = status == 408 || (500..600).contains(&status);
        let end = TargetEnd {
            status,
            reason,
            failover,
            from_b: None,
        };
        self.b_invite_ended(id, end, now, policy);
    }

    /// Leg B's INVITE ended at the current target without an answer: the next target the
    /// policy admits when `end.failover`, else (or when none is left) leg A gets `end`'s
    /// status (with the Contacts of `end.from_b`, a relayed 3xx).
    pub(super) fn b_invite_ended(
        &mut self,
        id: CallId,
        end: TargetEnd<'_>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Call {
            a,
            b,
            state: CallState::Proceeding(at),
            log,
            ..
        } = call
        else {
            return;
        };
        at.tx = None;
        log.attempt_done(end.status);
        // The next target the policy admits (one at a limit is skipped like a failed one).
        let next = if !at.cancelled && end.failover {
            (at.target_idx + 1..at.targets.len())
                .find(|&i| policy.admit_target(&at.targets[i], now))
        } else {
            None
        };
        if let Some(next) = next {
            let family = |i: usize| at.targets.get(i).map(|t| is_v6(&t.peer));
            let refamily = family(at.target_idx) != family(next);
            at.target_idx = next;
            b.local_cseq = b.local_cseq.wrapping_add(1);
            if refamily {
                self.reoffer_b(id, now, policy);
            }
            self.send_b_invite(id, now, policy);
            return;
        }
        if !at.cancelled {
            if let Some(a_tx) = at.a_invite_tx.take() {
                // A B2BUA terminates the transaction, so it answers what it means: "no route
                // worked" is 503 for transport failures and timeouts, otherwise the last
                // target's status.
                let mut resp =
                    make_response(&at.a_invite, end.status, &end.reason, Some(&a.local_tag));
                if let Some(from_b) = end.from_b {
                    redirect::relay_contacts(from_b, &mut resp, Crossing::between(b, a));
                }
                self.tx.send_response(a_tx, resp, now);
                log.refused(end.status, now);
                policy.event(
                    CallEvent::Finished {
                        call: id.raw(),
                        trunk: at.trunk.clone(),
                        status: end.status,
                        post_dial_delay: at.pdd,
                    },
                    now,
                );
            }
        }
        call.end();
        if let Some(ip) = call.early_source.take() {
            self.early.remove(&ip);
        }
        self.maybe_collect_with_media(id, now, policy);
    }

    pub(super) fn on_client_failure(
        &mut self,
        tx: TxId,
        status: u16,
        reason: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        self.b_sent.remove(&tx);
        self.b_sent_standalone.remove(&tx);
        let (id, purpose) = match self.owners.remove(&tx) {
            None => return,
            Some(TxOwner::Message(pm)) => {
                self.answer_message(pm, status, reason, now);
                return;
            }
            Some(TxOwner::Subscription(c)) => {
                self.on_sub_failure(c, status, reason, now);
                return;
            }
            // A branch given up on that never answered: nothing more to do.
            Some(TxOwner::Abandoned(_)) => return,
            Some(TxOwner::Carrier(c)) => {
                self.on_carrier_failure(c, now, policy);
                return;
            }
            Some(TxOwner::Delivery(d)) => {
                self.on_delivery_answer(d, status, now, policy);
                return;
            }
            Some(TxOwner::Watch(id)) => {
                self.pa_notify_answer(id, 0);
                return;
            }
            Some(TxOwner::Call(id, purpose)) => (id, purpose),
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
                        if c.is_confirmed() {
                            self.end_both(id, now, policy);
                        }
                    }
                }
            }
            ClientPurpose::Refresh(_) => self.refresh_failed(id, status, now, policy),
            ClientPurpose::TransferInvite | ClientPurpose::TransferReinvite => {
                self.transfer_tx_failed(id, purpose, status, reason, now, policy);
            }
            ClientPurpose::Bye
            | ClientPurpose::Cancel
            | ClientPurpose::Prack
            | ClientPurpose::Notify
            | ClientPurpose::Info => {
                self.maybe_collect(id);
            }
        }
    }

    pub(super) fn on_ack_timeout(&mut self, tx: TxId, now: Instant, policy: &mut dyn Policy) {
        if self.origin_never_acked(tx, now, policy) {
            return;
        }
        // RFC 3261 §13.3.1.4: no ACK for our 2xx on leg A: end the call with BYE on both legs.
        let id = self.by_a_tx.get(&tx).copied().filter(|id| {
            self.calls
                .get(id)
                .and_then(Call::handshake)
                .is_some_and(|h| h.a_2xx_tx == Some(tx))
        });
        if let Some(id) = id {
            self.end_both(id, now, policy);
        }
    }
}
