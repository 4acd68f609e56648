//! Session timers (RFC 4028), negotiated per leg: what each leg's Session-Expires, Min-SE and
//! refresher are, read from the messages of that leg only and written on that leg only (no
//! Session-Expires of one leg ever crosses to the other, `HOP_HEADERS`). The pure negotiation
//! is here; sending refreshes and ending expired sessions is `refresh.rs`.
//!
//! * Leg A (trunkline the UAS of the INVITE): the caller's Session-Expires is taken, shortened
//!   to trunkline's `expires` at most, never below a Min-SE; one below trunkline's Min-SE from
//!   a caller that supports timers gets 422. The refresher is the caller's choice, else the
//!   caller when it supports timers, else trunkline.
//! * Leg B (trunkline the UAC): its INVITE says `Supported: timer` with trunkline's
//!   Session-Expires and Min-SE; the 2xx decides (no Session-Expires in it: no timer on leg B).
//!   A 422 is retried with the trunk's Min-SE.

use std::time::{Duration, Instant};

use super::SessionTimer;
use crate::message::Headers;

/// RFC 4028 §4: "the minimum interval ... MUST NOT be less than 90 seconds".
pub(super) const MIN_SE_FLOOR: u32 = 90;

/// Requests retried after a 422 per leg B INVITE or per refresh (a peer that raises its
/// Min-SE every time ends it).
pub(super) const MAX_422_RETRIES: u8 = 2;

/// The `refresher` parameter as written: the UAC or the UAS of the transaction it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Uac,
    Uas,
}

/// Which end of a leg sends its refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refresher {
    Us,
    Peer,
}

impl Refresher {
    /// The `refresher` value in a request trunkline sends (trunkline its UAC).
    pub(super) fn in_our_request(self) -> &'static str {
        match self {
            Refresher::Us => "uac",
            Refresher::Peer => "uas",
        }
    }

    /// The `refresher` value in a response trunkline sends (trunkline its UAS).
    pub(super) fn in_our_response(self) -> &'static str {
        match self {
            Refresher::Us => "uas",
            Refresher::Peer => "uac",
        }
    }
}

/// A leg's running session timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LegTimer {
    /// The session interval (seconds).
    pub(super) interval: u32,
    /// The Min-SE sent on this leg: trunkline's, or the peer's when higher.
    pub(super) min_se: u32,
    pub(super) refresher: Refresher,
    /// The peer allows UPDATE (its Allow): refreshes go as UPDATE without a body, else as a
    /// re-INVITE with the SDP last sent on the leg.
    pub(super) peer_update: bool,
    /// The peer listed `timer` as supported or required (trunkline's 2xx says `Require: timer`).
    pub(super) peer_supports: bool,
    /// When the session was last refreshed.
    pub(super) refreshed: Instant,
    /// The one deadline of this leg that counts (others in the heap are stale): our next
    /// refresh, or the session's end.
    pub(super) due: Instant,
    /// A refresh of ours is out.
    pub(super) out: bool,
    /// 422s answered on the current refresh.
    pub(super) retries: u8,
}

impl LegTimer {
    fn new(
        interval: u32,
        min_se: u32,
        refresher: Refresher,
        h: &Headers,
        now: Instant,
    ) -> LegTimer {
        let mut t = LegTimer {
            interval,
            min_se,
            refresher,
            peer_update: allows_update(h),
            peer_supports: lists_timer(h, "Supported") || lists_timer(h, "Require"),
            refreshed: now,
            due: now,
            out: false,
            retries: 0,
        };
        t.refreshed_at(now);
        t
    }

    /// The session was refreshed at `now`: the next deadline from it.
    pub(super) fn refreshed_at(&mut self, now: Instant) {
        self.refreshed = now;
        self.out = false;
        self.retries = 0;
        self.due = match self.refresher {
            //= rfc4028#section-10
            //# It is RECOMMENDED that this refresh be sent once half the session interval has
            //# elapsed.
            Refresher::Us => now + secs(self.interval) / 2,
            Refresher::Peer => self.expiry(),
        };
    }

