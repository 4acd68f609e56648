//! Registrar and location service (RFC 3261 section 10), with HTTP Digest authentication
//! (RFC 3261 section 22, RFC 2617 / RFC 7616 `MD5`, `qop=auth`). Sans-IO: requests and the time
//! come in; what to answer comes out.
//!
//! * REGISTER for `sip:user@domain` (one of the configured domains) must authenticate as
//!   `user`: a user may register only their own address of record (section 10.3 step 4).
//! * Bindings follow section 10.3 step 7: a contact's Call-ID and CSeq decide whether a
//!   REGISTER updates, removes or is out of order for it; `Contact: *` with `Expires: 0`
//!   removes all of the AoR's bindings; expiry is clamped to `[min, max]` and a shorter
//!   non-zero one gets 423 with `Min-Expires`.
//! * Each binding keeps the transport address the REGISTER came from: calls to the user go
//!   there (a phone behind NAT is reachable through the mapping it registered from), with the
//!   Contact URI as the Request-URI.
//! * Credentials are checked by [`crate::digest`]: nonces bound to the client address, each
//!   nonce-count accepted once, `uri` = Request-URI, failures banned per source. Challenges
//!   leave as [`Denial::Challenge`], which the core sends statelessly.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::digest::{Accounts, DigestServer, FailureLimits, Verdict};
pub use crate::digest::{Algorithm, UserSecret};
use crate::headers::{Contact, NameAddr};
use crate::message::Request;
use crate::uri::Uri;
use crate::Peer;

/// What an operator configures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarSettings {
    /// Domains this registrar serves (lower case): AoRs are `sip:user@<domain>`.
    pub domains: Vec<String>,
    /// Digest realm.
    pub realm: String,
    pub min_expires: u32,
    pub max_expires: u32,
    /// Expiry when a REGISTER names none.
    pub default_expires: u32,
    /// user -> what they authenticate with.
    pub users: HashMap<String, UserSecret>,
    /// alias (another user part of the same subscriber) -> user.
    pub aliases: HashMap<String, String>,
    /// Digest algorithms offered, one challenge each, in this order.
    pub algorithms: Vec<Algorithm>,
    /// NAT keep-alive: an OPTIONS to every binding registered over UDP this often (seconds;
    /// 0 = off), so the NAT mapping the phone registered through stays open for calls.
    pub keepalive: u32,
    /// Calls (and MESSAGE/SUBSCRIBE) from anywhere but a trunk, to anywhere but a served
    /// domain, must authenticate as a user (407): phones cannot be impersonated to reach the
    /// carriers (toll fraud).
    pub authenticate_calls: bool,
    /// `limits.auth_failures`: sources that keep failing are banned for a while.
    pub auth_failures: FailureLimits,
    /// Messages for users who are not registered are kept and delivered when they register
    /// (`registrar.offline_messages`); `None`: refused with 480.
    pub offline: Option<crate::mailbox::MailboxLimits>,
    /// trunkline is the presence agent of the served users (`registrar.presence: agent`):
    /// it answers their watchers and takes their PUBLISH; `None`: SUBSCRIBEs are relayed to
    /// the users' phones.
    pub presence: Option<crate::esc::PresenceLimits>,
}

impl RegistrarSettings {
    /// Whether `host` (a URI host) is one of the served domains; an IPv6 reference matches
    /// by address (`[2001:DB8::1]` is `[2001:db8::1]`).
    pub fn serves(&self, host: &str) -> bool {
        self.domains.iter().any(|d| crate::uri::same_host(d, host))
    }

    /// The user a user part names: a user's own name, or one of their aliases.
    pub fn user_of<'a>(&'a self, part: &'a str) -> Option<&'a str> {
        if self.users.contains_key(part) {
            return Some(part);
        }
        self.aliases.get(part).map(String::as_str)
    }

