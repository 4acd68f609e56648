//! The registrar (`registrar:`): the served domains, their users, the location service's
//! store, and the messages kept for users who are offline.
//!
//! ```yaml
//! registrar:
//!   domains: [example.com]
//!   users: { alice: { password: s3cret, aliases: ['+15551230001'] } }
//!   store: /var/lib/trunkline/location.db    # bindings (and held messages) survive restarts
//!   offline_messages:                        # MESSAGE to a user who is not registered: 202,
//!     per_user: 100                          # kept, delivered when they register (defaults)
//!     total: 10000
//!     max_size: 1300                         # bytes of body
//!     ttl: 604800                            # seconds kept undelivered (a week)
//!     attempts: 3                            # failed deliveries before a message is dropped
//!     retry: 30                              # seconds between attempts
//!   # offline_messages: false                # refuse them with 480 instead
//!   presence: agent                          # trunkline answers watchers (PUBLISH, PIDF);
//!                                            # relay: SUBSCRIBEs go to the phones
//! ```

use serde::Deserialize;

use crate::locate::{key, Seg};
use crate::{sem, users, DigestAlgorithm, RegistrarUser, Sem};

/// The registrar (`registrar:`): REGISTER for `sip:user@<domain>`, Digest-authenticated
/// against `users`; calls to a served domain go to the user's registered contacts instead of
/// the dial plan. Reloadable (bindings survive a reload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registrar {
    /// Served domains, lower case.
    pub domains: Vec<String>,
    /// Digest realm (default: the first domain).
    pub realm: String,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// The users, in file order.
    pub users: Vec<RegistrarUser>,
    /// Digest algorithms offered, one challenge each in this order (default SHA-256, MD5).
    pub algorithms: Vec<DigestAlgorithm>,
    /// Where the bindings are kept across restarts (`None`: in memory only). Not reloadable.
    pub store: Option<std::path::PathBuf>,
    /// NAT keep-alive period for phones registered over UDP, seconds (0 = off; default 30).
    pub keepalive: u32,
    /// Calls, MESSAGEs and SUBSCRIBEs from anywhere but a trunk, to anywhere but a served
    /// domain, must authenticate as a user (407 challenge). Default true.
    pub authenticate_calls: bool,
    /// Messages for users who are not registered (`None`: refused with 480, as without a
    /// store). Default: kept with [`OfflineMessages::default`]'s limits.
    pub offline_messages: Option<OfflineMessages>,
    /// `presence: agent` (the default): trunkline is the presence agent of the served users
    /// (answers their watchers, takes their PUBLISH, state follows registration otherwise);
    /// `relay`: SUBSCRIBEs go to the users' phones, as for other domains.
    pub presence_agent: bool,
}

/// `registrar.offline_messages`: how many messages are kept for users who are offline, and
/// for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessages {
    pub per_user: u32,
    pub total: u32,
    /// Largest body kept, bytes.
    pub max_size: u32,
    /// Seconds a message is kept undelivered.
    pub ttl: u32,
    /// Delivery attempts before a message is dropped.
    pub attempts: u8,
    /// Seconds between attempts.
    pub retry: u32,
}

impl Default for OfflineMessages {
    fn default() -> Self {
        OfflineMessages {
            per_user: 100,
            total: 10_000,
            // RFC 3428 section 8: what fits a UDP datagram without fragmentation.
            max_size: 1300,
            ttl: 7 * 86_400,
            attempts: 3,
            retry: 30,
        }
    }
}

/// `offline_messages: false`, or its limits.
#[derive(Debug, PartialEq)]
pub(crate) enum RawOffline {
    Switch(bool),
    Limits(RawOfflineLimits),
}

impl<'de> Deserialize<'de> for RawOffline {
    /// A bool or a map, each with its own error (an untagged enum would only say that
    /// nothing matched).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawOffline;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or { per_user, total, max_size, ttl, attempts, retry }")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawOffline, E> {
                Ok(RawOffline::Switch(v))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, m: M) -> Result<RawOffline, M::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(m);
                RawOfflineLimits::deserialize(d).map(RawOffline::Limits)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOfflineLimits {
    #[serde(default)]
    per_user: Option<u32>,
    #[serde(default)]
    total: Option<u32>,
    #[serde(default)]
    max_size: Option<u32>,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    attempts: Option<u8>,
    #[serde(default)]
    retry: Option<u32>,
}

/// Most messages `offline_messages.total` accepts (each up to `max_size` bytes in memory).
const MAX_TOTAL: u32 = 1_000_000;
/// Largest `max_size`: a MESSAGE is a page of text, not a file transfer (RFC 3428 section 1).
const MAX_SIZE: u32 = 65_536;

