//! A trunk's header policy: what trunkline sends it beyond each leg's own headers, and whether
//! it is believed when it asserts who a caller is (RFC 3325).
//!
//! ```yaml
//! trunks:
//!   pbx:
//!     address: 10.0.0.5
//!     identity: untrusted        # its P-Asserted-Identity / Remote-Party-ID are removed
//!   carrier:
//!     address: sip.carrier.example
//!     headers:
//!       remove: [Diversion, History-Info, "X-*"]   # never sent to it (`X-*`: a prefix)
//!       keep: [User-Agent, P-Asserted-Identity, Privacy]  # when given: only these cross
//!       add: { X-Account: acme-42 }                # on every request sent to it
//! ```
//!
//! `identity: trusted` (the default for a trunk) lets its identity headers cross to the other
//! leg; a caller that is not a trunk is never trusted. An identity whose user asked for
//! privacy (`Privacy: id`) does not go to an untrusted trunk or a phone. Headers that describe
//! one leg (Via, Contact, CSeq, ...: [`PER_HOP`]) are trunkline's own on each leg and cannot be
//! named here.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::locate::Seg;
use crate::{sem, Sem};

/// A trunk's `identity:`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// Its identity headers are believed and cross (default).
    #[default]
    Trusted,
    /// Removed from everything it sends; a `Privacy: id` identity is not sent to it.
    Untrusted,
}

/// A trunk's `headers:`, validated (names as written; matched ignoring case).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrunkHeaders {
    /// Never sent to the trunk (`Name` or `Prefix*`).
    pub remove: Vec<String>,
    /// When set: only these end-to-end headers are sent to it.
    pub keep: Option<Vec<String>>,
    /// Added to every request sent to it, replacing one of the same name.
    pub add: Vec<(String, String)>,
}

impl TrunkHeaders {
    /// Nothing beyond the defaults.
    pub fn is_default(&self) -> bool {
        self.remove.is_empty() && self.keep.is_none() && self.add.is_empty()
    }
}

/// Headers each leg has of its own, written by trunkline (the B2BUA core's list of what never
/// crosses between legs; a test in the root crate holds the two equal).
pub const PER_HOP: &[&str] = &[
    "Via",
    "Route",
    "Record-Route",
    "Contact",
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "RSeq",
    "RAck",
    "Path",
    "Service-Route",
    "Warning",
    "Server",
    "Allow",
    "Session-Expires",
    "Min-SE",
    "Replaces",
];

#[derive(Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaders {
    #[serde(default)]
    remove: Option<Vec<String>>,
    #[serde(default)]
    keep: Option<Vec<String>>,
    #[serde(default)]
    add: Option<BTreeMap<String, String>>,
}

/// RFC 3261 §25.1 `token` characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// A header name of `remove`/`keep` (`wildcard`: `Prefix*` allowed) or `add`.
fn check_name(name: &str, wildcard: bool, path: Vec<Seg>) -> Result<String, Sem> {
    let bare = if wildcard {
        name.strip_suffix('*').unwrap_or(name)
    } else {
        name
    };
    let ok = if wildcard && bare.is_empty() {
        false
    } else {
        is_token(bare) && !bare.contains('*')
    };
    if !ok {
        let what = if wildcard {
            "a header name or `Prefix*`"
        } else {
            "a header name"
        };
        return Err(sem(path, format!("`{name}` is not {what}")));
    }
    if PER_HOP.iter().any(|h| h.eq_ignore_ascii_case(bare)) {
        return Err(sem(
            path,
            format!("`{name}` is a header of each leg's own that trunkline writes itself"),
        ));
    }
    Ok(name.to_string())
}

/// `headers:` of trunk `trunk`.
pub(crate) fn build_headers(
    raw: RawHeaders,
    path: impl Fn() -> Vec<Seg>,
) -> Result<TrunkHeaders, Sem> {
    let at = |k: &str, i: Option<usize>| {
        let mut p = path();
        p.push(Seg::Key(k.to_string()));
        if let Some(i) = i {
            p.push(Seg::Index(i));
        }
        p
    };
    let list = |v: Option<Vec<String>>, k: &str| -> Result<Option<Vec<String>>, Sem> {
        v.map(|v| {
            v.iter()
                .enumerate()
                .map(|(i, n)| check_name(n, true, at(k, Some(i))))
                .collect()
        })
        .transpose()
    };
    let remove = list(raw.remove, "remove")?.unwrap_or_default();
    let keep = list(raw.keep, "keep")?;
    if keep.as_ref().is_some_and(Vec::is_empty) {
        return Err(sem(
            at("keep", None),
            "`keep: []` would send nothing end to end: leave `keep` out to send everything",
        ));
    }
    let mut add = Vec::new();
    for (name, value) in raw.add.unwrap_or_default() {
        let mut p = at("add", None);
        p.push(Seg::Key(name.clone()));
        let name = check_name(&name, false, p.clone())?;
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            return Err(sem(
                p,
                format!("the value of `{name}` must be one line of text, not empty"),
            ));
        }
        add.push((name, value));
    }
    Ok(TrunkHeaders { remove, keep, add })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<TrunkHeaders, String> {
        let raw: RawHeaders = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        build_headers(raw, Vec::new).map_err(|e| e.message)
    }

    #[test]
    fn names_are_checked() {
        let h = build("{remove: [Diversion, 'X-*'], add: {X-Account: acme}}").unwrap();
        assert_eq!(h.remove, ["Diversion", "X-*"]);
        assert_eq!(h.add, [("X-Account".to_string(), "acme".to_string())]);
        assert!(build("{remove: [Via]}")
            .unwrap_err()
            .contains("each leg's own"));
        assert!(build("{keep: ['*']}")
            .unwrap_err()
            .contains("not a header name"));
        assert!(build("{remove: ['X Y']}")
            .unwrap_err()
            .contains("not a header"));
        assert!(build("{add: {'X-*': a}}")
            .unwrap_err()
            .contains("not a header name"));
        assert!(build("{add: {X-A: ''}}").unwrap_err().contains("one line"));
        assert!(build("{keep: []}")
            .unwrap_err()
            .contains("leave `keep` out"));
        assert!(build("{drop: [A]}").is_err());
    }
}
