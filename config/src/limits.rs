//! `limits:`: overload and abuse protection (rates, caps, the overload queue, scanner
//! User-Agents, authentication failures, TCP/TLS connection limits).

use super::*;

/// User-Agent substrings dropped by default: the well-known SIP scanners and war-dialers
/// (SIPVicious and its `friendly-scanner` default, sipcli, sip-scan, the VaxSIP SDK default
/// most brute-forcers keep, iWar, SIVuS, sundayddr). Matched case-insensitively anywhere in
/// the header value. `user_agent_block: []` turns the list off.
pub const DEFAULT_USER_AGENT_BLOCK: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "VaxSIPUserAgent",
    "iWar",
    "SIVuS",
    "sundayddr",
];

/// Overload and abuse protection (`limits:`). Per-trunk limits are the trunks' own
/// `max_calls`/`max_cps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests per second accepted from one source IP address, as a token bucket refilled at
    /// this rate (None: no limit, the default). Requests over it are dropped unanswered. The
    /// trunks' addresses are exempt.
    pub source_rate: Option<u32>,
    /// Bucket size of `source_rate`: the burst a source may send at once (default twice the
    /// rate).
    pub source_burst: u32,
    /// Calls in progress beyond which new INVITEs are answered 503 (None: no limit).
    pub max_calls: Option<u32>,
    /// Messages waiting for the core beyond which the process counts as overloaded and answers
    /// new INVITEs 503 (until the queue has drained to half of it).
    pub overload_queue: u32,
    /// Retry-After (seconds) of the 503s sent for overload and trunk limits (RFC 3261 §21.5.4).
    /// Mind that an upstream proxy may take a 503 with Retry-After as "this server is down"
    /// for that long and send it nothing at all (RFC 3263 §4.3): keep it short.
    pub retry_after: u32,
    /// User-Agent substrings (case-insensitive) whose requests are dropped unanswered.
    pub user_agent_block: Vec<String>,
    /// Failed Digest answers that get a source banned (`limits.auth_failures`).
    pub auth_failures: AuthFailures,
    /// Per-source and per-target caps of the SIP core.
    pub core: CoreCaps,
    /// Connection limits of the TCP and TLS listeners (`limits.tcp`).
    pub tcp: TcpLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            source_rate: None,
            source_burst: 0,
            max_calls: None,
            overload_queue: 2000,
            retry_after: 5,
            user_agent_block: DEFAULT_USER_AGENT_BLOCK
                .iter()
                .map(|s| s.to_string())
                .collect(),
            auth_failures: AuthFailures::default(),
            core: CoreCaps::default(),
            tcp: TcpLimits::default(),
        }
    }
}

/// The most `limits.overload_queue` may be (the input queue holds 65536 messages).
pub const MAX_OVERLOAD_QUEUE: u32 = 60_000;

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default)]
    source_rate: Option<u32>,
    #[serde(default)]
    source_burst: Option<u32>,
    #[serde(default)]
    max_calls: Option<u32>,
    #[serde(default)]
    overload_queue: Option<u32>,
    #[serde(default)]
    retry_after: Option<u32>,
    #[serde(default)]
    user_agent_block: Option<Vec<String>>,
    #[serde(default)]
    auth_failures: Option<abuse::RawAuthFailures>,
    #[serde(default)]
    early_calls_per_source: Option<u32>,
    #[serde(default)]
    subscriptions_per_source: Option<u32>,
    #[serde(default)]
    subscriptions_per_target: Option<u32>,
    #[serde(default)]
    tcp: Option<abuse::RawTcpLimits>,
}

pub(crate) fn build_limits(raw: Option<RawLimits>) -> Result<Limits, Sem> {
    let mut l = Limits::default();
    let Some(r) = raw else { return Ok(l) };
    let p = |k: &str| vec![key("limits"), key(k)];
    l.auth_failures = abuse::build_auth_failures(r.auth_failures)?;
    let caps = &mut l.core;
    for (v, slot) in [
        (r.early_calls_per_source, &mut caps.early_calls_per_source),
        (
            r.subscriptions_per_source,
            &mut caps.subscriptions_per_source,
        ),
        (
            r.subscriptions_per_target,
            &mut caps.subscriptions_per_target,
        ),
    ] {
        if let Some(v) = v {
            *slot = v;
        }
    }
    if r.source_rate == Some(0) {
        return Err(sem(
            p("source_rate"),
            "source_rate must be > 0 (leave it out for no limit)",
        ));
    }
    l.source_rate = r.source_rate;
    match (r.source_burst, r.source_rate) {
        (Some(_), None) => {
            return Err(sem(p("source_burst"), "source_burst needs source_rate"));
        }
        (Some(0), _) => return Err(sem(p("source_burst"), "source_burst must be > 0")),
        (Some(b), Some(_)) => l.source_burst = b,
        (None, Some(rate)) => l.source_burst = rate.saturating_mul(2),
        (None, None) => {}
    }
    if r.max_calls == Some(0) {
        return Err(sem(
            p("max_calls"),
            "max_calls must be > 0 (leave it out for no limit)",
        ));
    }
    l.max_calls = r.max_calls;
    if let Some(q) = r.overload_queue {
        if q == 0 || q > MAX_OVERLOAD_QUEUE {
            return Err(sem(
                p("overload_queue"),
                format!("overload_queue must be 1..={MAX_OVERLOAD_QUEUE} messages"),
            ));
        }
        l.overload_queue = q;
    }
    if let Some(s) = r.retry_after {
        // RFC 3261 §20.33: delta-seconds; an hour is already more than any client waits.
        if s == 0 || s > 3600 {
            return Err(sem(
                p("retry_after"),
                "retry_after must be 1..=3600 seconds",
            ));
        }
        l.retry_after = s;
    }
    if let Some(list) = r.user_agent_block {
        for (i, ua) in list.iter().enumerate() {
            let at = || vec![key("limits"), key("user_agent_block"), Seg::Index(i)];
            if ua.trim().is_empty() {
                return Err(sem(
                    at(),
                    "an empty User-Agent pattern would block every request",
                ));
            }
            check_text(ua, at, "a User-Agent pattern")?;
        }
        l.user_agent_block = list;
    }
    if let Some(t) = r.tcp {
        l.tcp = abuse::build_tcp_limits(t)?;
    }
    Ok(l)
}
