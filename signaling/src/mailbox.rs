//! Messages kept for offline users (RFC 3428 instant messages, the service Kamailio's msilo
//! gives): a MESSAGE to a served user with no binding is held here and delivered, in the
//! order it came, when the user registers.
//!
//! RFC 3428 section 7: "A 202 response ... indicates that the request has been accepted for
//! processing, but the processing has not been completed", the answer for a message kept for
//! later delivery.
//!
//! The store is bounded three ways (per user, in total, per message) and every message has a
//! lifetime; what does not fit is refused, never queued without bound. One message per user is
//! in flight at a time, so the user sees them in order; a failed delivery is retried after a
//! pause, and dropped (counted) after the last attempt. Sans-IO: times come in as arguments, the
//! B2BUA sends the requests, a shell that keeps the store on disk takes the changes
//! ([`Mailbox::take_changes`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The limits of the store (`registrar.offline_messages`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Messages held per user.
    pub per_user: usize,
    /// Messages held in all.
    pub total: usize,
    /// Largest body kept, bytes.
    pub max_body: usize,
    /// How long a message is kept undelivered.
    pub ttl: Duration,
    /// Delivery attempts before a message is dropped.
    pub attempts: u8,
    /// Pause after a failed attempt.
    pub retry: Duration,
}

impl Default for MailboxLimits {
    fn default() -> Self {
        MailboxLimits {
            per_user: 100,
            total: 10_000,
            max_body: 4096,
            ttl: Duration::from_secs(7 * 86_400),
            attempts: 3,
            retry: Duration::from_secs(30),
        }
    }
}

/// A message as it arrived, to be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The sender's user part, as the relayed MESSAGE would carry it.
    pub from_user: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Wall-clock time of receipt (Unix seconds) for the `Date` of the delivery, if known.
    pub received_unix: Option<u64>,
}

/// A message held for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Unique in the store, in arrival order.
    pub id: u64,
    pub msg: NewMessage,
    pub expires: Instant,
    /// Delivery attempts that failed.
    pub failures: u8,
}

/// Why a message was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The body is larger than `max_body`.
    TooLarge,
    /// The user's box holds `per_user` messages.
    UserFull,
    /// The store holds `total` messages.
    StoreFull,
}

/// A change for a shell that keeps the store on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailChange {
    /// Keep this message of this AoR.
    Put(String, Held),
    /// The message with this id of this AoR is gone (delivered, expired, dropped).
    Delete(String, u64),
}

/// What happened to messages, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    pub stored: u64,
    pub delivered: u64,
    pub expired: u64,
    /// Dropped after the last failed attempt.
    pub failed: u64,
    pub refused_full: u64,
    pub refused_too_large: u64,
}

#[derive(Default)]
struct UserBox {
    queue: VecDeque<Held>,
    /// The id being delivered.
    in_flight: Option<u64>,
    /// No attempt before this (after a failure).
    not_before: Option<Instant>,
}

/// The store of held messages, by AoR (`user@domain`, as the location service keys it).
#[derive(Default)]
pub struct Mailbox {
    boxes: HashMap<String, UserBox>,
    total: usize,
    next_id: u64,
    /// Last full sweep for expired messages (when the store was found full).
    swept: Option<Instant>,
    changes: Option<Vec<MailChange>>,
    /// The boxes' pauses, earliest first (lazy: an entry a box no longer waits for is skipped
    /// when it comes up), so the next wake-up is no scan of every box.
    pauses: BinaryHeap<Reverse<(Instant, String)>>,
    pub stats: MailboxStats,
}

