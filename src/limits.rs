//! Overload and abuse protection, sans-IO: time is always an argument, nothing here touches a
//! socket or reads the clock, so every rule is tested in virtual time.
//!
//! - [`SourceLimiter`]: a token bucket per source IP address for requests, checked on the raw
//!   bytes before anything is parsed; over the limit a request is dropped unanswered.
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

/// Requests per source IP as a token bucket: `burst` tokens, refilled at `rate` per second; a
/// request takes one token or is refused.
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
        let ip = canonical(ip);
        if self.exempt.contains(&ip) {
            return true;
        }
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
            CallEvent::TrunkRegistration { .. } | CallEvent::TrunkProbe { .. } => {}
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
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(10, 20);
        let a = ip("192.0.2.1");
        let ok = (0..100).filter(|_| l.allow(a, t0)).count();
        assert_eq!(ok, 20, "the burst, then nothing at the same instant");
        // 10/s: half a second later, 5 more.
        let t = t0 + Duration::from_millis(500);
        let ok = (0..100).filter(|_| l.allow(a, t)).count();
        assert_eq!(ok, 5);
        // Over 10 s of a steady 100/s flood, about 10/s get through.
        let mut ok = 0;
        for i in 1..=1000u64 {
            if l.allow(a, t + Duration::from_millis(10 * i)) {
                ok += 1;
            }
        }
        assert!((99..=101).contains(&ok), "{ok} of 1000 in 10 s at 10/s");
        // Another source is not affected.
        assert!(l.allow(ip("192.0.2.2"), t + Duration::from_secs(10)));
    }

    #[test]
    fn bucket_refills_to_burst_only() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(5, 5);
        let a = ip("2001:db8::1");
        assert_eq!((0..10).filter(|_| l.allow(a, t0)).count(), 5);
        // A long quiet time refills up to the burst, not beyond.
        let t = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| l.allow(a, t)).count(), 5);
    }

    #[test]
    fn exempt_and_mapped_addresses() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(1, 1);
        l.set_exempt([ip("10.0.0.9")]);
        assert_eq!((0..50).filter(|_| l.allow(ip("10.0.0.9"), t0)).count(), 50);
        // The IPv4-mapped form is the same source, exempt or not.
        assert_eq!(
            (0..50)
                .filter(|_| l.allow(ip("::ffff:10.0.0.9"), t0))
                .count(),
            50
        );
        assert!(l.allow(ip("::ffff:10.0.0.8"), t0));
        assert!(!l.allow(ip("10.0.0.8"), t0), "one bucket for both forms");
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn idle_buckets_are_swept_and_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(100, 100);
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(l.allow(a, t0));
        }
        assert_eq!(l.tracked(), 1000);
        // After the sweep period every bucket has refilled: all forgotten.
        l.allow(ip("192.0.2.1"), t0 + SWEEP_EVERY);
        assert_eq!(l.tracked(), 1, "only the new source");
        // A flood from more sources than the table holds: the extra ones pass untracked, the
        // table never grows past its bound, and a limited source stays limited.
        let t1 = t0 + SWEEP_EVERY + Duration::from_millis(1);
        let hot = ip("192.0.2.1");
        while l.allow(hot, t1) {}
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            assert!(l.allow(a, t1));
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        assert!(l.untracked >= 100);
        assert!(!l.allow(hot, t1));
    }

    fn msg(ua: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
             {ua}From: <sip:100@x>;tag=1\r\nContent-Length: 0\r\n\r\nUser-Agent: body\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn user_agent_block_list() {
        let list = UaBlockList::new(&["friendly-scanner", "SIPVicious", "sipcli"]);
        assert!(blocked_user_agent(
            &msg("User-Agent: friendly-scanner\r\n"),
            &list
        ));
        assert!(blocked_user_agent(
            &msg("user-agent :  my sipvicious 0.3\r\n"),
            &list
        ));
        assert!(blocked_user_agent(
            &msg("USER-AGENT:SIPCLI/v1.8\r\n"),
            &list
        ));
        // Not blocked: another UA, no UA, a UA only in the body, a response, an empty list.
        assert!(!blocked_user_agent(&msg("User-Agent: Linphone\r\n"), &list));
        assert!(!blocked_user_agent(&msg(""), &list));
        assert!(!blocked_user_agent(
            &msg("X-User-Agent: friendly-scanner\r\n"),
            &list
        ));
        let resp = b"SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\n\r\n";
        assert!(!blocked_user_agent(resp, &list));
        assert!(!blocked_user_agent(
            &msg("User-Agent: friendly-scanner\r\n"),
            &UaBlockList::new::<&str>(&[])
        ));
        // Bare LF line ends, and hostile input never panics.
        assert!(blocked_user_agent(
            b"INVITE sip:x SIP/2.0\nUser-Agent: sipcli\n\n",
            &list
        ));
        for bad in [
            &b""[..],
            b"\n",
            b"X\nUser-Agent",
            b"X\nUser-Agent:",
            b"X\r\nuser-agent\xff:\xfe",
        ] {
            let _ = blocked_user_agent(bad, &list);
        }
        assert_eq!(user_agent(b"X\nUser-Agent:"), Some(&b""[..]));
    }

    #[test]
    fn find_newline_matches_a_byte_scan() {
        let mut data = Vec::new();
        let mut x = 0x1234_5678_u32;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Many newlines and bytes close to it (0x0a +/- 1, 0x8a) to try the word trick.
            data.push([b'\n', 0x0b, 0x09, 0x8a, b'a', 0, 0xff, b'U'][(x % 8) as usize]);
        }
        for from in 0..data.len() + 2 {
            let want = data
                .get(from..)
                .and_then(|d| d.iter().position(|&b| b == b'\n').map(|p| from + p));
            assert_eq!(find_newline(&data, from), want, "from {from}");
        }
        assert_eq!(find_newline(b"", 0), None);
        assert_eq!(find_newline(b"abcdefghijklmnop\n", 0), Some(16));
    }

    const TL: TrunkLimits = TrunkLimits {
        max_calls: Some(2),
        max_cps: None,
    };

    #[test]
    fn trunk_calls_counted_once_and_released() {
        let now = Instant::now();
        let mut u = TrunkUsage::default();
        assert_eq!(u.check("c", TL, now), Ok(()));
        u.attempt(1, "c", TL, now);
        // A retransmitted/duplicate attempt event for the same trunk does not count twice.
        u.attempt(1, "c", TL, now);
        assert_eq!(u.active("c"), 1);
        u.attempt(2, "c", TL, now);
        assert_eq!(u.check("c", TL, now), Err(Limit::Calls));
        u.release(1);
        u.release(1);
        assert_eq!(u.active("c"), 1, "release is idempotent");
        assert_eq!(u.check("c", TL, now), Ok(()));
        u.release(2);
        assert_eq!(u.active("c"), 0);
        assert_eq!(u.calls(), 0);
    }

    #[test]
    fn failover_moves_the_slot() {
        let now = Instant::now();
        let mut u = TrunkUsage::default();
        u.attempt(7, "a", TL, now);
        u.attempt(7, "b", TL, now);
        assert_eq!((u.active("a"), u.active("b")), (0, 1));
        u.attempt(7, "c", TL, now);
        assert_eq!((u.active("b"), u.active("c")), (0, 1));
        u.release(7);
        assert_eq!(u.active("c"), 0);
    }

    #[test]
    fn inbound_slot_follows_the_call() {
        let now = Instant::now();
        let mut u = TrunkUsage::default();
        let lim = TrunkLimits {
            max_calls: Some(1),
            max_cps: None,
        };
        // From trunk `carrier` to trunk `pbx`: both hold the call.
        assert_eq!(u.admit_inbound("carrier", lim, now), Ok(()));
        u.attempt(1, "pbx", TrunkLimits::default(), now);
        assert_eq!((u.active("carrier"), u.active("pbx")), (1, 1));
        assert_eq!(u.admit_inbound("carrier", lim, now), Err(Limit::Calls));
        // A call refused after routing (e.g. 488) gives its inbound slot back.
        u.release(1);
        assert_eq!(u.admit_inbound("carrier", lim, now), Ok(()));
        u.not_started();
        assert_eq!(u.active("carrier"), 0);
        u.not_started();
        assert_eq!(u.active("carrier"), 0, "nothing pending, nothing released");
        // A call that loops back to its own source trunk holds two slots there.
        let two = TrunkLimits {
            max_calls: Some(2),
            max_cps: None,
        };
        assert_eq!(u.admit_inbound("carrier", two, now), Ok(()));
        u.attempt(2, "carrier", two, now);
        assert_eq!(u.active("carrier"), 2);
        u.release(2);
        assert_eq!(u.active("carrier"), 0);
    }

    #[test]
    fn cps_is_a_sliding_one_second_window() {
        let t0 = Instant::now();
        let mut u = TrunkUsage::default();
        let lim = TrunkLimits {
            max_calls: None,
            max_cps: Some(3),
        };
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut started = Vec::new();
        let mut id = 0;
        // Offer a call every 50 ms for 5 s; count what starts.
        for t in (0..5000).step_by(50) {
            if u.check("c", lim, ms(t)).is_ok() {
                id += 1;
                u.attempt(id, "c", lim, ms(t));
                u.release(id);
                started.push(t);
            }
        }
        // No window of one second ever holds more than 3 starts.
        for (i, &t) in started.iter().enumerate() {
            let n = started[i..].iter().take_while(|&&s| s < t + 1000).count();
            assert!(n <= 3, "{n} starts in [{t}, {}) ms", t + 1000);
        }
        assert_eq!(started.len(), 15, "3 per second for 5 s: {started:?}");
        assert_eq!(u.check("c", lim, ms(4999)), Err(Limit::Cps));
    }

    #[test]
    fn retain_releases_calls_the_core_forgot() {
        let now = Instant::now();
        let mut u = TrunkUsage::default();
        u.attempt(1, "a", TL, now);
        u.attempt(2, "a", TL, now);
        u.retain(|c| c == 2);
        assert_eq!(u.active("a"), 1);
        assert_eq!(u.calls(), 1);
    }

    #[test]
    fn overload_hysteresis() {
        let mut o = Overload::new(100);
        assert!(!o.update(100));
        assert!(o.update(101));
        assert!(o.update(60), "stays on above half");
        assert!(!o.update(50));
        assert!(!o.update(99));
    }
}

