//! One call, as the core holds it: its two dialogs ([`Dialog`], one per leg) and one state
//! machine whose states carry what only they mean (as rustls' handshake states do). A
//! transition replaces the state, so nothing of call setup outlives it and nothing of an
//! answered call exists before the answer:
//!
//! ```text
//! Proceeding(Attempt) --2xx from leg B--> Confirmed(Established) --BYE, teardown--> Terminating(Ending)
//!         |                                                                                 ^
//!         +-------------- failed, refused, or the 2xx crossed our CANCEL -------------------+
//! ```
//!
//! A terminating call stays until none of its client transactions is pending (`owners`); it
//! keeps the answered INVITE's [`Handshake`] meanwhile (a retransmitted 2xx from leg B is
//! ACKed again, a missing ACK from leg A still ends it).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{CallRef, Dialog, Leg, Target};
use crate::message::Request;
use crate::transaction::TxId;

/// A call's number in the core: what [`CallEvent`](super::CallEvent)s and
/// [`CallRef::id`](super::CallRef) name (as its `u64`, [`CallId::raw`]). Handed out in
/// sequence, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CallId(pub(super) u64);

impl CallId {
    /// The number the core's user sees.
    pub(super) fn raw(self) -> u64 {
        self.0
    }
}

/// A call: leg A (answered by trunkline) and leg B (placed by it), and where it is.
pub(super) struct Call {
    pub(super) id: CallId,
    pub(super) a: Dialog,
    pub(super) b: Dialog,
    /// Leg A's INVITE server transaction, for good (the key of `B2bua::by_a_tx`); `None`: a
    /// call adopted from another node (`replica.rs`), whose INVITE was not here.
    pub(super) a_tx: Option<TxId>,
    /// The unauthenticated source this call counts against while unanswered (`caps`): given
    /// back when it is answered or fails, at the latest when the call is forgotten.
    pub(super) early_source: Option<IpAddr>,
    pub(super) state: CallState,
    /// Leg B's Digest client, once its trunk challenged (`uac_auth.rs`).
    pub(super) b_auth: Option<super::uac_auth::LegAuth>,
    /// The trunk leg B's INVITE went to last (the one its dialog is with once answered).
    pub(super) b_trunk: Option<String>,
    /// The transferor's dialog, replaced as leg B by the target of a transfer trunkline
    /// carried out (`handoff.rs`): its BYE is still answered.
    pub(super) old_b: Option<Box<Dialog>>,
    /// Dialogs leg B's INVITE made that the call does not keep (`forks.rs`).
    pub(super) forks: Vec<super::forks::Fork>,
    /// What its CDR will say (`cdr.rs`).
    pub(super) log: super::cdr::CallLog,
}

// Confirmed is the state a call spends its life in (its size is the call's size either way);
// only call setup, which a call leaves, is boxed.
#[allow(clippy::large_enum_variant)]
pub(super) enum CallState {
    /// Leg B's INVITE is out to the current target; leg A has no 2xx. (Boxed: an answered
    /// call, which may last hours, does not hold room for call setup.)
    Proceeding(Box<Attempt>),
    /// Leg A was answered 2xx.
    Confirmed(Established),
    /// Over (BYE sent, failed, refused): waiting for its transactions to finish.
    Terminating(Ending),
}

/// Call setup: leg A's INVITE, what each leg B INVITE is built from, the targets in failover
/// order and the branch being tried.
pub(super) struct Attempt {
    pub(super) started: Instant,
    /// INVITE to the first provisional response or answer.
    pub(super) pdd: Option<Duration>,
    /// Leg A's INVITE server transaction, until leg A has its final answer.
    pub(super) a_invite_tx: Option<TxId>,
    pub(super) a_invite: Request,
    pub(super) a_offer: Option<Vec<u8>>,
    /// Content-Type and body of leg B's INVITE (already rewritten for B), for every target.
    pub(super) b_offer: Option<(String, Vec<u8>)>,
    pub(super) targets: Vec<Target>,
    pub(super) target_idx: usize,
    pub(super) to_user: String,
    /// The Request-URI user of targets a followed 3xx added (`redirect.rs`), by index; the
    /// others (and every target when empty) take `to_user`.
    pub(super) users: Vec<Option<String>>,
    /// Contacts of 3xx answers followed so far (bounded: a redirect loop ends).
    pub(super) followed: usize,
    /// The RSeq of the last reliable provisional PRACKed on leg B, per early dialog (To tag)
    /// of the current target (`prack.rs`).
    pub(super) b_rseq: Vec<(String, u32)>,
    /// The trunk of the target being tried.
    pub(super) trunk: Option<String>,
    /// Leg B's INVITE to the current target: its client transaction (until its final answer
    /// or until the call moves on from it) and the request.
    pub(super) tx: Option<TxId>,
    pub(super) invite: Option<Request>,
    /// Leg B INVITEs to the current target retried after a 422 (`refresh.rs`).
    pub(super) se_retries: u8,
    /// The current target sent a provisional response (a CANCEL may be sent, RFC 3261 §9.1).
    pub(super) got_provisional: bool,
    /// Leg A has its final answer already (CANCEL, BYE, shutdown): leg B is being cancelled.
    pub(super) cancelled: bool,
}

