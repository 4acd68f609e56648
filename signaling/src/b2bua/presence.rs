//! Event subscriptions relayed through the B2BUA (RFC 6665 SUBSCRIBE/NOTIFY; presence is the
//! `presence` package of RFC 3856, but any event package passes): the watcher's subscription
//! on leg A and trunkline's own on leg B are two dialogs, topology hidden like a call's.
//!
//! * An out-of-dialog SUBSCRIBE is routed like a MESSAGE (location service, else the dial
//!   plan) and placed again on leg B; leg B's final answer goes back to the watcher.
//! * In either dialog, SUBSCRIBE (refresh, `Expires: 0` to end) and NOTIFY are relayed to the
//!   other dialog with its own tags, CSeq and Call-ID; their final answers come back.
//! * A NOTIFY may come before the SUBSCRIBE's 2xx (RFC 6665 section 4.1.2.4): it establishes
//!   leg B's dialog.
//! * The pair ends with a NOTIFY `Subscription-State: terminated`, a 481 from either side, or
//!   its expiry (the last `Expires` or `expires=` seen, plus 32 s) without a refresh.

use super::*;
use std::cmp::Reverse;

/// A subscription's number in the core, handed out in sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct SubId(pub(super) u64);

pub(super) struct Subscription {
    a: Dialog,
    pub(super) b: Dialog,
    /// The watcher's initial SUBSCRIBE, until leg B's final answer to it.
    initial: Option<(TxId, Request)>,
    expires_at: Instant,
    /// What it counts against (`caps`): subscriptions from sources that are not trunks.
    counted: Option<super::caps::SubCounted>,
}

/// What a client transaction of a subscription is for.
pub(super) enum SubClient {
    /// Leg B's initial SUBSCRIBE.
    Initial(SubId),
    /// A request relayed from the other side: its server transaction and request.
    Relay {
        sub: SubId,
        server_tx: TxId,
        orig: Request,
        /// A NOTIFY ending the subscription: drop the pair once it is answered.
        ends: bool,
    },
}

/// Grace after the subscription's expiry before the pair is dropped (64*T1).
const GRACE: Duration = Duration::from_secs(32);
/// `Expires` when a SUBSCRIBE names none (RFC 6665 section 4.1.2.1 leaves it to the package;
/// RFC 3856 section 6.4: 3600 s for presence).
const DEFAULT_EXPIRES: u64 = 3600;
/// Longest lifetime accepted from the wire (a day): a subscription never outlives it unrefreshed.
const MAX_EXPIRES: u64 = 86_400;

fn expires_of(h: &Headers) -> Option<u64> {
    h.get("Expires")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|e| e.min(MAX_EXPIRES))
}

/// `Subscription-State: active;expires=600` -> (terminated?, expires).
fn subscription_state(h: &Headers) -> (bool, Option<u64>) {
    let Some(v) = h.get("Subscription-State") else {
        return (false, None);
    };
    let mut parts = v.split(';');
    let state = parts.next().unwrap_or("").trim();
    let expires = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("expires")
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
    });
    (
        state.eq_ignore_ascii_case("terminated"),
        expires.map(|e| e.min(MAX_EXPIRES)),
    )
}

