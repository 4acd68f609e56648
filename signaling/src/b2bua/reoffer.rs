//! Re-INVITEs in a confirmed call, per leg (RFC 3261 §14, RFC 3264): the ACKs trunkline sends
//! for them, an offer that comes in a 2xx, and glare.
//!
//! * Offerless re-INVITE: one leg re-INVITEs without SDP, the other answers 2xx with an offer.
//!   The offer goes (through the media relay) in the 2xx to the leg that asked; that leg's ACK
//!   brings the answer, which goes (through the relay) in trunkline's ACK to the other leg. No
//!   leg is ACKed before its answer is known; a leg that never ACKs, or ACKs without an answer
//!   the relay can take, ends the call (BYE on both legs).
//! * A retransmitted 2xx of a re-INVITE gets the ACK sent for it again (never mistaken for a
//!   new dialog of a forking trunk, never ended with BYE).
//! * A re-INVITE from a leg on which trunkline's own re-INVITE is pending gets 491 (§14.2).

use super::*;

/// An ACK trunkline sent (or holds) for a re-INVITE's 2xx on one leg.
struct LegAck {
    cseq: u32,
    /// `None` while the answer it carries waits for the other leg's ACK.
    ack: Option<Request>,
}

/// A 2xx with an offer relayed to `origin`, whose ACK brings the answer for the other leg.
struct Waiting {
    origin: Leg,
    cseq: u32,
    server_tx: TxId,
}

/// Re-INVITE state of an answered call.
#[derive(Default)]
pub(super) struct Reoffer {
    acks: [Option<LegAck>; 2],
    waiting: Option<Waiting>,
    /// trunkline's INVITE client transaction pending on each leg (relayed or a refresh).
    outstanding: [Option<TxId>; 2],
}

