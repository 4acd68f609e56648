//! In-dialog requests (RFC 3261 §12.2): matched to a call and leg on Call-ID and both tags,
//! relayed to the other leg; ACK, BYE, and the end of a call.

use super::*;

/// Dialog state of one leg, as seen from trunkline: a call's two legs and a subscription's two
/// legs are each one of these (RFC 3261 §12: Call-ID, both tags, both URIs, remote target,
/// route set, CSeqs).
#[derive(Clone, Debug)]
pub(super) struct Dialog {
    pub(super) call_id: String,
    pub(super) local_tag: String,
    pub(super) remote_tag: Option<String>,
    /// The From/To as sent by us on this leg, without tags (name-addr text).
    pub(super) local_uri: String,
    pub(super) remote_uri: String,
    /// Remote target (Contact of the peer), the Request-URI of in-dialog requests.
    pub(super) remote_target: String,
    /// Route set (from Record-Route), already in the order to put in Route headers.
    pub(super) route_set: Vec<String>,
    pub(super) peer: Peer,
    /// The peer is a configured trunk: its in-dialog requests are taken from its address only.
    pub(super) trunk: bool,
    /// The peer's header policy (a trunk's `headers:`/`identity:`); `None`: the defaults.
    pub(super) headers: Option<Arc<HeaderPolicy>>,
    pub(super) local_cseq: u32,
    pub(super) remote_cseq: Option<u32>,
}

impl Dialog {
    /// May the peer assert identities (RFC 3325)? A trunk unless its policy says no; nobody else.
    pub(super) fn trusted(&self) -> bool {
        match &self.headers {
            Some(p) => p.trusted,
            None => self.trunk,
        }
    }

    /// RFC 3261 §12.2.2: a request is in this dialog when its Call-ID (matched by the caller),
    /// its To tag (ours) and its From tag (the peer's) all match; and a trunk's leg takes
    /// requests from the trunk's address only (a stranger who learnt the identifiers cannot
    /// end or redirect its calls).
    pub(super) fn accepts(&self, from_tag: &str, to_tag: &str, from: Peer) -> bool {
        self.local_tag == to_tag
            && self.remote_tag.as_deref().unwrap_or("") == from_tag
            && (!self.trunk || from.addr.ip() == self.peer.addr.ip())
    }

    /// The 2xx to our INVITE on this leg (RFC 3261 §12.1.2): the peer's tag, its Contact as
    /// remote target, the route set from its Record-Route.
    pub(super) fn learn_answer(&mut self, resp: &Response) {
        if let Some(tag) = resp.headers.get("To").and_then(tag_param) {
            self.remote_tag = Some(tag.to_string());
        }
        if let Some(c) = resp
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
        {
            self.remote_target = c.uri.to_string();
        }
        self.route_set = uac_route_set(&resp.headers);
    }

    /// A request in this dialog (RFC 3261 §12.2.1.1): Request-URI the remote target, Route
    /// the route set, both tags, the Call-ID, our next CSeq (an ACK repeats the current one),
    /// `via` on top, `contact` on target refresh requests.
    pub(super) fn request(&mut self, method: Method, via: String, contact: String) -> Request {
        if method != Method::Ack {
            self.local_cseq = self.local_cseq.wrapping_add(1);
        }
        let mut h = Headers::with_capacity(16);
        h.push("Via", via);
        h.push("Max-Forwards", "70");
        for r in &self.route_set {
            h.push("Route", r.clone());
        }
        h.push("From", cat(&[&self.local_uri, ";tag=", &self.local_tag]));
        match &self.remote_tag {
            Some(t) => h.push("To", cat(&[&self.remote_uri, ";tag=", t])),
            None => h.push("To", self.remote_uri.clone()),
        }
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", cseq_value(self.local_cseq, method.as_str()));
        if matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Refer
        ) {
            h.push("Contact", contact);
        }
        Request {
            method,
            uri: self.remote_target.clone(),
            headers: h,
            body: Vec::new(),
        }
    }
}

/// The remote target a dialog-creating request names in its Contact (its Request-URI when it
/// names none).
pub(super) fn remote_target_of(req: &Request) -> String {
    req.headers
        .get("Contact")
        .and_then(|c| NameAddr::parse(c).ok())
        .map(|c| c.uri.to_string())
        .unwrap_or_else(|| req.uri.clone())
}

