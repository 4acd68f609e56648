//! Responses from leg B mapped to leg A: provisional, 2xx (the call is up), and the
//! answers to relayed in-dialog requests.

use super::*;

impl B2bua {
    pub(super) fn on_response(
        &mut self,
        tx: TxId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        use super::owners::Route;
        let Some(route) = self.owners.route(&tx) else {
            if resp.status >= 200 {
                self.b_sent.remove(&tx);
            }
            // A 2xx retransmission for an INVITE whose client tx is gone: re-ACK if it is ours.
            self.maybe_reack(&resp, now);
            return;
        };
        match route {
            Route::CallInvite(id) => self.on_b_invite_response(tx, id, resp, now, policy),
            Route::CallRelay(id) => self.on_relay_response(tx, id, resp, now, policy),
            Route::CallRefresh(id) => self.on_refresh_response(tx, id, resp, now, policy),
            Route::CallTransfer(id) => self.on_transfer_response(tx, id, resp, now, policy),
            Route::CallOther(id) => {
                if self.b_request_challenged(tx, id, &resp, now, policy) {
                    return;
                }
                if resp.status >= 200 {
                    self.owners.remove(&tx);
                }
                self.maybe_collect(id);
            }
            Route::Abandoned => self.on_abandoned_response(tx, &resp, now),
            Route::Carrier => self.on_carrier_response(tx, &resp, now, policy),
            Route::Delivery | Route::Watch if resp.status < 200 => {}
            Route::Watch => {
                if let Some(TxOwner::Watch(id)) = self.owners.remove(&tx) {
                    self.pa_notify_answer(id, resp.status);
                }
            }
            Route::Delivery => {
                if let Some(TxOwner::Delivery(d)) = self.owners.remove(&tx) {
                    self.on_delivery_answer(d, resp.status, now, policy);
                }
            }
            Route::Message | Route::Subscription if resp.status < 200 => {}
            Route::Message | Route::Subscription
                if self.standalone_challenged(tx, &resp, now, policy) => {}
            Route::Message => {
                if let Some(TxOwner::Message(pm)) = self.owners.remove(&tx) {
                    self.answer_message(pm, resp.status, &resp.reason, now);
                }
            }
            Route::Subscription => {
                if let Some(TxOwner::Subscription(c)) = self.owners.remove(&tx) {
                    self.on_sub_response(c, &resp, now);
                }
            }
        }
    }

    /// A 2xx whose client transaction no longer has an owner (the call took its answer, or
    /// moved on): ACKed in its own dialog when it is a leg B INVITE's (`forks.rs`).
    pub(super) fn maybe_reack(&mut self, resp: &Response, now: Instant) {
        if !(200..300).contains(&resp.status) {
            return;
        }
        // Only an INVITE's 2xx is ACKed (a late 200 to a CANCEL or BYE is not).
        if resp.cseq().map(|c| c.method) != Some(Method::Invite) {
            return;
        }
        let Some(cid) = resp.call_id() else { return };
        let (id, leg) = match self.by_b.get(cid).copied() {
            Some(id) => (id, Leg::B),
            None => {
                // Leg A: the caller's tag is the To tag of a response to our request.
                let tag = resp.headers.get("To").and_then(tag_param).unwrap_or("");
                let Some(id) = self.call_of(cid, tag) else {
                    return;
                };
                (id, Leg::A)
            }
        };
        if self.reinvite_2xx_again(id, leg, resp) || leg == Leg::A {
            return;
        }
        self.ack_other_2xx(id, resp, None, now);
    }