/// [`TrunkUsage`] driven by the real B2BUA core in virtual time: every end path of a call
/// (answer + BYE, CANCEL, BYE before the answer, failover, all targets failing, a 2xx crossing
/// a CANCEL) releases exactly what the call held.
#[cfg(test)]
mod core_flows {
    use super::*;
    use signaling::b2bua::{CallRef, CoreConfig, Leg, MediaRefusal, Policy, RouteOutcome, Target};
    use signaling::message::{Request, SipMessage};
    use signaling::testing::{peer, World};
    use signaling::Peer;

    const A: &str = "127.0.0.1:5070";
    const T: [&str; 3] = ["127.0.0.1:5080", "127.0.0.1:5090", "127.0.0.1:5100"];
    const NAMES: [&str; 3] = ["t0", "t1", "t2"];

    struct P {
        usage: TrunkUsage,
        limits: HashMap<String, TrunkLimits>,
        targets: Vec<Target>,
        now: Instant,
    }

    impl Policy for P {
        fn route(
            &mut self,
            _: &Request,
            _: Peer,
            to: &str,
            from: &str,
            _now: Instant,
        ) -> RouteOutcome {
            let targets: Vec<Target> = self
                .targets
                .iter()
                .filter(|t| {
                    let lim = self.limits.get(&t.trunk).copied().unwrap_or_default();
                    self.usage.check(&t.trunk, lim, self.now).is_ok()
                })
                .cloned()
                .collect();
            if targets.is_empty() {
                return RouteOutcome::Unavailable { retry_after: 5 };
            }
            RouteOutcome::Route {
                targets,
                to_user: to.into(),
                from_user: from.into(),
            }
        }
        fn media_offer(
            &mut self,
            _: CallRef<'_>,
            _: Leg,
            sdp: &[u8],
            _now: Instant,
        ) -> Result<Vec<u8>, MediaRefusal> {
            Ok(sdp.to_vec())
        }
        fn media_answer(
            &mut self,
            _: CallRef<'_>,
            _: Leg,
            sdp: &[u8],
            _now: Instant,
        ) -> Result<Vec<u8>, String> {
            Ok(sdp.to_vec())
        }
        fn media_release(&mut self, call: CallRef<'_>, _now: Instant) {
            self.usage.release(call.id);
        }
        fn event(&mut self, ev: CallEvent, _now: Instant) {
            let limits = &self.limits;
            self.usage.on_event(
                &ev,
                |n| limits.get(n).copied().unwrap_or_default(),
                self.now,
            );
        }
        fn admit_target(&mut self, t: &Target, _now: Instant) -> bool {
            let lim = self.limits.get(&t.trunk).copied().unwrap_or_default();
            self.usage.check(&t.trunk, lim, self.now).is_ok()
        }
    }

