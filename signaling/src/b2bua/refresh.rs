//! Session timers (RFC 4028) at work, per leg (the negotiation is `timers.rs`): trunkline
//! refreshes the legs it is the refresher of, answers or relays the refreshes of the others,
//! and ends a call whose session on either leg runs out (a dead PBX or carrier is found in
//! one session interval, not only by the media timeout).
//!
//! * A leg trunkline refreshes gets, half an interval after its last refresh, an UPDATE without
//!   a body when the peer allows UPDATE, else a re-INVITE with the SDP last sent on that leg
//!   (unchanged: RFC 3264 §8, no change to the session). Its 2xx refreshes the leg; 422 is
//!   retried with the peer's Min-SE; 408, 481 or no answer ends the call; 491 is retried a few
//!   seconds later; anything else leaves the session to expire unless refreshed meanwhile.
//! * A leg whose peer refreshes ends the call when no refresh came by
//!   `interval - min(32, interval / 3)` after the last one: BYE on both legs, hangup
//!   `session_expired`.
//! * A re-INVITE or UPDATE from one leg is relayed to the other with that leg's own
//!   Session-Expires; its 2xx refreshes both legs. A bodiless UPDATE from a leg with a timer
//!   is a refresh of that leg alone: answered here, not relayed.

use super::timers::{self, LegTimer, Refresher};
use super::*;

/// Both legs' session timers of an answered call and the SDP last sent on each.
#[derive(Default)]
pub(super) struct CallTimers {
    legs: [Option<LegTimer>; 2],
    /// The SDP trunkline last sent on each leg (the body a re-INVITE refresh offers again).
    sdp: [Option<Vec<u8>>; 2],
    /// SDP offered on a leg by a relayed re-INVITE or UPDATE, until its 2xx makes it the
    /// leg's (a refused re-offer leaves the session as it was, RFC 3261 §14.2).
    offered: [Option<Vec<u8>>; 2],
}

/// Deadlines held before stale ones are swept out (see `arm`).
const STALE_SWEEP_FLOOR: usize = 4096;

