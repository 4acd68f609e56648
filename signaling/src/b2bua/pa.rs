//! The presence agent (RFC 3856) for users of the served domains (`registrar.presence:
//! agent`, the default): trunkline answers watchers' SUBSCRIBEs for `presence` itself and
//! NOTIFYs them a PIDF document (RFC 3863) at once and on every change; users PUBLISH their
//! state (RFC 3903, `esc.rs`); without a publication a user's state follows registration:
//! open while a binding is live, closed otherwise. Other event packages, and users of other
//! domains, are relayed as before (`presence.rs`).
//!
//! RFC 6665 section 4.2.1.1: "the notifier ... MUST immediately construct and send a NOTIFY
//! request"; section 4.2.2: each NOTIFY carries `Subscription-State` with the time left.

use super::*;
use crate::esc::{Compositor, PresenceLimits, Publish, PublishError, Published};
use crate::pidf;
use std::cmp::Reverse;

/// A watcher's subscription's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct WatchId(u64);

/// One watcher of one presentity: the subscription dialog trunkline is the notifier of.
struct Watcher {
    aor: String,
    dialog: Dialog,
    expires_at: Instant,
    counted: Option<super::caps::SubCounted>,
}

/// The presence agent's state: publications, watchers, and what each presentity's watchers
/// were last told.
#[derive(Default)]
pub(super) struct Agent {
    esc: Compositor,
    watchers: HashMap<WatchId, Watcher>,
    /// (Call-ID, our tag) -> watcher.
    keys: HashMap<(String, String), WatchId>,
    by_aor: HashMap<String, Vec<WatchId>>,
    /// Watcher expiries, earliest first (lazy).
    expiry: BinaryHeap<Reverse<(Instant, WatchId)>>,
    /// Per watched presentity: the document last sent.
    last: HashMap<String, Vec<u8>>,
    /// When a watched presentity's registration may lapse (its earliest binding expiry).
    reg_check: BinaryHeap<Reverse<(Instant, String)>>,
    /// The check scheduled per presentity (one entry in `reg_check` each, not one per NOTIFY).
    reg_next: HashMap<String, Instant>,
    next: u64,
    notifies: u64,
}

impl Agent {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let a = self.expiry.peek().map(|Reverse((t, _))| *t);
        let b = self.reg_check.peek().map(|Reverse((t, _))| *t);
        [a, b, self.esc.poll_timeout()].into_iter().flatten().min()
    }
}

/// `Expires` of a request, if it has a readable one.
fn expires_header(req: &Request) -> Option<u32> {
    req.headers
        .get("Expires")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|e| e.min(u64::from(u32::MAX)) as u32)
}

/// Does the request's `Event` name the presence package (RFC 6665 section 8.2.1: the token,
/// parameters after `;`)?
pub(super) fn is_presence(req: &Request) -> bool {
    req.headers
        .get("Event")
        .and_then(|e| e.split(';').next())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("presence"))
}

impl B2bua {
    /// Watchers of trunkline's own presentities.
    pub fn presence_watchers(&self) -> usize {
        self.pa.watchers.len()
    }

    /// The presence agent's watchers, users with a publication, and NOTIFYs sent.
    pub fn presence_stats(&self) -> (usize, usize, u64) {
        (
            self.pa.watchers.len(),
            self.pa.esc.users(),
            self.pa.notifies,
        )
    }

