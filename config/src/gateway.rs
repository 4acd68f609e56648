//! MGCP gateways (RFC 3435): a trunk's `mgcp:` section, or an entry of the top-level
//! `gateways:` (the same thing written as its own section).
//!
//! ```yaml
//! gateways:
//!   gw1:
//!     address: 192.0.2.20:2427          # the gateway's MGCP port (IPv4, UDP)
//!     endpoints: 'aaln/*@gw1'           # its lines, audited by wildcard AUEP
//!     lines: { '+15551230001': aaln/1, '+15551230002': aaln/2 }
//!     digit_map: '(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)'
//!     ring_time: 30                     # seconds a line rings before 480 (default 30)
//!     audit_interval: 30                # AUEP every 30 s; unanswered: down (calls get 503)
//! mgcp: { listen: 0.0.0.0:2727 }      # the call agent's port (default: an ephemeral one)
//! trunks:
//!   pstn: { address: 192.0.2.21:2427, mgcp: { endpoint: 'ds/e1-1/*@tgw' } }  # trunking
//! ```
//!
//! A call routed to the gateway whose number is one of its `lines` rings that line; any other
//! number goes to the trunking `endpoint` (CRCX, then the digits as DTMF signals), refused
//! (404) when the gateway has none. A line that goes off-hook gets dial tone, its digits are
//! collected with the digit map, and the call enters the dial plan with `source_trunk` = the
//! gateway and `from_user` = the line's number.

use std::time::Duration;

use serde::Deserialize;

use crate::locate::{key, Seg};
use crate::{sem, Sem};

/// The default digit map: 4-digit extensions, `*xx` features, `0` for the operator, and
/// international numbers ended by the timer.
pub const DEFAULT_DIGIT_MAP: &str = "(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)";

/// An MGCP gateway trunk (`mgcp:` or `gateways:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkMgcp {
    /// Trunking endpoint for CRCX of calls to numbers that are not lines, `local@domain`,
    /// wildcards allowed (`rtpbridge/*@mgw`, `ds/e1-1/*@gw`).
    pub endpoint: Option<String>,
    /// The wildcard under which the gateway's endpoints are audited (`aaln/*@gw1`).
    pub endpoints: Option<String>,
    /// Phone lines: number (the `from_user` of their calls, the number that rings them) and
    /// full endpoint name (`aaln/1@gw1`), in file order.
    pub lines: Vec<Line>,
    /// Sent to the gateway (RQNT `D:`) and checked again on the digits it reports.
    pub digit_map: String,
    /// How long a line rings before the caller gets 480.
    pub ring_time: Duration,
    /// How often the gateway is audited (AUEP); one unanswered audit (after its
    /// retransmissions) marks it down, and its calls are refused at once (503) so routes
    /// fail over.
    pub audit_interval: Duration,
}

/// A line of a gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub number: String,
    pub endpoint: String,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunkMgcp {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub endpoints: Option<String>,
    #[serde(default, deserialize_with = "crate::unique_keys")]
    pub lines: Vec<(String, String)>,
    #[serde(default)]
    pub digit_map: Option<String>,
    #[serde(default)]
    pub ring_time: Option<u64>,
    #[serde(default)]
    pub audit_interval: Option<u64>,
}

/// An entry of `gateways:`: a trunk's keys that apply to a gateway, and its `mgcp:` keys.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub address: String,
    #[serde(default)]
    pub max_calls: Option<u32>,
    #[serde(default)]
    pub max_cps: Option<u32>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub endpoints: Option<String>,
    #[serde(default, deserialize_with = "crate::unique_keys")]
    pub lines: Vec<(String, String)>,
    #[serde(default)]
    pub digit_map: Option<String>,
    #[serde(default)]
    pub ring_time: Option<u64>,
    #[serde(default)]
    pub audit_interval: Option<u64>,
}

impl RawGateway {
    /// Split into the trunk keys (address, limits) and the `mgcp:` keys.
    pub(crate) fn split(self) -> (String, Option<u32>, Option<u32>, RawTrunkMgcp) {
        (
            self.address,
            self.max_calls,
            self.max_cps,
            RawTrunkMgcp {
                endpoint: self.endpoint,
                endpoints: self.endpoints,
                lines: self.lines,
                digit_map: self.digit_map,
                ring_time: self.ring_time,
                audit_interval: self.audit_interval,
            },
        )
    }
}

