//! `refer: handle`: a blind transfer (RFC 3515; RFC 5589 §6) that trunkline carries out itself
//! for the transferee. The transferor is leg B's peer (a PBX handing its caller on), the
//! transferee leg A's (a carrier's caller), the target whoever the Refer-To names:
//!
//! 1. The REFER is accepted 202; its implicit subscription gets NOTIFY `100 Trying`.
//! 2. The Refer-To is routed like a call from the transferor (the location service for a served
//!    user, else the dial plan, which sees the transferor's trunk as `source_trunk`); an INVITE
//!    without an offer goes to the first target the policy admits, a new leg with its own
//!    Call-ID and tags (nothing of either side's dialogs crosses).
//! 3. The target's 2xx carries its offer: the target becomes leg B (the relay's ports facing
//!    leg B now face it), and leg A gets a re-INVITE with that offer through the relay; A's
//!    answer goes to the target in its ACK (RFC 3725 flow I).
//! 4. The transferor gets NOTIFY `200 OK` (subscription terminated) and a BYE; a BYE of its own
//!    is answered 200.
//!
//! The target refusing, not answering or answering without an offer: NOTIFY with its status,
//! and the call goes on between A and the transferor, or ends (BYE to A) when the transferor
//! hung up meanwhile. A transferee that refuses the re-INVITE ends the call (its media would
//! face neither party). One transfer at a time; a re-INVITE meanwhile gets 491. A REFER with
//! `Replaces` (attended transfer) between two of trunkline's calls is `join.rs`'s; any other
//! `Replaces` is declined 603. A REFER from leg A is relayed.

use super::transfer::hidden;
use super::*;

/// A transfer trunkline is carrying out (in [`super::call::Established`]).
pub(super) struct Transfer {
    /// The REFER's CSeq: its subscription's `id` (RFC 3515 §2.4.6).
    refer_cseq: u32,
    /// The target's leg, until it replaces leg B.
    target: Option<Dialog>,
    /// The target's trunk (`None`: the caller of another call, `joins`).
    target_trunk: Option<String>,
    /// An attended transfer (`join.rs`): the call whose caller is the target.
    joins: Option<CallId>,
    invite: Request,
    /// The target's INVITE while it has no final answer.
    invite_tx: Option<TxId>,
    got_provisional: bool,
    notified_ringing: bool,
    /// The target answered: it is leg B now, the transferor's dialog is [`Call::old_b`].
    swapped: bool,
    /// The transferor hung up: it gets no more NOTIFYs.
    transferor_gone: bool,
}

/// How a transfer ended, for the transferor's last NOTIFY.
struct Outcome {
    status: u16,
    reason: String,
}

impl Outcome {
    fn new(status: u16, reason: &str) -> Outcome {
        Outcome {
            status,
            reason: reason.to_string(),
        }
    }
}

impl Transfer {
    /// An attended transfer's: the target is `other`'s caller, re-INVITEd in its dialog `d`.
    pub(super) fn joining(
        refer_cseq: u32,
        d: Dialog,
        invite: Request,
        tx: TxId,
        other: CallId,
    ) -> Transfer {
        Transfer {
            refer_cseq,
            target: Some(d),
            target_trunk: None,
            joins: Some(other),
            invite,
            invite_tx: Some(tx),
            got_provisional: false,
            notified_ringing: false,
            swapped: false,
            transferor_gone: false,
        }
    }

    /// The target answered and is leg B now.
    pub(super) fn swapped(&self) -> bool {
        self.swapped
    }
}