/// A full sweep for expired messages at most this often (one runs when the store is full).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Mailbox {
    /// Messages held in all.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Whether `aor` has messages waiting.
    pub fn has(&self, aor: &str) -> bool {
        self.boxes.contains_key(aor)
    }

    /// Record changes from now on, for [`Mailbox::take_changes`].
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// Changes since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<MailChange> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn changed(&mut self, c: impl FnOnce() -> MailChange) {
        if let Some(v) = &mut self.changes {
            v.push(c());
        }
    }

    /// Keep `msg` for `aor`; its id.
    pub fn hold(
        &mut self,
        aor: &str,
        msg: NewMessage,
        limits: &MailboxLimits,
        now: Instant,
    ) -> Result<u64, Refused> {
        if msg.body.len() > limits.max_body {
            self.stats.refused_too_large += 1;
            return Err(Refused::TooLarge);
        }
        self.expire_aor(aor, now);
        if self.total >= limits.total && self.swept.is_none_or(|t| now >= t + SWEEP_EVERY) {
            self.swept = Some(now);
            self.expire_all(now);
        }
        if self.total >= limits.total {
            self.stats.refused_full += 1;
            return Err(Refused::StoreFull);
        }
        if self
            .boxes
            .get(aor)
            .is_some_and(|b| b.queue.len() >= limits.per_user)
        {
            self.stats.refused_full += 1;
            return Err(Refused::UserFull);
        }
        self.next_id += 1;
        let held = Held {
            id: self.next_id,
            msg,
            expires: now + limits.ttl,
            failures: 0,
        };
        self.changed(|| MailChange::Put(aor.to_string(), held.clone()));
        self.boxes
            .entry(aor.to_string())
            .or_default()
            .queue
            .push_back(held);
        self.total += 1;
        self.stats.stored += 1;
        Ok(self.next_id)
    }

    /// Put back messages kept by an earlier run (not a change); expired ones are left out.
    pub fn restore(
        &mut self,
        aor: String,
        mut held: Vec<Held>,
        limits: &MailboxLimits,
        now: Instant,
    ) {
        held.retain(|h| h.expires > now);
        held.sort_by_key(|h| h.id);
        if let Some(last) = held.last() {
            self.next_id = self.next_id.max(last.id);
        }
        let room = limits.total.saturating_sub(self.total);
        held.truncate(limits.per_user.min(room));
        if held.is_empty() {
            return;
        }
        self.total += held.len();
        self.boxes.entry(aor).or_default().queue.extend(held);
    }

    /// The next message to deliver to `aor` now, marked in flight: none while one is in
    /// flight, during the pause after a failure, or when the box is empty.
    pub fn next(&mut self, aor: &str, now: Instant) -> Option<Held> {
        self.expire_aor(aor, now);
        let b = self.boxes.get_mut(aor)?;
        if b.in_flight.is_some() || b.not_before.is_some_and(|t| now < t) {
            return None;
        }
        let h = b.queue.front()?.clone();
        b.in_flight = Some(h.id);
        b.not_before = None;
        Some(h)
    }

    /// The message in flight to `aor` was taken (a 2xx).
    pub fn delivered(&mut self, aor: &str, id: u64) {
        if self.take_in_flight(aor, id) {
            self.stats.delivered += 1;
        }
    }

    /// The message in flight to `aor` was not taken: retried after `limits.retry`, or dropped
    /// after the last attempt (true).
    pub fn failed(&mut self, aor: &str, id: u64, limits: &MailboxLimits, now: Instant) -> bool {
        let Some(b) = self.boxes.get_mut(aor) else {
            return false;
        };
        if b.in_flight != Some(id) {
            return false;
        }
        let Some(front) = b.queue.front_mut() else {
            return false;
        };
        front.failures = front.failures.saturating_add(1);
        if front.failures >= limits.attempts {
            self.take_in_flight(aor, id);
            self.stats.failed += 1;
            return true;
        }
        b.in_flight = None;
        b.not_before = Some(now + limits.retry);
        self.pauses
            .push(Reverse((now + limits.retry, aor.to_string())));
        false
    }

    /// The message in flight to `aor` cannot be delivered at all: dropped (counted as failed).
    pub fn discard(&mut self, aor: &str, id: u64) {
        if self.take_in_flight(aor, id) {
            self.stats.failed += 1;
        }
    }

    /// Try `aor` again at `at` (restored messages: at once, if the user is registered).
    pub fn retry_at(&mut self, aor: &str, at: Instant) {
        if let Some(b) = self.boxes.get_mut(aor) {
            b.not_before = Some(at);
            self.pauses.push(Reverse((at, aor.to_string())));
        }
    }

    /// The in-flight message was not sent after all (no binding): wait for the next trigger.
    pub fn unsent(&mut self, aor: &str, id: u64) {
        if let Some(b) = self.boxes.get_mut(aor) {
            if b.in_flight == Some(id) {
                b.in_flight = None;
            }
        }
    }

    fn take_in_flight(&mut self, aor: &str, id: u64) -> bool {
        let Some(b) = self.boxes.get_mut(aor) else {
            return false;
        };
        if b.in_flight != Some(id) || b.queue.front().map(|h| h.id) != Some(id) {
            return false;
        }
        b.in_flight = None;
        b.queue.pop_front();
        let empty = b.queue.is_empty();
        if empty {
            self.boxes.remove(aor);
        }
        self.total -= 1;
        self.changed(|| MailChange::Delete(aor.to_string(), id));
        true
    }

    /// When the next paused box may be tried again (possibly a pause that ended otherwise:
    /// [`Mailbox::due`] then finds nothing).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pauses.peek().map(|Reverse((t, _))| *t)
    }

    /// AoRs whose pause after a failure is over.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Reverse((t, _))) = self.pauses.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, aor))) = self.pauses.pop() else {
                break;
            };
            let waiting = self
                .boxes
                .get(&aor)
                .is_some_and(|b| b.in_flight.is_none() && b.not_before.is_some_and(|t| t <= now));
            if waiting && !out.contains(&aor) {
                out.push(aor);
            }
        }
        out
    }

    /// Forget the pause of `aor` without a trigger (its user is gone again): the next
    /// registration tries at once.
    pub fn park(&mut self, aor: &str) {
        if let Some(b) = self.boxes.get_mut(aor) {
            b.not_before = None;
        }
    }

    fn expire_aor(&mut self, aor: &str, now: Instant) {
        let Some(b) = self.boxes.get_mut(aor) else {
            return;
        };
        let in_flight = b.in_flight;
        let before = b.queue.len();
        let mut gone = Vec::new();
        b.queue.retain(|h| {
            let keep = h.expires > now || Some(h.id) == in_flight;
            if !keep {
                gone.push(h.id);
            }
            keep
        });
        let n = before - b.queue.len();
        if b.queue.is_empty() {
            self.boxes.remove(aor);
        }
        self.total -= n;
        self.stats.expired += n as u64;
        for id in gone {
            self.changed(|| MailChange::Delete(aor.to_string(), id));
        }
    }

    fn expire_all(&mut self, now: Instant) {
        let stale: HashSet<String> = self
            .boxes
            .iter()
            .filter(|(_, b)| b.queue.iter().any(|h| h.expires <= now))
            .map(|(a, _)| a.clone())
            .collect();
        for aor in stale {
            self.expire_aor(&aor, now);
        }
    }
}