impl Attempt {
    /// The Request-URI user of target `idx`.
    pub(super) fn user_of(&self, idx: usize) -> &str {
        match self.users.get(idx) {
            Some(Some(u)) => u,
            _ => &self.to_user,
        }
    }
}

/// The answered INVITE's ACKs on both legs (RFC 3261 §13.2.2.4, §13.3.1.4).
pub(super) struct Handshake {
    /// CSeq of leg B's INVITE, which its ACK repeats.
    pub(super) b_invite_cseq: u32,
    /// The ACK we sent for leg B's 2xx, re-sent when leg B retransmits its 2xx.
    pub(super) b_ack: Option<Request>,
    /// Late offer: leg B's 2xx carried the offer; leg B is ACKed with the answer in leg A's
    /// ACK.
    pub(super) b_ack_pending: bool,
    /// Leg A's INVITE server transaction whose 2xx is retransmitted until leg A's ACK.
    pub(super) a_2xx_tx: Option<TxId>,
}

impl Handshake {
    /// Nothing ACKed yet, for leg B's INVITE of `attempt`.
    fn of(attempt: &Attempt) -> Handshake {
        Handshake {
            b_invite_cseq: attempt
                .invite
                .as_ref()
                .and_then(|r| r.cseq())
                .map(|c| c.seq)
                .unwrap_or(1),
            b_ack: None,
            b_ack_pending: false,
            a_2xx_tx: None,
        }
    }

    /// The handshake of a call adopted from another node: both legs were ACKed there.
    pub(super) fn adopted() -> Handshake {
        Handshake {
            b_invite_cseq: 0,
            b_ack: None,
            b_ack_pending: false,
            a_2xx_tx: None,
        }
    }

    /// Moves it out, leaving one with nothing to do.
    fn take(&mut self) -> Handshake {
        Handshake {
            b_invite_cseq: self.b_invite_cseq,
            b_ack: self.b_ack.take(),
            b_ack_pending: std::mem::take(&mut self.b_ack_pending),
            a_2xx_tx: self.a_2xx_tx.take(),
        }
    }
}

/// An answered call.
pub(super) struct Established {
    pub(super) answered: Instant,
    pub(super) handshake: Handshake,
    /// Each leg's session timer (RFC 4028, `refresh.rs`).
    pub(super) timers: super::refresh::CallTimers,
    /// Re-INVITE ACKs, an offer waiting for its answer, pending INVITEs (`reoffer.rs`).
    pub(super) reoffer: super::reoffer::Reoffer,
    /// A transfer trunkline is carrying out (`handoff.rs`).
    pub(super) transfer: Option<Box<super::handoff::Transfer>>,
}

/// A call that is over.
pub(super) struct Ending {
    pub(super) handshake: Handshake,
    /// The media (relay ports, trunk slot) was released: once per call, whichever end path
    /// gets there first.
    pub(super) media_released: bool,
}

impl Call {
    pub(super) fn leg(&self, leg: Leg) -> &Dialog {
        match leg {
            Leg::A => &self.a,
            Leg::B => &self.b,
        }
    }

    pub(super) fn leg_mut(&mut self, leg: Leg) -> &mut Dialog {
        match leg {
            Leg::A => &mut self.a,
            Leg::B => &mut self.b,
        }
    }

    /// Its CDR, for a call whose media is released at `now`.
    pub(super) fn record(&self, now: Instant) -> super::cdr::CallRecord {
        self.log.record(
            self.id.raw(),
            [&self.a.call_id, &self.b.call_id],
            self.a.peer.addr,
            now,
        )
    }

