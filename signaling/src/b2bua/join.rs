//! `refer: handle` with `Replaces` (RFC 3891): an attended transfer between two of trunkline's
//! own calls. A PBX holds call 1 (caller A1, its leg B) and call 2 (caller A2, its leg B) and
//! REFERs call 1's leg B to the dialog of call 2's leg B. trunkline connects A1 and A2 itself:
//!
//! 1. The REFER is accepted 202 (NOTIFY `100 Trying`), as for a blind transfer (`handoff.rs`).
//! 2. A2 gets a re-INVITE without an offer in its own dialog; its offer (in the 2xx) goes to A1
//!    in a re-INVITE through call 1's relay pair, A1's answer to A2 in its ACK.
//! 3. A2's dialog becomes call 1's leg B; call 2's leg B (the replaced dialog) gets BYE and
//!    call 2 ends (its relay pair released, its CDR written); call 1's transferor gets NOTIFY
//!    `200 OK` and BYE.
//!
//! The Replaces must name the dialog of an answered call of trunkline's other than the REFER's
//! own (tags in either order), else the REFER is declined 603. A2 refusing the re-INVITE leaves
//! both calls as they were (NOTIFY with its status).

use super::*;

/// The Replaces of a Refer-To URI (`?Replaces=<call-id>%3Bto-tag%3D..%3Bfrom-tag%3D..`):
/// Call-ID and the two tags, unescaped.
pub(super) fn replaces_of(refer_to: &str) -> Option<(String, String, String)> {
    let uri = NameAddr::parse(refer_to).ok()?.uri.to_string();
    let (_, headers) = uri.split_once('?')?;
    let value = headers.split('&').find_map(|h| {
        let (n, v) = h.split_once('=')?;
        n.eq_ignore_ascii_case("Replaces").then_some(v)
    })?;
    let value = crate::uri::unescape(value);
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim().to_string();
    let (mut to, mut from) = (None, None);
    for p in parts {
        match p.trim().split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("to-tag") => to = Some(v.to_string()),
            Some((k, v)) if k.eq_ignore_ascii_case("from-tag") => from = Some(v.to_string()),
            _ => {}
        }
    }
    Some((call_id, to?, from?)).filter(|(c, _, _)| !c.is_empty())
}

impl B2bua {
    /// The call whose leg B is the dialog `replaces` names: answered, not `id`, no transfer of
    /// its own under way.
    pub(super) fn replaced_call(
        &self,
        id: CallId,
        replaces: &(String, String, String),
    ) -> Option<CallId> {
        let (call_id, to, from) = replaces;
        let other = *self.by_b.get(call_id.as_str())?;
        let call = self.calls.get(&other)?;
        let b = &call.b;
        let tags = (b.local_tag.as_str(), b.remote_tag.as_deref().unwrap_or(""));
        let named = tags == (to.as_str(), from.as_str()) || tags == (from.as_str(), to.as_str());
        let ok = other != id
            && named
            && b.call_id == *call_id
            && call.is_confirmed()
            && call.transfer().is_none();
        ok.then_some(other)
    }

    /// Step 2 for call `id` joining `other`'s caller: the offerless re-INVITE to it.
    pub(super) fn invite_joined(
        &mut self,
        id: CallId,
        other: CallId,
        refer_cseq: u32,
        now: Instant,
    ) {
        let Some((invite, peer)) = self.dialog_request(other, Leg::A, Method::Invite) else {
            return;
        };
        let Some(d) = self.calls.get(&other).map(|c| c.a.clone()) else {
            return;
        };
        let mut invite = invite;
        invite.headers.push("Allow", ALLOW);
        let t = self.tx.send_request_ref(&invite, peer, now);
        self.tx.guard_invite(t, now);
        self.owners
            .insert(t, TxOwner::Call(id, ClientPurpose::TransferInvite));
        let transfer = super::handoff::Transfer::joining(refer_cseq, d, invite, t, other);
        if let Some(slot) = self.calls.get_mut(&id).and_then(Call::transfer_slot) {
            *slot = Some(Box::new(transfer));
        }
        self.stats.transfers += 1;
    }

    /// Step 3: call `other` gave its caller to another call: its leg B (the replaced dialog)
    /// is ended, and the call with it, without a word to its caller.
    pub(super) fn dissolve_joined(&mut self, other: CallId, now: Instant, policy: &mut dyn Policy) {
        let Some(call) = self.calls.get_mut(&other) else {
            return;
        };
        call.log.hangup(Hangup::Callee, now);
        // Its caller's requests belong to the call that took it now (by its Call-ID in by_b).
        let (a_call_id, a_tag) = (call.a.call_id.clone(), call.a.remote_tag.clone());
        if let Some(list) = self.by_a.get_mut(&a_call_id) {
            list.retain(|(t, cid)| !(Some(t) == a_tag.as_ref() && *cid == other));
            if list.is_empty() {
                self.by_a.remove(&a_call_id);
            }
        }
        self.send_bye(other, Leg::B, now);
        self.finish_confirmed(other, now, policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_from_a_refer_to() {
        let r = replaces_of("<sip:2000@pbx?Replaces=abc%40pbx%3Bto-tag%3D1%3Bfrom-tag%3D2>");
        assert_eq!(
            r,
            Some(("abc@pbx".to_string(), "1".to_string(), "2".to_string()))
        );
        let r = replaces_of("<sip:h?Require=replaces&Replaces=c%3Bfrom-tag%3Df%3Bto-tag%3Dt>");
        assert_eq!(r, Some(("c".into(), "t".into(), "f".into())));
        assert_eq!(replaces_of("<sip:2000@pbx>"), None);
        assert_eq!(
            replaces_of("<sip:h?Replaces=c%3Bto-tag%3Dt>"),
            None,
            "both tags"
        );
        assert_eq!(replaces_of("<<<"), None);
    }
}
