//! The keys of a trunk that make it a carrier's: `auth:` (trunkline answers the carrier's
//! Digest challenges), `register:` (trunkline registers with the carrier) and `probe:` (OPTIONS
//! health probing).
//!
//! ```yaml
//! trunks:
//!   carrier:
//!     address: 127.0.0.1:5090
//!     auth: { username: acme, password: s3cret, realm: sip.carrier.net }  # realm optional
//!     register: { user: acme, domain: sip.carrier.net, expires: 3600, contact_user: acme }
//!     probe: { interval: 30, down_after: 3, up_after: 2 }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::{key, sem, Seg, Sem};

/// `auth:` of a trunk: the credentials trunkline answers the trunk's 401/407 with.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkAuth {
    pub username: String,
    pub password: String,
    /// Answer challenges of this realm only; `None`: any realm the trunk names.
    pub realm: Option<String>,
}

/// The password is never printed (configs are logged with `{:?}` in places).
impl fmt::Debug for TrunkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

/// `register:` of a trunk: trunkline registers `user@domain` with the trunk (RFC 3261 §10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkRegister {
    /// The user part of the address-of-record (To/From of the REGISTER).
    pub user: String,
    /// The domain of the address-of-record and the REGISTER's Request-URI (`sip:domain`).
    pub domain: String,
    /// The expiry asked for; the carrier's answer decides (refreshed at half of it).
    pub expires: Duration,
    /// The user part of the Contact registered (calls to it come back as from this trunk).
    pub contact_user: String,
}

/// `probe:` of a trunk: an OPTIONS every `interval`; `down_after` unanswered in a row mark
/// the trunk down (routes skip it), `up_after` answered in a row mark it up again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrunkProbe {
    pub interval: Duration,
    pub down_after: u32,
    pub up_after: u32,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunkAuth {
    username: String,
    password: String,
    #[serde(default)]
    realm: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunkRegister {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    expires: Option<u64>,
    #[serde(default)]
    contact_user: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunkProbe {
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    down_after: Option<u32>,
    #[serde(default)]
    up_after: Option<u32>,
}

/// The `auth`, `register` and `probe` keys of one trunk, as read.
pub(crate) struct RawCarrierKeys {
    pub auth: Option<RawTrunkAuth>,
    pub register: Option<RawTrunkRegister>,
    pub probe: Option<RawTrunkProbe>,
}

/// The built keys.
pub(crate) struct CarrierKeys {
    pub auth: Option<TrunkAuth>,
    pub register: Option<TrunkRegister>,
    pub probe: Option<TrunkProbe>,
}

/// Shortest and longest registration expiry asked for (RFC 3261 §10.2.1.1: the registrar may
/// shorten it; a carrier answering 423 raises it to its Min-Expires).
const REGISTER_EXPIRES: std::ops::RangeInclusive<u64> = 60..=86_400;
const PROBE_INTERVAL: std::ops::RangeInclusive<u64> = 1..=3_600;

/// A token for a user part or a username: no whitespace, no control characters, no quotes
/// or angle brackets that would break the header it is written into.
fn check_token(s: &str, path: Vec<Seg>, what: &str) -> Result<(), Sem> {
    let bad = s.is_empty()
        || s.len() > 256
        || s.chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '<' | '>' | '@'));
    if bad {
        return Err(sem(
            path,
            format!("{what} `{s}`: 1-256 characters, no spaces, quotes, `<>` or `@`"),
        ));
    }
    Ok(())
}

