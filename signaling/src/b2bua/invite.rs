//! Call setup: leg A's INVITE becomes a call and leg B's INVITE to the first target; CANCEL
//! and the early end of a call.

use super::*;

/// Leg A's parties as the INVITE named them, for [`B2bua::new_call`].
struct Parties<'a> {
    from_na: &'a NameAddr,
    to_na: &'a NameAddr,
    a_from_tag: &'a str,
    from: Peer,
    trunk: bool,
}

impl B2bua {
    pub(super) fn on_invite(
        &mut self,
        tx: TxId,
        mut req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if self.draining {
            let tag = self.new_tag();
            let mut resp = make_response(&req, 503, "Service Unavailable", Some(&tag));
            resp.headers.push("Retry-After", "30");
            self.tx.send_response(tx, resp, now);
            policy.event(
                CallEvent::Rejected {
                    status: 503,
                    reason: "Service Unavailable".into(),
                },
                now,
            );
            return;
        }
        // RFC 3261 §16.3 / §8.2: Max-Forwards 0 -> 483. trunkline is the request's target only
        // for OPTIONS, so every INVITE is on its way elsewhere.
        let max_forwards = req.max_forwards().unwrap_or(70);
        if max_forwards == 0 {
            self.reject(tx, &req, 483, "Too Many Hops", now, policy);
            return;
        }
        let (Some(from_na), Some(to_na), Some(call_id)) = (req.from(), req.to(), req.call_id())
        else {
            self.reject(tx, &req, 400, "Bad Request", now, policy);
            return;
        };
        // RFC 3261 §12.2.1.1 / RFC 4475 §3.4 (inv2543): an RFC 2543 peer sends no From tag; the
        // dialog is then identified by Call-ID alone (an empty tag), as §12 allows.
        let a_from_tag = from_na.tag().unwrap_or("").to_string();
        let call_id = call_id.to_string();
        // A retransmission is absorbed by the transaction layer; a second INVITE with the same
        // Call-ID and tag but a new branch (a merged request, RFC 3261 §8.2.2.2) gets 482.
        if self.call_of(&call_id, &a_from_tag).is_some() {
            self.reject(tx, &req, 482, "Loop Detected", now, policy);
            return;
        }
        let admitted = match self.admit_caller(tx, &mut req, from, now, policy) {
            Ok(a) => a,
            Err(status) => {
                if status != 0 {
                    policy.event(
                        CallEvent::Rejected {
                            status,
                            reason: reason_phrase(status).into(),
                        },
                        now,
                    );
                }
                return;
            }
        };
        let from_user = admitted.caller_user(&from_na);
        // Calls nobody vouches for (a stranger calling a registered phone: no trunk, no
        // credentials) hold relay ports and a ringing phone: a few at a time per source.
        // (Without a registrar that authenticates, the operator takes every source as it
        // comes, as a peer of the dial plan: no cap.)
        let early_source = (admitted.caller == Caller::Local).then(|| from.addr.ip());
        if let Some(ip) = early_source {
            if !self.early.room(&ip, self.cfg.caps.early_calls_per_source) {
                self.refuse_capped(tx, &req, now);
                policy.event(
                    CallEvent::Rejected {
                        status: 503,
                        reason: "Service Unavailable".into(),
                    },
                    now,
                );
                return;
            }
        }
        // The dial plan routes on the Request-URI's user: the field the authorization
        // decision was made on. A served domain: the location service decides, not the plan.
        let ruri_user = ruri_user(&req.uri);
        let outcome = match admitted.located {
            None => policy.route(&req, from, &ruri_user, &from_user, now),
            Some(Err(miss)) => miss,
            Some(Ok(targets)) => policy.route_registered(&req, from, targets, &from_user, now),
        };
        let (targets, to_user, from_user) = match outcome {
            RouteOutcome::Route {
                targets,
                to_user,
                from_user,
            } => (targets, to_user, from_user),
            refused => {
                self.refuse_route(tx, &req, refused, now, policy);
                return;
            }
        };
        if targets.is_empty() {
            self.reject(tx, &req, 404, "Not Found", now, policy);
            return;
        }
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.stats.calls_started += 1;
        let trunk = admitted.caller == Caller::Trunk;
        let parties = Parties {
            from_na: &from_na,
            to_na: &to_na,
            a_from_tag: &a_from_tag,
            from,
            trunk,
        };
        let mut call = self.new_call(id, tx, req, parties, targets, to_user, &from_user, now);
        call.early_source = early_source;
        if !self.offer_to_b(&mut call, tx, now, policy) {
            return;
        }
        if let Some(ip) = early_source {
            self.early.add(ip);
        }
        self.by_a
            .entry(call.a.call_id.clone())
            .or_default()
            .push((a_from_tag, id));
        self.by_b.insert(call.b.call_id.clone(), id);
        self.by_a_tx.insert(tx, id);
        self.calls.insert(id, call);
        self.send_b_invite(id, now, policy);
    }

