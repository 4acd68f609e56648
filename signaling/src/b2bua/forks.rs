//! Leg B's INVITE answered 2xx more than once: a forking trunk answered on several branches,
//! or a branch the call moved on from answered late. Each 2xx is ACKed in its own dialog; the
//! dialogs the call does not keep are ended with BYE, once.
//!
//! A 2xx and its retransmissions are told apart by the dialog they name (To tag) and the
//! INVITE they answer (CSeq): a retransmission gets the ACK sent for the first copy again (one
//! ACK per 2xx received, never more), a new dialog gets its own ACK and one BYE.

use super::*;

//= rfc3261#section-13.2.2.4
//# If the dialog identifier in the 2xx response matches the dialog identifier of an existing
//# dialog, the dialog MUST be transitioned to the "confirmed" state, and the route set for
//# the dialog MUST be recomputed based on the 2xx response using the procedures of Section
//# 12.2.1.2.  Otherwise, a new dialog in the "confirmed" state MUST be constructed using the
//# procedures of Section 12.1.2.
//#
//# [...] The UAC core MUST generate an ACK request for each 2xx received from the transaction
//# layer. [...] Once the ACK has been constructed, the procedures of [4] are used to determine
//# the destination address, port and transport.  However, the request is passed to the
//# transport layer directly for transmission, rather than a client transaction.
//#
//# [...] If the UAC does not want to continue with that dialog, then the UAC MUST terminate
//# the dialog by sending a BYE request as described in Section 15.

/// A dialog leg B's INVITE made that the call does not keep.
pub(super) struct Fork {
    /// The callee's tag (To of its 2xx) and the CSeq of the INVITE it answered.
    tag: String,
    cseq: u32,
    /// The ACK sent for its 2xx, sent again for each retransmission; and where it went.
    ack: Request,
    peer: Peer,
}

/// Dialogs not kept that a call remembers (each costs one ACK and one BYE); 2xx for more new
/// dialogs than this are dropped unanswered (their sender gives up after 64·T1).
pub(super) const MAX_FORKS: usize = 8;

impl B2bua {
    /// A 2xx to leg B's INVITE of call `id` that does not make the call's dialog: a
    /// retransmission of the kept dialog's 2xx, or of a fork's, or a new fork (ACK, then BYE).
    /// `peer`: where the INVITE it answers went (`None`: the call's current target, or the
    /// peer of a fork of the same INVITE).
    pub(super) fn ack_other_2xx(
        &mut self,
        id: CallId,
        resp: &Response,
        peer: Option<Peer>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let tag = resp.headers.get("To").and_then(tag_param).unwrap_or("");
        let Some(seq) = resp.cseq().map(|c| c.seq) else {
            return;
        };
        if let Some(h) = call.handshake() {
            if call.b.remote_tag.as_deref() == Some(tag) && h.b_invite_cseq == seq {
                // The kept dialog's 2xx again (RFC 6026 §8.4: passed up while Accepted).
                if let Some(ack) = &h.b_ack {
                    let msg = SipMessage::Request(ack.clone());
                    self.tx.send_stateless(&msg, call.b.peer);
                }
                return;
            }
        }
        if let Some(f) = call.forks.iter().find(|f| f.tag == tag && f.cseq == seq) {
            let msg = SipMessage::Request(f.ack.clone());
            self.tx.send_stateless(&msg, f.peer);
            return;
        }
        if call.forks.len() >= MAX_FORKS {
            self.stats.forks_dropped += 1;
            return;
        }
        let peer = peer
            .or_else(|| call.forks.iter().find(|f| f.cseq == seq).map(|f| f.peer))
            .unwrap_or(call.b.peer);
        // The fork's dialog (RFC 3261 §12.1.2): our side as on leg B, the callee's tag,
        // remote target and route set from this 2xx.
        let mut d = call.b.clone();
        d.remote_tag = None;
        d.learn_answer(resp);
        d.remote_tag = Some(tag.to_string());
        d.peer = peer;
        d.local_cseq = seq;
        let (via_ack, via_bye) = (self.via_for(peer), self.via_for(peer));
        let contact = self.contact_for(peer);
        // A fork's 2xx that carries an offer (late offer) gets its ACK without an answer: the
        // dialog is ended at once, its session never used.
        let ack = d.request(Method::Ack, via_ack, contact.clone());
        let bye = d.request(Method::Bye, via_bye, contact);
        self.tx
            .send_stateless(&SipMessage::Request(ack.clone()), peer);
        let t = self.tx.send_request_ref(&bye, peer, now);
        self.owners.insert(t, TxOwner::Call(id, ClientPurpose::Bye));
        self.keep_for_auth(t, id, bye, None);
        self.stats.forks_ended += 1;
        if let Some(call) = self.calls.get_mut(&id) {
            call.forks.push(Fork {
                tag: tag.to_string(),
                cseq: seq,
                ack,
                peer,
            });
        }
    }
}
