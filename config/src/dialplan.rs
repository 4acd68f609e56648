//! The compiled dial plan: an ordered list of rules, first match wins, indexed by the literal
//! prefixes of each rule's `to_user` pattern so that a lookup in a 100k-rule plan only tests
//! the handful of rules that can possibly match.
//!
//! Index: every rule whose `to_user` pattern is anchored (`^...`) and starts with literals gets
//! filed under each of its required prefixes (`^\+?1555\d{7}$` under `+1555` and `1555`) in a
//! hash map; every other rule (no `to_user` key, or no usable prefix) is "generic". A lookup
//! takes the `to_user`'s own prefixes of every length that occurs in the map, gathers the rules
//! filed there, and walks them merged with the generic list in rule order, testing each rule
//! fully until the first that matches. That is exactly the answer of a linear scan (a rule that
//! is not gathered cannot match: its `to_user` match would have to start with one of its
//! prefixes), at a cost that depends on the candidates, not on the plan's size.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;

use crate::pattern::{Pattern, Spans, Template};

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward to these trunks (names, all defined in `trunks`), in failover order: on 408,
    /// 5xx or a transport error the B2BUA tries the next one. Shared by the rules with the same
    /// list (a big plan has few distinct routes), so a lookup's copy is a reference count.
    Route(std::sync::Arc<[String]>),
    /// Answer with a 3xx (RFC 3261 §21.3; default 302 Moved Temporarily) carrying these
    /// Contact URIs.
    Redirect(Vec<String>, u16),
    /// Answer with this final status code (400..=699) and reason phrase (none given: the
    /// phrase RFC 3261 §21 names, `signaling::status`).
    Reject(u16, Option<String>),
    /// Look the (rewritten) user up in the location service (`locate: true`): the call goes to
    /// that served user's bindings (a carrier's DID to a registered phone, say).
    Locate,
}

/// The request attributes a dial plan decides on.
#[derive(Clone, Copy, Debug)]
pub struct RouteQuery<'a> {
    /// User part of the To URI (what was dialled).
    pub to_user: &'a str,
    /// User part of the From URI (the caller).
    pub from_user: &'a str,
    /// The whole Request-URI as text.
    pub request_uri: &'a str,
    /// Name of the trunk the request came from, if it came from a configured trunk.
    pub source_trunk: Option<&'a str>,
    /// Source IP address of the request.
    pub source_ip: Option<IpAddr>,
    /// User part of the first P-Asserted-Identity (RFC 3325) that crossed, if any (a number
    /// of a `tel:` URI).
    pub pai_user: Option<&'a str>,
    /// User part of the first Diversion (RFC 5806) entry, if any.
    pub diversion_user: Option<&'a str>,
}

/// The outcome of a dial-plan lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index (0-based, in file order) of the rule that matched.
    pub rule_index: usize,
    pub action: Action,
    /// The rewritten To user, when the rule has `rewrite.to_user`.
    pub to_user: Option<String>,
    /// The rewritten From user, when the rule has `rewrite.from_user`.
    pub from_user: Option<String>,
    /// The From display name leg B carries, when the rule has `rewrite.from_display`.
    pub from_display: Option<String>,
    /// The rewritten Request-URI, when the rule has `rewrite.request_uri`.
    pub request_uri: Option<String>,
}

/// An address block (`192.0.2.0/24`, `2001:db8::/32`, or one address) for `match.source_ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let t = s.trim();
        let (a, l) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t, None),
        };
        let net: IpAddr = a
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0-{max}"))?,
        };
        if (Cidr { net, len }).masked(net) != net {
            return Err(format!("`{s}` has host bits set beyond /{len}"));
        }
        Ok(Cidr { net, len })
    }
}

impl Cidr {
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - self.len as u32).unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX.checked_shl(128 - self.len as u32).unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.net
    }
}