    type W = World<P>;

    fn world(n_targets: usize) -> W {
        let mut w = World::new(
            CoreConfig {
                local_udp: Some("127.0.0.1:5060".parse().unwrap()),
                ..CoreConfig::default()
            },
            P {
                usage: TrunkUsage::default(),
                limits: HashMap::new(),
                targets: (0..n_targets)
                    .map(|i| Target {
                        trunk: NAMES[i].into(),
                        peer: peer(T[i]),
                        host: T[i].into(),
                    })
                    .collect(),
                now: Instant::now(),
            },
        )
        .with_clock(|p, now| p.now = now);
        w.policy.now = w.now;
        w
    }

    /// What these tests read off the world besides the shared helpers.
    trait Slots {
        fn statuses_to_a(&mut self) -> Vec<(u16, Option<String>)>;
        fn active(&self) -> [u32; 3];
    }

    impl Slots for W {
        fn statuses_to_a(&mut self) -> Vec<(u16, Option<String>)> {
            self.take_responses(A)
                .into_iter()
                .map(|r| (r.status, r.to().and_then(|t| t.tag().map(str::to_string))))
                .collect()
        }
        fn active(&self) -> [u32; 3] {
            NAMES.map(|n| self.policy.usage.active(n))
        }
    }

    fn a_msg(method: &str, id: &str, cseq: u32, branch: &str, to_tag: Option<&str>) -> Vec<u8> {
        let tt = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "{method} sip:1@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {A};branch=z9hG4bK-{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:a@{A}>;tag=a-{id}\r\n\
             To: <sip:1@127.0.0.1>{tt}\r\n\
             Call-ID: {id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:a@{A}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn invite(w: &mut W, id: &str) {
        w.feed(A, &a_msg("INVITE", id, 1, &format!("inv-{id}"), None));
    }