impl B2bua {
    /// Subscriptions being relayed.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// An out-of-dialog SUBSCRIBE from a watcher.
    pub(super) fn on_subscribe(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if req.max_forwards().unwrap_or(70) == 0 {
            self.refuse(tx, &req, Refusal::Plain(483, "Too Many Hops".into()), now);
            return;
        }
        let (Some(from_na), Some(to_na), Some(call_id)) = (req.from(), req.to(), req.call_id())
        else {
            self.refuse(tx, &req, Refusal::Plain(400, "Bad Request".into()), now);
            return;
        };
        // RFC 6665 section 8.2.1: the Event header is mandatory.
        if req.headers.get("Event").is_none() {
            self.refuse(tx, &req, Refusal::Plain(400, "Missing Event".into()), now);
            return;
        }
        let Some(a_tag) = from_na.tag().map(str::to_string) else {
            self.refuse(
                tx,
                &req,
                Refusal::Plain(400, "Missing From tag".into()),
                now,
            );
            return;
        };
        let call_id = call_id.to_string();
        let mut req = req;
        let Ok(admitted) = self.admit_caller(tx, &mut req, from, now, policy) else {
            return;
        };
        // A stranger's subscriptions are bounded per source and per target: no phone is
        // made to carry thousands of watchers it never agreed to.
        let counted = (!admitted.caller.trusted()).then(|| super::caps::SubCounted {
            source: crate::source_key(from.addr.ip()),
            target: req.uri.to_ascii_lowercase(),
        });
        // trunkline is the presence agent of its served users: it answers for them.
        if pa::is_presence(&req) {
            if let Some(aor) = self.pa_aor(&req.uri, now, policy) {
                return self.pa_subscribe(tx, req, from, (aor, counted), now, policy);
            }
        }
        if !self.sub_room(counted.as_ref()) {
            self.refuse_capped(tx, &req, now);
            return;
        }
        let (target, to_user, from_user) =
            match self.route_standalone(&req, &from_na, admitted, from, now, policy) {
                Ok(t) => t,
                Err(r) => {
                    self.refuse(tx, &req, r, now);
                    return;
                }
            };
        let a = Dialog {
            call_id,
            local_tag: self.new_tag(),
            remote_tag: Some(a_tag),
            local_uri: without_tag(&to_na),
            remote_uri: without_tag(&from_na),
            remote_target: dialog::remote_target_of(&req),
            peer: from,
            route_set: Vec::new(),
            trunk: false,
            headers: None,
            local_cseq: 0,
            remote_cseq: req.cseq().map(|c| c.seq),
        };
        let b = self.sub_b_dialog(&target, &to_user, &from_user);
        self.start_sub(tx, req, (a, b), counted, (&target, policy), now);
    }

    /// Is there room under the caps for a subscription counted as `counted`?
    pub(super) fn sub_room(&self, counted: Option<&super::caps::SubCounted>) -> bool {
        let Some(c) = counted else { return true };
        let caps = self.cfg.caps;
        self.sub_sources
            .room(&c.source, caps.subscriptions_per_source)
            && self
                .sub_targets
                .room(&c.target, caps.subscriptions_per_target)
    }

    /// Leg B's dialog of a new subscription, towards `target` (topology hidden like a call's).
    fn sub_b_dialog(&mut self, target: &Target, to_user: &str, from_user: &str) -> Dialog {
        let our_host = self.our_host(target.peer).to_string();
        let user = user_at(to_user);
        Dialog {
            call_id: self.new_call_id(),
            local_tag: self.new_tag(),
            remote_tag: None,
            local_uri: cat(&["<sip:", &user_at(from_user), &our_host, ">"]),
            remote_uri: cat(&["<sip:", &user, &target.host, ">"]),
            remote_target: cat(&["sip:", &user, &target.host]),
            peer: target.peer,
            route_set: Vec::new(),
            trunk: false,
            headers: None,
            local_cseq: 1,
            remote_cseq: None,
        }
    }

    /// A new subscription of dialogs `a` and `b` for the watcher's SUBSCRIBE `req`: indexed,
    /// counted, and its SUBSCRIBE sent on leg B.
    fn start_sub(
        &mut self,
        tx: TxId,
        req: Request,
        (a, b): (Dialog, Dialog),
        counted: Option<super::caps::SubCounted>,
        (target, policy): (&Target, &mut dyn Policy),
        now: Instant,
    ) {
        let expires = expires_of(&req.headers).unwrap_or(DEFAULT_EXPIRES);
        let id = SubId(self.next_sub);
        self.next_sub += 1;
        self.sub_keys
            .insert((a.call_id.clone(), a.local_tag.clone()), (id, Leg::A));
        self.sub_keys
            .insert((b.call_id.clone(), b.local_tag.clone()), (id, Leg::B));
        let out = self.sub_request(&b, Method::Subscribe, 1, &req);
        let peer = b.peer;
        self.subs.insert(
            id,
            Subscription {
                a,
                b,
                initial: Some((tx, req)),
                expires_at: now + Duration::from_secs(expires) + GRACE,
                counted: counted.clone(),
            },
        );
        if let Some(c) = counted {
            self.sub_sources.add(c.source);
            self.sub_targets.add(c.target);
        }
        let ctx = self.tx.send_request_ref(&out, peer, now);
        self.keep_standalone(ctx, &out, target, Some(id), policy, now);
        self.owners
            .insert(ctx, TxOwner::Subscription(SubClient::Initial(id)));
    }