/// Which pattern's captures a rewrite template expands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CaptureSource {
    ToUser,
    FromUser,
    RequestUri,
    PaiUser,
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub to_user: Option<Pattern>,
    // boxed: rarely used, and a 100k-rule plan should not carry 2 x 192 bytes per rule for them
    pub from_user: Option<Box<Pattern>>,
    pub request_uri: Option<Box<Pattern>>,
    pub pai_user: Option<Box<Pattern>>,
    pub diversion_user: Option<Box<Pattern>>,
    pub source_trunk: Option<String>,
    pub source_ip: Option<Cidr>,
    pub rewrite_to_user: Option<Template>,
    pub rewrite_from_user: Option<(Template, CaptureSource)>,
    pub rewrite_request_uri: Option<(Template, CaptureSource)>,
    pub rewrite_from_display: Option<Box<(Template, CaptureSource)>>,
    pub action: Action,
}

/// Scratch capture spans for one lookup.
#[derive(Default)]
struct Caps {
    to: Spans,
    from: Spans,
    ruri: Spans,
    pai: Spans,
    diversion: Spans,
}

impl Rule {
    /// All given keys must match (AND); an empty `match` matches everything.
    fn matches(&self, q: &RouteQuery<'_>, caps: &mut Caps, budget: &AtomicUsize) -> bool {
        if let Some(t) = &self.source_trunk {
            if q.source_trunk != Some(t.as_str()) {
                return false;
            }
        }
        if let Some(c) = &self.source_ip {
            if !q.source_ip.is_some_and(|ip| c.contains(ip)) {
                return false;
            }
        }
        caps.to.clear();
        caps.from.clear();
        caps.ruri.clear();
        caps.pai.clear();
        caps.diversion.clear();
        if let Some(p) = &self.to_user {
            if !p.captures(q.to_user, &mut caps.to, budget) {
                return false;
            }
        }
        if let Some(p) = &self.from_user {
            if !p.captures(q.from_user, &mut caps.from, budget) {
                return false;
            }
        }
        if let Some(p) = &self.request_uri {
            if !p.captures(q.request_uri, &mut caps.ruri, budget) {
                return false;
            }
        }
        // A key on a header the request does not have matches nothing.
        for (p, v, spans) in [
            (&self.pai_user, q.pai_user, &mut caps.pai),
            (&self.diversion_user, q.diversion_user, &mut caps.diversion),
        ] {
            if let Some(p) = p {
                if !v.is_some_and(|v| p.captures(v, spans, budget)) {
                    return false;
                }
            }
        }
        true
    }

    fn decide(&self, index: usize, q: &RouteQuery<'_>, caps: &Caps) -> Decision {
        let expand = |t: &Template, src: CaptureSource| match src {
            CaptureSource::ToUser => t.expand(q.to_user, &caps.to),
            CaptureSource::FromUser => t.expand(q.from_user, &caps.from),
            CaptureSource::RequestUri => t.expand(q.request_uri, &caps.ruri),
            CaptureSource::PaiUser => t.expand(q.pai_user.unwrap_or_default(), &caps.pai),
        };
        Decision {
            rule_index: index,
            action: self.action.clone(),
            to_user: self
                .rewrite_to_user
                .as_ref()
                .map(|t| expand(t, CaptureSource::ToUser)),
            from_user: self.rewrite_from_user.as_ref().map(|(t, s)| expand(t, *s)),
            from_display: self
                .rewrite_from_display
                .as_deref()
                .map(|(t, s)| expand(t, *s)),
            request_uri: self
                .rewrite_request_uri
                .as_ref()
                .map(|(t, s)| expand(t, *s)),
        }
    }
}

/// A compiled, immutable dial plan. Cheap to share behind an `Arc`; `Send + Sync`.
#[derive(Debug, Default)]
pub struct Dialplan {
    rules: Vec<Rule>,
    /// `(hash of a literal to_user prefix, rule)`, sorted: every rule filed under each of its
    /// prefixes. One flat allocation, so 100k rules index in a few milliseconds.
    entries: Vec<(u64, u32)>,
    /// Prefix hash -> range of `entries`. Two different prefixes with the same hash would
    /// share a range: harmless, every candidate is tested in full.
    index: HashMap<u64, (u32, u32), BuildHasherDefault<IdHasher>>,
    /// Distinct prefix lengths present in `index`, ascending.
    prefix_lens: Vec<usize>,
    /// Rules not in the index, ascending.
    generic: Vec<u32>,
    /// How many fast patterns may still cache a fallback regex (see `Pattern::captures`).
    pub(crate) fallback_budget: AtomicUsize,
}

