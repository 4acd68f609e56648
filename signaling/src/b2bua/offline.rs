//! Messages for users who are offline (`crate::mailbox`): a MESSAGE to a served user with no
//! binding is kept (202 Accepted) and delivered, one at a time and in order, when the user
//! registers; each delivery carries the `Date` the message arrived (RFC 3261 section 20.17).

use super::*;
use crate::mailbox::{sip_date, Held, MailChange, Mailbox, MailboxLimits, NewMessage, Refused};

/// A held message on its way to its user.
pub(super) struct Delivery {
    aor: String,
    id: u64,
}

/// The wall clock as the shell last told it: (instant, Unix seconds then).
#[derive(Clone, Copy)]
pub(super) struct WallClock(Instant, u64);

impl WallClock {
    pub(super) fn at(self, now: Instant) -> u64 {
        if now >= self.0 {
            self.1 + now.duration_since(self.0).as_secs()
        } else {
            self.1.saturating_sub(self.0.duration_since(now).as_secs())
        }
    }
}

impl B2bua {
    /// The wall-clock time (Unix seconds) at `now`, for the `Date` of messages kept for later.
    /// Without it, delivered messages carry no `Date`.
    pub fn set_wall_clock(&mut self, now: Instant, unix_secs: u64) {
        self.wall = Some(WallClock(now, unix_secs));
    }

    /// The messages held for offline users.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// Held messages added and removed since the last call (for a store on disk). Empty unless
    /// [`B2bua::persist_locations`] was called.
    pub fn take_mail_changes(&mut self) -> Vec<MailChange> {
        self.mailbox.take_changes()
    }

    /// Messages for `aor` kept by an earlier run; delivered at once if the user is registered.
    pub fn restore_messages(
        &mut self,
        aor: String,
        held: Vec<Held>,
        limits: &MailboxLimits,
        now: Instant,
    ) {
        self.mailbox.restore(aor.clone(), held, limits, now);
        self.mailbox.retry_at(&aor, now);
    }

    /// A MESSAGE whose Request-URI is a served user with no binding: kept if the registrar
    /// keeps messages (202), else `false` and the caller answers as without a store (480).
    pub(super) fn hold_message(
        &mut self,
        tx: TxId,
        req: &Request,
        from_user: String,
        now: Instant,
        policy: &mut dyn Policy,
    ) -> bool {
        let Some(settings) = policy.registrar(now) else {
            return false;
        };
        let Some(limits) = settings.offline.as_ref() else {
            return false;
        };
        let Ok(uri) = Uri::parse(&req.uri) else {
            return false;
        };
        let aor = match &self.registrar {
            Some(r) => r.offline_aor(&uri, &settings, now),
            None => Registrar::new([0; 32], now).offline_aor(&uri, &settings, now),
        };
        let Some(aor) = aor else { return false };
        let msg = NewMessage {
            from_user,
            content_type: req.headers.get("Content-Type").map(str::to_string),
            body: req.body.clone(),
            received_unix: self.wall.map(|w| w.at(now)),
        };
        match self.mailbox.hold(&aor, msg, limits, now) {
            Ok(_) => self.answer_own(tx, req, 202, "Accepted", now),
            Err(Refused::TooLarge) => self.answer_own(tx, req, 513, "Message Too Large", now),
            Err(Refused::UserFull | Refused::StoreFull) => {
                self.answer_own(tx, req, 480, "Temporarily Unavailable", now)
            }
        }
        true
    }

    /// `aor` registered (or may be reachable again): send it the next message held for it.
    pub(super) fn deliver_held(&mut self, aor: &str, now: Instant, policy: &mut dyn Policy) {
        if !self.mailbox.has(aor) || policy.registrar(now).is_none() {
            return;
        }
        let Some(binding) = self
            .registrar
            .as_ref()
            .and_then(|r| r.bindings_of(aor, now).into_iter().next())
        else {
            // Not registered (any more): the next REGISTER brings the messages.
            self.mailbox.park(aor);
            return;
        };
        let Some(held) = self.mailbox.next(aor, now) else {
            return;
        };
        let target = Target {
            trunk: REGISTERED.to_string(),
            peer: binding.source,
            host: binding.target,
        };
        if target.peer.transport == Transport::Udp && held.msg.body.len() > MESSAGE_UDP_MAX {
            // RFC 3428 section 8: not over UDP, and the phone registered over UDP.
            self.mailbox.discard(aor, held.id);
            return self.deliver_held(aor, now, policy);
        }
        let req = self.held_request(&held, aor, &target);
        let ctx = self.tx.send_request_ref(&req, target.peer, now);
        self.owners.insert(
            ctx,
            TxOwner::Delivery(Delivery {
                aor: aor.to_string(),
                id: held.id,
            }),
        );
    }

    /// The MESSAGE that delivers `held` to `aor` at `target`: a new request from trunkline with
    /// the sender's user, the original body and content type, and the time it arrived.
    fn held_request(&mut self, held: &Held, aor: &str, target: &Target) -> Request {
        let via = self.via_for(target.peer);
        let from_tag = self.new_tag();
        let call_id = self.new_call_id();
        let mut h = Headers::with_capacity(10);
        h.push("Via", via);
        h.push("Max-Forwards", "70");
        h.push(
            "From",
            cat(&[
                "<sip:",
                &user_at(&held.msg.from_user),
                self.our_host(target.peer),
                ">;tag=",
                &from_tag,
            ]),
        );
        h.push("To", cat(&["<sip:", aor, ">"]));
        h.push("Call-ID", call_id);
        h.push("CSeq", cseq_value(1, "MESSAGE"));
        if let Some(t) = held.msg.received_unix {
            h.push("Date", sip_date(t));
        }
        if let Some(ct) = &held.msg.content_type {
            h.push("Content-Type", ct.clone());
        }
        Request {
            method: Method::Message,
            uri: cat(&["sip:", &target.host]),
            headers: h,
            body: held.msg.body.clone(),
        }
    }

    /// The final answer to a delivery (`status` 0: no answer at all): the next message goes
    /// on a 2xx, the same one again after a pause otherwise.
    pub(super) fn on_delivery_answer(
        &mut self,
        d: Delivery,
        status: u16,
        now: Instant,
        policy: &mut dyn Policy,
    ) {
        if (200..300).contains(&status) {
            self.mailbox.delivered(&d.aor, d.id);
            return self.deliver_held(&d.aor, now, policy);
        }
        let limits = policy.registrar(now).and_then(|s| s.offline.clone());
        let limits = limits.unwrap_or_default();
        if self.mailbox.failed(&d.aor, d.id, &limits, now) {
            // Dropped after its last attempt: the next one goes now.
            self.deliver_held(&d.aor, now, policy);
        }
    }

    /// Boxes whose pause after a failed delivery is over.
    pub(super) fn retry_deliveries(&mut self, now: Instant, policy: &mut dyn Policy) {
        // Always: a pause whose box went (delivered, expired) is taken off here too, or the
        // wake-up it asks for would come back at once.
        for aor in self.mailbox.due(now) {
            self.deliver_held(&aor, now, policy);
        }
    }
}