/// `host` is the trunk's address as written (a name or an IP, with or without port): the
/// default registration domain.
pub(crate) fn build_carrier(
    name: &str,
    host: &str,
    raw: RawCarrierKeys,
) -> Result<CarrierKeys, Sem> {
    let p = |k: &str, sub: &str| {
        let mut v = vec![key("trunks"), key(name), key(k)];
        if !sub.is_empty() {
            v.push(key(sub));
        }
        v
    };
    let auth = match raw.auth {
        None => None,
        Some(a) => {
            check_token(&a.username, p("auth", "username"), "username")?;
            if a.password.is_empty() || a.password.chars().any(char::is_control) {
                // The value is never echoed.
                return Err(sem(
                    p("auth", "password"),
                    "password: not empty, no control characters",
                ));
            }
            if let Some(r) = &a.realm {
                if r.is_empty() || r.chars().any(|c| c.is_control() || c == '"') {
                    return Err(sem(
                        p("auth", "realm"),
                        format!("realm `{r}`: not empty, no quotes or control characters"),
                    ));
                }
            }
            Some(TrunkAuth {
                username: a.username,
                password: a.password,
                realm: a.realm,
            })
        }
    };
    let register = match raw.register {
        None => None,
        Some(r) => Some(build_register(r, auth.as_ref(), host, &p)?),
    };
    let probe = match raw.probe {
        None => None,
        Some(pr) => {
            let interval = pr.interval.unwrap_or(30);
            if !PROBE_INTERVAL.contains(&interval) {
                return Err(sem(
                    p("probe", "interval"),
                    format!("probe interval {interval}: 1-3600 seconds"),
                ));
            }
            let down_after = pr.down_after.unwrap_or(3);
            let up_after = pr.up_after.unwrap_or(2);
            for (k, v) in [("down_after", down_after), ("up_after", up_after)] {
                if !(1..=100).contains(&v) {
                    return Err(sem(p("probe", k), format!("{k} {v}: 1-100 probes")));
                }
            }
            Some(TrunkProbe {
                interval: Duration::from_secs(interval),
                down_after,
                up_after,
            })
        }
    };
    Ok(CarrierKeys {
        auth,
        register,
        probe,
    })
}

fn build_register(
    r: RawTrunkRegister,
    auth: Option<&TrunkAuth>,
    host: &str,
    p: &dyn Fn(&str, &str) -> Vec<Seg>,
) -> Result<TrunkRegister, Sem> {
    let user = match (r.user, auth) {
        (Some(u), _) => u,
        (None, Some(a)) => a.username.clone(),
        (None, None) => {
            return Err(sem(
                p("register", ""),
                "register needs `user` (or an `auth` whose username it takes)",
            ))
        }
    };
    check_token(&user, p("register", "user"), "user")?;
    let domain = r.domain.unwrap_or_else(|| default_domain(host));
    let domain_ok = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !domain_ok {
        return Err(sem(
            p("register", "domain"),
            format!("domain `{domain}`: a host name or IP address"),
        ));
    }
    let expires = r.expires.unwrap_or(3600);
    if !REGISTER_EXPIRES.contains(&expires) {
        return Err(sem(
            p("register", "expires"),
            format!("expires {expires}: 60-86400 seconds"),
        ));
    }
    let contact_user = r.contact_user.unwrap_or_else(|| user.clone());
    check_token(&contact_user, p("register", "contact_user"), "contact_user")?;
    Ok(TrunkRegister {
        user,
        domain,
        expires: Duration::from_secs(expires),
        contact_user,
    })
}