    pub(super) fn media_ref(&self) -> CallRef<'_> {
        CallRef {
            id: self.id.raw(),
            call_id: &self.a.call_id,
            from_tag: self.a.remote_tag.as_deref().unwrap_or(""),
            peers: [self.a.peer.addr, self.b.peer.addr],
            b_trunk: self.b_trunk.as_deref().or_else(|| {
                self.attempt()
                    .and_then(|a| a.targets.get(a.target_idx))
                    .map(|t| t.trunk.as_str())
            }),
        }
    }

    /// Call setup, while proceeding.
    pub(super) fn attempt(&self) -> Option<&Attempt> {
        match &self.state {
            CallState::Proceeding(a) => Some(a),
            _ => None,
        }
    }

    pub(super) fn attempt_mut(&mut self) -> Option<&mut Attempt> {
        match &mut self.state {
            CallState::Proceeding(a) => Some(a),
            _ => None,
        }
    }

    /// The session timers of an answered call.
    pub(super) fn timers(&self) -> Option<&super::refresh::CallTimers> {
        match &self.state {
            CallState::Confirmed(e) => Some(&e.timers),
            _ => None,
        }
    }

    pub(super) fn timers_mut(&mut self) -> Option<&mut super::refresh::CallTimers> {
        match &mut self.state {
            CallState::Confirmed(e) => Some(&mut e.timers),
            _ => None,
        }
    }

    /// The re-INVITE state of an answered call.
    pub(super) fn reoffer(&self) -> Option<&super::reoffer::Reoffer> {
        match &self.state {
            CallState::Confirmed(e) => Some(&e.reoffer),
            _ => None,
        }
    }

    pub(super) fn reoffer_mut(&mut self) -> Option<&mut super::reoffer::Reoffer> {
        match &mut self.state {
            CallState::Confirmed(e) => Some(&mut e.reoffer),
            _ => None,
        }
    }

    /// The transfer under way in an answered call.
    pub(super) fn transfer(&self) -> Option<&super::handoff::Transfer> {
        match &self.state {
            CallState::Confirmed(e) => e.transfer.as_deref(),
            _ => None,
        }
    }

    pub(super) fn transfer_mut(&mut self) -> Option<&mut super::handoff::Transfer> {
        self.transfer_slot()?.as_deref_mut()
    }

    pub(super) fn transfer_slot(&mut self) -> Option<&mut Option<Box<super::handoff::Transfer>>> {
        match &mut self.state {
            CallState::Confirmed(e) => Some(&mut e.transfer),
            _ => None,
        }
    }

    /// The transferor's dialog of the transfer under way: leg B until the target replaced it.
    pub(super) fn transferor_mut(&mut self) -> Option<&mut Dialog> {
        let swapped = self.transfer()?.swapped();
        match (swapped, self.old_b.as_deref_mut()) {
            (true, Some(d)) => Some(d),
            _ => Some(&mut self.b),
        }
    }

    pub(super) fn is_confirmed(&self) -> bool {
        matches!(self.state, CallState::Confirmed(_))
    }

    pub(super) fn is_terminating(&self) -> bool {
        matches!(self.state, CallState::Terminating(_))
    }

    /// The answered INVITE's ACK state, once leg B's INVITE has ended (confirmed or
    /// terminating).
    pub(super) fn handshake(&self) -> Option<&Handshake> {
        match &self.state {
            CallState::Proceeding(_) => None,
            CallState::Confirmed(e) => Some(&e.handshake),
            CallState::Terminating(e) => Some(&e.handshake),
        }
    }

    pub(super) fn handshake_mut(&mut self) -> Option<&mut Handshake> {
        match &mut self.state {
            CallState::Proceeding(_) => None,
            CallState::Confirmed(e) => Some(&mut e.handshake),
            CallState::Terminating(e) => Some(&mut e.handshake),
        }
    }

    /// Proceeding -> Confirmed (answered at `now`); the setup it leaves. `None`, and no
    /// change, when the call was not proceeding.
    pub(super) fn confirm(&mut self, now: Instant) -> Option<Box<Attempt>> {
        let CallState::Proceeding(attempt) = &self.state else {
            return None;
        };
        let handshake = Handshake::of(attempt);
        let established = CallState::Confirmed(Established {
            answered: now,
            handshake,
            timers: Default::default(),
            reoffer: Default::default(),
            transfer: None,
        });
        match std::mem::replace(&mut self.state, established) {
            CallState::Proceeding(attempt) => Some(attempt),
            _ => None,
        }
    }

    /// Any state -> Terminating, keeping the answered INVITE's ACK state; the state it left.
    /// `None`, and no change, when it was terminating already.
    pub(super) fn end(&mut self) -> Option<CallState> {
        let handshake = match &mut self.state {
            CallState::Proceeding(attempt) => Handshake::of(attempt),
            CallState::Confirmed(e) => e.handshake.take(),
            CallState::Terminating(_) => return None,
        };
        let ending = CallState::Terminating(Ending {
            handshake,
            media_released: false,
        });
        Some(std::mem::replace(&mut self.state, ending))
    }

    /// One line: state and what the call still waits for (leak tests).
    pub(super) fn describe(&self, client_txs: bool) -> String {
        let (state, cancelled, a_tx, b_tx) = match &self.state {
            CallState::Proceeding(a) => ("Proceeding", a.cancelled, a.a_invite_tx, a.tx),
            CallState::Confirmed(_) => ("Confirmed", false, None, None),
            CallState::Terminating(_) => ("Terminating", false, None, None),
        };
        let hs = self.handshake();
        let released = matches!(&self.state, CallState::Terminating(e) if e.media_released);
        format!(
            "call {} {state} cancelled={cancelled} a_tx={a_tx:?} b_tx={b_tx:?} a_2xx={:?} client_txs={client_txs} media_released={released} ack_pending={}",
            self.id.raw(),
            hs.and_then(|h| h.a_2xx_tx),
            hs.is_some_and(|h| h.b_ack_pending),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Headers, Method};
    use crate::{Peer, Transport};

    fn dialog() -> Dialog {
        Dialog {
            call_id: "c".into(),
            local_tag: "l".into(),
            remote_tag: None,
            local_uri: "<sip:a@h>".into(),
            remote_uri: "<sip:b@h>".into(),
            remote_target: "sip:b@h".into(),
            route_set: Vec::new(),
            peer: Peer {
                transport: Transport::Udp,
                addr: "127.0.0.1:5060".parse().expect("address"),
            },
            trunk: false,
            headers: None,
            local_cseq: 1,
            remote_cseq: None,
        }
    }

    fn invite(cseq: &str) -> Request {
        let mut headers = Headers::with_capacity(1);
        headers.push("CSeq", cseq);
        Request {
            method: Method::Invite,
            uri: "sip:b@h".into(),
            headers,
            body: Vec::new(),
        }
    }

    fn proceeding(now: Instant) -> Call {
        Call {
            id: CallId(7),
            a: dialog(),
            b: dialog(),
            a_tx: Some(
                crate::transaction::Transactions::new(Default::default()).send_request(
                    invite("1 INVITE"),
                    dialog().peer,
                    now,
                ),
            ),
            early_source: None,
            b_auth: None,
            b_trunk: None,
            old_b: None,
            forks: Vec::new(),
            log: super::super::cdr::CallLog::new(now, ["a", "b"], ["a", "b"]),
            state: CallState::Proceeding(Box::new(Attempt {
                started: now,
                pdd: None,
                a_invite_tx: None,
                a_invite: invite("1 INVITE"),
                a_offer: None,
                b_offer: None,
                targets: Vec::new(),
                target_idx: 0,
                to_user: String::new(),
                users: Vec::new(),
                followed: 0,
                b_rseq: Vec::new(),
                trunk: None,
                tx: None,
                invite: Some(invite("42 INVITE")),
                se_retries: 0,
                got_provisional: false,
                cancelled: false,
            })),
        }
    }

    #[test]
    fn confirm_then_end_keeps_the_handshake() {
        let now = Instant::now();
        let mut call = proceeding(now);
        assert!(call.handshake().is_none());
        let setup = call.confirm(now).expect("was proceeding");
        assert_eq!(
            setup.invite.as_ref().and_then(|r| r.cseq()).map(|c| c.seq),
            Some(42)
        );
        assert!(call.is_confirmed() && call.attempt().is_none());
        assert!(call.confirm(now).is_none(), "confirmed once");
        let a_tx = call.a_tx.unwrap();
        let h = call.handshake_mut().expect("answered");
        assert_eq!(h.b_invite_cseq, 42);
        h.b_ack_pending = true;
        h.a_2xx_tx = Some(a_tx);
        match call.end() {
            Some(CallState::Confirmed(e)) => assert_eq!(e.answered, now),
            _ => panic!("was confirmed"),
        }
        assert!(call.is_terminating());
        let h = call.handshake().expect("kept");
        assert!(h.b_ack_pending && h.a_2xx_tx == call.a_tx && h.b_invite_cseq == 42);
        assert!(call.end().is_none(), "ended once");
        assert!(call.confirm(now).is_none());
    }

    #[test]
    fn a_failed_setup_ends_with_nothing_to_ack() {
        let now = Instant::now();
        let mut call = proceeding(now);
        assert!(matches!(call.end(), Some(CallState::Proceeding(_))));
        let h = call.handshake().expect("terminating");
        assert!(h.b_ack.is_none() && !h.b_ack_pending && h.a_2xx_tx.is_none());
        assert!(call.describe(false).contains("Terminating"));
    }
}