    fn accounts(&self) -> Accounts<'_> {
        Accounts {
            realm: &self.realm,
            users: &self.users,
            aliases: &self.aliases,
            algorithms: &self.algorithms,
        }
    }
}

/// Bindings per AoR at most (the oldest goes first beyond).
pub const MAX_BINDINGS: usize = 10;
pub use crate::digest::NONCE_LIFETIME;

/// One registered contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered.
    pub contact: String,
    /// `user@host:port` of the contact (the Request-URI of calls to it, without `sip:`).
    pub target: String,
    /// Where the REGISTER came from: where calls to this binding are sent.
    pub source: Peer,
    pub expires: Instant,
    /// q-value x 1000 (RFC 3261 section 20.10), 1000 when absent.
    pub q: u16,
    pub call_id: String,
    pub cseq: u32,
    pub updated: Instant,
}

/// The answer to a REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterAnswer {
    pub status: u16,
    pub reason: &'static str,
    /// Headers to add (Contact lines of a 200, WWW-Authenticate, Min-Expires).
    pub headers: Vec<(&'static str, String)>,
    /// The AoR a 200 is for (whose bindings it lists).
    pub aor: Option<String>,
}

impl RegisterAnswer {
    fn plain(status: u16, reason: &'static str) -> RegisterAnswer {
        RegisterAnswer {
            status,
            reason,
            headers: Vec::new(),
            aor: None,
        }
    }
}

/// A request that needed credentials and brought none that work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// Send this challenge once and keep nothing (no transaction state, no retransmission): a
    /// challenge to a spoofed source must not be an amplifier.
    Challenge(RegisterAnswer),
    /// Answer this (credentials that are not well formed: 400).
    Answer(RegisterAnswer),
    /// The source is banned for failed attempts: no answer at all.
    Banned,
}

impl Denial {
    /// The answer to send, if any.
    pub fn answer(&self) -> Option<&RegisterAnswer> {
        match self {
            Denial::Challenge(a) | Denial::Answer(a) => Some(a),
            Denial::Banned => None,
        }
    }
}

/// Why a call to one of our domains finds no binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupMiss {
    /// No such user: 404.
    Unknown,
    /// A user with no live binding: 480 Temporarily Unavailable.
    Offline,
}

/// The location service.
pub struct Registrar {
    bindings: HashMap<String, Vec<Binding>>,
    digest: DigestServer,
    /// When all expired bindings were last swept ([`PURGE_EVERY`]).
    purged: Instant,
    /// AoRs whose bindings changed since [`Registrar::take_changes`] (`None`: not tracked,
    /// nothing persists them).
    changed: Option<HashSet<String>>,
    /// Bindings other cluster nodes hold, by AoR and node: each one's `source` is that node
    /// (calls go through it) and its `target` the AoR (the node looks it up itself).
    remote: HashMap<String, HashMap<String, Vec<Binding>>>,
}

/// A full sweep of expired bindings this often (each AoR is also cleaned when it is
/// registered or looked up).
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// The AoR key of a SIP URI: `user@host`, host lower case, user as written (case matters in
/// the user part, RFC 3261 section 19.1.4).
fn aor_of(uri: &Uri) -> Option<(String, String)> {
    let sip = uri.as_sip()?;
    let user = sip.user.clone()?;
    Some((user, sip.host.to_ascii_lowercase()))
}

impl Registrar {
    /// `key`: the nonce MAC key (random per start); `epoch`: any instant (nonces count from it).
    pub fn new(key: [u8; 32], epoch: Instant) -> Registrar {
        Registrar {
            bindings: HashMap::new(),
            digest: DigestServer::new(key, epoch),
            purged: epoch,
            remote: HashMap::new(),
            changed: None,
        }
    }

    /// Track changed AoRs from now on, for [`Registrar::take_changes`] (a shell that keeps the
    /// bindings in a store turns this on).
    pub fn track_changes(&mut self) {
        self.changed.get_or_insert_with(HashSet::new);
    }