    /// Answer a new INVITE the route refused (reject, no room, redirect).
    fn refuse_route(
        &mut self,
        tx: TxId,
        req: &Request,
        outcome: RouteOutcome,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        match outcome {
            RouteOutcome::Reject { code, reason } => {
                self.reject(tx, req, code, &reason, now, policy);
            }
            RouteOutcome::Unavailable { retry_after } => {
                let tag = self.new_tag();
                let mut resp = make_response(req, 503, "Service Unavailable", Some(&tag));
                resp.headers.push("Retry-After", retry_after.to_string());
                self.tx.send_response(tx, resp, now);
                policy.event(
                    CallEvent::Rejected {
                        status: 503,
                        reason: "Service Unavailable".into(),
                    },
                    now,
                );
            }
            RouteOutcome::Redirect { code, contacts } => {
                let tag = self.new_tag();
                let mut resp = make_response(req, code, reason_phrase(code), Some(&tag));
                for c in contacts {
                    resp.headers.push("Contact", format!("<{c}>"));
                }
                self.tx.send_response(tx, resp, now);
                policy.event(
                    CallEvent::Finished {
                        call: 0,
                        trunk: None,
                        status: code,
                        post_dial_delay: None,
                    },
                    now,
                );
            }
            RouteOutcome::Route { .. } => {}
        }
    }

