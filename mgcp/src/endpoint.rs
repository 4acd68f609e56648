//! The endpoint model of a call agent (RFC 3435 sections 2.1 and 2.3): endpoint names with
//! wildcards, event names (`L/hd`, `D/1`), observed-event lists, and the state the agent keeps
//! per endpoint (hook, call and connection ids, the request identifier in force, the notified
//! entity). Sans-IO: plain data and parsing.

use std::collections::HashMap;

/// RFC 3435 section 2.1.1: "endpoint names ... local-name@domain"; "the local name ... may
/// be ... wildcarded ... '*' ... any ... '$' ... any one". `pattern` may end a term with `*`
/// (all) or `$` (any one); names are case-insensitive (section 2.1.1: "case insensitive").
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (Some((pl, pd)), Some((nl, nd))) = (pattern.split_once('@'), name.split_once('@')) else {
        return false;
    };
    if !pd.eq_ignore_ascii_case(nd) {
        return false;
    }
    let pt: Vec<&str> = pl.split('/').collect();
    let nt: Vec<&str> = nl.split('/').collect();
    for (i, p) in pt.iter().enumerate() {
        if *p == "*" && i + 1 == pt.len() {
            // "*" as the last term: everything below (at least one term).
            return nt.len() > i;
        }
        match nt.get(i) {
            Some(n) if *p == "*" || *p == "$" || p.eq_ignore_ascii_case(n) => {}
            _ => return false,
        }
    }
    pt.len() == nt.len()
}

/// The domain part of an endpoint name (`gw1` of `aaln/1@gw1`).
pub fn domain_of(name: &str) -> Option<&str> {
    name.split_once('@').map(|(_, d)| d)
}

/// An event of an observed-events list (`O:`, section 2.3.3), e.g. `L/hd` or `D/1`:
/// package (upper case; empty when none was given) and event name (as sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventName {
    pub package: String,
    pub name: String,
}

impl EventName {
    /// `L/hd` is (`L`, `hd`); `hd` alone is the default package's.
    pub fn is(&self, package: &str, name: &str) -> bool {
        (self.package.is_empty() || self.package.eq_ignore_ascii_case(package))
            && self.name.eq_ignore_ascii_case(name)
    }
}

/// Most events read from one `O:` list: more is an attack, not a dialled number.
pub const MAX_EVENTS: usize = 64;

/// Split an event list (`L/hd, D/1, D/0, L/ci(10:00,"555",x)`) on the commas outside
/// parentheses and quotes. Parameters and `@connection` suffixes are dropped. At most
/// [`MAX_EVENTS`] events; None when the list is malformed (unbalanced, empty items).
pub fn parse_events(list: &str) -> Option<Vec<EventName>> {
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut quoted = false;
    let mut start = 0;
    let bytes = list.as_bytes();
    for i in 0..=bytes.len() {
        let c = bytes.get(i).copied();
        match c {
            Some(b'"') => quoted = !quoted,
            Some(b'(') if !quoted => depth += 1,
            Some(b')') if !quoted => depth = depth.checked_sub(1)?,
            Some(b',') | None if !quoted && depth == 0 => {
                let item = list.get(start..i)?.trim();
                start = i + 1;
                if item.is_empty() {
                    if c.is_none() && out.is_empty() {
                        return Some(out); // an empty list
                    }
                    return None;
                }
                if out.len() == MAX_EVENTS {
                    return None;
                }
                out.push(event_name(item)?);
            }
            None => return None, // unbalanced
            _ => {}
        }
    }
    Some(out)
}

fn event_name(item: &str) -> Option<EventName> {
    let bare = item.split(['(', '@']).next()?.trim();
    let (package, name) = match bare.split_once('/') {
        Some((p, n)) => (p.trim(), n.trim()),
        None => ("", bare),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'#' | b'*' | b'_'))
    };
    let no_package = !bare.contains('/');
    if !ok(name) || !(no_package || ok(package)) {
        return None;
    }
    Some(EventName {
        package: package.to_ascii_uppercase(),
        name: name.to_string(),
    })
}

/// The digits of DTMF events (`D/1`, `D/#`, `D/T`, or a gateway's `D/1001`) in order.
pub fn dialled(events: &[EventName]) -> String {
    events
        .iter()
        .filter(|e| e.package.eq_ignore_ascii_case("D"))
        .map(|e| e.name.as_str())
        .collect()
}

/// An endpoint's hook (line package `L/hd`, `L/hu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Hook {
    #[default]
    Unknown,
    On,
    Off,
}

