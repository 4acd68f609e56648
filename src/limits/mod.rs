//! Overload and abuse protection, sans-IO: time is always an argument, nothing here touches a
//! socket or reads the clock, so every rule is tested in virtual time.
//!
//! - [`SourceLimiter`]: a token bucket per source for requests (an IPv4 address, an IPv6 /64:
//!   [`signaling::source_key`]), checked on the raw bytes before anything is parsed; over the
//!   limit a request is dropped unanswered.
//! - [`blocked_user_agent`]: the scanner block list, matched on the raw `User-Agent` header.
//! - [`TrunkUsage`]: calls in progress and calls per second per trunk, kept from the core's
//!   call events, for the trunks' `max_calls` / `max_cps`.
//! - [`Overload`]: the process-level overload switch with hysteresis (RFC 7339 and RFC 6357
//!   describe why a SIP server should shed new work with 503 + Retry-After early instead of
//!   letting every queue grow: retransmissions of unanswered requests multiply the load).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use signaling::b2bua::CallEvent;

// ---------------------------------------------------------------------------------------------
// per-source token buckets

/// Most sources tracked at once. Past it, a new source is admitted without a bucket (counted
/// by [`SourceLimiter::untracked`]) rather than evicting one being limited.
pub const MAX_SOURCES: usize = 65_536;

/// How often idle buckets are swept out (a full bucket says nothing a missing one would not).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Requests per source as a token bucket: `burst` tokens, refilled at `rate` per second; a
/// request takes one token or is refused. A source is an IPv4 address or an IPv6 /64
/// ([`signaling::source_key`]: an attacker holds a whole /64); the exempt trunks are exact
/// addresses.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    table: HashMap<IpAddr, Bucket>,
    exempt: HashSet<IpAddr>,
    next_sweep: Option<Instant>,
    /// Requests admitted without a bucket because the table was full.
    pub untracked: u64,
}

/// IPv4-mapped IPv6 sources are the IPv4 address (a dual-stack socket sees both forms).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl SourceLimiter {
    /// `rate` requests per second, bursts of `burst` (at least 1).
    pub fn new(rate: u32, burst: u32) -> SourceLimiter {
        SourceLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            table: HashMap::new(),
            exempt: HashSet::new(),
            next_sweep: None,
            untracked: 0,
        }
    }

    /// Same limits? (a reload with unchanged `limits` keeps the buckets)
    pub fn same(&self, rate: u32, burst: u32) -> bool {
        self.rate == f64::from(rate) && self.burst == f64::from(burst.max(1))
    }

    /// Addresses never limited (the trunks').
    pub fn set_exempt(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        self.exempt = ips.into_iter().map(canonical).collect();
        for ip in &self.exempt {
            self.table.remove(ip);
        }
    }

    /// Sources with a bucket now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// May a request from `ip` go on at `now`? Takes a token if so.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.exempt.contains(&canonical(ip)) {
            return true;
        }
        let ip = signaling::source_key(ip);
        if self.next_sweep.is_none_or(|t| now >= t) {
            self.sweep(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        if let Some(b) = self.table.get_mut(&ip) {
            let dt = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + dt * rate).min(burst);
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if self.table.len() >= MAX_SOURCES {
            self.sweep(now);
            if self.table.len() >= MAX_SOURCES {
                self.untracked += 1;
                return true;
            }
        }
        self.table.insert(
            ip,
            Bucket {
                tokens: burst - 1.0,
                last: now,
            },
        );
        true
    }

    /// Forget the buckets that have refilled (their sources have been quiet long enough).
    pub fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.table.retain(|_, b| {
            let dt = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + dt * rate < burst
        });
        self.next_sweep = Some(now + SWEEP_EVERY);
    }
}

// ---------------------------------------------------------------------------------------------
// User-Agent block list

/// Is `msg` a request (not a response)? A response's start line begins with the SIP version
/// (RFC 3261 §7.2).
pub fn is_request(msg: &[u8]) -> bool {
    !msg.starts_with(b"SIP/")
}

/// How far into a message the header scan looks (a User-Agent further in is not worth the
/// search; the full parser still sees the message).
const HEAD_SCAN: usize = 8192;

/// The value of the first `User-Agent` header of a raw message (RFC 3261 §20.41; it has no
/// compact form), without parsing the rest. Folded continuation lines are not followed.
pub fn user_agent(msg: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"user-agent";
    let head = &msg[..msg.len().min(HEAD_SCAN)];
    // Skip the start line; stop at the empty line ending the headers.
    let mut pos = find_newline(head, 0)? + 1;
    while pos < head.len() {
        let end = find_newline(head, pos).unwrap_or(head.len());
        let line = &head[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            // RFC 3261 §7.3.1: optional whitespace between the name and the colon.
            let rest = trim_start(&line[NAME.len()..]);
            if let Some(v) = rest.strip_prefix(b":") {
                return Some(trim_start(v));
            }
        }
        pos = end + 1;
    }
    None
}

