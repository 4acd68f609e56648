//! Trunks' header policies (`headers:`, `identity:`) in the core's terms, built once per
//! configuration: a call asks for its trunks' and gets a shared `Arc`.

use std::collections::HashMap;
use std::sync::Arc;

use config::{Config, Identity};
use signaling::b2bua::HeaderPolicy;
use signaling::headers::NameAddr;
use signaling::Request;

/// The header policies of a configuration's trunks, built at first use after each change.
#[derive(Debug, Default)]
pub(crate) struct HeaderPolicies {
    built: Option<HashMap<String, Arc<HeaderPolicy>>>,
}

impl HeaderPolicies {
    /// Forget what was built (the configuration changed).
    pub(crate) fn reset(&mut self) {
        self.built = None;
    }

    /// Trunk `name`'s policy; `None` when it keeps the defaults (trusted, nothing changed) or
    /// is no trunk.
    pub(crate) fn of(&mut self, config: &Config, name: &str) -> Option<Arc<HeaderPolicy>> {
        self.built
            .get_or_insert_with(|| build(config))
            .get(name)
            .cloned()
    }
}

/// Only trunks that differ from the defaults are listed.
fn build(config: &Config) -> HashMap<String, Arc<HeaderPolicy>> {
    config
        .trunks
        .values()
        .filter(|t| t.identity != Identity::Trusted || !t.headers.is_default())
        .map(|t| {
            let p = HeaderPolicy {
                trusted: t.identity == Identity::Trusted,
                remove: t.headers.remove.clone(),
                keep: t.headers.keep.clone(),
                add: t.headers.add.clone(),
            };
            (t.name.clone(), Arc::new(p))
        })
        .collect()
}

/// What a request claims of its caller besides its From, for the dial plan's `pai_user` and
/// `diversion_user` (read after the core removed what an untrusted caller may not claim).
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) pai_user: Option<String>,
    pub(crate) diversion_user: Option<String>,
}

impl Claimed {
    pub(crate) fn of(req: &Request) -> Claimed {
        Claimed {
            pai_user: first_user(req, "P-Asserted-Identity"),
            diversion_user: first_user(req, "Diversion"),
        }
    }
}

/// The user part (a `tel:` URI's number) of the first name-addr of header `name`; `None` when
/// it is absent or does not parse.
fn first_user(req: &Request, name: &str) -> Option<String> {
    let v = req.headers.get(name)?;
    let first = signaling::headers::split_comma_list(v).into_iter().next()?;
    let na = NameAddr::parse(first.trim()).ok()?;
    na.uri.user_unescaped().map(|u| u.into_owned())
}

#[cfg(test)]
mod tests {
    /// The configuration refuses to name the headers the core never relays: the two lists
    /// must be the same.
    #[test]
    fn the_per_hop_lists_agree() {
        let mut core: Vec<String> = signaling::b2bua::HOP_HEADERS
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut config: Vec<String> = config::PER_HOP
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        core.sort();
        config.sort();
        assert_eq!(core, config);
    }

    #[test]
    fn claimed_users_of_pai_and_diversion() {
        let raw = "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
P-Asserted-Identity: \"Boss\" <tel:+15550001111>, <sip:boss@h>\r\n\
Diversion: <sip:%2B1555000@h>;reason=unconditional\r\nContent-Length: 0\r\n\r\n";
        let req = match signaling::parse::parse(raw.as_bytes()) {
            Ok(signaling::SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        };
        let c = super::Claimed::of(&req);
        assert_eq!(c.pai_user.as_deref(), Some("+15550001111"));
        assert_eq!(c.diversion_user.as_deref(), Some("+1555000"));
        let c = super::Claimed::default();
        assert!(c.pai_user.is_none() && c.diversion_user.is_none());
    }
}