    #[test]
    fn answered_call_then_bye() {
        let mut w = world(1);
        invite(&mut w, "c1");
        let b = w.take_request(T[0], "INVITE");
        assert_eq!(w.active(), [1, 0, 0]);
        w.respond(T[0], &b, 200);
        let tag = w
            .statuses_to_a()
            .into_iter()
            .find(|(s, _)| *s == 200)
            .and_then(|(_, t)| t)
            .unwrap();
        w.feed(A, &a_msg("ACK", "c1", 1, "ack-c1", Some(&tag)));
        assert_eq!(w.active(), [1, 0, 0], "an answered call holds its slot");
        w.feed(A, &a_msg("BYE", "c1", 2, "bye-c1", Some(&tag)));
        assert_eq!(w.active(), [0, 0, 0]);
        assert_eq!(w.policy.usage.calls(), 0);
    }

    #[test]
    fn cancel_releases_at_once() {
        let mut w = world(1);
        invite(&mut w, "c2");
        let b = w.take_request(T[0], "INVITE");
        w.respond(T[0], &b, 180);
        w.feed(A, &a_msg("CANCEL", "c2", 1, "inv-c2", None));
        assert_eq!(w.active(), [0, 0, 0], "released with the 487 to A");
        let c = w.take_request(T[0], "CANCEL");
        w.respond(T[0], &c, 200);
        w.respond(T[0], &b, 487);
        assert_eq!(w.active(), [0, 0, 0]);
        w.advance(Duration::from_secs(64));
        assert_eq!(w.core.active_calls(), 0);
        assert_eq!(w.policy.usage.calls(), 0);
    }

    #[test]
    fn bye_before_answer_and_2xx_crossing_it_release() {
        // BYE from A while ringing (RFC 3261 §15): the core cancels leg B and reports no
        // Finished; the slot goes with the media release.
        let mut w = world(1);
        invite(&mut w, "c3");
        let b = w.take_request(T[0], "INVITE");
        w.respond(T[0], &b, 180);
        let tag = w
            .statuses_to_a()
            .into_iter()
            .find_map(|(s, t)| (s == 180).then_some(t))
            .flatten()
            .unwrap();
        w.feed(A, &a_msg("BYE", "c3", 2, "bye-c3", Some(&tag)));
        w.respond(T[0], &b, 487);
        assert_eq!(w.active(), [0, 0, 0]);
        // Same, but leg B's 200 crosses the CANCEL: the core ACKs and BYEs it.
        invite(&mut w, "c4");
        let b = w.take_request(T[0], "INVITE");
        w.respond(T[0], &b, 180);
        let tag = w
            .statuses_to_a()
            .into_iter()
            .find_map(|(s, t)| (s == 180).then_some(t))
            .flatten()
            .unwrap();
        w.feed(A, &a_msg("BYE", "c4", 2, "bye-c4", Some(&tag)));
        w.respond(T[0], &b, 200);
        let bye = w.take_request(T[0], "BYE");
        w.respond(T[0], &bye, 200);
        let c = w.take_request(T[0], "CANCEL");
        w.respond(T[0], &c, 200);
        w.advance(Duration::from_secs(64));
        assert_eq!(w.core.active_calls(), 0, "the core forgot the call");
        // The core releases the call's media (and with it the trunk slot) when the crossing
        // 2xx is ACKed and BYEd; the periodic reconcile finds nothing left to do.
        assert_eq!(w.active(), [0, 0, 0], "released with the media");
        let core = &w.core;
        w.policy.usage.retain(|id| core.has_call(id));
        assert_eq!(w.active(), [0, 0, 0]);
        assert_eq!(w.policy.usage.calls(), 0);
    }