fn build_offline(raw: Option<RawOffline>) -> Result<Option<OfflineMessages>, Sem> {
    let l = match raw {
        None | Some(RawOffline::Switch(true)) => return Ok(Some(OfflineMessages::default())),
        Some(RawOffline::Switch(false)) => return Ok(None),
        Some(RawOffline::Limits(l)) => l,
    };
    let d = OfflineMessages::default();
    let p = |k: &str| vec![key("registrar"), key("offline_messages"), key(k)];
    let o = OfflineMessages {
        per_user: l.per_user.unwrap_or(d.per_user),
        total: l.total.unwrap_or(d.total),
        max_size: l.max_size.unwrap_or(d.max_size),
        ttl: l.ttl.unwrap_or(d.ttl),
        attempts: l.attempts.unwrap_or(d.attempts),
        retry: l.retry.unwrap_or(d.retry),
    };
    let checks: [(&str, bool, String); 6] = [
        (
            "per_user",
            o.per_user == 0,
            "at least 1 (or offline_messages: false)".into(),
        ),
        (
            "total",
            o.total == 0 || o.total > MAX_TOTAL,
            format!("1 to {MAX_TOTAL}"),
        ),
        (
            "max_size",
            o.max_size == 0 || o.max_size > MAX_SIZE,
            format!("1 to {MAX_SIZE} bytes"),
        ),
        ("ttl", o.ttl == 0, "at least 1 second".into()),
        ("attempts", o.attempts == 0, "at least 1".into()),
        ("retry", o.retry == 0, "at least 1 second".into()),
    ];
    for (k, bad, want) in checks {
        if bad {
            return Err(sem(p(k), format!("registrar.offline_messages.{k}: {want}")));
        }
    }
    Ok(Some(o))
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistrar {
    domains: Vec<String>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    min_expires: Option<u32>,
    #[serde(default)]
    max_expires: Option<u32>,
    #[serde(default)]
    default_expires: Option<u32>,
    #[serde(default)]
    keepalive: Option<u32>,
    #[serde(default)]
    authenticate_calls: Option<bool>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    offline_messages: Option<RawOffline>,
    #[serde(default)]
    presence: Option<String>,
    #[serde(deserialize_with = "crate::unique_keys")]
    users: Vec<(String, users::RawUser)>,
}

pub(crate) fn build_registrar(r: RawRegistrar) -> Result<Registrar, Sem> {
    let p = |k: &str| vec![key("registrar"), key(k)];
    if r.domains.is_empty() {
        return Err(sem(p("domains"), "registrar.domains: at least one domain"));
    }
    let mut domains = Vec::new();
    for (i, d) in r.domains.iter().enumerate() {
        let d = d.trim().to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !ok {
            return Err(sem(
                vec![key("registrar"), key("domains"), Seg::Index(i)],
                format!("registrar domain `{d}`: a host name or IP address"),
            ));
        }
        // An IPv6 address is served as the URI host it appears as: `[2001:db8::1]`.
        let bare = d.strip_prefix('[').and_then(|x| x.strip_suffix(']'));
        let d = match bare.unwrap_or(&d).parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) => d,
        };
        domains.push(d);
    }
    let min = r.min_expires.unwrap_or(60);
    let max = r.max_expires.unwrap_or(3600);
    if min == 0 {
        return Err(sem(p("min_expires"), "registrar.min_expires must be > 0"));
    }
    if max < min {
        return Err(sem(
            p("max_expires"),
            format!("registrar.max_expires {max} is below min_expires {min}"),
        ));
    }
    let default = r.default_expires.unwrap_or(max).clamp(min, max);
    let keepalive = r.keepalive.unwrap_or(30);
    if keepalive > 3600 {
        return Err(sem(
            p("keepalive"),
            format!("registrar.keepalive {keepalive} s: at most 3600 (0 = off)"),
        ));
    }
    let algorithms = users::build_algorithms(r.algorithms)?;
    let users = users::build_users(r.users, &algorithms)?;
    let store = match r.store {
        Some(s) if s.trim().is_empty() => {
            return Err(sem(p("store"), "registrar.store: a file path"));
        }
        Some(s) => Some(std::path::PathBuf::from(s)),
        None => None,
    };
    let offline_messages = build_offline(r.offline_messages)?;
    let presence_agent = match r.presence.as_deref().map(str::trim) {
        None | Some("agent") => true,
        Some("relay") => false,
        Some(other) => {
            return Err(sem(
                p("presence"),
                format!("registrar.presence `{other}`: agent (the default) or relay"),
            ))
        }
    };
    Ok(Registrar {
        realm: r.realm.unwrap_or_else(|| domains[0].clone()),
        domains,
        min_expires: min,
        max_expires: max,
        default_expires: default,
        users,
        algorithms,
        store,
        keepalive,
        authenticate_calls: r.authenticate_calls.unwrap_or(true),
        offline_messages,
        presence_agent,
    })
}