    /// The call for leg A's INVITE `req`: leg A's dialog as the caller set it up, leg B's new
    /// (its own Call-ID, tags, CSeq: topology hiding), the route's targets.
    #[allow(clippy::too_many_arguments)]
    fn new_call(
        &mut self,
        id: CallId,
        tx: TxId,
        req: Request,
        p: Parties<'_>,
        targets: Vec<Target>,
        to_user: String,
        from_user: &str,
        now: Instant,
    ) -> Call {
        let (from_na, to_na, from) = (p.from_na, p.to_na, p.from);
        let call_id = req.call_id().unwrap_or_default().to_string();
        let a_from_tag = p.a_from_tag.to_string();
        let a_local_tag = self.new_tag();
        let a_contact = req
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| req.uri.clone());
        let a_route: Vec<String> = req
            .headers
            .get_all("Record-Route")
            .flat_map(crate::headers::split_comma_list)
            .map(|s| s.trim().to_string())
            .collect();
        let a = Dialog {
            call_id: call_id.clone(),
            local_tag: a_local_tag,
            remote_tag: Some(a_from_tag.clone()).filter(|t| !t.is_empty()),
            local_uri: without_tag(to_na),
            remote_uri: without_tag(from_na),
            remote_target: a_contact,
            route_set: a_route,
            peer: from,
            trunk: p.trunk,
            local_cseq: self.rand() as u32 & 0xffff,
            remote_cseq: req.cseq().map(|c| c.seq),
        };
        let first = targets[0].clone();
        let b_call_id = self.new_call_id();
        let b_tag = self.new_tag();
        let display = from_na
            .display
            .as_ref()
            .map(|d| format!("{} ", quote_display(d)))
            .unwrap_or_default();
        let our_host = self.our_host();
        let b = Dialog {
            call_id: b_call_id.clone(),
            local_tag: b_tag,
            remote_tag: None,
            local_uri: cat(&[&display, "<sip:", &user_at(from_user), our_host, ">"]),
            // Set (for the target being tried) by send_b_invite.
            remote_uri: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            peer: first.peer,
            trunk: first.trunk != REGISTERED,
            local_cseq: 1,
            remote_cseq: None,
        };
        let a_offer = if req.body.is_empty() {
            None
        } else {
            Some(req.body.clone())
        };
        Call {
            id,
            state: CallState::Proceeding,
            started: now,
            answered: None,
            pdd: None,
            a,
            a_invite_tx: Some(tx),
            a_tx: tx,
            a_invite: req,
            a_offer,
            b,
            b_invite_tx: None,
            b_invite: None,
            b_got_provisional: false,
            media_released: false,
            b_offer: None,
            targets,
            target_idx: 0,
            to_user,
            cancelled: false,
            b_ack: None,
            b_ack_pending: false,
            last_failure: None,
            a_2xx_tx: None,
            trunk: None,
            early_source: None,
        }
    }

    /// Rewrite leg A's offer for leg B, once (the same SDP serves every target); `false` when
    /// the media policy refused it (leg A answered, the call's media released).
    fn offer_to_b(
        &mut self,
        call: &mut Call,
        tx: TxId,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        if let Some(offer) = call.a_offer.clone() {
            match policy.media_offer(call.media_ref(), Leg::A, &offer, now) {
                Ok(sdp) => {
                    let ct = call
                        .a_invite
                        .headers
                        .get("Content-Type")
                        .unwrap_or("application/sdp")
                        .to_string();
                    call.b_offer = Some((ct, sdp));
                }
                Err(e) => {
                    let req = call.a_invite.clone();
                    let (code, reason, retry_after) = e.answer();
                    let tag = self.new_tag();
                    let mut resp = make_response(&req, code, reason, Some(&tag));
                    if let Some(ra) = retry_after {
                        resp.headers.push("Retry-After", ra.to_string());
                    }
                    self.tx.send_response(tx, resp, now);
                    policy.event(
                        CallEvent::Rejected {
                            status: code,
                            reason: reason.to_string(),
                        },
                        now,
                    );
                    policy.media_release(call.media_ref(), now);
                    return false;
                }
            }
        }
        true
    }

    /// Send (or re-send, on failover) leg B's INVITE to the current target.
    pub(super) fn send_b_invite(&mut self, id: CallId, now: Instant, policy: &mut dyn Policy) {
        let via;
        let contact;
        {
            let Some(call) = self.calls.get(&id) else {
                return;
            };
            let t = call.targets[call.target_idx].peer.transport;
            let _ = call;
            via = self.via_for(t);
            contact = self.contact_for(t);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let target = call.targets[call.target_idx].clone();
        let max_fwd = call.a_invite.max_forwards().unwrap_or(70).saturating_sub(1);
        call.b.peer = target.peer;
        call.b.trunk = target.trunk != REGISTERED;
        let user = user_at(&call.to_user);
        call.b.remote_uri = cat(&["<sip:", &user, &target.host, ">"]);
        call.b.remote_target = cat(&["sip:", &user, &target.host]);
        call.b.remote_tag = None;
        call.b.route_set.clear();
        call.b_got_provisional = false;
        let cseq = call.b.local_cseq;
        let mut h = Headers::with_capacity(16);
        h.push("Via", via);
        h.push("Max-Forwards", max_fwd.to_string());
        h.push(
            "From",
            cat(&[&call.b.local_uri, ";tag=", &call.b.local_tag]),
        );
        h.push("To", call.b.remote_uri.clone());
        h.push("Call-ID", call.b.call_id.clone());
        h.push("CSeq", cseq_value(cseq, "INVITE"));
        h.push("Contact", contact);
        copy_passthrough(&call.a_invite.headers, &mut h);
        let mut body = Vec::new();
        if let Some((ct, sdp)) = &call.b_offer {
            h.push("Content-Type", ct.clone());
            body = sdp.clone();
        }
        let req = Request {
            method: Method::Invite,
            uri: call.b.remote_target.clone(),
            headers: h,
            body,
        };
        call.trunk = Some(target.trunk.clone());
        let idx = call.target_idx;
        let txid = self.tx.send_request_ref(&req, target.peer, now);
        call.b_invite = Some(req);
        if let Some(call) = self.calls.get_mut(&id) {
            call.b_invite_tx = Some(txid);
        }
        self.owners
            .insert(txid, TxOwner::Call(id, ClientPurpose::Invite));
        self.deadlines.push(Deadline {
            at: std::cmp::Reverse(now + self.cfg.no_answer_failover),
            call: id,
            target_idx: idx,
            ringing: false,
        });
        policy.event(
            CallEvent::Attempt {
                call: id.raw(),
                trunk: target.trunk,
            },
            now,
        );
    }

    pub(super) fn on_cancel(
        &mut self,
        tx: TxId,
        req: &Request,
        cancels: Option<TxId>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(inv_tx) = cancels else {
            let tag = self.new_tag();
            let resp = make_response(req, 481, "Call/Transaction Does Not Exist", Some(&tag));
            self.tx.send_response(tx, resp, now);
            return;
        };
        // RFC 3261 §9.2: answer the CANCEL 200, then the INVITE 487.
        let call_id = self.by_a_tx.get(&inv_tx).copied().filter(|id| {
            self.calls
                .get(id)
                .is_some_and(|c| c.a_invite_tx == Some(inv_tx))
        });
        let Some(id) = call_id else {
            // A relayed re-INVITE or unknown: 200 for the CANCEL only.
            let resp = make_response(req, 200, "OK", None);
            self.tx.send_response(tx, resp, now);
            return;
        };
        let resp = make_response(req, 200, "OK", None);
        self.tx.send_response(tx, resp, now);
        self.abort_ringing(id, 487, "Request Terminated", None, now, policy);
    }

    /// Ends a call that is not answered yet: `status` to leg A now, CANCEL to leg B (once it
    /// may be sent), leg B's final answer is then ACKed and the call collected as after a
    /// CANCEL from A.
    pub(super) fn abort_ringing(
        &mut self,
        id: CallId,
        status: u16,
        reason: &str,
        retry_after: Option<u32>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state != CallState::Proceeding || call.cancelled {
            return;
        }
        call.cancelled = true;
        // The final answer to A now.
        let a_tag = call.a.local_tag.clone();
        let inv = call.a_invite.clone();
        if let Some(inv_tx) = call.a_invite_tx.take() {
            let mut resp = make_response(&inv, status, reason, Some(&a_tag));
            if let Some(ra) = retry_after {
                resp.headers.push("Retry-After", ra.to_string());
            }
            self.tx.send_response(inv_tx, resp, now);
        }
        // CANCEL leg B (RFC 3261 §9.1: only once a provisional response arrived; otherwise the
        // CANCEL is sent when one does, or the INVITE times out).
        let got_prov = self
            .calls
            .get(&id)
            .map(|c| c.b_got_provisional)
            .unwrap_or(false);
        if got_prov {
            self.send_b_cancel(id, now);
        }
        policy.event(
            CallEvent::Finished {
                call: id.raw(),
                trunk: self.calls.get(&id).and_then(|c| c.trunk.clone()),
                status,
                post_dial_delay: None,
            },
            now,
        );
    }

    pub(super) fn send_b_cancel(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(inv) = &call.b_invite else { return };
        let req = cancel_for(inv);
        let peer = call.b.peer;
        let t = self.tx.send_request(req, peer, now);
        self.owners
            .insert(t, TxOwner::Call(id, ClientPurpose::Cancel));
    }
}