/// Position of the first `\n` at or after `from`, eight bytes at a time (the classic
/// "has a zero byte" word trick on `word ^ 0x0a0a..`): the scan of every request's headers
/// is on the hot path, and a byte loop was most of its cost.
fn find_newline(h: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut i = from;
    while let Some(chunk) = h.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes) ^ NL;
        // Exact for the lowest zero byte (false positives only sit above a true one).
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    h.get(i..)?.iter().position(|&b| b == b'\n').map(|p| i + p)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| matches!(c, b' ' | b'\t')).count();
    &b[n..]
}

/// Block-list patterns prepared for [`blocked_user_agent`] (lower-cased once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UaBlockList(Vec<Vec<u8>>);

impl UaBlockList {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> UaBlockList {
        UaBlockList(
            patterns
                .iter()
                .map(|p| p.as_ref().as_bytes().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Does the request's User-Agent contain a blocked pattern (ASCII case-insensitive)?
pub fn blocked_user_agent(msg: &[u8], list: &UaBlockList) -> bool {
    if list.is_empty() || !is_request(msg) {
        return false;
    }
    let Some(ua) = user_agent(msg) else {
        return false;
    };
    list.0.iter().any(|p| {
        p.len() <= ua.len()
            && ua
                .windows(p.len())
                .any(|w| w.iter().zip(p).all(|(a, b)| a.to_ascii_lowercase() == *b))
    })
}

// ---------------------------------------------------------------------------------------------
// per-trunk calls and calls per second

/// Which trunk limit refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `max_calls`: calls in progress.
    Calls,
    /// `max_cps`: new calls in any one second.
    Cps,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Calls => "calls",
            Limit::Cps => "cps",
        }
    }
}

/// A trunk's limits as the configuration says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrunkLimits {
    pub max_calls: Option<u32>,
    pub max_cps: Option<u32>,
}

#[derive(Debug, Default)]
struct TrunkState {
    active: u32,
    /// Start times of the calls of the last second (at most `max_cps` of them kept).
    recent: VecDeque<Instant>,
}

impl TrunkState {
    fn expire(&mut self, now: Instant) {
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= Duration::from_secs(1) {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }

    fn check(&mut self, lim: TrunkLimits, now: Instant) -> Result<(), Limit> {
        if lim.max_calls.is_some_and(|m| self.active >= m) {
            return Err(Limit::Calls);
        }
        if let Some(m) = lim.max_cps {
            self.expire(now);
            if self.recent.len() >= m as usize {
                return Err(Limit::Cps);
            }
        }
        Ok(())
    }

    fn record_start(&mut self, lim: TrunkLimits, now: Instant) {
        if let Some(m) = lim.max_cps {
            self.expire(now);
            self.recent.push_back(now);
            while self.recent.len() > m as usize {
                self.recent.pop_front();
            }
        }
    }
}

/// The trunks a call holds a slot of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Slots {
    /// The trunk leg B is at (moves on failover).
    out: Option<String>,
    /// The trunk the call came from.
    inbound: Option<String>,
}

/// Calls in progress and call starts per trunk, both directions.
///
/// `max_cps` is enforced as "at most N call starts in any one-second window" (a sliding log of
/// the last N start times), so a peer never sees more than N new calls within a second however
/// they bunch up; `max_calls` counts each call once per trunk it holds, from its first INVITE
/// on leg B (or its arrival from the trunk) until it ends on any path.
#[derive(Debug, Default)]
pub struct TrunkUsage {
    trunks: HashMap<String, TrunkState>,
    calls: HashMap<u64, Slots>,
    /// The source trunk of the call being routed, until its first attempt (or rejection) names
    /// the call.
    pending_inbound: Option<String>,
}

impl TrunkUsage {
    /// Calls in progress at/from `trunk`.
    pub fn active(&self, trunk: &str) -> u32 {
        self.trunks.get(trunk).map_or(0, |t| t.active)
    }

    /// Calls holding at least one trunk slot.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Trunks with state, and their calls in progress.
    pub fn each_active(&self) -> impl Iterator<Item = (&str, u32)> {
        self.trunks.iter().map(|(n, t)| (n.as_str(), t.active))
    }

    /// Would a new call to/from `trunk` fit its limits now? Nothing is taken.
    pub fn check(&mut self, trunk: &str, lim: TrunkLimits, now: Instant) -> Result<(), Limit> {
        if lim.max_calls.is_none() && lim.max_cps.is_none() {
            return Ok(());
        }
        self.trunks
            .entry(trunk.to_string())
            .or_default()
            .check(lim, now)
    }

