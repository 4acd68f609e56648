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
    /// The caller's header policy (a trunk's).
    headers: Option<Arc<HeaderPolicy>>,
}

/// Where the route sends a new call.
struct Routed {
    targets: Vec<Target>,
    to_user: String,
    from_user: String,
    from_display: Option<String>,
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
            rejected(policy, 503, "Service Unavailable", now);
            self.refused_invite(&req, from, 503, now, policy);
            return;
        }
        // RFC 3261 §16.3 / §8.2: Max-Forwards 0 -> 483. trunkline is the request's target only
        // for OPTIONS, so every INVITE is on its way elsewhere.
        let max_forwards = req.max_forwards().unwrap_or(70);
        if max_forwards == 0 {
            self.reject(tx, &req, from, 483, "Too Many Hops", now, policy);
            return;
        }
        let (Some(from_na), Some(to_na), Some(call_id)) = (req.from(), req.to(), req.call_id())
        else {
            self.reject(tx, &req, from, 400, "Bad Request", now, policy);
            return;
        };
        // RFC 3261 §12.2.1.1 / RFC 4475 §3.4 (inv2543): an RFC 2543 peer sends no From tag; the
        // dialog is then identified by Call-ID alone (an empty tag), as §12 allows.
        let a_from_tag = from_na.tag().unwrap_or("").to_string();
        // A retransmission is absorbed by the transaction layer; another INVITE naming a
        // live call's Call-ID and From tag is refused (a merged request 482, anything else
        // 400); one naming a call that is over starts a new call.
        if let Some((code, reason)) = self.ids_in_use(call_id, &a_from_tag, &req) {
            self.reject(tx, &req, from, code, reason, now, policy);
            return;
        }
        let admitted = match self.admit_caller(tx, &mut req, from, now, policy) {
            Ok(a) => a,
            Err(status) => {
                if status != 0 {
                    rejected(policy, status, reason_phrase(status), now);
                    self.refused_invite(&req, from, status, now, policy);
                }
                return;
            }
        };
        let parties = Parties {
            from_na: &from_na,
            to_na: &to_na,
            a_from_tag: &a_from_tag,
            from,
            trunk: admitted.caller == Caller::Trunk,
            headers: admitted.headers.clone(),
        };
        self.admit_invite(tx, req, parties, admitted, now, policy);
    }

    /// Why an INVITE without To tag that names the Call-ID and From tag of a live call is
    /// refused; `None` when no live call has them (calls that are over and have released
    /// their media do not count: a caller may try again on the same Call-ID, as after a
    /// redirect, RFC 3261 §8.1.3.4).
    fn ids_in_use(
        &self,
        call_id: &str,
        from_tag: &str,
        req: &Request,
    ) -> Option<(u16, &'static str)> {
        let cseq = req.cseq();
        let mut live = self.calls_of(call_id, from_tag).filter_map(|id| {
            let call = self.calls.get(&id)?;
            let over = matches!(&call.state, CallState::Terminating(e) if e.media_released);
            (!over).then_some(call)
        });
        let call = live.next()?;
        //= rfc3261#section-8.2.2.2
        //# If the request has no tag in the To header field, the UAS core MUST check the
        //# request against ongoing transactions.  If the From tag, Call-ID, and CSeq exactly
        //# match those associated with an ongoing transaction, but the request does not match
        //# that transaction (based on the matching rules in Section 17.2.3), the UAS core
        //# SHOULD generate a 482 (Loop Detected) response and pass it to the server
        //# transaction.
        let merged = match &call.state {
            CallState::Proceeding(at) => at.a_invite_tx.is_some() && at.a_invite.cseq() == cseq,
            _ => false,
        };
        if merged {
            return Some((482, "Loop Detected"));
        }
        // Not a merged request (another CSeq, or its transaction is over), and not in any
        // dialog (no To tag): a second call on a live call's identifiers. It is no part of
        // that call (in-dialog requests need our To tag as well), and the media relay knows
        // a call by Call-ID and From tag, so it cannot be another call either.
        Some((400, "Call-ID and From Tag in Use"))
    }

    /// Leg A's INVITE from an admitted caller: checked against the early-call cap, routed, and
    /// made a call.
    fn admit_invite(
        &mut self,
        tx: TxId,
        req: Request,
        parties: Parties<'_>,
        admitted: Admitted,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let from = parties.from;
        if self.a_invite_too_small(tx, &req, from, now, policy) {
            return;
        }
        let from_user = admitted.caller_user(parties.from_na);
        // Calls nobody vouches for (a stranger calling a registered phone: no trunk, no
        // credentials) hold relay ports and a ringing phone: a few at a time per source.
        // (Without a registrar that authenticates, the operator takes every source as it
        // comes, as a peer of the dial plan: no cap.) An IPv6 source counts by its /64.
        let early_source =
            (admitted.caller == Caller::Local).then(|| crate::source_key(from.addr.ip()));
        if let Some(ip) = early_source {
            if !self.early.room(&ip, self.cfg.caps.early_calls_per_source) {
                self.refuse_capped(tx, &req, now);
                rejected(policy, 503, "Service Unavailable", now);
                self.refused_invite(&req, from, 503, now, policy);
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
        let outcome = match outcome {
            RouteOutcome::Locate { user } => {
                self.locate_user(&req, from, &user, &from_user, now, policy)
            }
            other => other,
        };
        let route = match outcome {
            RouteOutcome::Route {
                targets,
                to_user,
                from_user,
                from_display,
            } => Routed {
                targets,
                to_user,
                from_user,
                from_display,
            },
            refused => {
                self.refuse_route(tx, &req, from, refused, now, policy);
                return;
            }
        };
        if route.targets.is_empty() {
            self.reject(tx, &req, from, 404, "Not Found", now, policy);
            return;
        }
        self.start_call(tx, req, parties, route, early_source, now, policy);
    }

    /// A new call for leg A's INVITE on `route` (not empty): leg A's offer rewritten for leg
    /// B, the call indexed, leg B's INVITE sent to the first target.
    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &mut self,
        tx: TxId,
        req: Request,
        parties: Parties<'_>,
        route: Routed,
        early_source: Option<std::net::IpAddr>,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.stats.calls_started += 1;
        let a_from_tag = parties.a_from_tag.to_string();
        let rel = self.rel_a_for(&req);
        let mut call = self.new_call(id, tx, req, parties, route, now);
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
        if let Some(rel) = rel {
            self.rel_a.insert(id, rel);
        }
        self.send_b_invite(id, now, policy);
    }

    /// Answer a new INVITE the route refused (reject, no room, redirect).
    fn refuse_route(
        &mut self,
        tx: TxId,
        req: &Request,
        from: Peer,
        outcome: RouteOutcome,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        match outcome {
            RouteOutcome::Reject { code, reason } => {
                self.reject(tx, req, from, code, &reason, now, policy);
            }
            RouteOutcome::Unavailable { retry_after } => {
                let tag = self.new_tag();
                let mut resp = make_response(req, 503, "Service Unavailable", Some(&tag));
                resp.headers.push("Retry-After", retry_after.to_string());
                self.tx.send_response(tx, resp, now);
                rejected(policy, 503, "Service Unavailable", now);
                self.refused_invite(req, from, 503, now, policy);
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
                self.refused_invite(req, from, code, now, policy);
            }
            RouteOutcome::Route { .. } => {}
            // Resolved before (`locate_user`); never left for here.
            RouteOutcome::Locate { .. } => {
                self.reject(tx, req, from, 404, "Not Found", now, policy);
            }
        }
    }

    /// The dial plan's `locate: true`: `user` (as the plan rewrote it) looked up in the
    /// location service of the first served domain; its bindings are the call's targets.
    fn locate_user(
        &mut self,
        req: &Request,
        from: Peer,
        user: &str,
        from_user: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> RouteOutcome {
        match self.locate_served(user, now, policy) {
            Ok(targets) => policy.route_registered(req, from, targets, from_user, now),
            Err(miss) => miss,
        }
    }

    /// `user` looked up in the location service of the first served domain: its bindings,
    /// or the refusal (404 without a registrar or such a user, 480 offline).
    pub(super) fn locate_served(
        &mut self,
        user: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Result<Vec<Target>, RouteOutcome> {
        let not_found = || RouteOutcome::Reject {
            code: 404,
            reason: "Not Found".into(),
        };
        let Some(domain) = policy
            .registrar(now)
            .and_then(|s| s.domains.first().cloned())
        else {
            return Err(not_found());
        };
        let uri = cat(&["sip:", &user_at(user), &domain]);
        self.locate(&uri, now, policy)
            .unwrap_or_else(|| Err(not_found()))
    }

    /// The call for leg A's INVITE `req`: leg A's dialog as the caller set it up, leg B's new
    /// (its own Call-ID, tags, CSeq: topology hiding), the route's targets.
    fn new_call(
        &mut self,
        id: CallId,
        tx: TxId,
        req: Request,
        p: Parties<'_>,
        route: Routed,
        now: Instant,
    ) -> Call {
        let a = self.a_dialog(&req, &p);
        let display = route
            .from_display
            .as_deref()
            .or(p.from_na.display.as_deref());
        let b = self.b_dialog(display, &route.from_user, &route.targets[0]);
        let caller = p.from_na.uri.user().unwrap_or_default();
        let callee = ruri_user(&req.uri);
        let log = cdr::CallLog::new(now, [caller, &callee], [&route.from_user, &route.to_user]);
        let a_offer = if req.body.is_empty() {
            None
        } else {
            Some(req.body.clone())
        };
        Call {
            id,
            a,
            b,
            a_tx: Some(tx),
            early_source: None,
            b_auth: None,
            b_trunk: None,
            old_b: None,
            forks: Vec::new(),
            log,
            state: CallState::Proceeding(Box::new(Attempt {
                started: now,
                pdd: None,
                a_invite_tx: Some(tx),
                a_invite: req,
                a_offer,
                b_offer: None,
                targets: route.targets,
                target_idx: 0,
                to_user: route.to_user,
                users: Vec::new(),
                followed: 0,
                b_rseq: Vec::new(),
                trunk: None,
                tx: None,
                invite: None,
                se_retries: 0,
                got_provisional: false,
                cancelled: false,
            })),
        }
    }

    /// Leg A's dialog as the caller's INVITE `req` set it up (RFC 3261 §12.1.1).
    fn a_dialog(&mut self, req: &Request, p: &Parties<'_>) -> Dialog {
        let call_id = req.call_id().unwrap_or_default().to_string();
        let local_tag = self.new_tag();
        let remote_target = dialog::remote_target_of(req);
        let route_set: Vec<String> = req
            .headers
            .get_all("Record-Route")
            .flat_map(crate::headers::split_comma_list)
            .map(|s| s.trim().to_string())
            .collect();
        Dialog {
            call_id,
            local_tag,
            remote_tag: Some(p.a_from_tag.to_string()).filter(|t| !t.is_empty()),
            local_uri: without_tag(p.to_na),
            remote_uri: without_tag(p.from_na),
            remote_target,
            route_set,
            peer: p.from,
            trunk: p.trunk,
            headers: p.headers.clone(),
            local_cseq: self.rand() as u32 & 0xffff,
            remote_cseq: req.cseq().map(|c| c.seq),
        }
    }

    /// Leg B's new dialog towards `first` (its own Call-ID, tags, CSeq: topology hiding); the
    /// target's URIs are set by [`B2bua::send_b_invite`].
    pub(super) fn b_dialog(
        &mut self,
        display: Option<&str>,
        from_user: &str,
        first: &Target,
    ) -> Dialog {
        let call_id = self.new_call_id();
        let local_tag = self.new_tag();
        let display = display
            .filter(|d| !d.is_empty())
            .map(|d| format!("{} ", quote_display(d)))
            .unwrap_or_default();
        let our_host = self.our_host(first.peer);
        Dialog {
            call_id,
            local_tag,
            remote_tag: None,
            local_uri: cat(&[&display, "<sip:", &user_at(from_user), our_host, ">"]),
            remote_uri: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            peer: first.peer,
            trunk: first.trunk != REGISTERED,
            headers: None,
            local_cseq: 1,
            remote_cseq: None,
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
        let Some(offer) = call.attempt().and_then(|a| a.a_offer.clone()) else {
            return true;
        };
        match policy.media_offer(call.media_ref(), Leg::A, &offer, now) {
            Ok(sdp) => {
                if let Some(at) = call.attempt_mut() {
                    let ct = at
                        .a_invite
                        .headers
                        .get("Content-Type")
                        .unwrap_or("application/sdp")
                        .to_string();
                    at.b_offer = Some((ct, sdp));
                }
                true
            }
            Err(e) => {
                let (code, reason, retry_after) = e.answer();
                let tag = self.new_tag();
                if let Some(at) = call.attempt() {
                    let mut resp = make_response(&at.a_invite, code, reason, Some(&tag));
                    if let Some(ra) = retry_after {
                        resp.headers.push("Retry-After", ra.to_string());
                    }
                    self.tx.send_response(tx, resp, now);
                }
                rejected(policy, code, reason, now);
                call.log.refused(code, now);
                policy.event(CallEvent::Record(Box::new(call.record(now))), now);
                policy.media_release(call.media_ref(), now);
                false
            }
        }
    }

    /// Leg B's offer again, for a target of the other IP family than the one it was made for
    /// (failover from an IPv6 trunk to an IPv4 one, say): the relay ports facing leg B move to
    /// that family and the SDP names its relay address (RFC 6157). A refusal keeps the offer.
    pub(super) fn reoffer_b(&mut self, id: CallId, now: Instant, policy: &mut dyn Policy) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some((peer, offer)) = call.attempt().and_then(|a| {
            let t = a.targets.get(a.target_idx)?;
            Some((t.peer, a.a_offer.clone()?))
        }) else {
            return;
        };
        call.b.peer = peer;
        if let Ok(sdp) = policy.media_offer(call.media_ref(), Leg::A, &offer, now) {
            if let Some((_, body)) = call.attempt_mut().and_then(|a| a.b_offer.as_mut()) {
                *body = sdp;
            }
        }
    }

    /// Send (or re-send, on failover) leg B's INVITE to the current target.
    pub(super) fn send_b_invite(&mut self, id: CallId, now: Instant, policy: &mut dyn Policy) {
        let Some((t, trunk)) = self
            .calls
            .get(&id)
            .and_then(Call::attempt)
            .and_then(|a| a.targets.get(a.target_idx))
            .map(|t| (t.peer, t.trunk.clone()))
        else {
            return;
        };
        let rel100 = self.b_100rel(&trunk, now, policy);
        let headers = (trunk != REGISTERED)
            .then(|| policy.header_policy(Some(&trunk), t, now))
            .flatten();
        let mut timer_h = Headers::with_capacity(3);
        self.b_timer_headers(&trunk, t, now, policy, &mut timer_h);
        let via = self.via_for(t);
        let contact = self.contact_for(t);
        let fallback = (t.transport == Transport::Udp)
            .then(|| policy.tcp_fallback(&trunk, t.addr, now))
            .flatten()
            .map(|addr| {
                let tcp = Peer {
                    transport: Transport::Tcp,
                    addr,
                };
                (tcp, self.via_for(tcp), self.contact_for(tcp))
            });
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Call {
            b,
            state: CallState::Proceeding(at),
            b_trunk,
            log,
            ..
        } = call
        else {
            return;
        };
        let Some(target) = at.targets.get(at.target_idx).cloned() else {
            return;
        };
        *b_trunk = Some(target.trunk.clone());
        log.attempt(&target.trunk);
        let max_fwd = at.a_invite.max_forwards().unwrap_or(70).saturating_sub(1);
        b.peer = target.peer;
        b.trunk = target.trunk != REGISTERED;
        b.headers = headers;
        let user = user_at(at.user_of(at.target_idx));
        b.remote_uri = cat(&["<sip:", &user, &target.host, ">"]);
        b.remote_target = cat(&["sip:", &user, &target.host]);
        b.remote_tag = None;
        b.route_set.clear();
        at.got_provisional = false;
        at.b_rseq.clear();
        let mut req = b_invite(b, at, max_fwd, (via, contact), rel100, &timer_h);
        let to = match fallback.and_then(|f| over_tcp_if_large(&mut req, f)) {
            Some(tcp) => {
                b.peer = tcp;
                tcp
            }
            None => target.peer,
        };
        at.trunk = Some(target.trunk.clone());
        let txid = self.tx.send_request_ref(&req, to, now);
        at.invite = Some(req);
        at.tx = Some(txid);
        self.owners
            .insert(txid, TxOwner::Call(id, ClientPurpose::Invite));
        self.deadlines.push(Deadline {
            at: std::cmp::Reverse(now + self.cfg.no_answer_failover),
            call: id,
            target_idx: at.target_idx,
            kind: DeadlineKind::NoAnswer,
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
                .and_then(Call::attempt)
                .is_some_and(|a| a.a_invite_tx == Some(inv_tx))
        });
        let Some(id) = call_id else {
            // A relayed re-INVITE or unknown: 200 for the CANCEL only.
            let resp = make_response(req, 200, "OK", None);
            self.tx.send_response(tx, resp, now);
            return;
        };
        let resp = make_response(req, 200, "OK", None);
        self.tx.send_response(tx, resp, now);
        if let Some(c) = self.calls.get_mut(&id) {
            c.log.hangup(Hangup::Caller, now);
        }
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
        let Call {
            a,
            state: CallState::Proceeding(at),
            log,
            ..
        } = call
        else {
            return;
        };
        if at.cancelled {
            return;
        }
        at.cancelled = true;
        log.refused(status, now);
        // The final answer to A now.
        if let Some(inv_tx) = at.a_invite_tx.take() {
            let mut resp = make_response(&at.a_invite, status, reason, Some(&a.local_tag));
            if let Some(ra) = retry_after {
                resp.headers.push("Retry-After", ra.to_string());
            }
            self.tx.send_response(inv_tx, resp, now);
        }
        // CANCEL leg B (RFC 3261 §9.1: only once a provisional response arrived; otherwise the
        // CANCEL is sent when one does, or the INVITE times out).
        let trunk = at.trunk.clone();
        if at.got_provisional {
            self.send_b_cancel(id, now);
        }
        policy.event(
            CallEvent::Finished {
                call: id.raw(),
                trunk,
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
        let Some(inv) = call.attempt().and_then(|a| a.invite.as_ref()) else {
            return;
        };
        let req = cancel_for(inv);
        let peer = call.b.peer;
        let t = self.tx.send_request(req, peer, now);
        self.owners
            .insert(t, TxOwner::Call(id, ClientPurpose::Cancel));
    }
}

/// Leg B's INVITE in dialog state `b` for the attempt `at`: our Via and Contact, the
/// 100rel and session-timer headers of the trunk, and what crosses from leg A's INVITE.
fn b_invite(
    b: &Dialog,
    at: &Attempt,
    max_fwd: u32,
    (via, contact): (String, String),
    rel100: Option<(&'static str, &'static str)>,
    timer_h: &Headers,
) -> Request {
    let mut h = Headers::with_capacity(16);
    h.push("Via", via);
    h.push("Max-Forwards", max_fwd.to_string());
    h.push("From", cat(&[&b.local_uri, ";tag=", &b.local_tag]));
    h.push("To", b.remote_uri.clone());
    h.push("Call-ID", b.call_id.clone());
    h.push("CSeq", cseq_value(b.local_cseq, "INVITE"));
    h.push("Contact", contact);
    if let Some((name, value)) = rel100 {
        h.push(name, value);
    }
    for x in timer_h.iter() {
        h.push(&x.name, x.value.clone());
    }
    Crossing::checked(b).copy(&at.a_invite.headers, &mut h, true);
    let body = at.b_offer.as_ref().map_or_else(Vec::new, |(ct, sdp)| {
        h.push("Content-Type", ct.clone());
        sdp.clone()
    });
    Request {
        method: Method::Invite,
        uri: b.remote_target.clone(),
        headers: h,
        body,
    }
}

//= rfc3261#section-18.1.1
//# If a request is within 200 bytes of the path MTU, or if it is larger than 1300 bytes
//# and the path MTU is unknown, the request MUST be sent using an RFC 2914 [43]
//# congestion controlled transport protocol, such as TCP.
/// A request larger than [`MESSAGE_UDP_MAX`] moves to the trunk's TCP address (its Via and
/// Contact with it); the TCP peer when it did.
fn over_tcp_if_large(
    req: &mut Request,
    (tcp, via, contact): (Peer, String, String),
) -> Option<Peer> {
    if SipMessage::Request(req.clone()).to_bytes().len() <= MESSAGE_UDP_MAX {
        return None;
    }
    req.headers.set("Via", via);
    req.headers.set("Contact", contact);
    Some(tcp)
}
