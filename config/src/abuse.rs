//! `limits:` keys that bound what a source can make trunkline hold: failed Digest answers
//! (ban), early calls and subscriptions per source and per target (the SIP core), and the
//! SIP TCP/TLS listeners' connections (`limits.tcp`).

use std::time::Duration;

use serde::Deserialize;

use crate::{key, sem, Sem};

/// `limits.auth_failures`: more than `max` failed Digest answers from one source address
/// within `window` ban it for `ban` (its requests that need credentials are dropped
/// unanswered). `max: 0` turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailures {
    pub max: u32,
    pub window: Duration,
    pub ban: Duration,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures {
            max: 10,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
        }
    }
}

/// Per-source and per-target caps of the SIP core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreCaps {
    /// Calls not yet answered that one unauthenticated source (not a trunk, no credentials:
    /// a call to a registered user, with a registrar that authenticates calls) may have at
    /// once; more get 503 (`0`: no cap).
    pub early_calls_per_source: u32,
    /// Live subscriptions one source may hold (trunks exempt); more get 503 (`0`: no cap).
    pub subscriptions_per_source: u32,
    /// Live subscriptions to one target (Request-URI) at once; more get 503 (`0`: no cap).
    pub subscriptions_per_target: u32,
}

impl Default for CoreCaps {
    fn default() -> Self {
        CoreCaps {
            early_calls_per_source: 8,
            subscriptions_per_source: 32,
            subscriptions_per_target: 64,
        }
    }
}

#[derive(serde::Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthFailures {
    #[serde(default)]
    max: Option<u32>,
    #[serde(default)]
    window: Option<u32>,
    #[serde(default)]
    ban: Option<u32>,
}

pub(crate) fn build_auth_failures(raw: Option<RawAuthFailures>) -> Result<AuthFailures, Sem> {
    let mut a = AuthFailures::default();
    let Some(r) = raw else { return Ok(a) };
    let p = |k: &str| vec![key("limits"), key("auth_failures"), key(k)];
    if let Some(m) = r.max {
        a.max = m;
    }
    for (name, v, slot) in [
        ("window", r.window, &mut a.window),
        ("ban", r.ban, &mut a.ban),
    ] {
        if let Some(s) = v {
            if s == 0 || s > 86_400 {
                return Err(sem(p(name), format!("{name} must be 1..=86400 seconds")));
            }
            *slot = Duration::from_secs(u64::from(s));
        }
    }
    Ok(a)
}

/// Connection limits of the SIP stream listeners (`limits.tcp`, TCP and TLS alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Inbound connections open at once, all sources together (default 10000).
    pub max_connections: u32,
    /// Inbound connections open at once from one source IP (default 64); trunks are exempt.
    pub max_per_source: u32,
    /// How long a TLS handshake may take (default 5 s).
    pub handshake_timeout: Duration,
    /// A connection that carries no call, no registration and no message for this long is
    /// closed (default 120 s).
    pub idle_timeout: Duration,
    /// The bytes of an unfinished message may sit in a connection's buffer this long
    /// (default 10 s).
    pub partial_message_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 10_000,
            max_per_source: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            partial_message_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcpLimits {
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    max_per_source: Option<u32>,
    #[serde(default)]
    handshake_timeout: Option<u64>,
    #[serde(default)]
    idle_timeout: Option<u64>,
    #[serde(default)]
    partial_message_timeout: Option<u64>,
}

pub(crate) fn build_tcp_limits(r: RawTcpLimits) -> Result<TcpLimits, Sem> {
    let mut l = TcpLimits::default();
    let p = |k: &str| vec![key("limits"), key("tcp"), key(k)];
    if let Some(n) = r.max_connections {
        if n == 0 || n > 1_000_000 {
            return Err(sem(
                p("max_connections"),
                "max_connections must be 1..=1000000",
            ));
        }
        l.max_connections = n;
    }
    if let Some(n) = r.max_per_source {
        if n == 0 || n > l.max_connections {
            return Err(sem(
                p("max_per_source"),
                format!(
                    "max_per_source must be 1..={} (max_connections)",
                    l.max_connections
                ),
            ));
        }
        l.max_per_source = n;
    }
    let secs = |v: Option<u64>, k: &str, max: u64, d: Duration| -> Result<Duration, Sem> {
        match v {
            None => Ok(d),
            Some(s) if s == 0 || s > max => {
                Err(sem(p(k), format!("{k} must be 1..={max} seconds")))
            }
            Some(s) => Ok(Duration::from_secs(s)),
        }
    };
    l.handshake_timeout = secs(
        r.handshake_timeout,
        "handshake_timeout",
        60,
        l.handshake_timeout,
    )?;
    l.idle_timeout = secs(r.idle_timeout, "idle_timeout", 86_400, l.idle_timeout)?;
    l.partial_message_timeout = secs(
        r.partial_message_timeout,
        "partial_message_timeout",
        600,
        l.partial_message_timeout,
    )?;
    Ok(l)
}