    /// Build a request in dialog `d` carrying what `orig` carries end to end.
    fn sub_request(&mut self, d: &Dialog, method: Method, cseq: u32, orig: &Request) -> Request {
        let via = self.via_for(d.peer);
        let contact = self.contact_for(d.peer);
        let mut h = Headers::with_capacity(14);
        h.push("Via", via);
        h.push(
            "Max-Forwards",
            orig.max_forwards()
                .unwrap_or(70)
                .saturating_sub(1)
                .to_string(),
        );
        h.push("From", cat(&[&d.local_uri, ";tag=", &d.local_tag]));
        match &d.remote_tag {
            Some(t) => h.push("To", cat(&[&d.remote_uri, ";tag=", t])),
            None => h.push("To", d.remote_uri.clone()),
        }
        h.push("Call-ID", d.call_id.clone());
        h.push("CSeq", cseq_value(cseq, method.as_str()));
        h.push("Contact", contact);
        copy_passthrough(&orig.headers, &mut h);
        if let Some(ct) = orig.headers.get("Content-Type") {
            h.push("Content-Type", ct.to_string());
        }
        Request {
            method,
            uri: d.remote_target.clone(),
            headers: h,
            body: orig.body.clone(),
        }
    }

    /// An in-dialog request for a subscription, if it is one: relayed to the other dialog.
    /// Returns the request back when it belongs to no subscription.
    pub(super) fn on_sub_in_dialog(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        to_tag: &str,
        now: Instant,
    ) -> Option<Request> {
        let call_id = req.call_id()?.to_string();
        let Some(&(id, leg)) = self.sub_keys.get(&(call_id, to_tag.to_string())) else {
            return Some(req);
        };
        if !self.subs.contains_key(&id) {
            return Some(req);
        }
        if !matches!(req.method, Method::Subscribe | Method::Notify) {
            let resp = make_response(&req, 405, "Method Not Allowed", None);
            self.tx.send_response(tx, resp, now);
            return None;
        }
        match self.sub_take_request(id, leg, &req, from, now) {
            Ok(ends) => self.sub_relay(tx, req, id, leg, ends, now),
            Err((code, reason)) => {
                let resp = make_response(&req, code, reason, None);
                self.tx.send_response(tx, resp, now);
            }
        }
        None
    }