/// A UAC's route set from the Record-Route of the response that made the dialog: in reverse
/// order (RFC 3261 §12.1.2).
pub(super) fn uac_route_set(h: &Headers) -> Vec<String> {
    let mut rr: Vec<String> = h
        .get_all("Record-Route")
        .flat_map(crate::headers::split_comma_list)
        .map(|s| s.trim().to_string())
        .collect();
    rr.reverse();
    rr
}

/// What the body of a response to a relayed request is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SdpRole {
    /// Not SDP of an INVITE or UPDATE: relayed as it is.
    Opaque,
    Answer,
    /// The offer of a 2xx to a re-INVITE without SDP (`reoffer.rs`).
    Offer,
}

/// The body of a relayed response for the origin leg.
enum RelayedBody {
    Empty,
    Body(Vec<u8>),
    /// A 2xx whose SDP answer the media policy refused: the origin leg gets 488 instead.
    Refused,
}

impl B2bua {
    pub(super) fn on_ack(
        &mut self,
        req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call_id) = req.call_id() else { return };
        let Some(id) = self.lookup_dialog(&req, call_id, from) else {
            return;
        };
        let Some((id, leg)) = Some(id) else { return };
        if self.origin_acked(id, leg, &req, now, policy) {
            self.mark_replica(id);
            return;
        }
        if leg != Leg::A {
            return;
        }
        // Late offer: A's ACK carries the answer to B's offer (from B's 2xx).
        let pending = self
            .calls
            .get(&id)
            .and_then(Call::handshake)
            .is_some_and(|h| h.b_ack_pending);
        if pending {
            let body = if req.body.is_empty() {
                None
            } else {
                let Some(call) = self.calls.get(&id) else {
                    return;
                };
                match policy.media_answer(call.media_ref(), Leg::A, &req.body, now) {
                    Ok(b) => Some(b),
                    Err(_) => {
                        // Leg A's answer (in its ACK) to leg B's offer cannot be taken: the
                        // ACK cannot be refused, so the call is ended (BYE on both legs).
                        self.stats.media_failures += 1;
                        self.ack_pending_done(id);
                        self.send_b_ack(id, None, now);
                        self.end_both(id, now, policy);
                        return;
                    }
                }
            };
            self.ack_pending_done(id);
            self.send_b_ack(id, body, now);
            self.mark_replica(id);
        }
    }

    /// Leg A's ACK came (late offer): leg B is ACKed now.
    fn ack_pending_done(&mut self, id: CallId) {
        if let Some(h) = self.calls.get_mut(&id).and_then(Call::handshake_mut) {
            h.b_ack_pending = false;
        }
    }

    /// Which call and leg an in-dialog message from `from` belongs to: Call-ID, both tags and,
    /// for a trunk's leg, the source must match ([`Dialog::accepts`]).
    pub(super) fn lookup_dialog(
        &self,
        req: &Request,
        call_id: &str,
        from: Peer,
    ) -> Option<(CallId, Leg)> {
        let from_tag = req.headers.get("From").map(tag_param)?.unwrap_or("");
        let to_tag = req.headers.get("To").and_then(tag_param).unwrap_or("");
        if let Some(id) = self.by_b.get(call_id) {
            let d = self.calls.get(id)?.leg(Leg::B);
            return d.accepts(from_tag, to_tag, from).then_some((*id, Leg::B));
        }
        // Leg A: the Call-ID and From tag are the caller's; of the calls held on them (one
        // that is over may sit beside a new one), the one whose dialog has our To tag.
        self.calls_of(call_id, from_tag)
            .find(|id| {
                self.calls
                    .get(id)
                    .is_some_and(|c| c.a.accepts(from_tag, to_tag, from))
            })
            .map(|id| (id, Leg::A))
    }

    pub(super) fn on_in_dialog(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        _to_tag: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(call_id) = req.call_id().map(str::to_string) else {
            return;
        };
        let Some((id, leg)) = self.lookup_dialog(&req, &call_id, from) else {
            if self.old_leg_request(tx, &req, &call_id, from, now) {
                return;
            }
            let resp = make_response(&req, 481, "Call/Transaction Does Not Exist", None);
            self.tx.send_response(tx, resp, now);
            *self.stats.rejected.entry("no_dialog").or_insert(0) += 1;
            return;
        };
        if !self.take_in_dialog(tx, &req, id, leg, from, now) {
            return;
        }
        self.mark_replica(id);
        match req.method {
            Method::Bye if self.transferor_bye(tx, &req, id, leg, now) => {}
            Method::Bye => {
                let resp = make_response(&req, 200, "OK", None);
                self.tx.send_response(tx, resp, now);
                let state = self
                    .calls
                    .get(&id)
                    .map(|c| (c.is_confirmed(), c.attempt().is_some()));
                match state {
                    Some((true, _)) => {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.log.hangup(hangup_of(leg), now);
                        }
                        self.send_bye(id, leg.other(), now);
                        self.finish_confirmed(id, now, policy);
                    }
                    Some((_, true)) if leg == Leg::A => {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.log.hangup(Hangup::Caller, now);
                        }
                        // BYE on A's early dialog (RFC 3261 §15.1.2): the INVITE is answered
                        // 487 Request Terminated, and leg B is cancelled as for a CANCEL.
                        self.abort_ringing(id, 487, "Request Terminated", None, now, policy);
                    }
                    _ => {}
                }
            }
            // Reliable provisionals are per leg (`prack.rs`): leg A's PRACKs are answered here.
            Method::Prack if leg == Leg::A => self.on_a_prack(tx, &req, id, now),
            Method::Invite if self.reinvite_glare(tx, &req, id, leg, now) => {}
            Method::Invite if self.transfer_glare(tx, &req, id, leg, now) => {}
            Method::Refer if self.refer_handled(tx, &req, id, leg, now, policy) => {}
            Method::Refer if self.refer_refused(tx, &req, id, leg, now, policy) => {}
            Method::Invite | Method::Update
                if self.peer_refresh(tx, &req, id, leg, now, policy) => {}
            Method::Info if self.info_dtmf(tx, &req, id, leg, now, policy) => {}
            _ => self.relay_in_dialog(tx, req, id, leg, now, policy),
        }
    }

    /// An in-dialog request taken into leg `leg`'s dialog state: its CSeq (a lower one than
    /// the last is refused 500: false), and for a target refresh its Contact (and a phone's new
    /// address).
    fn take_in_dialog(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        from: Peer,
        now: Instant,
    ) -> bool {
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        if let Some(call) = self.calls.get_mut(&id) {
            let d = call.leg_mut(leg);
            if let Some(prev) = d.remote_cseq {
                //= rfc3261#section-12.2.2
                //# If the remote sequence number was not empty, but the sequence number of
                //# the request is lower than the remote sequence number, the request is out
                //# of order and MUST be rejected with a 500 (Server Internal Error) response.
                // Only lower: a BYE, re-INVITE, UPDATE or INFO that repeats the last number
                // (on a new transaction; a retransmission never gets here) is taken.
                if seq < prev {
                    let resp = make_response(req, 500, "Server Internal Error", None);
                    self.tx.send_response(tx, resp, now);
                    return false;
                }
            }
            d.remote_cseq = Some(seq);
            // RFC 3261 §12.2.2: "When a UAS receives a target refresh request, it MUST replace
            // the dialog's remote target URI with the URI from the Contact header field in
            // that request, if present." A phone's leg also moves to where the refresh came
            // from (its NAT mapping or connection may have changed); nothing else moves a leg.
            if matches!(req.method, Method::Invite | Method::Update) {
                if let Some(c) = req
                    .headers
                    .get("Contact")
                    .and_then(|c| NameAddr::parse(c).ok())
                {
                    d.remote_target = c.uri.to_string();
                    if !d.trunk {
                        d.peer = from;
                    }
                }
            }
        }
        true
    }

    /// Build an in-dialog request on `leg` with our dialog state.
    pub(super) fn dialog_request(
        &mut self,
        id: CallId,
        leg: Leg,
        method: Method,
    ) -> Option<(Request, Peer)> {
        let to = self.calls.get(&id)?.leg(leg).peer;
        let via = self.via_for(to);
        let contact = self.contact_for(to);
        self.mark_replica(id);
        let d = self.calls.get_mut(&id)?.leg_mut(leg);
        Some((d.request(method, via, contact), d.peer))
    }

    pub(super) fn send_bye(&mut self, id: CallId, leg: Leg, now: Instant) {
        if leg == Leg::A && self.holds_2xx(id) {
            // Leg A has only an early dialog (its 2xx is held, `prack.rs`): it gets a final
            // answer to its INVITE from `finish_confirmed` instead.
            return;
        }
        if let Some((req, peer)) = self.dialog_request(id, leg, Method::Bye) {
            let t = self.tx.send_request_ref(&req, peer, now);
            self.owners.insert(t, TxOwner::Call(id, ClientPurpose::Bye));
            if leg == Leg::B {
                self.keep_for_auth(t, id, req, None);
            }
        }
    }

    pub(super) fn send_b_ack(&mut self, id: CallId, body: Option<Vec<u8>>, _now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let seq = call.handshake().map_or(1, |h| h.b_invite_cseq);
        let Some(ack) = self.send_ack(id, Leg::B, seq, body) else {
            return;
        };
        if let Some(ts) = self.calls.get_mut(&id).and_then(Call::timers_mut) {
            ts.sent_sdp(Leg::B, &ack.body);
        }
        if let Some(h) = self.calls.get_mut(&id).and_then(Call::handshake_mut) {
            h.b_ack = Some(ack);
        }
    }

    /// Send the ACK of `leg`'s INVITE with CSeq `seq` (with `body`, an SDP answer, when
    /// given) in the leg's dialog; the ACK, for its 2xx's retransmissions.
    pub(super) fn send_ack(
        &mut self,
        id: CallId,
        leg: Leg,
        seq: u32,
        body: Option<Vec<u8>>,
    ) -> Option<Request> {
        let (mut ack, peer) = self.dialog_request(id, leg, Method::Ack)?;
        ack.headers.set("CSeq", cseq_value(seq, "ACK"));
        if let Some(b) = body {
            ack.headers.push("Content-Type", "application/sdp");
            ack.body = b;
        }
        let msg = SipMessage::Request(ack);
        self.tx.send_stateless(&msg, peer);
        match msg {
            SipMessage::Request(ack) => Some(ack),
            SipMessage::Response(_) => None,
        }
    }

    pub(super) fn relay_in_dialog(
        &mut self,
        tx: TxId,
        req: Request,
        id: CallId,
        from_leg: Leg,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let to_leg = from_leg.other();
        let Some((mut out, peer)) = self.dialog_request(id, to_leg, req.method.clone()) else {
            return;
        };
        if let Some(c) = self.calls.get(&id) {
            let crossing = Crossing::between(c.leg(from_leg), c.leg(to_leg));
            crossing.copy(&req.headers, &mut out.headers, true);
        }
        if !req.body.is_empty() {
            let is_sdp = req
                .headers
                .get("Content-Type")
                .map(|c| c.to_ascii_lowercase().starts_with("application/sdp"))
                .unwrap_or(false);
            let body = if is_sdp && matches!(req.method, Method::Invite | Method::Update) {
                let Some(call) = self.calls.get(&id) else {
                    return;
                };
                match policy.media_offer(call.media_ref(), from_leg, &req.body, now) {
                    Ok(b) => b,
                    Err(e) => {
                        // The dialog goes on unchanged (RFC 3261 §14.2: a refused re-INVITE
                        // leaves the session as it was).
                        let (code, reason, retry_after) = e.answer();
                        let mut resp = make_response(&req, code, reason, None);
                        if let Some(ra) = retry_after {
                            resp.headers.push("Retry-After", ra.to_string());
                        }
                        self.tx.send_response(tx, resp, now);
                        return;
                    }
                }
            } else {
                req.body.clone()
            };
            if let Some(ct) = req.headers.get("Content-Type") {
                out.headers.push("Content-Type", ct.to_string());
            }
            out.body = body;
        }
        if matches!(req.method, Method::Invite | Method::Update) {
            self.relay_timer_headers(id, to_leg, &mut out);
        }
        if req.method == Method::Refer {
            self.hide_refer(id, to_leg, &mut out);
        }
        self.server.insert(tx, (id, from_leg));
        let method = req.method.clone();
        let t = self.tx.send_request_ref(&out, peer, now);
        if method == Method::Invite {
            // A re-INVITE is answered at once (no ringing): one still pending after 64·T1
            // (even after a provisional) ends as a timeout, answered 408 on the origin leg.
            self.tx.guard_invite(t, now);
            if let Some(r) = self.calls.get_mut(&id).and_then(Call::reoffer_mut) {
                r.sent_invite(to_leg, t);
            }
        }
        self.owners.insert(
            t,
            TxOwner::Call(
                id,
                ClientPurpose::Relay {
                    server_tx: tx,
                    method,
                },
            ),
        );
        // Keep the original request for building the response on the origin leg.
        self.relayed_requests.insert(tx, req);
        if to_leg == Leg::B {
            self.keep_for_auth(t, id, out, Some((policy, now)));
        }
    }

    pub(super) fn on_relay_response(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if self.b_request_challenged(tx, id, &resp, now, policy) {
            return;
        }
        let Some((_, ClientPurpose::Relay { server_tx, method })) = self.owners.call(&tx) else {
            return;
        };
        let server_tx = *server_tx;
        let method = method.clone();
        self.mark_replica(id);
        let Some(&(_, from_leg)) = self.server.get(&server_tx) else {
            return;
        };
        let Some(orig) = self.relayed_requests.get(&server_tx).cloned() else {
            return;
        };
        if resp.status == 100 {
            return;
        }
        let to_leg = from_leg.other();
        let ok = (200..300).contains(&resp.status);
        if ok {
            // Target refresh from the other leg's 2xx.
            if let Some(c) = resp
                .headers
                .get("Contact")
                .and_then(|c| NameAddr::parse(c).ok())
            {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.leg_mut(to_leg).remote_target = c.uri.to_string();
                }
            }
        }
        // An offerless re-INVITE answered with an offer: the offer goes to the origin leg, whose
        // ACK brings the answer (`reoffer.rs`).
        let offerless = method == Method::Invite && ok && orig.body.is_empty();
        let sdp = match (&method, offerless) {
            (Method::Invite | Method::Update, false) => SdpRole::Answer,
            (Method::Invite, true) => SdpRole::Offer,
            _ => SdpRole::Opaque,
        };
        let Some(body) = self.relayed_body(id, to_leg, &resp, sdp, now, policy) else {
            return;
        };
        let local_tag = self
            .calls
            .get(&id)
            .map(|c| c.leg(from_leg).local_tag.clone());
        let refused = matches!(body, RelayedBody::Refused);
        let mut out = match body {
            RelayedBody::Refused => {
                make_response(&orig, 488, "Not Acceptable Here", local_tag.as_deref())
            }
            RelayedBody::Empty => self.relayed_response(id, from_leg, &orig, &method, &resp, None),
            RelayedBody::Body(b) => {
                self.relayed_response(id, from_leg, &orig, &method, &resp, Some(b))
            }
        };
        if method == Method::Invite && ok {
            let seq = resp.cseq().map(|c| c.seq).unwrap_or(0);
            if offerless && !refused && !resp.body.is_empty() {
                self.await_origin_answer(id, to_leg, seq, server_tx);
            } else {
                // ACK the other leg's 2xx ourselves; the origin's ACK is absorbed.
                self.ack_reinvite(id, to_leg, seq, None);
            }
        }
        if matches!(method, Method::Invite | Method::Update) && ok && !refused {
            self.relay_refreshed(id, from_leg, &orig, &resp, &mut out, now, policy);
        }
        if method == Method::Invite && ok && !refused {
            self.tx.send_2xx_reliably(server_tx, out, now);
        } else {
            self.tx.send_response(server_tx, out, now);
        }
        if resp.status >= 200 {
            self.owners.remove(&tx);
            self.server.remove(&server_tx);
            self.relayed_requests.remove(&server_tx);
        }
    }

    /// The body of the other leg's response to a relayed request, as the origin leg gets it
    /// (SDP through the media policy, as `sdp` says it is); `None` when the call is gone.
    fn relayed_body(
        &mut self,
        id: CallId,
        to_leg: Leg,
        resp: &Response,
        sdp: SdpRole,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<RelayedBody> {
        if resp.body.is_empty() {
            return Some(RelayedBody::Empty);
        }
        if sdp == SdpRole::Opaque {
            return Some(RelayedBody::Body(resp.body.clone()));
        }
        let call = self.calls.get(&id)?;
        let taken = if sdp == SdpRole::Offer {
            policy
                .media_offer(call.media_ref(), to_leg, &resp.body, now)
                .map_err(|e| e.to_string())
        } else {
            policy.media_answer(call.media_ref(), to_leg, &resp.body, now)
        };
        Some(match taken {
            Ok(b) => RelayedBody::Body(b),
            Err(_) => {
                // The other leg's answer cannot be taken: the offer ends with 488 on the
                // leg that made it (its session stays as it was, RFC 3261 §14.2).
                self.stats.media_failures += 1;
                if (200..300).contains(&resp.status) {
                    RelayedBody::Refused
                } else {
                    RelayedBody::Empty
                }
            }
        })
    }

    /// The origin leg's response to a relayed request, from the other leg's `resp`.
    fn relayed_response(
        &self,
        id: CallId,
        from_leg: Leg,
        orig: &Request,
        method: &Method,
        resp: &Response,
        body: Option<Vec<u8>>,
    ) -> Response {
        let call = self.calls.get(&id);
        let local_tag = call.map(|c| c.leg(from_leg).local_tag.as_str());
        let mut out = make_response(orig, resp.status, &resp.reason, local_tag);
        if (101..300).contains(&resp.status) && matches!(method, Method::Invite | Method::Update) {
            let contact = match call {
                Some(c) => self.contact_for(c.leg(from_leg).peer),
                None => self.local_contact[0][Transport::Udp as usize].clone(),
            };
            out.headers.push("Contact", contact);
        }
        match call {
            Some(c) => Crossing::between(c.leg(from_leg.other()), c.leg(from_leg)).copy(
                &resp.headers,
                &mut out.headers,
                false,
            ),
            None => copy_passthrough(&resp.headers, &mut out.headers),
        }
        if let Some(b) = body {
            if let Some(ct) = resp.headers.get("Content-Type") {
                out.headers.push("Content-Type", ct.to_string());
            }
            out.body = b;
        }
        out
    }

    /// End call `id` on both legs (BYE to each) and finish it.
    pub(super) fn end_both(&mut self, id: CallId, now: Instant, policy: &mut dyn Policy) {
        self.send_bye(id, Leg::A, now);
        self.send_bye(id, Leg::B, now);
        self.finish_confirmed(id, now, policy);
    }

    pub(super) fn finish_confirmed(&mut self, id: CallId, now: Instant, policy: &mut dyn Policy) {
        self.drop_held_2xx(id, now);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.is_confirmed() {
            // Whoever did not say otherwise: a timer (no ACK, a dead peer).
            call.log.hangup(Hangup::Timeout, now);
            if let Some(CallState::Confirmed(e)) = call.end() {
                policy.event(
                    CallEvent::Ended {
                        call: id.raw(),
                        duration: now.saturating_duration_since(e.answered),
                    },
                    now,
                );
                if let Some(t) = e.transfer {
                    self.transfer_abandoned(id, *t, now, policy);
                }
            }
        }
        self.maybe_collect_with_media(id, now, policy);
    }

    pub(super) fn maybe_collect_with_media(
        &mut self,
        id: CallId,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if let Some(call) = self.calls.get_mut(&id) {
            let release = match &mut call.state {
                CallState::Terminating(e) if !e.media_released => {
                    e.media_released = true;
                    true
                }
                _ => false,
            };
            if release {
                policy.event(CallEvent::Record(Box::new(call.record(now))), now);
                policy.media_release(call.media_ref(), now);
            }
        }
        self.maybe_collect(id);
    }

    /// Forget a terminated call once none of its client transactions is pending.
    pub(super) fn maybe_collect(&mut self, id: CallId) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if !call.is_terminating() {
            return;
        }
        if self.owners.has_call(id) {
            return;
        }
        if let Some(call) = self.calls.remove(&id) {
            self.forget_replica(id);
            if let Some(ip) = call.early_source {
                self.early.remove(&ip);
            }
            let tag = call.a.remote_tag.unwrap_or_default();
            if let Some(list) = self.by_a.get_mut(&call.a.call_id) {
                list.retain(|(t, cid)| !(*t == tag && *cid == id));
                if list.is_empty() {
                    self.by_a.remove(&call.a.call_id);
                }
            }
            self.by_b.remove(&call.b.call_id);
            if let Some(old) = &call.old_b {
                self.by_b.remove(&old.call_id);
            }
            if let Some(tx) = call.a_tx {
                self.by_a_tx.remove(&tx);
            }
            self.rel_a.remove(&id);
        }
    }
}

/// Who hung up when leg `leg` sent BYE.
fn hangup_of(leg: Leg) -> Hangup {
    match leg {
        Leg::A => Hangup::Caller,
        Leg::B => Hangup::Callee,
    }
}
