//! The registrar's users and how they authenticate (`registrar.users`, `registrar.algorithms`,
//! `registrar.store`).
//!
//! ```yaml
//! registrar:
//!   store: /var/lib/trunkline/location.db   # bindings kept across restarts (absent: memory)
//!   algorithms: [SHA-256, MD5]              # Digest challenges offered, in this order
//!   users:
//!     johndoe: { password: s3cret, aliases: ['+554845678901', '45678901'] }
//!     ha1only: { ha1_md5: 0123...ef, ha1_sha256: 0123...ef }   # no password in the file
//! ```
//!
//! An HA1 is `H(username ":" realm ":" password)` (RFC 7616 §3.4.2) for the registrar's realm:
//! a user with only `ha1_md5` can answer only MD5 challenges. Aliases are other user parts
//! (E.164 numbers, extensions) that name the same subscriber; unique across all users.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::{key, sem, Seg, Sem};

/// A Digest algorithm the registrar offers (RFC 7616 §3.3, RFC 8760).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Sha256,
    Md5,
}

impl DigestAlgorithm {
    /// The token of the `algorithm` parameter.
    pub fn token(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }
}

/// One registrar user.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrarUser {
    pub name: String,
    pub password: Option<String>,
    /// `MD5(name:realm:password)`, lower-case hex.
    pub ha1_md5: Option<String>,
    /// `SHA-256(name:realm:password)`, lower-case hex.
    pub ha1_sha256: Option<String>,
    /// Other user parts of the same subscriber, as written.
    pub aliases: Vec<String>,
}

/// Secrets are never printed.
impl fmt::Debug for RegistrarUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("RegistrarUser")
            .field("name", &self.name)
            .field("password", &r(&self.password))
            .field("ha1_md5", &r(&self.ha1_md5))
            .field("ha1_sha256", &r(&self.ha1_sha256))
            .field("aliases", &self.aliases)
            .finish()
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ha1_md5: Option<String>,
    #[serde(default)]
    ha1_sha256: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

/// A user part of a SIP URI as users and aliases may be written (RFC 3261 §25.1 `user`,
/// unescaped).
fn user_part_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c))
}

fn hex_of_len(s: &str, n: usize) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    (s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit())).then_some(s)
}

pub(crate) fn build_algorithms(raw: Option<Vec<String>>) -> Result<Vec<DigestAlgorithm>, Sem> {
    let Some(raw) = raw else {
        return Ok(vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5]);
    };
    let at = |i: usize| vec![key("registrar"), key("algorithms"), Seg::Index(i)];
    let mut out = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let alg = match a.to_ascii_uppercase().as_str() {
            "SHA-256" => DigestAlgorithm::Sha256,
            "MD5" => DigestAlgorithm::Md5,
            _ => return Err(sem(at(i), format!("algorithm `{a}`: SHA-256 or MD5"))),
        };
        if out.contains(&alg) {
            return Err(sem(at(i), format!("algorithm `{a}` listed twice")));
        }
        out.push(alg);
    }
    if out.is_empty() {
        return Err(sem(
            vec![key("registrar"), key("algorithms")],
            "registrar.algorithms: at least one of SHA-256, MD5",
        ));
    }
    Ok(out)
}