    /// When the side that does not refresh gives up: slightly before the session ends.
    pub(super) fn expiry(&self) -> Instant {
        //= rfc4028#section-10
        //# If the side not performing refreshes does not receive a session refresh request
        //# before the session expiration, it SHOULD send a BYE to terminate the session,
        //# slightly before the session expiration.  The minimum of 32 seconds and one third of
        //# the session interval is RECOMMENDED.
        let margin = (self.interval / 3).min(32);
        self.refreshed + secs(self.interval.saturating_sub(margin))
    }

    /// `Session-Expires` for a request trunkline sends on this leg.
    pub(super) fn request_value(&self) -> String {
        format!(
            "{};refresher={}",
            self.interval,
            self.refresher.in_our_request()
        )
    }

    /// `Session-Expires` for a response trunkline sends on this leg.
    pub(super) fn response_value(&self) -> String {
        format!(
            "{};refresher={}",
            self.interval,
            self.refresher.in_our_response()
        )
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// `Session-Expires = delta-seconds *(SEMI se-params)`, `se-params = refresher-param /
/// generic-param`, `refresher-param = "refresher" EQUAL ("uas" / "uac")` (RFC 4028 §4).
/// `None`: absent or not a number (a malformed one counts as absent).
pub(super) fn session_expires(h: &Headers) -> Option<(u32, Option<Role>)> {
    let v = h.get("Session-Expires")?;
    let mut parts = v.split(';');
    let secs: u32 = parts.next()?.trim().parse().ok()?;
    let role = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match value.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Role::Uac),
            "uas" => Some(Role::Uas),
            _ => None,
        }
    });
    (secs > 0).then_some((secs, role))
}

/// `Min-SE = delta-seconds *(SEMI generic-param)` (RFC 4028 §5).
pub(super) fn min_se(h: &Headers) -> Option<u32> {
    h.get("Min-SE")?.split(';').next()?.trim().parse().ok()
}

/// Does a Supported or Require header of `h` list `timer`?
pub(super) fn lists_timer(h: &Headers, name: &str) -> bool {
    h.get_all(name)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("timer"))
}

fn allows_update(h: &Headers) -> bool {
    h.get_all("Allow")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("UPDATE"))
}

/// The settings a leg runs with when its policy has none but the peer requires timers.
pub(super) const REQUIRED_DEFAULT: SessionTimer = SessionTimer {
    expires: 1800,
    min_se: MIN_SE_FLOOR,
};

/// A request from the peer (`h`: the INVITE or a refresh) with trunkline's `ours` as its UAS:
/// `Err(min_se)` when it must be refused 422 with that Min-SE.
pub(super) fn too_small(h: &Headers, ours: Option<SessionTimer>, leg_min: u32) -> Result<(), u32> {
    let floor = ours.map_or(0, |o| o.min_se).max(leg_min);
    //= rfc4028#section-9
    //# If an incoming request contains a Supported header field with a value 'timer' and a
    //# Session Expires header field, the UAS MAY reject the INVITE request with a 422 (Session
    //# Interval Too Small) response if the session interval in the Session-Expires header
    //# field is smaller than the minimum interval defined by the UAS' local policy.
    match session_expires(h) {
        Some((se, _)) if se < floor && lists_timer(h, "Supported") => Err(floor),
        _ => Ok(()),
    }
}

