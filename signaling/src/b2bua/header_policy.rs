//! What crosses from one leg to the other: every end-to-end header ([`HOP_HEADERS`] never
//! cross), less what the sending peer may not claim and what the receiving peer's policy
//! (`headers:` and `identity:` of a trunk) keeps from it.
//!
//! Identity (RFC 3325): a trunk is trusted unless its policy says otherwise; anything else (a
//! registered phone, an open caller) is not. What an untrusted peer says of identities
//! ([`IDENTITY_HEADERS`]) never crosses, in any request or response of the call; an identity
//! whose user asked for privacy does not go to an untrusted peer.

use super::authz::IDENTITY_HEADERS;
use super::*;

/// The header policy of one peer (a trunk's `headers:` and `identity:`). A peer without one
/// keeps the defaults: trusted when it is a trunk, every end-to-end header crosses to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderPolicy {
    /// Its P-Asserted-Identity and kin are believed (RFC 3325 §2.3, a trust domain's member).
    pub trusted: bool,
    /// Header names never sent to it; `X-*` is every name starting `X-` (case-insensitive).
    pub remove: Vec<String>,
    /// When set: only these end-to-end headers (same syntax) are sent to it.
    pub keep: Option<Vec<String>>,
    /// Added to every request relayed to it (an existing header of the name is replaced).
    pub add: Vec<(String, String)>,
}

/// `name` against a `remove`/`keep` entry: equal ignoring case, or `prefix*`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix)),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

impl HeaderPolicy {
    /// May header `name` (end-to-end) be sent to this peer?
    fn admits(&self, name: &str) -> bool {
        if self.remove.iter().any(|p| name_matches(p, name)) {
            return false;
        }
        match &self.keep {
            Some(keep) => keep.iter().any(|p| name_matches(p, name)),
            None => true,
        }
    }
}

/// Did the user ask that its identity be withheld (`Privacy: id`, RFC 3325 §7, §9.3)? Then no
/// P-Asserted-Identity goes to a destination outside the trust domain (§5).
fn privacy_id(h: &Headers) -> bool {
    h.get_all("Privacy")
        .flat_map(|v| v.split([';', ',']))
        .any(|t| t.trim().eq_ignore_ascii_case("id"))
}

/// One crossing from a leg to the other: what the sender may claim, the receiver's policy.
#[derive(Clone, Copy)]
pub(super) struct Crossing<'a> {
    /// The sending peer may assert identities.
    pub(super) from_trusted: bool,
    /// The receiving peer is in the trust domain.
    pub(super) to_trusted: bool,
    pub(super) to: Option<&'a HeaderPolicy>,
}

impl<'a> Crossing<'a> {
    /// From leg `from` (already checked: `from_trusted` says so) to leg `to`.
    pub(super) fn between(from: &Dialog, to: &'a Dialog) -> Crossing<'a> {
        Crossing {
            from_trusted: from.trusted(),
            to_trusted: to.trusted(),
            to: to.headers.as_deref(),
        }
    }

    /// To `to` of a message already checked on arrival (leg A's INVITE: see
    /// [`B2bua::admit_caller`], which asserted the caller's identity itself).
    pub(super) fn checked(to: &'a Dialog) -> Crossing<'a> {
        Crossing {
            from_trusted: true,
            to_trusted: to.trusted(),
            to: to.headers.as_deref(),
        }
    }

    /// Copy `src`'s end-to-end headers that may cross to `dst`; a request also gets the
    /// receiver's `add` headers.
    pub(super) fn copy(&self, src: &Headers, dst: &mut Headers, request: bool) {
        let hide_identity = !self.to_trusted && privacy_id(src);
        for h in src.iter() {
            let name = h.name.as_str();
            if HOP_HEADERS.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            let identity = IDENTITY_HEADERS
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name));
            if identity && (!self.from_trusted || hide_identity) {
                continue;
            }
            if self.to.is_some_and(|p| !p.admits(name)) {
                continue;
            }
            dst.push(name, h.value.clone());
        }
        if let (true, Some(p)) = (request, self.to) {
            for (name, value) in &p.add {
                dst.set(name, value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in list {
            h.push(n, v.to_string());
        }
        h
    }

    fn names(h: &Headers) -> Vec<String> {
        h.iter().map(|x| x.name.clone()).collect()
    }

    #[test]
    fn wildcard_and_case() {
        assert!(name_matches("X-*", "x-account"));
        assert!(name_matches("diversion", "Diversion"));
        assert!(!name_matches("X-*", "Y-account"));
        assert!(!name_matches("X-Acc*", "X-"));
    }

    #[test]
    fn remove_keep_add() {
        let p = HeaderPolicy {
            trusted: true,
            remove: vec!["X-*".into()],
            keep: Some(vec![
                "X-Keep".into(),
                "User-Agent".into(),
                "P-Asserted-*".into(),
            ]),
            add: vec![("X-Account".into(), "42".into())],
        };
        let src = headers(&[
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
            ("X-Keep", "1"),
            ("User-Agent", "pbx"),
            ("Diversion", "<sip:1@a>"),
            ("P-Asserted-Identity", "<sip:+1555@a>"),
            ("X-Account", "spoofed"),
        ]);
        let mut dst = Headers::new();
        let c = Crossing {
            from_trusted: true,
            to_trusted: true,
            to: Some(&p),
        };
        c.copy(&src, &mut dst, true);
        // X-Keep is kept but removed (remove wins); Diversion is not kept.
        assert_eq!(
            names(&dst),
            ["User-Agent", "P-Asserted-Identity", "X-Account"]
        );
        assert_eq!(dst.get("X-Account"), Some("42"));
        let mut resp = Headers::new();
        c.copy(&src, &mut resp, false);
        assert_eq!(resp.get("X-Account"), None, "add is for requests");
    }

    #[test]
    fn identity_from_untrusted_and_privacy_to_untrusted() {
        let src = headers(&[
            ("P-Asserted-Identity", "<sip:+1555@a>"),
            ("Remote-Party-ID", "<sip:+1555@a>"),
            ("Privacy", "id;critical"),
            ("Subject", "hi"),
        ]);
        let run = |from_trusted, to_trusted| {
            let mut dst = Headers::new();
            Crossing {
                from_trusted,
                to_trusted,
                to: None,
            }
            .copy(&src, &mut dst, true);
            names(&dst)
        };
        assert_eq!(
            run(true, true),
            [
                "P-Asserted-Identity",
                "Remote-Party-ID",
                "Privacy",
                "Subject"
            ]
        );
        assert_eq!(run(false, true), ["Privacy", "Subject"]);
        assert_eq!(run(true, false), ["Privacy", "Subject"]);
        let open = headers(&[("P-Asserted-Identity", "<sip:+1555@a>")]);
        let mut dst = Headers::new();
        Crossing {
            from_trusted: true,
            to_trusted: false,
            to: None,
        }
        .copy(&open, &mut dst, false);
        assert_eq!(names(&dst), ["P-Asserted-Identity"], "no privacy asked");
    }
}
