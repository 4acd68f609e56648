//! What a call record (CDR) is made of: the facts the core collects while a call lives
//! ([`CallLog`], one per call) and the [`CallRecord`] it reports once, when the call's media is
//! released ([`CallEvent::Record`](super::CallEvent)). Times are the core's `Instant`s; the
//! shell turns them into wall-clock time and adds what only it knows (trunk names of sources,
//! media quality, codecs).

use std::net::SocketAddr;
use std::time::Instant;

use super::{B2bua, CallEvent, Method, Peer, Policy, Request};

/// Who (or what) ended a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hangup {
    /// Leg A: BYE, CANCEL, or BYE on its early dialog.
    Caller,
    /// Leg B: BYE, or a final refusal (busy, 4xx-6xx) with no target left.
    Callee,
    /// A timer: no answer, ringing too long, no ACK, a transaction timeout.
    Timeout,
    /// No RTP for `media.timeout`.
    MediaTimeout,
    /// trunkline shutting down.
    Shutdown,
    /// An operator (admin API).
    Admin,
    /// A leg's session timer ran out (RFC 4028: no refresh, or the refresh failed).
    SessionExpired,
    /// trunkline answered the INVITE itself before it became a call (the dial plan's reject or
    /// redirect, no route, a limit, overload, a malformed or looping request).
    Refused,
}

impl Hangup {
    pub fn as_str(self) -> &'static str {
        match self {
            Hangup::Caller => "caller",
            Hangup::Callee => "callee",
            Hangup::Timeout => "timeout",
            Hangup::MediaTimeout => "media_timeout",
            Hangup::Shutdown => "shutdown",
            Hangup::Admin => "admin",
            Hangup::SessionExpired => "session_expired",
            Hangup::Refused => "refused",
        }
    }
}

/// One leg B attempt: the trunk and its final status (`None`: none came, e.g. cancelled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub trunk: String,
    pub code: Option<u16>,
}

/// A call as it ended, for its CDR.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// The core's call number (as in the other [`CallEvent`](super::CallEvent)s).
    pub call: u64,
    pub a_call_id: String,
    /// Leg B's Call-ID (ours; the same for every attempt).
    pub b_call_id: String,
    pub a_peer: SocketAddr,
    pub started: Instant,
    /// First ringing (a provisional response other than 100).
    pub ringing: Option<Instant>,
    pub answered: Option<Instant>,
    pub ended: Instant,
    /// Caller and callee as received (From user, Request-URI user) and as sent on leg B.
    pub caller: String,
    pub callee: String,
    pub caller_out: String,
    pub callee_out: String,
    pub attempts: Vec<AttemptRecord>,
    /// What leg A was answered (200 for an answered call).
    pub final_code: u16,
    pub hangup: Hangup,
    /// An INVITE refused before it became a call ([`Hangup::Refused`]): no media, no leg B
    /// (`b_call_id` is a fresh id of its own, so every record has a unique one).
    pub refused: bool,
}

/// The facts of one call so far.
#[derive(Clone, Debug)]
pub(super) struct CallLog {
    pub(super) started: Instant,
    ringing: Option<Instant>,
    answered: Option<Instant>,
    ended: Option<Instant>,
    caller: String,
    callee: String,
    caller_out: String,
    callee_out: String,
    attempts: Vec<AttemptRecord>,
    final_code: Option<u16>,
    hangup: Option<Hangup>,
}

impl CallLog {
    pub(super) fn new(started: Instant, received: [&str; 2], sent: [&str; 2]) -> CallLog {
        CallLog {
            started,
            ringing: None,
            answered: None,
            ended: None,
            caller: received[0].to_string(),
            callee: received[1].to_string(),
            caller_out: sent[0].to_string(),
            callee_out: sent[1].to_string(),
            attempts: Vec::new(),
            final_code: None,
            hangup: None,
        }
    }

    /// Caller and callee as received, then as sent on leg B.
    pub(super) fn parties(&self) -> [String; 4] {
        [
            self.caller.clone(),
            self.callee.clone(),
            self.caller_out.clone(),
            self.callee_out.clone(),
        ]
    }

    /// Leg B's INVITE went to `trunk`.
    pub(super) fn attempt(&mut self, trunk: &str) {
        self.attempts.push(AttemptRecord {
            trunk: trunk.to_string(),
            code: None,
        });
    }