/// RFC 3435 section 2.1.1: `local@domain`, no blanks or controls.
fn endpoint_name(e: &str) -> bool {
    e.contains('@')
        && !e.starts_with('@')
        && !e.ends_with('@')
        && e.len() <= 255
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Validate the `mgcp:` keys written at `path(k)`.
pub(crate) fn build_mgcp(
    m: RawTrunkMgcp,
    path: impl Fn(&str) -> Vec<Seg>,
) -> Result<TrunkMgcp, Sem> {
    let endpoint = match m.endpoint.as_deref().map(str::trim) {
        None => None,
        Some(e) if endpoint_name(e) => Some(e.to_string()),
        Some(e) => {
            return Err(sem(
                path("endpoint"),
                format!("MGCP endpoint `{e}`: local@domain (RFC 3435 section 2.1.1)"),
            ))
        }
    };
    let endpoints = match m.endpoints.as_deref().map(str::trim) {
        None => None,
        Some(e) if endpoint_name(e) => Some(e.to_string()),
        Some(e) => {
            return Err(sem(
                path("endpoints"),
                format!("MGCP endpoints `{e}`: a wildcard local@domain such as aaln/*@gw1"),
            ))
        }
    };
    let domain = endpoints
        .as_deref()
        .and_then(|e| e.split_once('@'))
        .map(|(_, d)| d.to_string());
    let mut lines: Vec<Line> = Vec::new();
    for (number, local) in m.lines {
        let at = || {
            let mut p = path("lines");
            p.push(key(&number));
            p
        };
        let n = number.trim();
        let digits = n.strip_prefix('+').unwrap_or(n);
        if digits.is_empty() || digits.len() > 32 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            let mut p = path("lines");
            p.push(Seg::KeyItself(number.clone()));
            return Err(sem(
                p,
                format!("line number `{number}`: digits, optionally after a leading +"),
            ));
        }
        let local = local.trim();
        let full = if local.contains('@') {
            local.to_string()
        } else {
            match &domain {
                Some(d) => format!("{local}@{d}"),
                None => {
                    return Err(sem(
                        at(),
                        format!(
                            "line endpoint `{local}` has no @domain: write it in full or give \
                             the gateway `endpoints:` (aaln/*@gw1)"
                        ),
                    ))
                }
            }
        };
        if !endpoint_name(&full) || full.contains(['*', '$']) {
            return Err(sem(
                at(),
                format!("line endpoint `{full}`: one endpoint (local@domain, no wildcard)"),
            ));
        }
        if let Some(other) = lines
            .iter()
            .find(|l| l.endpoint.eq_ignore_ascii_case(&full))
        {
            return Err(sem(
                at(),
                format!("endpoint `{full}` is already line {}", other.number),
            ));
        }
        lines.push(Line {
            number: n.to_string(),
            endpoint: full,
        });
    }
    if endpoint.is_none() && lines.is_empty() {
        return Err(sem(
            path("endpoint"),
            "an MGCP gateway needs a trunking `endpoint`, `lines`, or both",
        ));
    }
    let digit_map = m.digit_map.unwrap_or_else(|| DEFAULT_DIGIT_MAP.to_string());
    if let Err(e) = mgcp::DigitMap::parse(&digit_map) {
        return Err(sem(path("digit_map"), e.to_string()));
    }
    let ring_time = match m.ring_time {
        None => Duration::from_secs(30),
        Some(s @ 1..=600) => Duration::from_secs(s),
        Some(s) => {
            return Err(sem(
                path("ring_time"),
                format!("ring_time {s} s: use 1 to 600"),
            ))
        }
    };
    let audit_interval = match m.audit_interval {
        None => Duration::from_secs(30),
        Some(s @ 1..=3600) => Duration::from_secs(s),
        Some(s) => {
            return Err(sem(
                path("audit_interval"),
                format!("audit_interval {s} s: use 1 to 3600"),
            ))
        }
    };
    Ok(TrunkMgcp {
        endpoint,
        audit_interval,
        endpoints,
        lines,
        digit_map: digit_map.trim().to_string(),
        ring_time,
    })
}

/// `mgcp: { listen: 0.0.0.0:2727 }`: the call agent's port (RFC 3435 section 3.5: 2727).
#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMgcpAgent {
    #[serde(default)]
    pub listen: Option<String>,
}

pub(crate) fn build_agent(a: RawMgcpAgent) -> Result<Option<std::net::SocketAddr>, Sem> {
    let Some(l) = a.listen else {
        return Ok(None);
    };
    match l.trim().parse::<std::net::SocketAddr>() {
        Ok(s) if s.is_ipv4() => Ok(Some(s)),
        _ => Err(sem(
            vec![key("mgcp"), key("listen")],
            format!("mgcp.listen `{l}`: an IPv4 ip:port such as 0.0.0.0:2727"),
        )),
    }
}