    /// The AoR of the served user `uri` names, when the presence agent answers for them.
    pub(super) fn pa_aor(
        &self,
        uri: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<String> {
        let s = policy.registrar(now)?;
        s.presence.as_ref()?;
        let uri = Uri::parse(uri).ok()?;
        match &self.registrar {
            Some(r) => r.known_aor(&uri, &s),
            None => Registrar::new([0; 32], now).known_aor(&uri, &s),
        }
    }

    /// A watcher's SUBSCRIBE for `aor`'s presence (admitted like a call): 200 and a NOTIFY
    /// with the state now; `Expires: 0` is a fetch (one NOTIFY, terminated).
    pub(super) fn pa_subscribe(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        (aor, counted): (String, Option<super::caps::SubCounted>),
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(limits) = policy.registrar(now).and_then(|s| s.presence.clone()) else {
            return;
        };
        let (Some(from_na), Some(to_na), Some(call_id)) = (req.from(), req.to(), req.call_id())
        else {
            self.refuse(tx, &req, Refusal::Plain(400, "Bad Request".into()), now);
            return;
        };
        let asked = match self.pa_admissible(&req, &limits) {
            Ok(asked) => asked,
            Err(r) => {
                self.tx.send_response(tx, r, now);
                return;
            }
        };
        if self.pa.watchers.len() >= limits.watchers || !self.sub_room(counted.as_ref()) {
            self.refuse_capped(tx, &req, now);
            return;
        }
        let granted = asked.min(limits.max_expires);
        let dialog = Dialog {
            call_id: call_id.to_string(),
            local_tag: self.new_tag(),
            remote_tag: from_na.tag().map(str::to_string),
            local_uri: without_tag(&to_na),
            remote_uri: without_tag(&from_na),
            remote_target: dialog::remote_target_of(&req),
            peer: from,
            route_set: req
                .headers
                .get_all("Record-Route")
                .map(str::to_string)
                .collect(),
            trunk: policy.is_trunk(from, now),
            headers: None,
            local_cseq: 0,
            remote_cseq: req.cseq().map(|c| c.seq),
        };
        let mut ok = make_response(&req, 200, "OK", Some(&dialog.local_tag));
        ok.headers.push("Expires", granted.to_string());
        ok.headers.push("Contact", self.contact_for(from));
        self.tx.send_response(tx, ok, now);
        let id = WatchId(self.pa.next);
        self.pa.next += 1;
        let expires_at = now + Duration::from_secs(u64::from(granted));
        let key = (dialog.call_id.clone(), dialog.local_tag.clone());
        if let Some(c) = &counted {
            self.sub_sources.add(c.source);
            self.sub_targets.add(c.target.clone());
        }
        self.pa.watchers.insert(
            id,
            Watcher {
                aor: aor.clone(),
                dialog,
                expires_at,
                counted,
            },
        );
        if granted == 0 {
            // A fetch: the state now, and the subscription ends with it.
            self.pa_notify(id, now, policy);
            self.pa_end(id, "timeout", now, policy);
            return;
        }
        self.pa.keys.insert(key, id);
        self.pa.by_aor.entry(aor.clone()).or_default().push(id);
        self.pa.expiry.push(Reverse((expires_at, id)));
        self.pa_notify(id, now, policy);
    }

    /// A new watcher's SUBSCRIBE checked: the `Expires` asked for, or the refusal (406 when its
    /// `Accept` leaves out PIDF, RFC 3856 section 6.6; 423 below `min_expires`).
    fn pa_admissible(&mut self, req: &Request, limits: &PresenceLimits) -> Result<u32, Response> {
        if let Some(accept) = req.headers.get("Accept") {
            let ok = accept.split(',').any(|a| {
                let t = a.split(';').next().unwrap_or("").trim();
                t.eq_ignore_ascii_case(pidf::PIDF_TYPE) || t == "*/*" || t == "application/*"
            });
            if !ok {
                let tag = self.new_tag();
                let mut r = make_response(req, 406, "Not Acceptable", Some(&tag));
                r.headers.push("Accept", pidf::PIDF_TYPE);
                return Err(r);
            }
        }
        let asked = expires_header(req).unwrap_or(3600);
        if asked != 0 && asked < limits.min_expires {
            let tag = self.new_tag();
            let mut r = make_response(req, 423, "Interval Too Brief", Some(&tag));
            r.headers
                .push("Min-Expires", limits.min_expires.to_string());
            return Err(r);
        }
        Ok(asked)
    }

    /// An in-dialog request for one of the agent's watchers (the request back when it is not).
    pub(super) fn pa_in_dialog(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        to_tag: &str,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<Request> {
        let key = (req.call_id().unwrap_or("").to_string(), to_tag.to_string());
        let Some(&id) = self.pa.keys.get(&key) else {
            return Some(req);
        };
        let from_tag = req.from().and_then(|f| f.tag().map(str::to_string));
        let cseq = req.cseq().map(|c| c.seq);
        let Some(w) = self.pa.watchers.get_mut(&id) else {
            return Some(req);
        };
        if !w
            .dialog
            .accepts(from_tag.as_deref().unwrap_or(""), to_tag, from)
        {
            let resp = make_response(&req, 481, "Subscription Does Not Exist", None);
            self.tx.send_response(tx, resp, now);
            return None;
        }
        if req.method != Method::Subscribe {
            let mut resp = make_response(&req, 405, "Method Not Allowed", None);
            resp.headers.push("Allow", "SUBSCRIBE");
            self.tx.send_response(tx, resp, now);
            return None;
        }
        // RFC 3261 section 12.2.2: a lower CSeq than the last is out of order (500).
        if let (Some(c), Some(last)) = (cseq, w.dialog.remote_cseq) {
            if c < last {
                let resp = make_response(&req, 500, "Server Internal Error", None);
                self.tx.send_response(tx, resp, now);
                return None;
            }
        }
        w.dialog.remote_cseq = cseq.or(w.dialog.remote_cseq);
        w.dialog.remote_target = dialog::remote_target_of(&req);
        let limits = policy.registrar(now).and_then(|s| s.presence.clone());
        let limits = limits.unwrap_or_default();
        let asked = expires_header(&req).unwrap_or(3600);
        if asked != 0 && asked < limits.min_expires {
            let mut r = make_response(&req, 423, "Interval Too Brief", None);
            r.headers
                .push("Min-Expires", limits.min_expires.to_string());
            self.tx.send_response(tx, r, now);
            return None;
        }
        let granted = asked.min(limits.max_expires);
        let mut ok = make_response(&req, 200, "OK", None);
        ok.headers.push("Expires", granted.to_string());
        ok.headers.push("Contact", self.contact_for(from));
        self.tx.send_response(tx, ok, now);
        if granted == 0 {
            self.pa_end(id, "timeout", now, policy);
            return None;
        }
        let at = now + Duration::from_secs(u64::from(granted));
        if let Some(w) = self.pa.watchers.get_mut(&id) {
            w.expires_at = at;
        }
        self.pa.expiry.push(Reverse((at, id)));
        // RFC 6665 section 4.2.1.2: a refresh is answered with a NOTIFY of the state too.
        self.pa_notify(id, now, policy);
        None
    }

    /// The document watchers of `aor` see now.
    fn pa_document(&self, aor: &str, now: Instant) -> Vec<u8> {
        if let Some(d) = self.pa.esc.document(aor, now) {
            return d.to_vec();
        }
        let registered = self
            .registrar
            .as_ref()
            .is_some_and(|r| r.is_registered(aor, now));
        pidf::from_registration(&cat(&["sip:", aor]), registered)
    }

    /// NOTIFY watcher `id` of its presentity's state (active, with the time left).
    fn pa_notify(&mut self, id: WatchId, now: Instant, policy: &mut dyn Policy) {
        let Some(aor) = self.pa.watchers.get(&id).map(|w| w.aor.clone()) else {
            return;
        };
        let doc = self.pa_document(&aor, now);
        self.pa_schedule_reg_check(&aor, now);
        self.pa.last.insert(aor, doc.clone());
        let Some(w) = self.pa.watchers.get(&id) else {
            return;
        };
        let left = w.expires_at.saturating_duration_since(now).as_secs();
        let state = cat(&["active;expires=", &left.to_string()]);
        self.pa_send_notify(id, &state, doc, now, policy);
    }

    fn pa_send_notify(
        &mut self,
        id: WatchId,
        state: &str,
        body: Vec<u8>,
        now: Instant,
        _policy: &mut dyn Policy,
    ) {
        let Some(peer) = self.pa.watchers.get(&id).map(|w| w.dialog.peer) else {
            return;
        };
        let via = self.via_for(peer);
        let contact = self.contact_for(peer);
        let Some(w) = self.pa.watchers.get_mut(&id) else {
            return;
        };
        let mut n = w.dialog.request(Method::Notify, via, contact.clone());
        n.headers.push("Contact", contact);
        n.headers.push("Event", "presence");
        n.headers.push("Subscription-State", state.to_string());
        if !body.is_empty() {
            n.headers.push("Content-Type", pidf::PIDF_TYPE);
        }
        n.body = body;
        let ctx = self.tx.send_request_ref(&n, peer, now);
        self.owners.insert(ctx, TxOwner::Watch(id));
        self.pa.notifies += 1;
    }

    /// End watcher `id`: a last NOTIFY (`terminated;reason=..`), and it is forgotten.
    fn pa_end(&mut self, id: WatchId, reason: &str, now: Instant, policy: &mut dyn Policy) {
        if !self.pa.watchers.contains_key(&id) {
            return;
        }
        let state = cat(&["terminated;reason=", reason]);
        self.pa_send_notify(id, &state, Vec::new(), now, policy);
        self.pa_forget(id);
    }

    /// Drop watcher `id` without a word (its NOTIFY failed, or after its last one).
    fn pa_forget(&mut self, id: WatchId) {
        let Some(w) = self.pa.watchers.remove(&id) else {
            return;
        };
        self.pa
            .keys
            .remove(&(w.dialog.call_id.clone(), w.dialog.local_tag.clone()));
        if let Some(v) = self.pa.by_aor.get_mut(&w.aor) {
            v.retain(|x| *x != id);
            if v.is_empty() {
                self.pa.by_aor.remove(&w.aor);
                self.pa.last.remove(&w.aor);
                self.pa.reg_next.remove(&w.aor);
            }
        }
        if let Some(c) = w.counted {
            self.sub_sources.remove(&c.source);
            self.sub_targets.remove(&c.target);
        }
    }

    /// The answer to a NOTIFY of watcher `id` (`status` 0: none came): a 481, a timeout or a
    /// refusal ends the subscription (RFC 6665 section 4.2.2).
    pub(super) fn pa_notify_answer(&mut self, id: WatchId, status: u16) {
        if status >= 300 || status == 0 {
            self.pa_forget(id);
        }
    }

    /// `aor`'s state may have changed (a REGISTER, a PUBLISH, an expiry): its watchers are told
    /// if what they would see now differs from what they were told last.
    pub(super) fn pa_changed(&mut self, aor: &str, now: Instant, policy: &mut dyn Policy) {
        let Some(ids) = self.pa.by_aor.get(aor).cloned() else {
            return;
        };
        // The bindings may have moved on (a refresh): the next look follows them.
        self.pa_schedule_reg_check(aor, now);
        let doc = self.pa_document(aor, now);
        if self.pa.last.get(aor) == Some(&doc) {
            return;
        }
        for id in ids {
            self.pa_notify(id, now, policy);
        }
    }

    /// A watched presentity that is registered is looked at again when its first binding may
    /// lapse (expiry is no event of the registrar's).
    fn pa_schedule_reg_check(&mut self, aor: &str, now: Instant) {
        let next = self
            .registrar
            .as_ref()
            .and_then(|r| r.bindings_of(aor, now).iter().map(|b| b.expires).min());
        if let Some(t) = next {
            let due = self.pa.reg_next.get(aor).copied();
            if due.is_none_or(|d| d <= now || t < d) {
                self.pa.reg_next.insert(aor.to_string(), t);
                self.pa.reg_check.push(Reverse((t, aor.to_string())));
            }
        }
    }

    /// Due watcher expiries, registration checks and publication expiries.
    pub(super) fn pa_timers(&mut self, now: Instant, policy: &mut dyn Policy) {
        while let Some(Reverse((t, id))) = self.pa.expiry.peek().copied() {
            if t > now {
                break;
            }
            self.pa.expiry.pop();
            if self
                .pa
                .watchers
                .get(&id)
                .is_some_and(|w| w.expires_at <= now)
            {
                self.pa_end(id, "timeout", now, policy);
            }
        }
        let mut due = Vec::new();
        while let Some(Reverse((t, _))) = self.pa.reg_check.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((t, aor))) = self.pa.reg_check.pop() {
                if self.pa.reg_next.get(&aor) == Some(&t) {
                    self.pa.reg_next.remove(&aor);
                }
                due.push(aor);
            }
        }
        due.extend(self.pa.esc.expire(now));
        due.sort();
        due.dedup();
        for aor in due {
            self.pa_changed(&aor, now, policy);
        }
    }

