//! Leg B's INVITE challenged by the trunk (401/407): answered with the trunk's credentials
//! ([`Policy::credentials`]) once per nonce, as the same request with a new CSeq and the same
//! Call-ID (RFC 3261 §22.2). Leg A never sees the challenge; an INVITE the trunk challenges
//! again (same nonce, or a new one without `stale=true`) ends with the failure relayed (and
//! fails over like any other final answer).

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
        id: u64,
        resp: &Response,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        if call.state != CallState::Proceeding || call.cancelled || call.b_invite_tx != Some(tx) {
            return false;
        }
        let idx = call.target_idx;
        let (Some(target), Some(invite)) = (call.targets.get(idx), call.b_invite.as_ref()) else {
            return false;
        };
        let Some(cred) = policy.credentials(&target.trunk, now) else {
            return false;
        };
        let peer = target.peer;
        let invite = invite.clone();
        let cnonce = self.new_tag();
        let via = self.via_for(peer.transport);
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
        if let Some(call) = self.calls.get_mut(&id) {
            call.b_invite = Some(retry);
            call.b_invite_tx = Some(new_tx);
        }
        self.owners
            .insert(new_tx, TxOwner::Call(id, ClientPurpose::Invite));
        self.stats.auth_retries += 1;
        true
    }
}