    fn mark(&mut self, aor: &str) {
        if let Some(c) = &mut self.changed {
            if !c.contains(aor) {
                c.insert(aor.to_string());
            }
        }
    }

    /// Report every AoR with bindings as changed (a shared store that lost them, such as a
    /// restarted Redis, gets them all again).
    pub fn mark_all(&mut self) {
        let aors: Vec<String> = self.bindings.keys().cloned().collect();
        for a in aors {
            self.mark(&a);
        }
    }

    /// The AoRs whose bindings changed since the last call, with their bindings now (empty:
    /// the AoR has none left). Expiry is no change: a binding's record carries its expiry.
    pub fn take_changes(&mut self) -> Vec<(String, Vec<Binding>)> {
        let Some(c) = &mut self.changed else {
            return Vec::new();
        };
        if c.is_empty() {
            return Vec::new();
        }
        let aors: Vec<String> = c.drain().collect();
        aors.into_iter()
            .map(|aor| {
                let b = self.bindings.get(&aor).cloned().unwrap_or_default();
                (aor, b)
            })
            .collect()
    }

    /// Put back bindings kept from an earlier run (`aor` as [`Registrar::take_changes`] names
    /// it); expired ones and any beyond [`MAX_BINDINGS`] are left out. Not a change.
    pub fn restore(&mut self, aor: String, mut bindings: Vec<Binding>, now: Instant) {
        bindings.retain(|b| b.expires > now);
        bindings.sort_by_key(|b| std::cmp::Reverse(b.updated));
        bindings.truncate(MAX_BINDINGS);
        if !bindings.is_empty() {
            self.bindings.insert(aor, bindings);
        }
    }

    /// What cluster node `node` (reachable at `via`) holds for `aor` now: its bindings as seen
    /// from here (calls to them go to `via` with the AoR as Request-URI); empty: none. Not a
    /// change (the node's own store has them).
    pub fn set_remote(
        &mut self,
        node: &str,
        via: Peer,
        aor: String,
        bindings: Vec<Binding>,
        now: Instant,
    ) {
        let live: Vec<Binding> = bindings
            .into_iter()
            .filter(|b| b.expires > now)
            .take(MAX_BINDINGS)
            .map(|b| Binding {
                target: aor.clone(),
                source: via,
                ..b
            })
            .collect();
        if live.is_empty() {
            if let Some(m) = self.remote.get_mut(&aor) {
                m.remove(node);
                if m.is_empty() {
                    self.remote.remove(&aor);
                }
            }
            return;
        }
        self.remote
            .entry(aor)
            .or_default()
            .insert(node.to_string(), live);
    }

    /// AoRs other cluster nodes hold bindings for.
    pub fn remote_count(&self) -> usize {
        self.remote.len()
    }

    /// Live bindings in total (for metrics).
    pub fn binding_count(&self, now: Instant) -> usize {
        self.bindings
            .values()
            .map(|v| v.iter().filter(|b| b.expires > now).count())
            .sum()
    }

    /// Live bindings registered over UDP: (where, Contact URI), for NAT keep-alives.
    pub fn udp_bindings(&self, now: Instant) -> Vec<(Peer, String)> {
        self.bindings
            .values()
            .flatten()
            .filter(|b| b.expires > now && b.source.transport == crate::Transport::Udp)
            .map(|b| (b.source, b.contact.clone()))
            .collect()
    }

    /// Every live binding, by AoR (`user@host`), AoRs in order: for the admin API.
    pub fn list(&self, now: Instant) -> Vec<(&str, &Binding)> {
        let mut out: Vec<(&str, &Binding)> = self
            .bindings
            .iter()
            .flat_map(|(aor, v)| v.iter().map(move |b| (aor.as_str(), b)))
            .filter(|(_, b)| b.expires > now)
            .collect();
        out.sort_by(|x, y| x.0.cmp(y.0).then(y.1.q.cmp(&x.1.q)));
        out
    }

