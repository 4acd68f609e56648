//! `limits:` keys that bound what an unauthenticated source can make the SIP core do: failed
//! Digest answers (ban), early calls and subscriptions per source and per target.

use std::time::Duration;

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