/// Trunkline as the UAS of a request from the peer with headers `h` (RFC 4028 §9): the leg's
/// timer, `None` for none. `ours`: the leg's settings.
pub(super) fn as_uas(h: &Headers, ours: Option<SessionTimer>, now: Instant) -> Option<LegTimer> {
    let required = lists_timer(h, "Require");
    let ours = ours.or(required.then_some(REQUIRED_DEFAULT))?;
    let supports = required || lists_timer(h, "Supported");
    let peer_min = min_se(h).unwrap_or(0);
    let floor = ours.min_se.max(peer_min).max(MIN_SE_FLOOR);
    let asked = session_expires(h);
    //= rfc4028#section-9
    //# The UAS response MAY reduce its value but MUST NOT set it to a duration lower than the
    //# value in the Min-SE header field in the request, if it is present; otherwise the UAS
    //# MAY reduce its value but MUST NOT set it to a duration lower than 90 seconds.
    // (And one below trunkline's Min-SE from a caller that cannot take a 422 is raised to it:
    // RFC 4028 errata 1687, as §8.1 says for proxies.)
    let interval = asked
        .map_or(ours.expires, |(se, _)| se.min(ours.expires))
        .max(floor);
    // RFC 4028 §9: a caller that does not support timers cannot refresh, so the UAS does
    // ('uas'); one that does refreshes when it asked to or left the choice to the UAS.
    let refresher = match (supports, asked.and_then(|(_, r)| r)) {
        (false, _) => Refresher::Us,
        (true, Some(Role::Uas)) => Refresher::Us,
        (true, Some(Role::Uac) | None) => Refresher::Peer,
    };
    Some(LegTimer::new(interval, floor, refresher, h, now))
}

/// Trunkline as the UAC, the peer's 2xx with headers `resp` to a request that asked for
/// `asked_min` as Min-SE (RFC 4028 §7.2); `None` for no timer on the leg. `peer_allow`: the
/// headers where the peer's Allow is known (the 2xx itself when it has one).
pub(super) fn as_uac(resp: &Headers, asked_min: u32, now: Instant) -> Option<LegTimer> {
    //= rfc4028#section-7.2
    //# If the 2xx response did not contain a Session-Expires header field, there is no
    //# session expiration.  In this case, no refreshes need to be sent.
    let (se, role) = session_expires(resp)?;
    // A 2xx that names no refresher breaks §9's "MUST set": trunkline refreshes itself (a
    // refresh too many is harmless, a session nobody refreshes is not).
    let refresher = match role {
        Some(Role::Uas) => Refresher::Peer,
        Some(Role::Uac) | None => Refresher::Us,
    };
    // A peer that chose an interval below the floor does not get refreshes every few ms.
    let interval = se.max(MIN_SE_FLOOR);
    let min = asked_min.max(min_se(resp).unwrap_or(0)).max(MIN_SE_FLOOR);
    let mut t = LegTimer::new(interval, min, refresher, resp, now);
    t.peer_supports = true;
    Some(t)
}