    /// Remove every binding of `aor` (`user@host`, host in any case); how many there were.
    pub fn remove_aor(&mut self, aor: &str) -> usize {
        let key = match aor.rsplit_once('@') {
            Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
            None => aor.to_string(),
        };
        let n = self.bindings.remove(&key).map_or(0, |v| v.len());
        if n > 0 {
            self.mark(&key);
        }
        n
    }

    /// Forget expired bindings.
    pub fn purge(&mut self, now: Instant) {
        self.bindings.retain(|_, v| {
            v.retain(|b| b.expires > now);
            !v.is_empty()
        });
    }

    #[cfg(test)]
    fn challenge(&mut self, s: &RegistrarSettings, from: Peer, now: Instant) -> RegisterAnswer {
        self.challenge_as(s, from, now, false, false)
    }

    /// 401 + WWW-Authenticate (registrar), or 407 + Proxy-Authenticate (`proxy`: a call or
    /// message placed through trunkline, RFC 3261 section 22.3), with a nonce for `from`.
    fn challenge_as(
        &mut self,
        s: &RegistrarSettings,
        from: Peer,
        now: Instant,
        stale: bool,
        proxy: bool,
    ) -> RegisterAnswer {
        // RFC 8760 §2.4: "the server SHOULD send one challenge per algorithm it supports ...
        // the server SHOULD list the challenges in order of preference"; RFC 7616 §3.7: the
        // client "SHOULD use the topmost header field it supports". One nonce serves all.
        let nonce = self.digest.nonce(from.addr.ip(), now);
        let name = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let headers = s
            .algorithms
            .iter()
            .map(|a| {
                let mut v = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                    s.realm,
                    a.token()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                (name, v)
            })
            .collect();
        if proxy {
            RegisterAnswer {
                status: 407,
                reason: "Proxy Authentication Required",
                headers,
                aor: None,
            }
        } else {
            RegisterAnswer {
                status: 401,
                reason: "Unauthorized",
                headers,
                aor: None,
            }
        }
    }

    /// A request placed through trunkline by one of the registrar's users (a phone's INVITE,
    /// MESSAGE, SUBSCRIBE): `Proxy-Authorization` checked against the users, else 407 with a
    /// challenge. The authenticated user name.
    pub fn authenticate_caller(
        &mut self,
        req: &Request,
        from: Peer,
        s: &RegistrarSettings,
        now: Instant,
    ) -> Result<String, Denial> {
        self.authenticate_as(req, from, s, now, true)
    }

    /// Is `from` banned for failed authentication?
    pub fn banned(&self, from: Peer, now: Instant) -> bool {
        self.digest.banned(from.addr.ip(), now)
    }

    fn authenticate_as(
        &mut self,
        req: &Request,
        from: Peer,
        s: &RegistrarSettings,
        now: Instant,
        proxy: bool,
    ) -> Result<String, Denial> {
        let ip = from.addr.ip();
        if self.digest.banned(ip, now) {
            return Err(Denial::Banned);
        }
        let header = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let stale = match self.digest.verify(req, header, &s.accounts(), ip, now) {
            Verdict::User(u) => return Ok(u),
            Verdict::Missing => false,
            Verdict::Stale => true,
            Verdict::Failed(fingerprint) => {
                self.digest.failed(ip, fingerprint, s.auth_failures, now);
                false
            }
            Verdict::Malformed => {
                self.digest.failed(ip, 0, s.auth_failures, now);
                return Err(Denial::Answer(RegisterAnswer::plain(400, "Bad Request")));
            }
        };
        Err(Denial::Challenge(
            self.challenge_as(s, from, now, stale, proxy),
        ))
    }