fn idx(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl Reoffer {
    /// An INVITE of trunkline's went out on `leg` as `tx`.
    pub(super) fn sent_invite(&mut self, leg: Leg, tx: TxId) {
        self.outstanding[idx(leg)] = Some(tx);
    }
}

impl B2bua {
    /// Is a re-INVITE of the call's under way (one of trunkline's pending on a leg, or an
    /// offerless one waiting for its answer)?
    pub(super) fn reinvite_pending(&self, id: CallId) -> bool {
        let Some(r) = self.calls.get(&id).and_then(Call::reoffer) else {
            return false;
        };
        r.waiting.is_some()
            || r.outstanding
                .iter()
                .flatten()
                .any(|t| self.owners.call(t).is_some())
    }

    /// A re-INVITE from `leg`'s peer while trunkline's own INVITE on that leg is still pending:
    /// answered 491 (`true`).
    pub(super) fn reinvite_glare(
        &mut self,
        tx: TxId,
        req: &Request,
        id: CallId,
        leg: Leg,
        now: Instant,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Some(pending) = call.reoffer().and_then(|r| r.outstanding[idx(leg)]) else {
            return false;
        };
        if self.owners.call(&pending).is_none() {
            return false;
        }
        //= rfc3261#section-14.2
        //# A UAS that receives an INVITE on a dialog while an INVITE it had sent on that dialog
        //# is in progress MUST return a 491 (Request Pending) response to the received INVITE.
        let resp = make_response(req, 491, "Request Pending", Some(&call.leg(leg).local_tag));
        self.tx.send_response(tx, resp, now);
        true
    }

    /// ACK `leg`'s 2xx (CSeq `seq`) to a re-INVITE of trunkline's, with `body` when it carries
    /// an answer; kept for the 2xx's retransmissions.
    pub(super) fn ack_reinvite(&mut self, id: CallId, leg: Leg, seq: u32, body: Option<Vec<u8>>) {
        let Some(ack) = self.send_ack(id, leg, seq, body) else {
            return;
        };
        if let Some(r) = self.calls.get_mut(&id).and_then(Call::reoffer_mut) {
            r.acks[idx(leg)] = Some(LegAck {
                cseq: seq,
                ack: Some(ack),
            });
        }
    }

    /// `to_leg` answered a re-INVITE without SDP from the other leg with an offer (its 2xx,
    /// CSeq `seq`): its ACK waits for the origin's answer.
    pub(super) fn await_origin_answer(
        &mut self,
        id: CallId,
        to_leg: Leg,
        seq: u32,
        server_tx: TxId,
    ) {
        let Some(r) = self.calls.get_mut(&id).and_then(Call::reoffer_mut) else {
            return;
        };
        r.acks[idx(to_leg)] = Some(LegAck {
            cseq: seq,
            ack: None,
        });
        r.waiting = Some(Waiting {
            origin: to_leg.other(),
            cseq: seq,
            server_tx,
        });
        self.reack_txs.insert(server_tx, id);
    }

    /// An ACK from `leg`: the answer to the other leg's offer, when one waits for it (`true`:
    /// taken here).
    pub(super) fn origin_acked(
        &mut self,
        id: CallId,
        leg: Leg,
        ack: &Request,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some(r) = self.calls.get_mut(&id).and_then(Call::reoffer_mut) else {
            return false;
        };
        if r.waiting.as_ref().is_none_or(|w| w.origin != leg) {
            return false;
        }
        let Some(w) = r.waiting.take() else {
            return false;
        };
        self.reack_txs.remove(&w.server_tx);
        let answer = match self.calls.get(&id) {
            Some(call) if !ack.body.is_empty() => policy
                .media_answer(call.media_ref(), leg, &ack.body, now)
                .ok(),
            _ => None,
        };
        let other = leg.other();
        match answer {
            Some(body) => self.ack_reinvite(id, other, w.cseq, Some(body)),
            None => {
                // No answer the relay can take: the other leg's offer cannot be answered, and
                // an ACK cannot be refused: the call ends.
                self.stats.media_failures += 1;
                self.ack_reinvite(id, other, w.cseq, None);
                self.end_both(id, now, policy);
            }
        }
        true
    }

    /// The 2xx carrying the other leg's offer (server transaction `tx`) was never ACKed: the
    /// other leg gets its ACK without an answer, and the call ends (`true`: it was one).
    pub(super) fn origin_never_acked(
        &mut self,
        tx: TxId,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some(id) = self.reack_txs.remove(&tx) else {
            return false;
        };
        let Some(w) = self
            .calls
            .get_mut(&id)
            .and_then(Call::reoffer_mut)
            .and_then(|r| r.waiting.take())
        else {
            return true;
        };
        self.ack_reinvite(id, w.origin.other(), w.cseq, None);
        self.end_both(id, now, policy);
        true
    }

    /// A 2xx with no owner left from a leg of call `id`: the retransmission of a re-INVITE's
    /// 2xx (`true`: the ACK sent for it goes again; one whose ACK waits for the other leg's
    /// answer is absorbed).
    pub(super) fn reinvite_2xx_again(&mut self, id: CallId, leg: Leg, resp: &Response) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let seq = resp.cseq().map(|c| c.seq);
        let tag = resp.headers.get("To").and_then(tag_param);
        let d = call.leg(leg);
        if tag != d.remote_tag.as_deref() {
            return false;
        }
        let Some(a) = call.reoffer().and_then(|r| r.acks[idx(leg)].as_ref()) else {
            // In the call's dialog but no re-INVITE of ours: leg B's initial 2xx (its CSeq)
            // is for `forks.rs`; anything else is stale and absorbed.
            return leg == Leg::A
                || call
                    .handshake()
                    .is_some_and(|h| Some(h.b_invite_cseq) != seq);
        };
        if Some(a.cseq) != seq {
            return leg == Leg::A
                || call
                    .handshake()
                    .is_some_and(|h| Some(h.b_invite_cseq) != seq);
        }
        if let Some(ack) = &a.ack {
            let msg = SipMessage::Request(ack.clone());
            self.tx.send_stateless(&msg, d.peer);
        }
        true
    }
}