/// Fast patterns that may cache a compiled fallback regex, per plan.
const FALLBACK_CACHE: usize = 1024;

/// FNV-1a over bytes: incremental, so the hashes of all prefixes of a `to_user` cost one pass.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The keys are already hashes; mix once more so the table's low bits are well spread.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv_extend(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
}

impl Dialplan {
    pub(crate) fn new(rules: Vec<Rule>) -> Dialplan {
        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(rules.len());
        let mut generic = Vec::new();
        let mut lens = Vec::new();
        let mut last_len = usize::MAX;
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            match r
                .to_user
                .as_ref()
                .map(|p| p.prefixes())
                .filter(|p| !p.is_empty())
            {
                Some(prefixes) => {
                    for p in prefixes {
                        if p.len() != last_len {
                            lens.push(p.len());
                            last_len = p.len();
                        }
                        entries.push((fnv_extend(FNV_OFFSET, p.as_bytes()), i));
                    }
                }
                None => generic.push(i),
            }
        }
        entries.sort_unstable();
        entries.dedup();
        let mut index: HashMap<u64, (u32, u32), BuildHasherDefault<IdHasher>> =
            HashMap::with_capacity_and_hasher(entries.len(), Default::default());
        let mut k = 0;
        while k < entries.len() {
            let h = entries[k].0;
            let mut e = k + 1;
            while e < entries.len() && entries[e].0 == h {
                e += 1;
            }
            index.insert(h, (k as u32, e as u32));
            k = e;
        }
        lens.sort_unstable();
        lens.dedup();
        Dialplan {
            rules,
            entries,
            index,
            prefix_lens: lens,
            generic,
            fallback_budget: AtomicUsize::new(FALLBACK_CACHE),
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the plan has no rules (every lookup gives `None`).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rules are served from the prefix index (the rest are tried in order).
    pub fn indexed_rules(&self) -> usize {
        self.rules.len() - self.generic.len()
    }

    /// The first rule (in file order) whose every `match` key matches `q`, with its rewrites
    /// applied; `None` when no rule matches.
    pub fn lookup(&self, q: &RouteQuery<'_>) -> Option<Decision> {
        let mut cands: Vec<u32> = Vec::new();
        let to = q.to_user.as_bytes();
        let (mut h, mut done) = (FNV_OFFSET, 0);
        for &l in &self.prefix_lens {
            let Some(more) = to.get(done..l) else {
                break;
            };
            h = fnv_extend(h, more);
            done = l;
            if let Some(&(s, e)) = self.index.get(&h) {
                if let Some(v) = self.entries.get(s as usize..e as usize) {
                    cands.extend(v.iter().map(|&(_, r)| r));
                }
            }
        }
        if cands.len() > 1 {
            cands.sort_unstable();
            cands.dedup();
        }
        let mut caps = Caps::default();
        let (mut a, mut b) = (cands.iter().peekable(), self.generic.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) => {
                    if x < y {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => return None,
            };
            let i = next as usize;
            let rule = self.rules.get(i)?;
            if rule.matches(q, &mut caps, &self.fallback_budget) {
                return Some(rule.decide(i, q, &caps));
            }
        }
    }

    /// Compile now every regex that would otherwise be compiled on its first use (patterns
    /// outside the fast subset, beyond the first 1000 which are compiled at load). A reload of
    /// a huge plan of such patterns can call this off the serving path before swapping the new
    /// config in, so no lookup pays for a compilation. Returns how many it compiled.
    pub fn compile_pending(&self) -> usize {
        let mut n = 0;
        for r in &self.rules {
            for p in [
                r.to_user.as_ref(),
                r.from_user.as_deref(),
                r.request_uri.as_deref(),
            ]
            .into_iter()
            .flatten()
            {
                n += p.warm() as usize;
            }
        }
        n
    }

    /// Reference implementation: test every rule in order. Used by tests and benches to check
    /// the indexed [`Dialplan::lookup`].
    #[doc(hidden)]
    pub fn lookup_linear(&self, q: &RouteQuery<'_>) -> Option<Decision> {
        let mut caps = Caps::default();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches(q, &mut caps, &self.fallback_budget) {
                return Some(rule.decide(i, q, &caps));
            }
        }
        None
    }
}