    /// Handle a REGISTER that arrived from `from`.
    pub fn register(
        &mut self,
        req: &Request,
        from: Peer,
        s: &RegistrarSettings,
        now: Instant,
    ) -> Result<RegisterAnswer, Denial> {
        // A sweep of the whole table on a clock, not per so many REGISTERs: at 2,000/s and
        // 10,000 users a sweep every 256 was 5 % of the registrar's CPU. What waits for the
        // sweep is bounded anyway (the users' AoRs, each with its few bindings).
        if now.saturating_duration_since(self.purged) >= PURGE_EVERY {
            self.purged = now;
            self.purge(now);
        }
        // Section 10.3 step 1: the Request-URI names the domain.
        let served = Uri::parse(&req.uri)
            .ok()
            .and_then(|u| u.as_sip().map(|x| x.host.to_ascii_lowercase()))
            .is_some_and(|h| s.serves(&h));
        if !served {
            return Ok(RegisterAnswer::plain(404, "Not Found"));
        }
        let user = self.authenticate_as(req, from, s, now, false)?;
        Ok(self.update_bindings(req, &user, from, s, now))
    }

    /// REGISTER by the authenticated `user`: section 10.3 steps 4-8.
    fn update_bindings(
        &mut self,
        req: &Request,
        user: &str,
        from: Peer,
        s: &RegistrarSettings,
        now: Instant,
    ) -> RegisterAnswer {
        let Some(to) = req.headers.get("To").and_then(|v| NameAddr::parse(v).ok()) else {
            return RegisterAnswer::plain(400, "Bad Request");
        };
        let Some((to_user, to_host)) = aor_of(&to.uri) else {
            return RegisterAnswer::plain(404, "Not Found");
        };
        if !s.serves(&to_host) {
            return RegisterAnswer::plain(404, "Not Found");
        }
        // Step 4: the authenticated user may change this AoR's bindings only. An alias names
        // the same subscriber: its REGISTER binds the user's own AoR.
        if s.user_of(&to_user) != Some(user) {
            return RegisterAnswer::plain(403, "Forbidden");
        }
        let aor = format!("{user}@{to_host}");
        let call_id = req.headers.get("Call-ID").unwrap_or("").trim().to_string();
        let Some(cseq) = req
            .headers
            .get("CSeq")
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
        else {
            return RegisterAnswer::plain(400, "Bad Request");
        };
        let header_expires = req
            .headers
            .get("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut contacts = Vec::new();
        for v in req.headers.get_all("Contact") {
            match Contact::parse_list(v) {
                Ok(list) => contacts.extend(list),
                Err(_) => return RegisterAnswer::plain(400, "Bad Request"),
            }
        }
        self.purge_aor(&aor, now);
        if contacts.iter().any(|c| matches!(c, Contact::Star)) {
            // Step 6: "*" only alone and with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return RegisterAnswer::plain(400, "Bad Request");
            }
            if let Some(v) = self.bindings.get(&aor) {
                if v.iter().any(|b| b.call_id == call_id && cseq <= b.cseq) {
                    return RegisterAnswer::plain(500, "Server Internal Error");
                }
            }
            self.bindings.remove(&aor);
            self.mark(&aor);
            return self.ok(&aor, now);
        }
        // Step 5/7, first pass: validate every contact before changing anything.
        let mut changes = Vec::new();
        for c in &contacts {
            let Contact::Addr(na) = c else { continue };
            let seen = (call_id.as_str(), cseq, header_expires);
            match self.contact_change(na, &aor, seen, s) {
                Ok(change) => changes.push(change),
                Err(refusal) => return refusal,
            }
        }
        if !changes.is_empty() {
            self.apply_changes(&aor, changes, from, (&call_id, cseq), now);
            self.mark(&aor);
        }
        self.ok(&aor, now)
    }