    /// An in-dialog request on leg `leg` of subscription `id`, checked against and taken into
    /// that dialog (tags, CSeq, remote target) and the subscription's expiry: whether it ends
    /// the subscription (a final NOTIFY), or the error to answer it with.
    fn sub_take_request(
        &mut self,
        id: SubId,
        leg: Leg,
        req: &Request,
        from: Peer,
        now: Instant,
    ) -> Result<bool, (u16, &'static str)> {
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        let from_tag = req.from().and_then(|f| f.tag().map(str::to_string));
        let contact = req
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri.to_string());
        let Some(sub) = self.subs.get_mut(&id) else {
            return Err((481, "Call/Transaction Does Not Exist"));
        };
        let here = if leg == Leg::A {
            &mut sub.a
        } else {
            &mut sub.b
        };
        // RFC 3261 section 12.2.2: both tags identify the dialog (the Call-ID and our tag
        // found it); a request with another From tag is in none of ours.
        if here.remote_tag.is_some() && here.remote_tag != from_tag {
            return Err((481, "Call/Transaction Does Not Exist"));
        }
        //= rfc3261#section-12.2.2
        //# If the remote sequence number was not empty, but the sequence number of the
        //# request is lower than the remote sequence number, the request is out of order and
        //# MUST be rejected with a 500 (Server Internal Error) response.
        if here.remote_cseq.is_some_and(|p| seq < p) {
            return Err((500, "Server Internal Error"));
        }
        here.remote_cseq = Some(seq);
        here.peer = from;
        if here.remote_tag.is_none() {
            // A NOTIFY before the SUBSCRIBE's 2xx establishes leg B's dialog.
            here.remote_tag = from_tag;
        }
        if let Some(c) = contact {
            here.remote_target = c;
        }
        let (ends, expires) = match req.method {
            Method::Notify => subscription_state(&req.headers),
            _ => (false, expires_of(&req.headers)),
        };
        if let Some(e) = expires {
            sub.expires_at = now + Duration::from_secs(e) + GRACE;
            if sub.initial.is_none() {
                self.sub_expiry.push(Reverse((sub.expires_at, id)));
            }
        }
        Ok(ends)
    }

    /// Relay in-dialog request `req` of subscription `id` from leg `leg` into the other dialog.
    fn sub_relay(&mut self, tx: TxId, req: Request, id: SubId, leg: Leg, ends: bool, now: Instant) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let there = if leg == Leg::A {
            &mut sub.b
        } else {
            &mut sub.a
        };
        if there.remote_tag.is_none() {
            // Leg B's dialog is not up yet: nothing to relay into.
            let resp = make_response(&req, 491, "Request Pending", None);
            self.tx.send_response(tx, resp, now);
            return;
        }
        there.local_cseq += 1;
        let cseq = there.local_cseq;
        let peer = there.peer;
        let d = Dialog {
            call_id: there.call_id.clone(),
            local_tag: there.local_tag.clone(),
            remote_tag: there.remote_tag.clone(),
            local_uri: there.local_uri.clone(),
            remote_uri: there.remote_uri.clone(),
            remote_target: there.remote_target.clone(),
            peer,
            route_set: Vec::new(),
            trunk: false,
            headers: None,
            local_cseq: cseq,
            remote_cseq: None,
        };
        let out = self.sub_request(&d, req.method.clone(), cseq, &req);
        let ctx = self.tx.send_request(out, peer, now);
        self.owners.insert(
            ctx,
            TxOwner::Subscription(SubClient::Relay {
                sub: id,
                server_tx: tx,
                orig: req,
                ends,
            }),
        );
    }

    /// The final response to subscription request `c`.
    pub(super) fn on_sub_response(&mut self, c: SubClient, resp: &Response, now: Instant) {
        match c {
            SubClient::Initial(id) => {
                let to_tag = resp.to().and_then(|t| t.tag().map(str::to_string));
                let contact = resp
                    .headers
                    .get("Contact")
                    .and_then(|c| NameAddr::parse(c).ok())
                    .map(|c| c.uri.to_string());
                let ok = (200..300).contains(&resp.status);
                let Some(sub) = self.subs.get_mut(&id) else {
                    return;
                };
                if ok {
                    if sub.b.remote_tag.is_none() {
                        sub.b.remote_tag = to_tag;
                    }
                    if let Some(c) = contact {
                        sub.b.remote_target = c;
                    }
                    if let Some(e) = expires_of(&resp.headers) {
                        sub.expires_at = now + Duration::from_secs(e) + GRACE;
                    }
                }
                let a_peer = sub.a.peer;
                let a_tag = sub.a.local_tag.clone();
                let initial = sub.initial.take();
                self.sub_expiry.push(Reverse((sub.expires_at, id)));
                let contact_a = self.contact_for(a_peer);
                if let Some((stx, req)) = initial {
                    let mut r = make_response(&req, resp.status, &resp.reason, Some(&a_tag));
                    if ok {
                        r.headers.push("Contact", contact_a);
                        if let Some(e) = resp.headers.get("Expires") {
                            r.headers.push("Expires", e.to_string());
                        }
                    }
                    self.tx.send_response(stx, r, now);
                }
                // Refused, and no NOTIFY established the dialog meanwhile: gone.
                if !ok && self.subs.get(&id).is_some_and(|s| s.b.remote_tag.is_none()) {
                    self.drop_sub(id, now);
                }
            }
            SubClient::Relay {
                sub,
                server_tx,
                orig,
                ends,
            } => {
                let r = make_response(&orig, resp.status, &resp.reason, None);
                self.tx.send_response(server_tx, r, now);
                // RFC 6665 section 4.1.3: a 481 ends the subscription, as does the final NOTIFY.
                if ends || resp.status == 481 {
                    self.drop_sub(sub, now);
                }
            }
        }
    }

    /// Subscription request `c` failed (timeout, transport).
    pub(super) fn on_sub_failure(&mut self, c: SubClient, status: u16, reason: &str, now: Instant) {
        match c {
            SubClient::Initial(id) => {
                if let Some(s) = self.subs.get(&id) {
                    self.sub_expiry.push(Reverse((s.expires_at, id)));
                }
                if let Some((stx, req)) = self.subs.get_mut(&id).and_then(|s| s.initial.take()) {
                    let tag = self.new_tag();
                    let r = make_response(&req, status, reason, Some(&tag));
                    self.tx.send_response(stx, r, now);
                }
                if self.subs.get(&id).is_some_and(|s| s.b.remote_tag.is_none()) {
                    self.drop_sub(id, now);
                }
            }
            SubClient::Relay {
                sub,
                server_tx,
                orig,
                ..
            } => {
                let r = make_response(&orig, status, reason, None);
                self.tx.send_response(server_tx, r, now);
                // A side that does not answer in-dialog requests is gone (RFC 5057 section 5.1).
                self.drop_sub(sub, now);
            }
        }
    }

    fn drop_sub(&mut self, id: SubId, now: Instant) {
        if let Some(s) = self.subs.remove(&id) {
            if let Some(c) = &s.counted {
                self.sub_sources.remove(&c.source);
                self.sub_targets.remove(&c.target);
            }
            self.sub_keys.remove(&(s.a.call_id, s.a.local_tag));
            self.sub_keys.remove(&(s.b.call_id, s.b.local_tag));
            if let Some((stx, req)) = s.initial {
                let r = make_response(&req, 408, "Request Timeout", None);
                self.tx.send_response(stx, r, now);
            }
        }
    }

    /// Drop subscriptions whose lifetime is over: the expiry heap's due entries, each checked
    /// against its subscription (a refresh pushed a later entry; a gone one has none).
    pub(super) fn expire_subs(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.sub_expiry.peek() {
            if at > now {
                break;
            }
            self.sub_expiry.pop();
            let due = self
                .subs
                .get(&id)
                .is_some_and(|s| s.initial.is_none() && s.expires_at <= now);
            if due {
                self.drop_sub(id, now);
            }
        }
        // Refreshes leave stale entries behind: rebuild when they outnumber the live ones.
        if self.sub_expiry.len() > 4 * self.subs.len() + 64 {
            self.sub_expiry = self
                .subs
                .iter()
                .filter(|(_, s)| s.initial.is_none())
                .map(|(&id, s)| Reverse((s.expires_at, id)))
                .collect();
        }
    }

    /// The next subscription expiry (maybe a stale entry: an early wake-up, never a late one).
    pub(super) fn next_sub_expiry(&self) -> Option<Instant> {
        self.sub_expiry.peek().map(|Reverse((at, _))| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_state_header() {
        let mut h = Headers::with_capacity(2);
        h.push("Subscription-State", "active;expires=600");
        assert_eq!(subscription_state(&h), (false, Some(600)));
        let mut h = Headers::with_capacity(2);
        h.push("Subscription-State", "terminated;reason=timeout");
        assert_eq!(subscription_state(&h), (true, None));
        let mut h = Headers::with_capacity(2);
        h.push("Subscription-State", "active; expires = 99999999");
        assert_eq!(subscription_state(&h), (false, Some(MAX_EXPIRES)));
        assert_eq!(
            subscription_state(&Headers::with_capacity(0)),
            (false, None)
        );
    }
}