    #[test]
    fn failover_moves_and_failure_releases() {
        let mut w = world(2);
        invite(&mut w, "c5");
        let b0 = w.take_request(T[0], "INVITE");
        w.respond(T[0], &b0, 503);
        let b1 = w.take_request(T[1], "INVITE");
        assert_eq!(w.active(), [0, 1, 0]);
        w.respond(T[1], &b1, 486);
        assert_eq!(w.active(), [0, 0, 0]);
        // A silent first target: the no-answer timer fails over, then Timer B ends it all.
        invite(&mut w, "c6");
        w.take_request(T[0], "INVITE");
        w.advance(Duration::from_secs(5));
        w.take_request(T[1], "INVITE");
        assert_eq!(w.active(), [0, 1, 0]);
        w.advance(Duration::from_secs(64));
        assert_eq!(w.active(), [0, 0, 0]);
        assert_eq!(w.core.active_calls(), 0);
    }

    #[test]
    fn full_trunk_is_skipped_on_failover_and_at_route() {
        let mut w = world(3);
        let one = TrunkLimits {
            max_calls: Some(1),
            max_cps: None,
        };
        w.policy.limits.insert("t1".into(), one);
        // Another call holds t1's only slot.
        w.policy.usage.attempt(999, "t1", one, w.policy.now);
        invite(&mut w, "c7");
        let b0 = w.take_request(T[0], "INVITE");
        w.respond(T[0], &b0, 503);
        // t1 is full: the failover goes straight to t2.
        let b2 = w.take_request(T[2], "INVITE");
        assert!(!w
            .sent()
            .iter()
            .any(|(p, m)| *p == peer(T[1]) && matches!(m, SipMessage::Request(_))));
        assert_eq!(w.active(), [0, 1, 1]);
        w.respond(T[2], &b2, 503);
        assert_eq!(w.active(), [0, 1, 0]);
        // Only t1 routed and full: 503 with Retry-After at once.
        let mut w1 = world(2);
        w1.policy.targets.remove(0);
        w1.policy.limits.insert("t1".into(), one);
        w1.policy.usage.attempt(999, "t1", one, w1.policy.now);
        invite(&mut w1, "c8");
        let st = w1.statuses_to_a();
        assert!(st.iter().any(|(s, _)| *s == 503), "{st:?}");
        assert_eq!(w1.core.active_calls(), 0);
    }
}

/// Cost of the pre-parse screening per request (run: `cargo test --release --bin trunkline
/// screen_cost -- --ignored --nocapture`).
#[cfg(test)]
mod cost {
    use super::*;

    #[test]
    #[ignore]
    fn screen_cost() {
        let invite = b"INVITE sip:+15551234567@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-abc-1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@198.51.100.7>;tag=1928301774\r\n\
To: <sip:+15551234567@192.0.2.1>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@198.51.100.7:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";
        let list = UaBlockList::new(config::DEFAULT_USER_AGENT_BLOCK);
        let mut lim = SourceLimiter::new(1_000_000, 1_000_000);
        let t0 = Instant::now();
        let n = 1_000_000u32;
        let mut passed = 0u32;
        for i in 0..n {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + (i & 1023)));
            if lim.allow(ip, t0) && !blocked_user_agent(std::hint::black_box(invite), &list) {
                passed += 1;
            }
        }
        let per = t0.elapsed().as_nanos() as f64 / f64::from(n);
        let t1 = Instant::now();
        for _ in 0..n {
            assert!(!blocked_user_agent(std::hint::black_box(invite), &list));
        }
        let ua = t1.elapsed().as_nanos() as f64 / f64::from(n);
        eprintln!("of which the UA scan: {ua:.0} ns");
        eprintln!("screening (bucket of 1024 sources + UA scan of a 12-header INVITE without UA): {per:.0} ns per request");
        assert_eq!(passed, n);
    }
}