/// The leg's timer after the peer's 2xx (`resp`) to a refresh or re-INVITE of ours: as the 2xx
/// says for a peer that knows timers (none named: off); a peer that does not (trunkline its
/// refresher regardless) names none and the timer just restarts.
pub(super) fn after_2xx(current: &LegTimer, resp: &Headers, now: Instant) -> Option<LegTimer> {
    if current.peer_supports || session_expires(resp).is_some() {
        return as_uac(resp, current.min_se, now);
    }
    let mut t = current.clone();
    t.refreshed_at(now);
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::with_capacity(lines.len());
        for (n, v) in lines {
            h.push(n, *v);
        }
        h
    }

    const OURS: SessionTimer = SessionTimer {
        expires: 1800,
        min_se: 120,
    };

    #[test]
    fn session_expires_parses_the_interval_and_the_refresher() {
        let h = headers(&[("Session-Expires", "600 ; Refresher = UAS;x=1")]);
        assert_eq!(session_expires(&h), Some((600, Some(Role::Uas))));
        let h = headers(&[("Session-Expires", "600")]);
        assert_eq!(session_expires(&h), Some((600, None)));
        for bad in ["", "abc", "0", "-5;refresher=uac", "99999999999"] {
            let h = headers(&[("Session-Expires", bad)]);
            assert_eq!(session_expires(&h), None, "{bad}");
        }
        let h = headers(&[("Min-SE", " 300;x")]);
        assert_eq!(min_se(&h), Some(300));
    }

    #[test]
    fn a_caller_with_timer_support_below_min_se_gets_422_one_without_is_raised() {
        let low = headers(&[("Supported", "100rel, timer"), ("Session-Expires", "100")]);
        assert_eq!(too_small(&low, Some(OURS), 0), Err(120));
        assert_eq!(
            too_small(&low, None, 0),
            Ok(()),
            "timers off: nothing to refuse"
        );
        let no_support = headers(&[("Session-Expires", "100")]);
        assert_eq!(too_small(&no_support, Some(OURS), 0), Ok(()));
        let t = as_uas(&no_support, Some(OURS), Instant::now()).expect("timer");
        assert_eq!((t.interval, t.refresher), (120, Refresher::Us));
    }

    #[test]
    fn the_uas_picks_interval_and_refresher_as_rfc_4028_section_9_says() {
        let now = Instant::now();
        type Case<'a> = (&'a [(&'a str, &'a str)], u32, Refresher);
        let cases: &[Case] = &[
            // No Session-Expires, timer supported: ours, the caller refreshes.
            (&[("Supported", "timer")], 1800, Refresher::Peer),
            // Not supported: ours, trunkline refreshes.
            (&[], 1800, Refresher::Us),
            // Shorter than ours: taken; refresher as asked.
            (
                &[
                    ("Supported", "timer"),
                    ("Session-Expires", "600;refresher=uas"),
                ],
                600,
                Refresher::Us,
            ),
            // Longer than ours: reduced.
            (
                &[
                    ("Supported", "timer"),
                    ("Session-Expires", "7200;refresher=uac"),
                ],
                1800,
                Refresher::Peer,
            ),
            // The caller's Min-SE above ours bounds the reduction.
            (
                &[
                    ("Supported", "timer"),
                    ("Session-Expires", "7200"),
                    ("Min-SE", "3600"),
                ],
                3600,
                Refresher::Peer,
            ),
        ];
        for (h, interval, refresher) in cases {
            let t = as_uas(&headers(h), Some(OURS), now).expect("timer");
            assert_eq!((t.interval, t.refresher), (*interval, *refresher), "{h:?}");
        }
        assert!(as_uas(&headers(&[("Supported", "timer")]), None, now).is_none());
        let required = as_uas(&headers(&[("Require", "timer")]), None, now).expect("required");
        assert_eq!(required.interval, REQUIRED_DEFAULT.expires);
    }

    #[test]
    fn the_uac_follows_the_2xx_and_the_deadlines_follow_the_refresher() {
        let now = Instant::now();
        assert!(as_uac(&headers(&[]), 90, now).is_none());
        let t = as_uac(
            &headers(&[("Session-Expires", "90;refresher=uac")]),
            90,
            now,
        )
        .unwrap();
        assert_eq!(t.refresher, Refresher::Us);
        assert_eq!(t.due, now + Duration::from_secs(45), "refresh at half");
        assert_eq!(t.request_value(), "90;refresher=uac");
        assert_eq!(t.response_value(), "90;refresher=uas");
        let t = as_uac(
            &headers(&[("Session-Expires", "90;refresher=uas")]),
            90,
            now,
        )
        .unwrap();
        assert_eq!(t.refresher, Refresher::Peer);
        assert_eq!(t.due, now + Duration::from_secs(60), "90 - min(32, 30)");
        let t = as_uac(
            &headers(&[("Session-Expires", "1800;refresher=uas")]),
            90,
            now,
        )
        .unwrap();
        assert_eq!(t.due, now + Duration::from_secs(1800 - 32));
        let t = as_uac(&headers(&[("Session-Expires", "5")]), 90, now).unwrap();
        assert_eq!(t.interval, MIN_SE_FLOOR, "no refresh storm");
    }
}