fn idx(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl CallTimers {
    pub(super) fn leg(&self, leg: Leg) -> Option<&LegTimer> {
        self.legs[idx(leg)].as_ref()
    }

    /// The SDP just sent on `leg` in a final answer or an ACK (the session's now).
    /// `leg` has a new peer (a transfer's target): no timer, no SDP of the old one.
    pub(super) fn forget(&mut self, leg: Leg) {
        self.legs[idx(leg)] = None;
        self.sdp[idx(leg)] = None;
        self.offered[idx(leg)] = None;
    }

    pub(super) fn sent_sdp(&mut self, leg: Leg, body: &[u8]) {
        if !body.is_empty() {
            self.sdp[idx(leg)] = Some(body.to_vec());
        }
    }
}

impl B2bua {
    /// A leg's settings: its policy's, or the core's default.
    fn timer_settings(
        &mut self,
        trunk: Option<&str>,
        peer: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<SessionTimer> {
        match policy.session_timer(trunk, peer, now) {
            TimerChoice::Inherit => self.cfg.session_timer,
            TimerChoice::Off => None,
            TimerChoice::On(t) => Some(t),
        }
    }

    /// The settings of `leg` of call `id` (leg B: its trunk's).
    fn leg_settings(
        &mut self,
        id: CallId,
        leg: Leg,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> Option<SessionTimer> {
        let call = self.calls.get(&id)?;
        let peer = call.leg(leg).peer;
        let trunk = match leg {
            Leg::A => None,
            Leg::B => call.b_trunk.clone(),
        };
        self.timer_settings(trunk.as_deref(), peer, now, policy)
    }

    /// 422 with `min` as Min-SE for `req` on `tx`.
    fn refuse_too_small(
        &mut self,
        tx: TxId,
        req: &Request,
        min: u32,
        to_tag: Option<&str>,
        now: Instant,
    ) {
        let tag = match to_tag {
            Some(t) => t.to_string(),
            None => self.new_tag(),
        };
        let mut resp = make_response(req, 422, "Session Interval Too Small", Some(&tag));
        //= rfc4028#section-9
        //# When sending the 422 response, the UAS MUST include a Min-SE header field with the
        //# value of its minimum interval.
        resp.headers.push("Min-SE", min.to_string());
        self.stats.session_too_small += 1;
        self.tx.send_response(tx, resp, now);
    }

    /// Leg A's INVITE names a Session-Expires below the caller's leg's Min-SE: refused 422
    /// (`true`).
    pub(super) fn a_invite_too_small(
        &mut self,
        tx: TxId,
        req: &Request,
        from: Peer,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let ours = self.timer_settings(None, from, now, policy);
        let Err(min) = timers::too_small(&req.headers, ours, 0) else {
            return false;
        };
        self.refuse_too_small(tx, req, min, None, now);
        rejected(policy, 422, "Session Interval Too Small", now);
        self.refused_invite(req, from, 422, now, policy);
        true
    }

    /// Leg B's INVITE to `trunk` at `peer` offers session timers when the trunk has them.
    pub(super) fn b_timer_headers(
        &mut self,
        trunk: &str,
        peer: Peer,
        now: Instant,
        policy: &mut dyn Policy,
        h: &mut Headers,
    ) {
        if let Some(t) = self.timer_settings(Some(trunk), peer, now, policy) {
            // RFC 4028 §7.1: a UAC that supports timers says so (`Supported: timer`) and may
            // ask for an interval and name its minimum.
            h.push("Supported", "timer");
            h.push("Session-Expires", t.expires.to_string());
            h.push("Min-SE", t.min_se.to_string());
        }
    }

    /// A 422 to leg B's INVITE: the same INVITE again with the trunk's Min-SE as interval
    /// (`true`), at most [`timers::MAX_422_RETRIES`] times per target.
    pub(super) fn b_invite_too_small(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: &Response,
        now: Instant,
    ) -> bool {
        let Some(at) = self.calls.get(&id).and_then(Call::attempt) else {
            return false;
        };
        if at.cancelled || at.tx != Some(tx) || at.se_retries >= timers::MAX_422_RETRIES {
            return false;
        }
        let (Some(invite), Some(min)) = (at.invite.clone(), timers::min_se(&resp.headers)) else {
            return false;
        };
        let sent = timers::session_expires(&invite.headers).map_or(0, |(s, _)| s);
        if min <= sent {
            // It asks for nothing the INVITE did not offer: a failure like any other.
            return false;
        }
        let peer = self.calls.get(&id).map(|c| c.b.peer);
        let Some(peer) = peer else { return false };
        let via = self.via_for(peer);
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        call.b.local_cseq = call.b.local_cseq.wrapping_add(1);
        // RFC 4028 §7.3: after a 422 the request may be retried with an interval of at least
        // the 422's Min-SE (the same request, a new CSeq).
        let mut retry = invite;
        retry.headers.set("Via", via);
        retry
            .headers
            .set("CSeq", cseq_value(call.b.local_cseq, "INVITE"));
        retry.headers.set("Session-Expires", min.to_string());
        retry.headers.set("Min-SE", min.to_string());
        self.owners.remove(&tx);
        let new_tx = self.tx.send_request_ref(&retry, peer, now);
        if let Some(at) = self.calls.get_mut(&id).and_then(Call::attempt_mut) {
            at.invite = Some(retry);
            at.tx = Some(new_tx);
            at.se_retries += 1;
        }
        self.owners
            .insert(new_tx, TxOwner::Call(id, ClientPurpose::Invite));
        self.stats.session_retries += 1;
        true
    }

    /// The call is up (leg B answered `resp`, leg A gets `out`): each leg's timer from its
    /// own INVITE and answer; `out` says leg A's.
    pub(super) fn start_timers(
        &mut self,
        id: CallId,
        setup: &Attempt,
        resp: &Response,
        out: &mut Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let ours_a = self.leg_settings(id, Leg::A, now, policy);
        let a = timers::as_uas(&setup.a_invite.headers, ours_a, now);
        // Leg B has a timer only when its INVITE asked for one (its Min-SE) and the 2xx took it.
        let asked = setup
            .invite
            .as_ref()
            .and_then(|r| timers::min_se(&r.headers));
        let b = asked.and_then(|min| timers::as_uac(&resp.headers, min, now));
        if let Some(t) = &a {
            answer_headers(t, &mut out.headers);
        }
        let b_sdp = setup.b_offer.as_ref().map(|(_, sdp)| sdp.clone());
        let Some(ts) = self.calls.get_mut(&id).and_then(Call::timers_mut) else {
            return;
        };
        ts.sent_sdp(Leg::A, &out.body);
        ts.sdp[1] = b_sdp;
        let due = [a.as_ref().map(|t| t.due), b.as_ref().map(|t| t.due)];
        ts.legs = [a, b];
        for (leg, at) in [Leg::A, Leg::B].into_iter().zip(due) {
            if let Some(at) = at {
                self.arm(id, leg, at);
            }
        }
    }

    fn arm(&mut self, id: CallId, leg: Leg, at: Instant) {
        self.deadlines.push(Deadline {
            at: std::cmp::Reverse(at),
            call: id,
            target_idx: 0,
            kind: DeadlineKind::Session(leg),
        });
        // A session deadline outlives its call by up to an interval (30 min by default): at
        // 1000 short calls a second the heap would hold millions of stale ones. Once stale
        // entries dominate, the heap keeps only what still counts (amortised O(1) per push).
        if self.deadlines.len() > STALE_SWEEP_FLOOR + 4 * self.calls.len() {
            let calls = &self.calls;
            self.deadlines.retain(|d| {
                let Some(call) = calls.get(&d.call) else {
                    // Every deadline's handler starts by finding its call.
                    return false;
                };
                match d.kind {
                    DeadlineKind::Session(leg) => call
                        .timers()
                        .and_then(|ts| ts.leg(leg))
                        .is_some_and(|t| t.due == d.at.0),
                    _ => true,
                }
            });
        }
    }

    /// Sets `leg`'s timer (`None`: off) and arms its deadline. A 2xx or request that names no
    /// Allow keeps what the peer allowed before.
    fn set_timer(&mut self, id: CallId, leg: Leg, t: Option<LegTimer>) {
        let Some(ts) = self.calls.get_mut(&id).and_then(Call::timers_mut) else {
            return;
        };
        let slot = &mut ts.legs[idx(leg)];
        let t = t.map(|mut t| {
            t.peer_update |= slot.as_ref().is_some_and(|o| o.peer_update);
            t
        });
        let due = t.as_ref().map(|t| t.due);
        *slot = t;
        if let Some(at) = due {
            self.arm(id, leg, at);
        }
    }

    /// A deadline of `leg`'s timer set for `at` is due.
    pub(super) fn session_due(
        &mut self,
        id: CallId,
        leg: Leg,
        at: Instant,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let Some(t) = self
            .calls
            .get(&id)
            .and_then(Call::timers)
            .and_then(|ts| ts.leg(leg))
        else {
            return;
        };
        if t.due != at {
            return;
        }
        if t.refresher == Refresher::Peer || now >= t.expiry() {
            self.session_expired(id, now, policy);
            return;
        }
        self.send_refresh(id, leg, now);
    }

    /// Refresh `leg`: UPDATE (no body) when its peer allows it, else a re-INVITE with the SDP
    /// last sent on it; the session's end is the deadline while it is out.
    fn send_refresh(&mut self, id: CallId, leg: Leg, now: Instant) {
        let Some(ts) = self.calls.get(&id).and_then(Call::timers) else {
            return;
        };
        let Some(t) = ts.leg(leg) else { return };
        let sdp = ts.sdp[idx(leg)].clone();
        let (se, min) = (t.request_value(), t.min_se);
        //= rfc4028#section-7.4
        //# It is RECOMMENDED that the UPDATE request not contain an offer [4]
        // (and a re-INVITE carries one: the session as it is, so nothing changes).
        let method = match (&sdp, t.peer_update) {
            (Some(_), false) => Method::Invite,
            _ => Method::Update,
        };
        let Some((mut req, peer)) = self.dialog_request(id, leg, method.clone()) else {
            return;
        };
        req.headers.push("Supported", "timer");
        req.headers.push("Session-Expires", se);
        req.headers.push("Min-SE", min.to_string());
        if let (Method::Invite, Some(body)) = (&method, sdp) {
            req.headers.push("Content-Type", "application/sdp");
            req.body = body;
        }
        let tx = self.tx.send_request_ref(&req, peer, now);
        if method == Method::Invite {
            self.tx.guard_invite(tx, now);
            if let Some(r) = self.calls.get_mut(&id).and_then(Call::reoffer_mut) {
                r.sent_invite(leg, tx);
            }
        }
        self.owners
            .insert(tx, TxOwner::Call(id, ClientPurpose::Refresh(leg)));
        if leg == Leg::B {
            self.keep_for_auth(tx, id, req, None);
        }
        let due = {
            let Some(t) = self.leg_timer_mut(id, leg) else {
                return;
            };
            t.out = true;
            t.due = t.expiry();
            t.due
        };
        self.arm(id, leg, due);
    }

    fn leg_timer_mut(&mut self, id: CallId, leg: Leg) -> Option<&mut LegTimer> {
        self.calls.get_mut(&id)?.timers_mut()?.legs[idx(leg)].as_mut()
    }

    /// A response to a refresh of ours on `leg`.
    pub(super) fn on_refresh_response(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if resp.status < 200 || self.b_request_challenged(tx, id, &resp, now, policy) {
            return;
        }
        let Some(TxOwner::Call(_, ClientPurpose::Refresh(leg))) = self.owners.remove(&tx) else {
            return;
        };
        let invite = resp.cseq().map(|c| c.method) == Some(Method::Invite);
        let ok = (200..300).contains(&resp.status);
        if invite && ok {
            let seq = resp.cseq().map_or(0, |c| c.seq);
            self.ack_reinvite(id, leg, seq, None);
        }
        if !self.calls.get(&id).is_some_and(Call::is_confirmed) {
            self.maybe_collect(id);
            return;
        }
        match resp.status {
            200..=299 => self.refreshed_by_2xx(id, leg, &resp, now),
            422 => self.refresh_too_small(id, leg, &resp, now, policy),
            //= rfc4028#section-10
            //# If the session refresh request transaction times out or generates a 408 or 481
            //# response, then the UAC sends a BYE request
            408 | 481 => self.session_expired(id, now, policy),
            405 | 501 if !invite => {
                // UPDATE refused after all: re-INVITEs from now on.
                if let Some(t) = self.leg_timer_mut(id, leg) {
                    t.peer_update = false;
                    t.out = false;
                }
                self.send_refresh(id, leg, now);
            }
            491 => {
                // Glare with a re-INVITE of the peer (RFC 3261 §14.1): again a little later,
                // within the session.
                let Some(t) = self.leg_timer_mut(id, leg) else {
                    return;
                };
                t.out = false;
                t.due = (now + Duration::from_millis(2100)).min(t.expiry());
                let due = t.due;
                self.arm(id, leg, due);
            }
            _ => {
                // The session goes on as it is and ends at its expiry unless the peer
                // refreshes it first (the deadline stays).
                if let Some(t) = self.leg_timer_mut(id, leg) {
                    t.out = false;
                }
            }
        }
    }

    fn refreshed_by_2xx(&mut self, id: CallId, leg: Leg, resp: &Response, now: Instant) {
        self.stats.session_refreshes += 1;
        if let Some(c) = resp
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
        {
            if let Some(call) = self.calls.get_mut(&id) {
                call.leg_mut(leg).remote_target = c.uri.to_string();
            }
        }
        //= rfc4028#section-7.2
        //# A 2xx without a Session-Expires can come for both initial and subsequent session
        //# refresh requests.  This means that the session timer can be 'turned-off' in mid
        //# dialog by receiving a response without a Session-Expires header field.
        let Some(current) = self.leg_timer_mut(id, leg).map(|t| t.clone()) else {
            return;
        };
        let t = timers::after_2xx(&current, &resp.headers, now);
        self.set_timer(id, leg, t);
    }

    fn refresh_too_small(
        &mut self,
        id: CallId,
        leg: Leg,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        let min = timers::min_se(&resp.headers).unwrap_or(0);
        let Some(t) = self.leg_timer_mut(id, leg) else {
            return;
        };
        if t.retries >= timers::MAX_422_RETRIES || min <= t.interval {
            self.session_expired(id, now, policy);
            return;
        }
        t.retries += 1;
        t.interval = min;
        t.min_se = min;
        t.out = false;
        self.send_refresh(id, leg, now);
    }

    /// A refresh of ours got no answer (timeout, transport error: `status`).
    pub(super) fn refresh_failed(
        &mut self,
        id: CallId,
        status: u16,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if matches!(status, 408 | 503) && self.calls.get(&id).is_some_and(Call::is_confirmed) {
            self.session_expired(id, now, policy);
        } else {
            self.maybe_collect(id);
        }
    }

    /// A leg's session is over: the call ends, BYE on both legs.
    fn session_expired(&mut self, id: CallId, now: Instant, policy: &mut dyn Policy) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.is_confirmed() {
            return;
        }
        call.log.hangup(Hangup::SessionExpired, now);
        self.stats.sessions_expired += 1;
        self.end_both(id, now, policy);
    }

    /// A re-INVITE or UPDATE from `leg`'s peer: `true` when answered here (422 for an interval
    /// below the leg's Min-SE; 200 for a bodiless UPDATE on a leg with a timer: a refresh of
    /// that leg alone); `false`: to be relayed.
    pub(super) fn peer_refresh(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        if !self.calls.get(&id).is_some_and(Call::is_confirmed) {
            return false;
        }
        let ours = self.leg_settings(id, leg, now, policy);
        let (leg_min, has_timer, local_tag, peer) = {
            let Some(call) = self.calls.get(&id) else {
                return false;
            };
            let t = call.timers().and_then(|ts| ts.leg(leg));
            let d = call.leg(leg);
            (
                t.map_or(0, |t| t.min_se),
                t.is_some(),
                d.local_tag.clone(),
                d.peer,
            )
        };
        if let Err(min) = timers::too_small(&req.headers, ours, leg_min) {
            self.refuse_too_small(tx, req, min, Some(&local_tag), now);
            return true;
        }
        let refresh_only = req.method == Method::Update
            && req.body.is_empty()
            && (has_timer || timers::session_expires(&req.headers).is_some());
        if !refresh_only {
            return false;
        }
        let t = timers::as_uas(&req.headers, ours, now);
        let mut resp = make_response(req, 200, "OK", Some(&local_tag));
        resp.headers.push("Contact", self.contact_for(peer));
        if let Some(t) = &t {
            answer_headers(t, &mut resp.headers);
        }
        self.tx.send_response(tx, resp, now);
        self.set_timer(id, leg, t);
        true
    }

    /// A re-INVITE or UPDATE relayed to `to_leg` (`out`) carries that leg's Session-Expires
    /// (a refresh of it); its SDP waits for the 2xx to become the leg's.
    pub(super) fn relay_timer_headers(&mut self, id: CallId, to_leg: Leg, out: &mut Request) {
        let Some(ts) = self.calls.get_mut(&id).and_then(Call::timers_mut) else {
            return;
        };
        ts.offered[idx(to_leg)] = (!out.body.is_empty()).then(|| out.body.clone());
        if let Some(t) = ts.leg(to_leg) {
            out.headers.push("Supported", "timer");
            out.headers.push("Session-Expires", t.request_value());
            out.headers.push("Min-SE", t.min_se.to_string());
        }
    }

    /// The 2xx `resp` of `to_leg` to a re-INVITE or UPDATE relayed from `from_leg` (`orig`):
    /// both legs are refreshed; `out`, the 2xx to `from_leg`, says its Session-Expires.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn relay_refreshed(
        &mut self,
        id: CallId,
        from_leg: Leg,
        orig: &Request,
        resp: &Response,
        out: &mut Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if !self.calls.get(&id).is_some_and(Call::is_confirmed) {
            return;
        }
        let to_leg = from_leg.other();
        let ours = self.leg_settings(id, from_leg, now, policy);
        let from_t = timers::as_uas(&orig.headers, ours, now);
        if let Some(t) = &from_t {
            answer_headers(t, &mut out.headers);
        }
        if let Some(current) = self.leg_timer_mut(id, to_leg).map(|t| t.clone()) {
            let to_t = timers::after_2xx(&current, &resp.headers, now);
            self.set_timer(id, to_leg, to_t);
        }
        self.set_timer(id, from_leg, from_t);
        let Some(ts) = self.calls.get_mut(&id).and_then(Call::timers_mut) else {
            return;
        };
        if let Some(sdp) = ts.offered[idx(to_leg)].take() {
            ts.sdp[idx(to_leg)] = Some(sdp);
        }
        ts.sent_sdp(from_leg, &out.body);
    }
}

/// Session-Expires (and `Require: timer` for a peer that supports it) of a 2xx trunkline sends
/// on a leg with timer `t`.
fn answer_headers(t: &LegTimer, h: &mut Headers) {
    //= rfc4028#section-9
    //# If the UAS wishes to accept the request, it copies the value of the Session-Expires
    //# header field from the request into the 2xx response.
    h.push("Session-Expires", t.response_value());
    if t.peer_supports {
        h.push("Require", "timer");
    }
}