impl B2bua {
    /// A REFER from leg B whose trunk says `refer: handle` (`true`: answered here).
    pub(super) fn refer_handled(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let (b_peer, b_tag) = (call.b.peer, call.b.local_tag.clone());
        let handle = leg == Leg::B
            && call.is_confirmed()
            && policy.refer_mode(call.b_trunk.as_deref(), b_peer, now) == ReferMode::Handle;
        if !handle {
            return false;
        }
        let answer = |s: &mut Self, code: u16, reason: &str| {
            let resp = make_response(req, code, reason, Some(&b_tag));
            s.tx.send_response(tx, resp, now);
            true
        };
        if call.transfer().is_some() || self.reinvite_pending(id) {
            return answer(self, 491, "Request Pending");
        }
        let mut refer_to = req.headers.get_all("Refer-To");
        let (Some(value), None) = (refer_to.next(), refer_to.next()) else {
            //= rfc3515#section-2.4.1
            //# A REFER request MUST contain exactly one Refer-To header field value.
            return answer(self, 400, "Exactly One Refer-To");
        };
        let Ok(na) = NameAddr::parse(value) else {
            return answer(self, 400, "Bad Refer-To");
        };
        let refer_cseq = req.cseq().map_or(0, |c| c.seq);
        if value.to_ascii_lowercase().contains("replaces=") {
            // Attended: only between two calls of trunkline's own (`join.rs`).
            let other = super::join::replaces_of(value).and_then(|r| self.replaced_call(id, &r));
            let Some(other) = other else {
                return answer(self, 603, "Decline");
            };
            answer(self, 202, "Accepted");
            self.invite_joined(id, other, refer_cseq, now);
            self.notify_transferor(id, 100, "Trying", false, now);
            return true;
        }
        let uri = na.uri.to_string();
        let Some((target, user)) = self.transfer_target(id, &uri, b_peer, now, policy) else {
            return answer(self, 603, "Decline");
        };
        answer(self, 202, "Accepted");
        let referred_by = req.headers.get("Referred-By").map(str::to_string);
        self.invite_target(id, target, &user, referred_by, refer_cseq, now, policy);
        self.notify_transferor(id, 100, "Trying", false, now);
        true
    }