    pub(super) fn on_b_invite_response(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let status = resp.status;
        if status < 200 {
            // The first provisional from this target starts its ringing timeout.
            if let Some(at) = self.calls.get(&id).and_then(Call::attempt) {
                if !at.got_provisional {
                    self.deadlines.push(Deadline {
                        at: std::cmp::Reverse(now + self.cfg.ringing_timeout),
                        call: id,
                        target_idx: at.target_idx,
                        kind: DeadlineKind::Ringing,
                    });
                }
            }
            if status == 100 {
                let cancel_now = match self.calls.get_mut(&id).and_then(Call::attempt_mut) {
                    Some(at) => {
                        let first = !at.got_provisional;
                        at.got_provisional = true;
                        // A CANCEL held back until leg B had answered anything (§9.1) goes now.
                        first && at.cancelled
                    }
                    None => false,
                };
                if cancel_now {
                    self.send_b_cancel(id, now);
                }
                return;
            }
            self.on_b_provisional(id, resp, now, policy);
            return;
        }
        if status < 300 {
            self.on_b_success(tx, id, resp, now, policy);
            return;
        }
        if (status == 401 || status == 407) && self.b_invite_challenged(tx, id, &resp, now, policy)
        {
            return;
        }
        if status == 422 && self.b_invite_too_small(tx, id, &resp, now) {
            return;
        }
        self.owners.remove(&tx);
        if (300..400).contains(&status) {
            self.b_redirected(id, &resp, now, policy);
            return;
        }
        self.b_invite_failed(id, status, resp.reason, now, policy);
    }

    pub(super) fn on_b_provisional(
        &mut self,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let (cancelled, first) = {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            let Call {
                b,
                state: CallState::Proceeding(at),
                log,
                ..
            } = call
            else {
                return;
            };
            log.ringing(now);
            let first = !at.got_provisional;
            at.got_provisional = true;
            if let Some(tag) = resp.headers.get("To").and_then(tag_param) {
                b.remote_tag = Some(tag.to_string());
            }
            if at.pdd.is_none() {
                at.pdd = Some(now.saturating_duration_since(at.started));
            }
            (at.cancelled, first)
        };
        if cancelled {
            if first {
                self.send_b_cancel(id, now);
            }
            return;
        }
        if !self.b_reliable(id, &resp, now) {
            return;
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(at) = call.attempt() else { return };
        let Some(a_tx) = at.a_invite_tx else { return };
        let body = if resp.body.is_empty() {
            None
        } else {
            let r = policy.media_answer(call.media_ref(), Leg::B, &resp.body, now);
            // An early answer the relay refuses: the provisional goes on without it (the 2xx
            // decides), counted.
            self.stats.media_failures += u64::from(r.is_err());
            r.ok()
        };
        let mut out = self.a_response(call, &at.a_invite, resp.status, &resp.reason, &resp);
        if let Some(b) = body {
            out.headers.push("Content-Type", "application/sdp");
            out.body = b;
        }
        self.send_a_provisional(id, a_tx, out, now);
    }

    /// A response for leg A's INVITE built from leg B's response.
    pub(super) fn a_response(
        &self,
        call: &Call,
        a_invite: &Request,
        status: u16,
        reason: &str,
        from_b: &Response,
    ) -> Response {
        let mut resp = make_response(a_invite, status, reason, Some(&call.a.local_tag));
        if status > 100 && status < 300 {
            //= rfc3261#section-12.1.1
            //# When a UAS responds to a request with a response that establishes a dialog
            //# (such as a 2xx to INVITE), the UAS MUST copy all Record-Route header field
            //# values from the request into the response [...] and MUST maintain the order of
            //# those values.
            for rr in a_invite.headers.get_all("Record-Route") {
                resp.headers.push("Record-Route", rr);
            }
            resp.headers.push("Contact", self.contact_for(call.a.peer));
        }
        Crossing::between(&call.b, &call.a).copy(&from_b.headers, &mut resp.headers, false);
        resp
    }

    pub(super) fn on_b_success(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(cancelled) = call.attempt().map(|a| a.cancelled) else {
            // Another 2xx once the call has its answer (RFC 6026 Accepted state): a
            // retransmission, or a fork's 2xx in its own dialog.
            self.ack_other_2xx(id, &resp, None, now);
            return;
        };
        // Learn leg B's dialog (RFC 3261 §12.1.2).
        call.b.learn_answer(&resp);
        call.log.attempt_done(resp.status);
        if cancelled {
            self.on_crossed_2xx(tx, id, now, policy);
        } else {
            self.on_b_answer(tx, id, resp, now, policy);
        }
    }

    /// Leg B's 2xx crossed our CANCEL (leg A has its final answer already): ACK and BYE it;
    /// the call never came up, its relay ports and trunk slot go now.
    fn on_crossed_2xx(&mut self, tx: TxId, id: CallId, now: Instant, policy: &mut dyn Policy) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.end();
        if let Some(ip) = call.early_source.take() {
            self.early.remove(&ip);
        }
        self.send_b_ack(id, None, now);
        self.send_bye(id, Leg::B, now);
        self.owners.remove(&tx);
        self.maybe_collect_with_media(id, now, policy);
    }

