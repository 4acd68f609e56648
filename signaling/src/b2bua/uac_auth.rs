//! Leg B's requests challenged by the trunk (401/407): answered with the trunk's credentials
//! ([`Policy::credentials`]) once per nonce, as the same request with a new CSeq and the same
//! Call-ID (RFC 3261 §22.2). Leg A never sees the challenge; a request the trunk challenges
//! again (same nonce, or a new one without `stale=true`) ends with the failure relayed (an
//! INVITE fails over like after any other final answer).
//!
//! The initial INVITE is kept by its call anyway. In-dialog requests to leg B (BYE, re-INVITE,
//! UPDATE, INFO, ... relayed from leg A or sent by trunkline) are kept in `B2bua::b_sent` until
//! their final answer, but only for calls whose trunk has credentials: no copy otherwise.

use super::*;
use crate::digest_client::{Authorization, DigestClient, RequestParts};

/// A call's Digest client for leg B: the target it answers for, and the nonce its last
/// request carried.
pub(super) struct LegAuth {
    target_idx: usize,
    client: DigestClient,
}

/// The same request, resent: fresh Via branch, CSeq `seq`, the credentials of `auth` in place
/// of any earlier ones.
fn resend(req: &Request, via: String, seq: u32, auth: Authorization) -> Request {
    let mut out = req.clone();
    out.headers.set("Via", via);
    out.headers
        .set("CSeq", cseq_value(seq, req.method.as_str()));
    out.headers.remove("Authorization");
    out.headers.remove("Proxy-Authorization");
    out.headers.push(auth.header, auth.value);
    out
}

/// The nonce a request's credentials answered (`None` when it carried none).
fn sent_nonce(req: &Request) -> Option<String> {
    let v = req
        .headers
        .get("Authorization")
        .or_else(|| req.headers.get("Proxy-Authorization"))?;
    crate::digest::digest_params(v)?.remove("nonce")
}

impl B2bua {
    /// A 401/407 to leg B's INVITE: retry it with credentials when the trunk has them and the
    /// challenge may be answered; `false` when it is a failure like any other.
    pub(super) fn b_invite_challenged(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some(at) = self.calls.get(&id).and_then(Call::attempt) else {
            return false;
        };
        if at.cancelled || at.tx != Some(tx) {
            return false;
        }
        let idx = at.target_idx;
        let (Some(target), Some(invite)) = (at.targets.get(idx), at.invite.as_ref()) else {
            return false;
        };
        let Some(cred) = policy.credentials(&target.trunk, now) else {
            return false;
        };
        let peer = target.peer;
        let invite = invite.clone();
        let cnonce = self.new_tag();
        let via = self.via_for(peer);
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let auth = match &mut call.b_auth {
            Some(a) if a.target_idx == idx => a,
            slot => slot.insert(LegAuth {
                target_idx: idx,
                client: DigestClient::new(cred),
            }),
        };
        let parts = RequestParts {
            method: "INVITE",
            uri: &invite.uri,
            body: &invite.body,
        };
        let sent = sent_nonce(&invite);
        let Ok(answer) = auth.client.answer(resp, &parts, sent.as_deref(), &cnonce) else {
            self.stats.auth_refused += 1;
            return false;
        };
        call.b.local_cseq = call.b.local_cseq.wrapping_add(1);
        let retry = resend(&invite, via, call.b.local_cseq, answer);
        // The challenged transaction is over (the transaction layer ACKed its 4xx).
        self.owners.remove(&tx);
        let new_tx = self.tx.send_request_ref(&retry, peer, now);
        if let Some(at) = self.calls.get_mut(&id).and_then(Call::attempt_mut) {
            at.invite = Some(retry);
            at.tx = Some(new_tx);
        }
        self.owners
            .insert(new_tx, TxOwner::Call(id, ClientPurpose::Invite));
        self.stats.auth_retries += 1;
        true
    }

    /// Keep `req`, just sent to leg B as `tx`, for a challenge to it, when the call's trunk
    /// has credentials (`policy`: asked; `None`: known from an earlier challenge of the call).
    pub(super) fn keep_for_auth(
        &mut self,
        tx: TxId,
        id: CallId,
        req: Request,
        policy: Option<(&mut dyn Policy, Instant)>,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let has = call.b_auth.is_some()
            || match (policy, call.b_trunk.as_deref()) {
                (Some((p, now)), Some(trunk)) => p.credentials(trunk, now).is_some(),
                _ => false,
            };
        if has {
            self.b_sent.insert(tx, req);
        }
    }