pub(crate) fn build_users(
    raw: Vec<(String, RawUser)>,
    algorithms: &[DigestAlgorithm],
) -> Result<Vec<RegistrarUser>, Sem> {
    if raw.is_empty() {
        return Err(sem(
            vec![key("registrar"), key("users")],
            "registrar.users: at least one user (REGISTER is always authenticated)",
        ));
    }
    // every user part (names and aliases) -> the user it belongs to
    let mut names: HashMap<String, String> =
        raw.iter().map(|(n, _)| (n.clone(), n.clone())).collect();
    let mut users = Vec::new();
    for (name, u) in raw {
        let p = |k: &str| vec![key("registrar"), key("users"), key(&name), key(k)];
        if !user_part_ok(&name) {
            return Err(sem(
                vec![key("registrar"), key("users"), Seg::KeyItself(name.clone())],
                format!("user name `{name}`: letters, digits and SIP user-part punctuation only"),
            ));
        }
        if u.password.as_deref() == Some("") {
            return Err(sem(p("password"), "empty password"));
        }
        let ha1_md5 = match &u.ha1_md5 {
            Some(h) => Some(hex_of_len(h, 32).ok_or_else(|| {
                sem(
                    p("ha1_md5"),
                    "ha1_md5: 32 hex digits, MD5(user:realm:password)",
                )
            })?),
            None => None,
        };
        let ha1_sha256 = match &u.ha1_sha256 {
            Some(h) => Some(hex_of_len(h, 64).ok_or_else(|| {
                sem(
                    p("ha1_sha256"),
                    "ha1_sha256: 64 hex digits, SHA-256(user:realm:password)",
                )
            })?),
            None => None,
        };
        let usable = algorithms.iter().any(|a| {
            u.password.is_some()
                || match a {
                    DigestAlgorithm::Md5 => ha1_md5.is_some(),
                    DigestAlgorithm::Sha256 => ha1_sha256.is_some(),
                }
        });
        if !usable {
            return Err(sem(
                vec![key("registrar"), key("users"), key(&name)],
                format!(
                    "user `{name}`: a password, or an HA1 for one of the offered algorithms \
                     (ha1_md5 for MD5, ha1_sha256 for SHA-256)"
                ),
            ));
        }
        for (i, a) in u.aliases.iter().enumerate() {
            let at = vec![
                key("registrar"),
                key("users"),
                key(&name),
                key("aliases"),
                Seg::Index(i),
            ];
            if !user_part_ok(a) {
                return Err(sem(at, format!("alias `{a}`: a SIP user part")));
            }
            if let Some(owner) = names.insert(a.clone(), name.clone()) {
                return Err(sem(
                    at,
                    format!("alias `{a}` of `{name}` is already `{owner}`'s: aliases are unique"),
                ));
            }
        }
        users.push(RegistrarUser {
            name,
            password: u.password,
            ha1_md5,
            ha1_sha256,
            aliases: u.aliases,
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use crate::{from_yaml, ConfigError, DigestAlgorithm};

    const ACC: &str = include_str!("../../examples/b2bua.yaml");

    fn load(section: &str) -> Result<crate::Registrar, ConfigError> {
        from_yaml(&format!("{ACC}registrar:\n{section}"), "t.yaml")
            .map(|c| c.registrar.expect("a registrar"))
    }

    fn message(section: &str) -> String {
        match load(section) {
            Ok(r) => panic!("no error: {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    const MD5: &str = "939e7578ed9e3c518a452acee763bce9";
    const SHA: &str = "7cfc4bba4b5c5b2d2ad8a3b8a3c2d3c4bba4b5c5b2d2ad8a3b8a3c2d3c4bba4b";

    #[test]
    fn aliases_ha1_algorithms_and_store() {
        let r = load(&format!(
            "  domains: [x.example]\n  store: /var/lib/trunkline/location.db\n  \
             algorithms: [md5, SHA-256]\n  users:\n    \
             johndoe: {{ password: p, aliases: ['+554845678901', '45678901'] }}\n    \
             h: {{ ha1_md5: {}, ha1_sha256: {SHA} }}\n",
            MD5.to_uppercase()
        ))
        .unwrap();
        assert_eq!(
            r.store.as_deref(),
            Some(std::path::Path::new("/var/lib/trunkline/location.db"))
        );
        assert_eq!(
            r.algorithms,
            vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256]
        );
        assert_eq!(r.users[0].aliases, vec!["+554845678901", "45678901"]);
        assert_eq!(r.users[1].password, None);
        assert_eq!(r.users[1].ha1_md5.as_deref(), Some(MD5), "lower case");
        let dbg = format!("{r:?}");
        assert!(!dbg.contains(MD5) && !dbg.contains(SHA), "{dbg}");
    }

    #[test]
    fn aliases_are_unique_and_secrets_must_fit_the_algorithms() {
        let m = message(
            "  domains: [x.example]\n  users:\n    a: { password: p, aliases: ['100'] }\n    \
             b: { password: q, aliases: ['100'] }\n",
        );
        assert!(m.contains("alias `100` of `b` is already `a`'s"), "{m}");
        assert!(
            m.contains(":4:") || m.contains("line 4") || m.contains("t.yaml"),
            "{m}"
        );
        let m = message(
            "  domains: [x.example]\n  users:\n    a: { password: p, aliases: [b] }\n    \
             b: { password: q }\n",
        );
        assert!(
            m.contains("already `b`'s"),
            "an alias may not be another user: {m}"
        );
        let m = message("  domains: [x.example]\n  users:\n    a: { password: p, aliases: [a] }\n");
        assert!(m.contains("already"), "{m}");
        let m = message(&format!(
            "  domains: [x.example]\n  algorithms: [SHA-256]\n  users:\n    a: {{ ha1_md5: {MD5} }}\n"
        ));
        assert!(m.contains("ha1_sha256 for SHA-256"), "{m}");
        let m = message("  domains: [x.example]\n  users:\n    a: {}\n");
        assert!(m.contains("a password, or an HA1"), "{m}");
        let m = message("  domains: [x.example]\n  users:\n    a: { ha1_md5: abc }\n");
        assert!(m.contains("32 hex digits"), "{m}");
        let m = message(
            "  domains: [x.example]\n  algorithms: [SHA-512]\n  users:\n    a: { password: p }\n",
        );
        assert!(m.contains("SHA-256 or MD5"), "{m}");
        let m =
            message("  domains: [x.example]\n  algorithms: []\n  users:\n    a: { password: p }\n");
        assert!(m.contains("at least one of"), "{m}");
        let m =
            message("  domains: [x.example]\n  users:\n    a: { password: p, aliases: ['a b'] }\n");
        assert!(m.contains("alias `a b`"), "{m}");
    }
}
