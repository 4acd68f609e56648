//! OPTIONS health probing of a trunk. One [`Probe`] per trunk with `probe:`: an OPTIONS every
//! `interval`; any response (even 404 or 405) is an answer; no answer within the interval, a
//! timeout or a transport error is a miss. `down_after` misses in a row mark the trunk down,
//! `up_after` answers in a row mark it up again. A trunk starts up (calls are not refused before
//! the first probe could have been answered).

use std::time::{Duration, Instant};

use crate::message::{Headers, Method, Request};

/// A trunk's `probe:` as the core needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub down_after: u32,
    pub up_after: u32,
}

pub struct Probe {
    settings: ProbeSettings,
    up: bool,
    misses: u32,
    answers: u32,
    next: Instant,
    /// The probe in flight: its number (a late answer to an older one is not counted).
    pending: Option<u64>,
    serial: u64,
}

impl Probe {
    pub fn new(settings: ProbeSettings, now: Instant) -> Probe {
        Probe {
            settings,
            up: true,
            misses: 0,
            answers: 0,
            next: now,
            pending: None,
            serial: 0,
        }
    }

    pub fn settings(&self) -> ProbeSettings {
        self.settings
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// The probe to send now, if one is due: its serial number and the OPTIONS (From/To/
    /// Call-ID/Via as given: fresh random ones from the caller). A probe still unanswered when
    /// the next is due is a miss; the returned flag is `Some(up)` when that changed the state.
    pub fn poll_request(
        &mut self,
        now: Instant,
        req: impl FnOnce() -> Request,
    ) -> Option<(u64, Request, Option<bool>)> {
        if self.next > now {
            return None;
        }
        let change = if self.pending.take().is_some() {
            self.miss()
        } else {
            None
        };
        self.serial += 1;
        self.pending = Some(self.serial);
        self.next = now + self.settings.interval;
        Some((self.serial, req(), change))
    }

    /// Probe `serial` was answered (any status). `Some(up)` when the state changed.
    pub fn on_answer(&mut self, serial: u64) -> Option<bool> {
        if self.pending != Some(serial) {
            return None;
        }
        self.pending = None;
        self.misses = 0;
        self.answers = self.answers.saturating_add(1);
        if !self.up && self.answers >= self.settings.up_after {
            self.up = true;
            return Some(true);
        }
        None
    }

    /// Probe `serial` timed out or could not be sent. `Some(up)` when the state changed.
    pub fn on_failure(&mut self, serial: u64) -> Option<bool> {
        if self.pending != Some(serial) {
            return None;
        }
        self.pending = None;
        self.miss()
    }

    fn miss(&mut self) -> Option<bool> {
        self.answers = 0;
        self.misses = self.misses.saturating_add(1);
        if self.up && self.misses >= self.settings.down_after {
            self.up = false;
            return Some(false);
        }
        None
    }
}

/// An out-of-dialog OPTIONS to `uri` (RFC 3261 §11.1): the caller gives the Via (fresh branch),
/// From (with tag) and Call-ID.
pub fn options_request(uri: String, via: String, from: String, call_id: String) -> Request {
    let mut h = Headers::with_capacity(8);
    h.push("Via", via);
    h.push("Max-Forwards", "70");
    h.push("From", from);
    h.push("To", format!("<{uri}>"));
    h.push("Call-ID", call_id);
    h.push("CSeq", "1 OPTIONS");
    h.push("Accept", "application/sdp");
    h.push("Content-Length", "0");
    Request {
        method: Method::Options,
        uri,
        headers: h,
        body: Vec::new(),
    }
}