    /// A response to an in-dialog request of a call: a 401/407 to one kept for it is answered
    /// (`true`: resent, the response goes no further); any final answer forgets the copy.
    pub(super) fn b_request_challenged(
        &mut self,
        tx: TxId,
        id: CallId,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        if resp.status < 200 {
            return false;
        }
        let Some(req) = self.b_sent.remove(&tx) else {
            return false;
        };
        if resp.status != 401 && resp.status != 407 {
            return false;
        }
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Some(trunk) = call.b_trunk.clone() else {
            return false;
        };
        let Some(cred) = policy.credentials(&trunk, now) else {
            return false;
        };
        let peer = call.b.peer;
        let cnonce = self.new_tag();
        let via = self.via_for(peer);
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        // Confirmed: the target the call was answered at (the last one tried).
        let idx = call.b_auth.as_ref().map_or(0, |a| a.target_idx);
        let auth = match &mut call.b_auth {
            Some(a) if a.target_idx == idx => a,
            slot => slot.insert(LegAuth {
                target_idx: idx,
                client: DigestClient::new(cred),
            }),
        };
        let parts = RequestParts {
            method: req.method.as_str(),
            uri: &req.uri,
            body: &req.body,
        };
        let sent = sent_nonce(&req);
        let Ok(answer) = auth.client.answer(resp, &parts, sent.as_deref(), &cnonce) else {
            self.stats.auth_refused += 1;
            return false;
        };
        call.b.local_cseq = call.b.local_cseq.wrapping_add(1);
        let retry = resend(&req, via, call.b.local_cseq, answer);
        let Some(owner) = self.owners.remove(&tx) else {
            return false;
        };
        let new_tx = self.tx.send_request_ref(&retry, peer, now);
        if retry.method == Method::Invite {
            self.tx.guard_invite(new_tx, now);
        }
        self.owners.insert(new_tx, owner);
        self.b_sent.insert(new_tx, retry);
        self.stats.auth_retries += 1;
        true
    }

    /// Keep an out-of-dialog request just sent to a trunk (a MESSAGE, a subscription's first
    /// SUBSCRIBE) for a challenge to it, when the trunk has credentials.
    pub(super) fn keep_standalone(
        &mut self,
        tx: TxId,
        req: &Request,
        target: &Target,
        sub: Option<SubId>,
        policy: &mut dyn Policy,
        now: Instant,
    ) {
        if policy.credentials(&target.trunk, now).is_some() {
            self.b_sent_standalone.insert(
                tx,
                Standalone {
                    req: req.clone(),
                    trunk: target.trunk.clone(),
                    peer: target.peer,
                    sub,
                },
            );
        }
    }

    /// A final response to a request kept by [`B2bua::keep_standalone`]: a 401/407 is answered
    /// (`true`: resent; the response goes no further); any final answer forgets the copy.
    pub(super) fn standalone_challenged(
        &mut self,
        tx: TxId,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        if resp.status < 200 {
            return false;
        }
        let Some(st) = self.b_sent_standalone.remove(&tx) else {
            return false;
        };
        if resp.status != 401 && resp.status != 407 {
            return false;
        }
        let Some(cred) = policy.credentials(&st.trunk, now) else {
            return false;
        };
        let mut client = DigestClient::new(cred);
        let parts = RequestParts {
            method: st.req.method.as_str(),
            uri: &st.req.uri,
            body: &st.req.body,
        };
        let cnonce = self.new_tag();
        let sent = sent_nonce(&st.req);
        let Ok(answer) = client.answer(resp, &parts, sent.as_deref(), &cnonce) else {
            self.stats.auth_refused += 1;
            return false;
        };
        let seq = st.req.cseq().map_or(1, |c| c.seq).wrapping_add(1);
        let via = self.via_for(st.peer);
        let retry = resend(&st.req, via, seq, answer);
        if let Some(sub) = st.sub.and_then(|id| self.subs.get_mut(&id)) {
            sub.b.local_cseq = seq;
        }
        let Some(owner) = self.owners.remove(&tx) else {
            return false;
        };
        let new_tx = self.tx.send_request_ref(&retry, st.peer, now);
        self.owners.insert(new_tx, owner);
        self.b_sent_standalone
            .insert(new_tx, Standalone { req: retry, ..st });
        self.stats.auth_retries += 1;
        true
    }
}

/// An out-of-dialog request to a trunk with credentials, until its final answer.
pub(super) struct Standalone {
    req: Request,
    trunk: String,
    peer: Peer,
    /// The subscription whose first SUBSCRIBE it is (its leg B CSeq follows the resend).
    sub: Option<SubId>,
}