    /// PUBLISH (RFC 3903) for a served user's presence: only the user (or a trunk) publishes
    /// for them; the answer carries the new entity tag and the expiry granted.
    pub(super) fn on_publish(
        &mut self,
        tx: TxId,
        req: Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(settings) = policy.registrar(now) else {
            return self.answer_plain(tx, &req, 405, "Method Not Allowed", now);
        };
        let Some(limits) = settings.presence.clone() else {
            return self.answer_plain(tx, &req, 405, "Method Not Allowed", now);
        };
        // RFC 3903 section 6 step 2: an unknown event package is 489 Bad Event.
        if !is_presence(&req) {
            let tag = self.new_tag();
            let mut r = make_response(&req, 489, "Bad Event", Some(&tag));
            r.headers.push("Allow-Events", "presence");
            self.tx.send_response(tx, r, now);
            return;
        }
        let Some(aor) = self.pa_aor(&req.uri, now, policy) else {
            return self.answer_plain(tx, &req, 404, "Not Found", now);
        };
        if !policy.is_trunk(from, now) {
            let user = match self
                .registrar_mut(now)
                .authenticate_caller(&req, from, &settings, now)
            {
                Ok(u) => u,
                Err(denial) => {
                    self.deny(tx, &req, denial, now);
                    return;
                }
            };
            // Only the user publishes their own state.
            if aor.split('@').next() != Some(user.as_str()) {
                return self.answer_plain(tx, &req, 403, "Forbidden", now);
            }
        }
        if !req.body.is_empty() {
            let ct = req.headers.get("Content-Type").unwrap_or("");
            let ct = ct.split(';').next().unwrap_or("").trim();
            if !ct.eq_ignore_ascii_case(pidf::PIDF_TYPE) {
                let tag = self.new_tag();
                let mut r = make_response(&req, 415, "Unsupported Media Type", Some(&tag));
                r.headers.push("Accept", pidf::PIDF_TYPE);
                self.tx.send_response(tx, r, now);
                return;
            }
        }
        let etag = req.headers.get("SIP-If-Match").map(str::trim);
        let expires = expires_header(&req);
        let op = match (etag, req.body.is_empty()) {
            (None, true) => return self.answer_plain(tx, &req, 400, "Missing Body", now),
            (None, false) => Publish::Initial { body: &req.body },
            (Some(e), _) if expires == Some(0) => Publish::Remove { etag: e },
            (Some(e), true) => Publish::Refresh { etag: e },
            (Some(e), false) => Publish::Modify {
                etag: e,
                body: &req.body,
            },
        };
        let new_etag = self.new_tag();
        let result = self
            .pa
            .esc
            .publish(&aor, op, expires, new_etag, &limits, now);
        let ok = result.is_ok();
        let r = self.publish_answer(&req, result);
        self.tx.send_response(tx, r, now);
        if ok {
            self.pa_changed(&aor, now, policy);
        }
    }