/// The domain a REGISTER goes to when `register.domain` is absent: the trunk's host, without
/// a port (`sip.carrier.net:5070` → `sip.carrier.net`, `[2001:db8::1]:5060` → `[2001:db8::1]`).
fn default_domain(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return format!("[{}]", &rest[..end]);
        }
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => {
            h.to_string()
        }
        _ => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::default_domain;
    use crate::from_yaml;
    use std::time::Duration;

    fn yaml(trunk_keys: &str) -> String {
        format!(
            "listen: [{{ transport: udp, address: 127.0.0.1:5060 }}]\n\
             media: {{ address: 127.0.0.1, ports: 20000-20099 }}\n\
             trunks:\n  carrier: {{ address: 127.0.0.1:5090{trunk_keys} }}\n\
             dialplan:\n  - route: [carrier]\n"
        )
    }

    #[test]
    fn auth_register_and_probe_are_read_with_their_defaults() {
        let c = from_yaml(
            &yaml(", auth: { username: acme, password: 's3 cret' }, register: {}, probe: {}"),
            "t.yaml",
        )
        .expect("valid");
        let t = &c.trunks["carrier"];
        let a = t.auth.as_ref().expect("auth");
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("acme", "s3 cret")
        );
        assert_eq!(a.realm, None);
        let r = t.register.as_ref().expect("register");
        assert_eq!(r.user, "acme");
        assert_eq!(r.domain, "127.0.0.1");
        assert_eq!(r.expires, Duration::from_secs(3600));
        assert_eq!(r.contact_user, "acme");
        let p = t.probe.expect("probe");
        assert_eq!(
            (p.interval, p.down_after, p.up_after),
            (Duration::from_secs(30), 3, 2)
        );
        // The password is never printed.
        let shown = format!("{:?}", c.trunks);
        assert!(!shown.contains("s3 cret"), "{shown}");
        // Without the keys nothing changes.
        let plain = from_yaml(&yaml(""), "t.yaml").expect("valid");
        let t = &plain.trunks["carrier"];
        assert!(t.auth.is_none() && t.register.is_none() && t.probe.is_none());
    }

    #[test]
    fn explicit_values_are_kept() {
        let c = from_yaml(
            &yaml(
                ", auth: { username: u1, password: p, realm: sip.carrier.net }, \
                 register: { user: '+15551230000', domain: sip.carrier.net, expires: 600, \
                 contact_user: trunk1 }, probe: { interval: 5, down_after: 1, up_after: 4 }",
            ),
            "t.yaml",
        )
        .expect("valid");
        let t = &c.trunks["carrier"];
        assert_eq!(
            t.auth.as_ref().unwrap().realm.as_deref(),
            Some("sip.carrier.net")
        );
        let r = t.register.as_ref().unwrap();
        assert_eq!(
            (r.user.as_str(), r.domain.as_str(), r.contact_user.as_str()),
            ("+15551230000", "sip.carrier.net", "trunk1")
        );
        assert_eq!(r.expires, Duration::from_secs(600));
        assert_eq!(t.probe.unwrap().interval, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (", auth: { username: 'a b', password: p }", "username `a b`"),
            (
                ", auth: { username: a, password: '' }",
                "password: not empty",
            ),
            (", auth: { username: a }", "missing field `password`"),
            (
                ", auth: { username: a, password: p, realm: '' }",
                "realm ``",
            ),
            (", register: {}", "register needs `user`"),
            (
                ", auth: { username: a, password: p }, register: { expires: 10 }",
                "expires 10",
            ),
            (
                ", auth: { username: a, password: p }, register: { domain: 'a b' }",
                "domain `a b`",
            ),
            (", probe: { interval: 0 }", "probe interval 0"),
            (", probe: { down_after: 0 }", "down_after 0"),
            (", probe: { up_after: 1000 }", "up_after 1000"),
            (", probe: { every: 3 }", "unknown field `every`"),
        ];
        for (keys, needle) in cases {
            match from_yaml(&yaml(keys), "t.yaml") {
                Ok(_) => panic!("accepted: {keys}"),
                Err(e) => {
                    assert!(
                        e.message.contains(needle),
                        "{keys}: {e} (wanted `{needle}`)"
                    );
                    assert_eq!(e.line, 4, "{keys}: {e}");
                }
            }
        }
        // The password is not echoed in an error.
        let e = from_yaml(
            &yaml(", auth: { username: a, password: \"hunter\\u0001two\" }"),
            "t.yaml",
        )
        .expect_err("control character");
        assert!(e.message.contains("password"), "{e}");
        assert!(!e.to_string().contains("hunter"), "{e}");
    }

    #[test]
    fn default_domain_drops_the_port() {
        assert_eq!(default_domain("sip.carrier.net"), "sip.carrier.net");
        assert_eq!(default_domain("sip.carrier.net:5070"), "sip.carrier.net");
        assert_eq!(default_domain("192.0.2.1:5060"), "192.0.2.1");
        assert_eq!(default_domain("[2001:db8::1]:5060"), "[2001:db8::1]");
        assert_eq!(default_domain("2001:db8::1"), "2001:db8::1");
    }
}