    /// Where the Refer-To `uri` goes, as a call from the transferor at `from`: the first
    /// target the policy admits, and the user of its Request-URI.
    fn transfer_target(
        &mut self,
        id: CallId,
        uri: &str,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<(Target, String)> {
        let (targets, user) = match self.locate(uri, now, policy) {
            Some(Ok(targets)) => (targets, String::new()),
            Some(Err(_)) => return None,
            None => {
                let user = ruri_user(uri);
                if user.is_empty() {
                    return None;
                }
                let from_user = self.calls.get(&id).map(|c| leg_user(&c.b))?;
                match policy.route_redirect(uri, from, &user, &from_user, now) {
                    RouteOutcome::Route {
                        targets, to_user, ..
                    } => (targets, to_user),
                    _ => return None,
                }
            }
        };
        let target = targets.into_iter().find(|t| policy.admit_target(t, now))?;
        Some((target, user))
    }

    /// The target's leg and its INVITE without an offer: From as the transferee was presented
    /// to the transferor, Referred-By naming trunkline only.
    #[allow(clippy::too_many_arguments)]
    fn invite_target(
        &mut self,
        id: CallId,
        target: Target,
        user: &str,
        referred_by: Option<String>,
        refer_cseq: u32,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some((display, from_user)) = self.calls.get(&id).map(|c| {
            let na = NameAddr::parse(&c.b.local_uri).ok();
            let display = na.as_ref().and_then(|n| n.display.clone());
            (display, leg_user(&c.b))
        }) else {
            return;
        };
        let mut d = self.b_dialog(display.as_deref(), &from_user, &target);
        d.remote_uri = cat(&["<sip:", &user_at(user), &target.host, ">"]);
        d.remote_target = cat(&["sip:", &user_at(user), &target.host]);
        d.trunk = target.trunk != REGISTERED;
        d.headers = d
            .trunk
            .then(|| policy.header_policy(Some(&target.trunk), target.peer, now))
            .flatten();
        let via = self.via_for(target.peer);
        let contact = self.contact_for(target.peer);
        let mut invite = d.request(Method::Invite, via, contact);
        invite.headers.push("Allow", ALLOW);
        let host = local_addr_text(&self.cfg, target.peer.transport, is_v6(&target.peer));
        if let Some(h) = referred_by.and_then(|v| hidden(&v, &host)) {
            invite.headers.push("Referred-By", h);
        }
        Crossing::checked(&d).copy(&Headers::new(), &mut invite.headers, true);
        let t = self.tx.send_request_ref(&invite, target.peer, now);
        self.owners
            .insert(t, TxOwner::Call(id, ClientPurpose::TransferInvite));
        let transfer = Transfer {
            refer_cseq,
            target: Some(d),
            target_trunk: Some(target.trunk),
            joins: None,
            invite,
            invite_tx: Some(t),
            got_provisional: false,
            notified_ringing: false,
            swapped: false,
            transferor_gone: false,
        };
        if let Some(slot) = self.calls.get_mut(&id).and_then(Call::transfer_slot) {
            *slot = Some(Box::new(transfer));
        }
        self.stats.transfers += 1;
    }

    /// NOTIFY of the REFER's subscription (RFC 3515 §2.4.4): `status` as a sipfrag, the
    /// subscription terminated with the last one. Nothing once the transferor hung up.
    pub(super) fn notify_transferor(
        &mut self,
        id: CallId,
        status: u16,
        reason: &str,
        last: bool,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(t) = call.transfer() else { return };
        if t.transferor_gone {
            return;
        }
        let refer_cseq = t.refer_cseq;
        let peer = match (&call.old_b, t.swapped) {
            (Some(d), true) => d.peer,
            _ => call.b.peer,
        };
        let via = self.via_for(peer);
        let contact = self.contact_for(peer);
        let Some(d) = self.calls.get_mut(&id).and_then(Call::transferor_mut) else {
            return;
        };
        let mut req = d.request(Method::Notify, via, contact.clone());
        req.headers.push("Contact", contact);
        req.headers
            .push("Event", cat(&["refer;id=", &refer_cseq.to_string()]));
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        req.headers.push("Subscription-State", state);
        req.headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        req.body = format!("SIP/2.0 {status} {reason}\r\n").into_bytes();
        let t = self.tx.send_request_ref(&req, peer, now);
        self.owners
            .insert(t, TxOwner::Call(id, ClientPurpose::Notify));
    }

    /// A response to the target's INVITE or to leg A's re-INVITE of a transfer.
    pub(super) fn on_transfer_response(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        match self.owners.call(&tx) {
            Some((_, ClientPurpose::TransferInvite)) => {
                self.on_target_response(tx, id, resp, now, policy)
            }
            Some((_, ClientPurpose::TransferReinvite)) => {
                self.on_transferee_response(tx, id, resp, now, policy)
            }
            _ => {}
        }
    }

    fn on_target_response(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if resp.status < 200 {
            let ring = {
                let Some(t) = self.calls.get_mut(&id).and_then(Call::transfer_mut) else {
                    return;
                };
                t.got_provisional = true;
                let ring = matches!(resp.status, 180 | 183) && !t.notified_ringing;
                t.notified_ringing |= ring;
                ring
            };
            if ring {
                self.notify_transferor(id, resp.status, &resp.reason, false, now);
            }
            return;
        }
        self.owners.remove(&tx);
        if let Some(t) = self.calls.get_mut(&id).and_then(Call::transfer_mut) {
            t.invite_tx = None;
        }
        if resp.status >= 300 {
            let outcome = Outcome::new(resp.status, &resp.reason);
            self.transfer_failed(id, outcome, now, policy);
            return;
        }
        self.target_answered(id, resp, now, policy);
    }

    /// The target's 2xx: its offer through the relay to leg A in a re-INVITE; the target is
    /// leg B from now on.
    fn target_answered(
        &mut self,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let seq = resp.cseq().map_or(1, |c| c.seq);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = call.transfer_mut() else { return };
        let Some(mut target) = t.target.take() else {
            return;
        };
        target.learn_answer(&resp);
        let trunk = t.target_trunk.clone();
        let joins = t.joins;
        let offer = if resp.body.is_empty() {
            Err(())
        } else {
            let media = CallRef {
                id: id.raw(),
                call_id: &call.a.call_id,
                from_tag: call.a.remote_tag.as_deref().unwrap_or(""),
                peers: [call.a.peer.addr, target.peer.addr],
                b_trunk: trunk.as_deref(),
            };
            policy
                .media_offer(media, Leg::B, &resp.body, now)
                .map_err(|_| ())
        };
        let Ok(sdp) = offer else {
            // No offer to put to A (RFC 3264 §5: an offer in the 2xx of an offerless INVITE),
            // or one the relay refused: ACK and BYE the target.
            self.end_target(target, seq, now);
            let outcome = Outcome::new(488, "Not Acceptable Here");
            self.transfer_failed(id, outcome, now, policy);
            return;
        };
        self.swap_in_target(id, target, trunk, seq);
        if let Some(other) = joins {
            self.dissolve_joined(other, now, policy);
        }
        self.reinvite_transferee(id, sdp, now);
    }

    /// The target becomes leg B; the transferor's dialog is kept aside (its BYE answered).
    fn swap_in_target(&mut self, id: CallId, target: Dialog, trunk: Option<String>, seq: u32) {
        let new_call_id = target.call_id.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut call.b, target);
        if let Some(prev) = call.old_b.replace(Box::new(old)) {
            self.by_b.remove(&prev.call_id);
        }
        call.b_trunk = trunk;
        if let Some(t) = call.transfer_mut() {
            t.swapped = true;
        }
        if let Some(h) = call.handshake_mut() {
            h.b_invite_cseq = seq;
            h.b_ack = None;
        }
        if let Some(ts) = call.timers_mut() {
            ts.forget(Leg::B);
        }
        self.by_b.insert(new_call_id, id);
    }