    /// The answer to a PUBLISH (RFC 3903 section 6): 200 with the entity tag and expiry, or
    /// the step's refusal.
    fn publish_answer(
        &mut self,
        req: &Request,
        result: Result<Published, PublishError>,
    ) -> Response {
        let tag = self.new_tag();
        let e = match result {
            Ok(p) => {
                let mut r = make_response(req, 200, "OK", Some(&tag));
                if let Some(e) = p.etag {
                    r.headers.push("SIP-ETag", e);
                }
                r.headers.push("Expires", p.expires.to_string());
                return r;
            }
            Err(e) => e,
        };
        let (code, reason) = match e {
            PublishError::UnknownEtag => (412, "Conditional Request Failed"),
            PublishError::TooBrief(_) => (423, "Interval Too Brief"),
            PublishError::TooLarge => (413, "Request Entity Too Large"),
            PublishError::Document(_) => (400, "Bad PIDF Document"),
            PublishError::Full => (503, "Service Unavailable"),
        };
        let mut r = make_response(req, code, reason, Some(&tag));
        if let PublishError::TooBrief(min) = e {
            r.headers.push("Min-Expires", min.to_string());
        }
        r
    }

    fn answer_plain(&mut self, tx: TxId, req: &Request, code: u16, reason: &str, now: Instant) {
        let tag = self.new_tag();
        let r = make_response(req, code, reason, Some(&tag));
        self.tx.send_response(tx, r, now);
    }
}