/// What the call agent knows of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Full name, `aaln/1@gw1`.
    pub name: String,
    pub hook: Hook,
    /// The MGCP call id of the call on it.
    pub call: Option<String>,
    /// The connection id the gateway gave (CRCX `I:`).
    pub connection: Option<String>,
    /// The request identifier (`X:`) of the RQNT in force: NTFYs must carry it.
    pub request_id: Option<String>,
    /// Where the endpoint sends its NTFYs (`N:`), when the agent set one.
    pub notified_entity: Option<String>,
    /// Seen in the last audit (AUEP answered, or listed under a wildcard).
    pub present: bool,
}

/// The endpoints of one gateway, by lower-case name.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    by_name: HashMap<String, Endpoint>,
}

impl Endpoints {
    pub fn get(&self, name: &str) -> Option<&Endpoint> {
        self.by_name.get(&name.to_ascii_lowercase())
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Endpoint> {
        self.by_name.get_mut(&name.to_ascii_lowercase())
    }

    /// The endpoint, added when new.
    pub fn entry(&mut self, name: &str) -> &mut Endpoint {
        self.by_name
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Endpoint {
                name: name.to_string(),
                ..Endpoint::default()
            })
    }

    /// The names a wildcard AUEP answered (its `Z:` lines, section 2.3.10), at most `max`:
    /// each present, every other endpoint under the wildcard absent. Names outside the
    /// wildcard are ignored (a gateway does not add endpoints of another domain).
    pub fn discovered<'a>(
        &mut self,
        wildcard: &str,
        names: impl Iterator<Item = &'a str>,
        max: usize,
    ) -> usize {
        for e in self.by_name.values_mut() {
            if name_matches(wildcard, &e.name) {
                e.present = false;
            }
        }
        let mut n = 0;
        for name in names {
            let name = name.trim();
            if n == max || !name_matches(wildcard, name) || name.contains(['*', '$']) {
                continue;
            }
            self.entry(name).present = true;
            n += 1;
        }
        n
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.by_name.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Endpoint> {
        self.by_name.values_mut()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(name_matches("aaln/*@gw1", "aaln/1@gw1"));
        assert!(name_matches("aaln/*@GW1", "AALN/12@gw1"));
        assert!(name_matches("ds/e1-1/*@gw", "ds/e1-1/30@gw"));
        assert!(name_matches("ds/*@gw", "ds/e1-1/30@gw"));
        assert!(name_matches("aaln/$@gw1", "aaln/2@gw1"));
        assert!(!name_matches("aaln/*@gw1", "aaln/1@gw2"));
        assert!(!name_matches("aaln/*@gw1", "aaln@gw1"));
        assert!(!name_matches("aaln/1@gw1", "aaln/1/2@gw1"));
        assert!(!name_matches("aaln/*", "aaln/1@gw1"));
        assert!(name_matches("aaln/1@gw1", "aaln/1@gw1"));
    }

    #[test]
    fn event_lists() {
        let e =
            parse_events("L/hd,D/9,D/1, d/# ,L/ci(10/14/17/26,\"555,1212\",x),hu@0A3F").unwrap();
        let names: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.package.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("L", "hd"),
                ("D", "9"),
                ("D", "1"),
                ("D", "#"),
                ("L", "ci"),
                ("", "hu")
            ]
        );
        assert!(e[5].is("L", "hu"));
        assert_eq!(dialled(&e), "91#");
        assert_eq!(parse_events("").unwrap(), []);
        for bad in [
            "L/hd,,D/1",
            "L/ci(1",
            "L/ci)",
            "L/",
            "/hd",
            "L/h d",
            "L/hd,",
        ] {
            assert_eq!(parse_events(bad), None, "{bad}");
        }
        assert_eq!(parse_events(&"D/1,".repeat(100)), None);
    }

    #[test]
    fn discovery_by_wildcard_audit() {
        let mut eps = Endpoints::default();
        eps.entry("aaln/3@gw1").present = true;
        let n = eps.discovered(
            "aaln/*@gw1",
            ["aaln/1@gw1", "aaln/2@gw1", "aaln/9@other", "aaln/*@gw1"].into_iter(),
            10,
        );
        assert_eq!(n, 2);
        assert!(eps.get("AALN/1@gw1").unwrap().present);
        assert!(!eps.get("aaln/3@gw1").unwrap().present);
        assert!(eps.get("aaln/9@other").is_none());
        assert_eq!(eps.len(), 3);
    }
}