    /// The current attempt got its final `code`.
    pub(super) fn attempt_done(&mut self, code: u16) {
        if let Some(a) = self.attempts.last_mut() {
            a.code.get_or_insert(code);
        }
    }

    pub(super) fn ringing(&mut self, now: Instant) {
        self.ringing.get_or_insert(now);
    }

    pub(super) fn answered(&mut self, now: Instant) {
        self.answered.get_or_insert(now);
        self.final_code.get_or_insert(200);
    }

    /// Leg A got its final answer `code` (a failure: the call ends now).
    pub(super) fn refused(&mut self, code: u16, now: Instant) {
        self.final_code.get_or_insert(code);
        self.ended.get_or_insert(now);
    }

    /// The call ends now because of `who` (the first cause given wins).
    pub(super) fn hangup(&mut self, who: Hangup, now: Instant) {
        self.hangup.get_or_insert(who);
        self.ended.get_or_insert(now);
    }

    /// The record, for a call whose media is released at `now`.
    pub(super) fn record(
        &self,
        call: u64,
        ids: [&str; 2],
        a_peer: SocketAddr,
        now: Instant,
    ) -> CallRecord {
        let final_code = self.final_code.unwrap_or(500);
        let hangup = self.hangup.unwrap_or(if final_code == 408 {
            Hangup::Timeout
        } else {
            Hangup::Callee
        });
        CallRecord {
            call,
            a_call_id: ids[0].to_string(),
            b_call_id: ids[1].to_string(),
            a_peer,
            started: self.started,
            ringing: self.ringing,
            answered: self.answered,
            ended: self.ended.unwrap_or(now),
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            caller_out: self.caller_out.clone(),
            callee_out: self.callee_out.clone(),
            attempts: self.attempts.clone(),
            final_code,
            hangup,
            refused: false,
        }
    }
}

impl B2bua {
    /// An INVITE trunkline answered `code` itself before it became a call: its record, with a
    /// call number and a `b_call_id` of its own (challenges, 401/407, are no attempt and get
    /// none; nor do requests of other methods).
    pub(super) fn refused_invite(
        &mut self,
        req: &Request,
        from: Peer,
        code: u16,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if req.method != Method::Invite || matches!(code, 401 | 407) {
            return;
        }
        let id = self.next_call;
        self.next_call += 1;
        let caller = req
            .from()
            .and_then(|f| f.uri.user().map(str::to_string))
            .unwrap_or_default();
        let callee = super::authz::ruri_user(&req.uri);
        let mut log = CallLog::new(now, [&caller, &callee], [&caller, &callee]);
        log.refused(code, now);
        log.hangup(Hangup::Refused, now);
        let own = self.new_call_id();
        let a_call_id = req.call_id().unwrap_or_default().to_string();
        let mut rec = log.record(id, [&a_call_id, &own], from.addr, now);
        rec.refused = true;
        policy.event(CallEvent::Record(Box::new(rec)), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_cause_and_first_times_win() {
        let t0 = Instant::now();
        let mut log = CallLog::new(t0, ["alice", "100"], ["alice", "+100"]);
        log.attempt("a");
        log.attempt_done(503);
        log.attempt("b");
        log.ringing(t0 + Duration::from_millis(10));
        log.ringing(t0 + Duration::from_millis(20));
        log.hangup(Hangup::Caller, t0 + Duration::from_millis(30));
        log.refused(487, t0 + Duration::from_millis(31));
        log.hangup(Hangup::Callee, t0 + Duration::from_millis(40));
        let peer = "127.0.0.1:5060".parse().expect("addr");
        let r = log.record(3, ["a-id", "b-id"], peer, t0 + Duration::from_secs(1));
        assert_eq!(r.hangup, Hangup::Caller);
        assert_eq!(r.final_code, 487);
        assert_eq!(r.ended, t0 + Duration::from_millis(30));
        assert_eq!(r.ringing, Some(t0 + Duration::from_millis(10)));
        assert_eq!(
            r.attempts,
            vec![
                AttemptRecord {
                    trunk: "a".into(),
                    code: Some(503)
                },
                AttemptRecord {
                    trunk: "b".into(),
                    code: None
                }
            ]
        );
        assert_eq!((r.callee.as_str(), r.callee_out.as_str()), ("100", "+100"));
    }
}