    /// One Contact of a REGISTER for `aor` checked (section 10.3 steps 5 and 7): (contact,
    /// target, expires, q), or the answer that refuses the whole request. `seen` is the
    /// request's Call-ID, CSeq and `Expires` header.
    fn contact_change(
        &self,
        na: &NameAddr,
        aor: &str,
        (call_id, cseq, header_expires): (&str, u32, Option<u64>),
        s: &RegistrarSettings,
    ) -> Result<(String, String, u64, u16), RegisterAnswer> {
        let Some(sip) = na.uri.as_sip() else {
            return Err(RegisterAnswer::plain(400, "Bad Request"));
        };
        let expires = na
            .param("expires")
            .flatten()
            .and_then(|e| e.trim().parse::<u64>().ok())
            .or(header_expires)
            .unwrap_or(s.default_expires as u64);
        if expires != 0 && expires < s.min_expires as u64 {
            return Err(RegisterAnswer {
                status: 423,
                reason: "Interval Too Brief",
                headers: vec![("Min-Expires", s.min_expires.to_string())],
                aor: None,
            });
        }
        let expires = expires.min(s.max_expires as u64);
        let q = na
            .param("q")
            .flatten()
            .and_then(|q| q.trim().parse::<f32>().ok())
            .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u16);
        let host = match sip.port {
            Some(p) => format!("{}:{p}", sip.host),
            None => sip.host.clone(),
        };
        let target = match &sip.user {
            Some(u) => format!("{u}@{host}"),
            None => host,
        };
        let contact = na.uri.to_string();
        if let Some(b) = self
            .bindings
            .get(aor)
            .and_then(|v| v.iter().find(|b| b.contact == contact))
        {
            if b.call_id == call_id && cseq <= b.cseq {
                return Err(RegisterAnswer::plain(500, "Server Internal Error"));
            }
        }
        Ok((contact, target, expires, q))
    }

    /// Section 10.3 step 7, second pass: the checked contacts replace, add or (expires 0)
    /// remove bindings of `aor`; beyond [`MAX_BINDINGS`] the oldest go.
    fn apply_changes(
        &mut self,
        aor: &str,
        changes: Vec<(String, String, u64, u16)>,
        from: Peer,
        (call_id, cseq): (&str, u32),
        now: Instant,
    ) {
        let list = self.bindings.entry(aor.to_string()).or_default();
        for (contact, target, expires, q) in changes {
            list.retain(|b| b.contact != contact);
            if expires == 0 {
                continue;
            }
            list.push(Binding {
                contact,
                target,
                source: from,
                expires: now + Duration::from_secs(expires),
                q,
                call_id: call_id.to_string(),
                cseq,
                updated: now,
            });
        }
        while list.len() > MAX_BINDINGS {
            let oldest = list
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.updated)
                .map(|(i, _)| i)
                .unwrap_or(0);
            list.remove(oldest);
        }
        if list.is_empty() {
            self.bindings.remove(aor);
        }
    }

    fn purge_aor(&mut self, aor: &str, now: Instant) {
        if let Some(v) = self.bindings.get_mut(aor) {
            v.retain(|b| b.expires > now);
            if v.is_empty() {
                self.bindings.remove(aor);
            }
        }
    }

    /// 200 with the AoR's current bindings (section 10.3 step 8).
    fn ok(&self, aor: &str, now: Instant) -> RegisterAnswer {
        let mut headers = Vec::new();
        for b in self.bindings.get(aor).into_iter().flatten() {
            let left = b.expires.saturating_duration_since(now).as_secs();
            headers.push(("Contact", format!("<{}>;expires={left}", b.contact)));
        }
        RegisterAnswer {
            status: 200,
            reason: "OK",
            headers,
            aor: Some(aor.to_string()),
        }
    }

    /// The AoR of a served user `uri` names who has no live binding (where a message for them
    /// is kept): `None` for another domain, an unknown user, or one who is registered.
    pub fn offline_aor(&self, uri: &Uri, s: &RegistrarSettings, now: Instant) -> Option<String> {
        let (user, aors) = aors_of(uri, s)?;
        user?;
        let live = aors
            .iter()
            .filter_map(|a| self.bindings.get(a))
            .flatten()
            .chain(
                aors.iter()
                    .filter_map(|a| self.remote.get(a))
                    .flat_map(|m| m.values().flatten()),
            )
            .any(|b| b.expires > now);
        (!live).then(|| aors.into_iter().next()).flatten()
    }

    /// The AoR of the served user `uri` names (an alias or a `tel:` number: the user's own;
    /// a `tel:` number: in the first served domain); `None` for another domain or no user.
    pub fn known_aor(&self, uri: &Uri, s: &RegistrarSettings) -> Option<String> {
        let (user, aors) = aors_of(uri, s)?;
        user?;
        aors.into_iter().next()
    }

    /// Whether `aor` has a live binding.
    pub fn is_registered(&self, aor: &str, now: Instant) -> bool {
        self.bindings
            .get(aor)
            .is_some_and(|v| v.iter().any(|b| b.expires > now))
    }

    /// The live bindings of `aor` as stored, best first (q, then the newest).
    pub fn bindings_of(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .bindings
            .get(aor)
            .into_iter()
            .flatten()
            .filter(|b| b.expires > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.q.cmp(&a.q).then(b.updated.cmp(&a.updated)));
        v
    }

    /// Where a request for `uri` goes, if its domain is one this registrar serves: the live
    /// bindings of its AoR, best q first, then the most recently refreshed. A user part may be
    /// a user's alias; a `tel:` URI (RFC 3966) is ours when its number is a user or an alias
    /// (visual separators ignored), and reaches the user's bindings in every served domain.
    pub fn lookup(
        &self,
        uri: &Uri,
        s: &RegistrarSettings,
        now: Instant,
    ) -> Option<Result<Vec<Binding>, LookupMiss>> {
        let (user, aors) = aors_of(uri, s)?;
        let mut v: Vec<Binding> = aors
            .iter()
            .filter_map(|a| self.bindings.get(a))
            .flatten()
            .filter(|b| b.expires > now)
            .cloned()
            .collect();
        if v.is_empty() {
            // Not here: another cluster node's, reached through that node.
            v = aors
                .iter()
                .filter_map(|a| self.remote.get(a))
                .flat_map(|m| m.values().flatten())
                .filter(|b| b.expires > now)
                .cloned()
                .collect();
        }
        if v.is_empty() {
            return Some(Err(if user.is_some() {
                LookupMiss::Offline
            } else {
                LookupMiss::Unknown
            }));
        }
        v.sort_by(|a, b| b.q.cmp(&a.q).then(b.updated.cmp(&a.updated)));
        Some(Ok(v))
    }
}

/// The user a request for `uri` is for (`None`: no such user) and the AoRs it reaches, if its
/// domain is served: one for a SIP URI, one per served domain for a `tel:` number.
fn aors_of(uri: &Uri, s: &RegistrarSettings) -> Option<(Option<String>, Vec<String>)> {
    match uri {
        Uri::Tel(t) => {
            let number = tel_digits(&t.number);
            let user = s.user_of(&number)?.to_string();
            let aors: Vec<String> = s.domains.iter().map(|d| format!("{user}@{d}")).collect();
            Some((Some(user), aors))
        }
        _ => {
            let (part, host) = aor_of(uri)?;
            if !s.serves(&host) {
                return None;
            }
            Some(match s.user_of(&part) {
                Some(u) => (Some(u.to_string()), vec![format!("{u}@{host}")]),
                None => (None, vec![format!("{part}@{host}")]),
            })
        }
    }
}

/// RFC 3966 §5.1.1: `visual-separator = "-" / "." / "(" / ")"`, which "MUST be ignored" when
/// numbers are compared.
fn tel_digits(number: &str) -> String {
    number
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
        .collect()
}

#[cfg(test)]
mod tests;