    /// Leg A's re-INVITE with the target's offer (rewritten by the relay).
    fn reinvite_transferee(&mut self, id: CallId, sdp: Vec<u8>, now: Instant) {
        let Some((mut req, peer)) = self.dialog_request(id, Leg::A, Method::Invite) else {
            return;
        };
        req.headers.push("Allow", ALLOW);
        req.headers.push("Content-Type", "application/sdp");
        req.body = sdp;
        let t = self.tx.send_request_ref(&req, peer, now);
        self.tx.guard_invite(t, now);
        if let Some(call) = self.calls.get_mut(&id) {
            if let Some(ts) = call.timers_mut() {
                ts.sent_sdp(Leg::A, &req.body);
            }
            if let Some(r) = call.reoffer_mut() {
                r.sent_invite(Leg::A, t);
            }
        }
        self.owners
            .insert(t, TxOwner::Call(id, ClientPurpose::TransferReinvite));
    }

    fn on_transferee_response(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if resp.status < 200 {
            return;
        }
        self.owners.remove(&tx);
        let seq = resp.cseq().map_or(0, |c| c.seq);
        let ok = (200..300).contains(&resp.status);
        if ok {
            self.ack_reinvite(id, Leg::A, seq, None);
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if !call.is_confirmed() {
            self.maybe_collect(id);
            return;
        }
        let answer = if ok && !resp.body.is_empty() {
            policy
                .media_answer(call.media_ref(), Leg::A, &resp.body, now)
                .ok()
        } else {
            None
        };
        match answer {
            Some(sdp) => self.transfer_done(id, sdp, now, policy),
            None => {
                // Leg A kept its old session: ACK the target without an answer, end it all.
                self.send_b_ack(id, None, now);
                let outcome = Outcome::new(500, "Server Internal Error");
                self.notify_end(id, &outcome, now);
                self.send_bye(id, Leg::A, now);
                self.send_bye(id, Leg::B, now);
                self.bye_transferor(id, now);
                self.take_transfer(id);
                self.finish_confirmed(id, now, policy);
            }
        }
    }

    /// A's answer to the target in its ACK; the transferor told and let go.
    fn transfer_done(&mut self, id: CallId, sdp: Vec<u8>, now: Instant, policy: &mut dyn Policy) {
        self.send_b_ack(id, Some(sdp), now);
        let outcome = Outcome::new(200, "OK");
        self.notify_end(id, &outcome, now);
        self.bye_transferor(id, now);
        self.take_transfer(id);
        self.stats.transfers_completed += 1;
        policy.event(
            CallEvent::Transferred {
                call: id.raw(),
                status: 200,
            },
            now,
        );
    }

    /// The last NOTIFY; the transfer is over.
    fn notify_end(&mut self, id: CallId, outcome: &Outcome, now: Instant) {
        self.notify_transferor(id, outcome.status, &outcome.reason, true, now);
    }

    /// BYE in the transferor's dialog once the target replaced it (unless it hung up).
    fn bye_transferor(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.transfer().is_some_and(|t| t.transferor_gone) {
            return;
        }
        let Some(peer) = call.old_b.as_ref().map(|d| d.peer) else {
            return;
        };
        let via = self.via_for(peer);
        let contact = self.contact_for(peer);
        let Some(d) = self.calls.get_mut(&id).and_then(|c| c.old_b.as_mut()) else {
            return;
        };
        let req = d.request(Method::Bye, via, contact);
        let t = self.tx.send_request_ref(&req, peer, now);
        self.owners.insert(t, TxOwner::Call(id, ClientPurpose::Bye));
    }

    /// The target did not take the call: the transferor hears why; the call goes on with it,
    /// or ends if it hung up.
    fn transfer_failed(
        &mut self,
        id: CallId,
        outcome: Outcome,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        self.notify_end(id, &outcome, now);
        let gone = self.take_transfer(id).is_some_and(|t| t.transferor_gone);
        policy.event(
            CallEvent::Transferred {
                call: id.raw(),
                status: outcome.status,
            },
            now,
        );
        if gone {
            if let Some(c) = self.calls.get_mut(&id) {
                c.log.hangup(Hangup::Callee, now);
            }
            self.send_bye(id, Leg::A, now);
            self.finish_confirmed(id, now, policy);
        }
    }

    /// ACK a 2xx of the target's that is not taken (seq: its INVITE's CSeq), then BYE it.
    fn end_target(&mut self, mut d: Dialog, seq: u32, now: Instant) {
        let peer = d.peer;
        for method in [Method::Ack, Method::Bye] {
            let via = self.via_for(peer);
            let contact = self.contact_for(peer);
            let mut req = d.request(method.clone(), via, contact);
            if method == Method::Ack {
                req.headers.set("CSeq", cseq_value(seq, "ACK"));
                self.tx.send_stateless(&SipMessage::Request(req), peer);
            } else {
                self.tx.send_request(req, peer, now);
            }
        }
    }

    /// A re-INVITE from either leg while a transfer is under way: 491 (`true`), as for an
    /// INVITE of trunkline's own pending (RFC 3261 §14.2).
    pub(super) fn transfer_glare(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        now: Instant,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        if call.transfer().is_none() {
            return false;
        }
        let tag = call.leg(leg).local_tag.clone();
        let resp = make_response(req, 491, "Request Pending", Some(&tag));
        self.tx.send_response(tx, resp, now);
        true
    }

    /// A BYE from the transferor while the transfer is under way (`true`: answered 200, the
    /// transferee stays).
    pub(super) fn transferor_bye(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        now: Instant,
    ) -> bool {
        let Some(t) = self
            .calls
            .get_mut(&id)
            .and_then(Call::transfer_mut)
            .filter(|t| leg == Leg::B && !t.swapped)
        else {
            return false;
        };
        t.transferor_gone = true;
        let resp = make_response(req, 200, "OK", None);
        self.tx.send_response(tx, resp, now);
        true
    }

    /// A request in the dialog of a transferor that a handled transfer replaced (`true`:
    /// answered: BYE 200, anything else 481).
    pub(super) fn old_leg_request(
        &mut self,
        tx: TxId,
        req: &Request,
        call_id: &str,
        from: Peer,
        now: Instant,
    ) -> bool {
        let from_tag = req.headers.get("From").and_then(tag_param).unwrap_or("");
        let to_tag = req.headers.get("To").and_then(tag_param).unwrap_or("");
        let Some(id) = self.by_b.get(call_id).copied() else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let ours = call
            .old_b
            .as_ref()
            .is_some_and(|d| d.call_id == call_id && d.accepts(from_tag, to_tag, from));
        if !ours {
            return false;
        }
        let status = if req.method == Method::Bye {
            if let Some(t) = call.transfer_mut() {
                t.transferor_gone = true;
            }
            (200, "OK")
        } else {
            (481, "Call/Transaction Does Not Exist")
        };
        let resp = make_response(req, status.0, status.1, None);
        self.tx.send_response(tx, resp, now);
        true
    }

    /// The call ended with a transfer under way: the target's INVITE is abandoned (CANCELed
    /// once it rang; a late 2xx ACKed and ended), the transferor let go.
    pub(super) fn transfer_abandoned(
        &mut self,
        id: CallId,
        t: Transfer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if let (Some(tx), Some(d)) = (t.invite_tx, &t.target) {
            self.owners.remove(&tx);
            self.tx.guard_invite(tx, now);
            if t.got_provisional {
                self.tx.send_request(cancel_for(&t.invite), d.peer, now);
            }
            self.owners.insert(
                tx,
                TxOwner::Abandoned(Abandoned {
                    invite: t.invite,
                    peer: d.peer,
                    cancelled: t.got_provisional,
                }),
            );
        }
        if t.swapped && !t.transferor_gone {
            self.bye_transferor(id, now);
        }
        // An attended transfer's other call: its caller was being re-INVITEd away from it (a
        // late 2xx is ACKed and ended above): it ends too, on both legs.
        if let (Some(other), false) = (t.joins, t.swapped) {
            if self.calls.get(&other).is_some_and(Call::is_confirmed) {
                self.end_both(other, now, policy);
            }
        }
    }

    /// A transfer transaction failed (timeout, transport error).
    pub(super) fn transfer_tx_failed(
        &mut self,
        id: CallId,
        purpose: ClientPurpose,
        status: u16,
        reason: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if !self.calls.get(&id).is_some_and(Call::is_confirmed) {
            self.maybe_collect(id);
            return;
        }
        match purpose {
            ClientPurpose::TransferInvite => {
                if let Some(t) = self.calls.get_mut(&id).and_then(Call::transfer_mut) {
                    t.invite_tx = None;
                }
                self.transfer_failed(id, Outcome::new(status, reason), now, policy);
            }
            _ => {
                // Leg A is gone (its re-INVITE timed out): the call is over.
                self.send_b_ack(id, None, now);
                self.notify_end(id, &Outcome::new(status, reason), now);
                self.send_bye(id, Leg::B, now);
                self.bye_transferor(id, now);
                self.take_transfer(id);
                self.finish_confirmed(id, now, policy);
            }
        }
    }

    /// The call's transfer, out of it (it is over).
    fn take_transfer(&mut self, id: CallId) -> Option<Box<Transfer>> {
        self.calls
            .get_mut(&id)
            .and_then(Call::transfer_slot)
            .and_then(Option::take)
    }
}

/// The user part of a leg's local URI (how trunkline presented the other party on it).
fn leg_user(d: &Dialog) -> String {
    NameAddr::parse(&d.local_uri)
        .ok()
        .and_then(|na| na.uri.user().map(str::to_string))
        .unwrap_or_default()
}