/// RFC 3261 section 20.17: `Date = "Date" HCOLON SIP-date`, SIP-date the RFC 1123 form of
/// RFC 2616 (`Sat, 13 Nov 2010 23:29:00 GMT`), always in GMT.
pub fn sip_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Year, month (1-12), day (1-31) of the `z`th day after 1970-01-01 (the proleptic Gregorian
/// calendar, by eras of 400 years: H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> NewMessage {
        NewMessage {
            from_user: "alice".into(),
            content_type: Some("text/plain".into()),
            body: text.as_bytes().to_vec(),
            received_unix: Some(1_700_000_000),
        }
    }

    fn limits() -> MailboxLimits {
        MailboxLimits {
            per_user: 3,
            total: 5,
            max_body: 100,
            ttl: Duration::from_secs(60),
            attempts: 2,
            retry: Duration::from_secs(10),
        }
    }

    #[test]
    fn dates_are_rfc_1123_in_gmt() {
        assert_eq!(sip_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 3261 section 20.17's example.
        assert_eq!(sip_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(sip_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(sip_date(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn messages_are_delivered_one_at_a_time_in_order() {
        let (mut m, l, t) = (Mailbox::default(), limits(), Instant::now());
        m.track_changes();
        let a = m.hold("bob@x", msg("one"), &l, t).unwrap();
        let b = m.hold("bob@x", msg("two"), &l, t).unwrap();
        assert!(a < b);
        let first = m.next("bob@x", t).unwrap();
        assert_eq!(first.msg.body, b"one");
        assert_eq!(m.next("bob@x", t), None, "one in flight at a time");
        m.delivered("bob@x", first.id);
        let second = m.next("bob@x", t).unwrap();
        assert_eq!(second.msg.body, b"two");
        m.delivered("bob@x", second.id);
        assert!(!m.has("bob@x"));
        assert!(m.is_empty());
        assert_eq!(m.stats.delivered, 2);
        let changes = m.take_changes();
        assert_eq!(changes.len(), 4);
        assert!(matches!(&changes[0], MailChange::Put(a, h) if a == "bob@x" && h.id == first.id));
        assert_eq!(changes[3], MailChange::Delete("bob@x".into(), second.id));
    }

    #[test]
    fn the_limits_hold() {
        let (mut m, l, t) = (Mailbox::default(), limits(), Instant::now());
        let big = NewMessage {
            body: vec![b'x'; 101],
            ..msg("")
        };
        assert_eq!(m.hold("bob@x", big, &l, t), Err(Refused::TooLarge));
        for i in 0..3 {
            m.hold("bob@x", msg(&i.to_string()), &l, t).unwrap();
        }
        assert_eq!(m.hold("bob@x", msg("4"), &l, t), Err(Refused::UserFull));
        m.hold("carol@x", msg("1"), &l, t).unwrap();
        m.hold("dave@x", msg("1"), &l, t).unwrap();
        assert_eq!(m.hold("erin@x", msg("1"), &l, t), Err(Refused::StoreFull));
        assert_eq!(m.len(), 5);
        assert_eq!(m.stats.refused_full, 2);
        assert_eq!(m.stats.refused_too_large, 1);
        // Once they expire there is room again.
        let later = t + Duration::from_secs(61);
        m.hold("erin@x", msg("1"), &l, later).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.stats.expired, 5);
    }

    #[test]
    fn a_failed_delivery_is_retried_after_a_pause_then_dropped() {
        let (mut m, l, t) = (Mailbox::default(), limits(), Instant::now());
        m.hold("bob@x", msg("one"), &l, t).unwrap();
        m.hold("bob@x", msg("two"), &l, t).unwrap();
        let h = m.next("bob@x", t).unwrap();
        assert!(!m.failed("bob@x", h.id, &l, t));
        assert_eq!(m.next("bob@x", t + Duration::from_secs(5)), None, "paused");
        assert_eq!(m.poll_timeout(), Some(t + Duration::from_secs(10)));
        assert!(m.due(t + Duration::from_secs(9)).is_empty());
        assert_eq!(
            m.due(t + Duration::from_secs(10)),
            vec!["bob@x".to_string()]
        );
        let again = m.next("bob@x", t + Duration::from_secs(10)).unwrap();
        assert_eq!(again.id, h.id, "the same message, still first");
        assert!(
            m.failed("bob@x", h.id, &l, t + Duration::from_secs(10)),
            "dropped"
        );
        assert_eq!(m.stats.failed, 1);
        let next = m.next("bob@x", t + Duration::from_secs(10)).unwrap();
        assert_eq!(next.msg.body, b"two");
        // A pause that ends otherwise (the user went: parked) asks for one wake-up, which
        // finds nothing and leaves nothing to wake for.
        let t2 = t + Duration::from_secs(10);
        assert!(!m.failed("bob@x", next.id, &l, t2));
        m.park("bob@x");
        assert_eq!(m.poll_timeout(), Some(t2 + Duration::from_secs(10)));
        assert_eq!(m.due(t2 + Duration::from_secs(10)), Vec::<String>::new());
        assert_eq!(m.poll_timeout(), None, "nothing left to wake for");
    }

    #[test]
    fn stale_answers_change_nothing() {
        let (mut m, l, t) = (Mailbox::default(), limits(), Instant::now());
        let id = m.hold("bob@x", msg("one"), &l, t).unwrap();
        m.delivered("bob@x", id); // not in flight
        assert_eq!(m.len(), 1);
        assert!(!m.failed("bob@x", id, &l, t));
        let h = m.next("bob@x", t).unwrap();
        m.unsent("bob@x", h.id);
        assert_eq!(m.next("bob@x", t).map(|h| h.id), Some(id));
        m.delivered("nobody@x", id);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn restored_messages_keep_their_order_and_ids_move_on() {
        let (mut m, l, t) = (Mailbox::default(), limits(), Instant::now());
        let held = |id: u64, text: &str, ttl: u64| Held {
            id,
            msg: msg(text),
            expires: t + Duration::from_secs(ttl),
            failures: 0,
        };
        m.restore(
            "bob@x".into(),
            vec![held(9, "b", 60), held(7, "a", 60), held(8, "gone", 0)],
            &l,
            t,
        );
        assert_eq!(m.len(), 2);
        let id = m.hold("bob@x", msg("c"), &l, t).unwrap();
        assert_eq!(id, 10);
        let mut seen = Vec::new();
        while let Some(h) = m.next("bob@x", t) {
            seen.push(String::from_utf8(h.msg.body.clone()).unwrap());
            m.delivered("bob@x", h.id);
        }
        assert_eq!(seen, ["a", "b", "c"]);
    }
}