    /// Leg B answered: the call is confirmed, leg A gets the 2xx (with the SDP the media
    /// policy made of leg B's), leg B its ACK (late offer: once leg A's ACK brings the answer).
    fn on_b_answer(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(setup) = call.confirm(now) else {
            return;
        };
        if let Some(ip) = call.early_source.take() {
            self.early.remove(&ip);
        }
        let pdd = Some(
            setup
                .pdd
                .unwrap_or_else(|| now.saturating_duration_since(setup.started)),
        );
        let late_offer = setup.a_offer.is_none() && !resp.body.is_empty();
        let Ok(body) = self.sdp_for_a(id, late_offer, &resp, now, policy) else {
            self.media_refused_answer(id, tx, &setup, now, policy);
            return;
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.log.answered(now);
        }
        self.mark_replica(id);
        if late_offer {
            if let Some(h) = self.calls.get_mut(&id).and_then(Call::handshake_mut) {
                h.b_ack_pending = true;
            }
        } else {
            self.send_b_ack(id, None, now);
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let mut out = self.a_response(call, &setup.a_invite, resp.status, &resp.reason, &resp);
        if let Some(b) = body {
            out.headers.push("Content-Type", "application/sdp");
            out.body = b;
        }
        self.start_timers(id, &setup, &resp, &mut out, now, policy);
        if let Some(a_tx) = setup.a_invite_tx {
            self.send_a_2xx(id, a_tx, out, now);
        }
        self.owners.remove(&tx);
        policy.event(
            CallEvent::Finished {
                call: id.raw(),
                trunk: setup.trunk,
                status: 200,
                post_dial_delay: pdd,
            },
            now,
        );
    }

    /// The SDP for leg A's 2xx from leg B's (`None`: leg B sent none); an error when the
    /// media policy refuses it.
    fn sdp_for_a(
        &mut self,
        id: CallId,
        late_offer: bool,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Result<Option<Vec<u8>>, String> {
        if resp.body.is_empty() {
            return Ok(None);
        }
        let Some(call) = self.calls.get(&id) else {
            return Ok(None);
        };
        let r = if late_offer {
            policy
                .media_offer(call.media_ref(), Leg::B, &resp.body, now)
                .map_err(|e| e.to_string())
        } else {
            policy.media_answer(call.media_ref(), Leg::B, &resp.body, now)
        };
        r.map(Some)
    }

    /// Leg B answered 2xx with SDP the relay cannot take: the call cannot carry media. Leg B's
    /// 2xx is ACKed and ended with BYE, leg A's INVITE gets 488 (RFC 3261 §13.3.1.3: the offer
    /// is not acceptable), and the call ends with its media released.
    fn media_refused_answer(
        &mut self,
        id: CallId,
        tx: TxId,
        setup: &Attempt,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        self.stats.media_failures += 1;
        self.send_b_ack(id, None, now);
        self.send_bye(id, Leg::B, now);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.end();
        call.log.refused(488, now);
        let resp = make_response(
            &setup.a_invite,
            488,
            "Not Acceptable Here",
            Some(&call.a.local_tag),
        );
        if let Some(a_tx) = setup.a_invite_tx {
            self.tx.send_response(a_tx, resp, now);
        }
        self.owners.remove(&tx);
        policy.event(
            CallEvent::Finished {
                call: id.raw(),
                trunk: setup.trunk.clone(),
                status: 488,
                post_dial_delay: None,
            },
            now,
        );
        self.maybe_collect_with_media(id, now, policy);
    }
}