    /// A new call arrives from `trunk`: check its limits and, if it fits, count its start and
    /// hold the slot for the call that the next [`TrunkUsage::attempt`] names.
    pub fn admit_inbound(
        &mut self,
        trunk: &str,
        lim: TrunkLimits,
        now: Instant,
    ) -> Result<(), Limit> {
        let st = self.trunks.entry(trunk.to_string()).or_default();
        st.check(lim, now)?;
        st.record_start(lim, now);
        st.active += 1;
        self.pending_inbound = Some(trunk.to_string());
        Ok(())
    }

    /// The call being routed was refused before it became a call: give back its inbound slot.
    pub fn not_started(&mut self) {
        if let Some(t) = self.pending_inbound.take() {
            self.dec(&t);
        }
    }

    /// Leg B of `call` is tried at `trunk` (first attempt or failover): the call's outbound
    /// slot moves there, and the start counts against the trunk's rate.
    pub fn attempt(&mut self, call: u64, trunk: &str, lim: TrunkLimits, now: Instant) {
        let pending = self.pending_inbound.take();
        let slots = self.calls.entry(call).or_default();
        if slots.inbound.is_none() {
            slots.inbound = pending;
        } else if let Some(p) = pending {
            // Cannot happen (a call's first attempt follows its routing at once); never leak.
            self.dec(&p);
        }
        let slots = self.calls.entry(call).or_default();
        let old = slots.out.replace(trunk.to_string());
        if let Some(old) = old {
            self.dec(&old);
        }
        let st = self.trunks.entry(trunk.to_string()).or_default();
        st.active += 1;
        st.record_start(lim, now);
    }

    /// `call` was taken over from another node on `trunk`: its outbound slot, without a start
    /// against the trunk's rate (the call started elsewhere, earlier).
    pub fn adopted(&mut self, call: u64, trunk: &str) {
        let slots = self.calls.entry(call).or_default();
        if let Some(old) = slots.out.replace(trunk.to_string()) {
            self.dec(&old);
        }
        self.trunks.entry(trunk.to_string()).or_default().active += 1;
    }

    /// `call` is over (failed, cancelled, rejected, ended): release what it holds. Idempotent.
    pub fn release(&mut self, call: u64) {
        if let Some(s) = self.calls.remove(&call) {
            for t in [s.out, s.inbound].into_iter().flatten() {
                self.dec(&t);
            }
        }
    }

    /// Follow the core's call events: an attempt takes (or moves) the call's outbound slot; a
    /// final failure or CANCEL (`Finished` >= 300) and the end of an answered call (`Ended`)
    /// release it; a rejection before the call existed gives back a pending inbound slot.
    /// Together with [`TrunkUsage::release`] on media release (which every end of a call
    /// passes) each call is counted once and released on every path.
    pub fn on_event(
        &mut self,
        ev: &CallEvent,
        limits_of: impl Fn(&str) -> TrunkLimits,
        now: Instant,
    ) {
        match ev {
            CallEvent::Attempt { call, trunk } => self.attempt(*call, trunk, limits_of(trunk), now),
            CallEvent::Finished { call, status, .. } if *status >= 300 => self.release(*call),
            CallEvent::Finished { .. } => {}
            CallEvent::Ended { call, .. } => self.release(*call),
            CallEvent::Rejected { .. } => self.not_started(),
            CallEvent::TrunkRegistration { .. }
            | CallEvent::TrunkProbe { .. }
            | CallEvent::Transferred { .. }
            | CallEvent::Record(_) => {}
        }
    }

    /// Release every call for which `alive` says no (a safety net against an end path that
    /// sent no event).
    pub fn retain(&mut self, mut alive: impl FnMut(u64) -> bool) {
        let gone: Vec<u64> = self.calls.keys().copied().filter(|&c| !alive(c)).collect();
        for c in gone {
            self.release(c);
        }
    }

    fn dec(&mut self, trunk: &str) {
        if let Some(st) = self.trunks.get_mut(trunk) {
            st.active = st.active.saturating_sub(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// process overload

/// The process-level overload switch: on when the input queue holds more than `queue_high`
/// messages, off again once it is down to half of that (hysteresis, so the state does not
/// flap at every batch).
#[derive(Debug, Clone, Copy)]
pub struct Overload {
    pub queue_high: usize,
    on: bool,
}

impl Overload {
    pub fn new(queue_high: usize) -> Overload {
        Overload {
            queue_high: queue_high.max(1),
            on: false,
        }
    }

    /// Feed the current queue depth; returns whether the process is overloaded.
    pub fn update(&mut self, queued: usize) -> bool {
        if queued > self.queue_high {
            self.on = true;
        } else if queued <= self.queue_high / 2 {
            self.on = false;
        }
        self.on
    }

    pub fn is_on(&self) -> bool {
        self.on
    }
}

#[cfg(test)]
mod core_flows;
#[cfg(test)]
mod cost;
#[cfg(test)]
mod tests;
