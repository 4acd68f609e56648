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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::digest::{DigestServer, FailureLimits, Verdict};
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
    /// user -> password.
    pub users: HashMap<String, String>,
    /// NAT keep-alive: an OPTIONS to every binding registered over UDP this often (seconds;
    /// 0 = off), so the NAT mapping the phone registered through stays open for calls.
    pub keepalive: u32,
    /// Calls (and MESSAGE/SUBSCRIBE) from anywhere but a trunk, to anywhere but a served
    /// domain, must authenticate as a user (407): phones cannot be impersonated to reach the
    /// carriers (toll fraud).
    pub authenticate_calls: bool,
    /// `limits.auth_failures`: sources that keep failing are banned for a while.
    pub auth_failures: FailureLimits,
}

impl RegistrarSettings {
    /// Whether `host` (a URI host) is one of the served domains; an IPv6 reference matches
    /// by address (`[2001:DB8::1]` is `[2001:db8::1]`).
    pub fn serves(&self, host: &str) -> bool {
        self.domains.iter().any(|d| crate::uri::same_host(d, host))
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
}

impl RegisterAnswer {
    fn plain(status: u16, reason: &'static str) -> RegisterAnswer {
        RegisterAnswer {
            status,
            reason,
            headers: Vec::new(),
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
    /// REGISTERs handled; every [`PURGE_EVERY`]th sweeps all expired bindings.
    handled: u32,
}

/// A full sweep of expired bindings every this many REGISTERs (each AoR is also cleaned when
/// it is registered or looked up).
const PURGE_EVERY: u32 = 256;

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
            handled: 0,
        }
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
        self.bindings.remove(&key).map_or(0, |v| v.len())
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
        let mut v = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
            s.realm,
            self.digest.nonce(from.addr.ip(), now)
        );
        if stale {
            v.push_str(", stale=true");
        }
        if proxy {
            RegisterAnswer {
                status: 407,
                reason: "Proxy Authentication Required",
                headers: vec![("Proxy-Authenticate", v)],
            }
        } else {
            RegisterAnswer {
                status: 401,
                reason: "Unauthorized",
                headers: vec![("WWW-Authenticate", v)],
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
        let stale = match self.digest.verify(req, header, &s.realm, &s.users, ip, now) {
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
        self.handled = self.handled.wrapping_add(1);
        if self.handled.is_multiple_of(PURGE_EVERY) {
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
        // Step 4: the authenticated user may change this AoR's bindings only.
        if to_user != user {
            return RegisterAnswer::plain(403, "Forbidden");
        }
        let aor = format!("{to_user}@{to_host}");
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
            return self.ok(&aor, now);
        }
        // Step 5/7, first pass: validate every contact before changing anything.
        let mut changes = Vec::new();
        for c in &contacts {
            let Contact::Addr(na) = c else { continue };
            let Some(sip) = na.uri.as_sip() else {
                return RegisterAnswer::plain(400, "Bad Request");
            };
            let expires = na
                .param("expires")
                .flatten()
                .and_then(|e| e.trim().parse::<u64>().ok())
                .or(header_expires)
                .unwrap_or(s.default_expires as u64);
            if expires != 0 && expires < s.min_expires as u64 {
                return RegisterAnswer {
                    status: 423,
                    reason: "Interval Too Brief",
                    headers: vec![("Min-Expires", s.min_expires.to_string())],
                };
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
                .get(&aor)
                .and_then(|v| v.iter().find(|b| b.contact == contact))
            {
                if b.call_id == call_id && cseq <= b.cseq {
                    return RegisterAnswer::plain(500, "Server Internal Error");
                }
            }
            changes.push((contact, target, expires, q));
        }
        let list = self.bindings.entry(aor.clone()).or_default();
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
                call_id: call_id.clone(),
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
            self.bindings.remove(&aor);
        }
        self.ok(&aor, now)
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
        }
    }

    /// Where a request for `uri` goes, if its domain is one this registrar serves: the live
    /// bindings of its AoR, best q first, then the most recently refreshed.
    pub fn lookup(
        &self,
        uri: &Uri,
        s: &RegistrarSettings,
        now: Instant,
    ) -> Option<Result<Vec<Binding>, LookupMiss>> {
        let (user, host) = aor_of(uri)?;
        if !s.serves(&host) {
            return None;
        }
        let mut v: Vec<Binding> = self
            .bindings
            .get(&format!("{user}@{host}"))
            .into_iter()
            .flatten()
            .filter(|b| b.expires > now)
            .cloned()
            .collect();
        if v.is_empty() {
            return Some(Err(if s.users.contains_key(&user) {
                LookupMiss::Offline
            } else {
                LookupMiss::Unknown
            }));
        }
        v.sort_by(|a, b| b.q.cmp(&a.q).then(b.updated.cmp(&a.updated)));
        Some(Ok(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::md5_hex;
    use crate::parse::parse as parse_message;
    use crate::{SipMessage, Transport};

    fn settings() -> RegistrarSettings {
        RegistrarSettings {
            domains: vec!["example.com".into()],
            realm: "example.com".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            users: [("alice".to_string(), "s3cret".to_string())].into(),
            keepalive: 0,
            authenticate_calls: true,
            auth_failures: FailureLimits::default(),
        }
    }

    fn peer() -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: "198.51.100.7:40123".parse().unwrap(),
        }
    }

    fn register(extra: &str, cseq: u32) -> Request {
        let text = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK{cseq}\r\n\
             Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
             Call-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_message(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    /// The status of an answer or denial (0: no answer at all).
    fn status(a: &Result<RegisterAnswer, Denial>) -> u16 {
        match a {
            Ok(a) => a.status,
            Err(d) => d.answer().map_or(0, |a| a.status),
        }
    }

    fn challenge_of(a: Result<RegisterAnswer, Denial>) -> RegisterAnswer {
        match a {
            Err(Denial::Challenge(c)) => c,
            other => panic!("not a challenge: {other:?}"),
        }
    }

    /// The Authorization a phone computes for a challenge (RFC 2617 section 3.2.2, qop=auth),
    /// its `nc`-th use of the nonce.
    fn answer(challenge: &RegisterAnswer, user: &str, password: &str, nc: u32) -> String {
        let v = &challenge.headers[0].1;
        let nonce = v
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let nc = format!("{nc:08x}");
        let ha1 = md5_hex(&[user, "example.com", password]);
        let ha2 = md5_hex(&["REGISTER", "sip:example.com"]);
        let resp = md5_hex(&[&ha1, nonce, &nc, "abcdef", "auth", &ha2]);
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", \
             uri=\"sip:example.com\", response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, \
             cnonce=\"abcdef\"\r\n"
        )
    }

    /// RFC 2617 section 3.5's worked example: the response this module computes is the RFC's.
    #[test]
    fn rfc2617_example_response() {
        let ha1 = md5_hex(&["Mufasa", "testrealm@host.com", "Circle Of Life"]);
        let ha2 = md5_hex(&["GET", "/dir/index.html"]);
        let r = md5_hex(&[
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            &ha2,
        ]);
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn challenge_then_register_then_lookup() {
        let t0 = Instant::now();
        let s = settings();
        let mut r = Registrar::new([42; 32], t0);
        let contact = "Contact: <sip:alice@10.0.0.5:5062;transport=udp>;expires=120\r\n";
        let ch = challenge_of(r.register(&register(contact, 1), peer(), &s, t0));
        assert_eq!(ch.status, 401);
        assert!(ch.headers[0].1.contains("qop=\"auth\""));
        let auth = answer(&ch, "alice", "s3cret", 1);
        let ok = r
            .register(&register(&format!("{contact}{auth}"), 2), peer(), &s, t0)
            .unwrap();
        assert_eq!(ok.status, 200, "{ok:?}");
        assert_eq!(
            ok.headers[0].1,
            "<sip:alice@10.0.0.5:5062;transport=udp>;expires=120"
        );
        let uri = Uri::parse("sip:alice@EXAMPLE.com").unwrap();
        let b = r.lookup(&uri, &s, t0).unwrap().unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].target, "alice@10.0.0.5:5062");
        assert_eq!(b[0].source, peer(), "calls go where the REGISTER came from");
        // expired after 120 s
        let later = t0 + Duration::from_secs(121);
        assert_eq!(r.lookup(&uri, &s, later), Some(Err(LookupMiss::Offline)));
        let bob = Uri::parse("sip:bob@example.com").unwrap();
        assert_eq!(r.lookup(&bob, &s, t0), Some(Err(LookupMiss::Unknown)));
        let other = Uri::parse("sip:alice@elsewhere.net").unwrap();
        assert_eq!(
            r.lookup(&other, &s, t0),
            None,
            "not our domain: the dial plan's"
        );
        assert_eq!(r.binding_count(t0), 1);
    }

    #[test]
    fn wrong_password_other_user_and_stale_nonce() {
        let t0 = Instant::now();
        let mut s = settings();
        s.users.insert("mallory".into(), "pw".into());
        let mut r = Registrar::new([7; 32], t0);
        let c = "Contact: <sip:alice@10.0.0.5>\r\n";
        let ch = challenge_of(r.register(&register(c, 1), peer(), &s, t0));
        let bad = answer(&ch, "alice", "wrong", 1);
        let a = r.register(&register(&format!("{c}{bad}"), 2), peer(), &s, t0);
        assert_eq!(status(&a), 401);
        // mallory authenticates fine but may not register alice's AoR
        let m = answer(&ch, "mallory", "pw", 1);
        let a = r.register(&register(&format!("{c}{m}"), 3), peer(), &s, t0);
        assert_eq!(status(&a), 403);
        // a nonce from another instance (other key) is not ours: fresh challenge
        let mut other = Registrar::new([8; 32], t0);
        let ch2 = other.challenge(&s, peer(), t0);
        let forged = answer(&ch2, "alice", "s3cret", 1);
        let a = challenge_of(r.register(&register(&format!("{c}{forged}"), 4), peer(), &s, t0));
        assert!(!a.headers[0].1.contains("stale"));
        // an old nonce of ours: stale=true
        let good = answer(&ch, "alice", "s3cret", 2);
        let late = t0 + NONCE_LIFETIME + Duration::from_secs(5);
        let a = challenge_of(r.register(&register(&format!("{c}{good}"), 5), peer(), &s, late));
        assert!(a.headers[0].1.contains("stale=true"));
    }

    /// A REGISTER captured on the wire and sent again, from the phone's address or another,
    /// changes no binding (the replay that added an attacker's Contact to alice's bindings).
    #[test]
    fn a_replayed_register_changes_nothing() {
        let t0 = Instant::now();
        let s = settings();
        let mut r = Registrar::new([9; 32], t0);
        let c = "Contact: <sip:alice@10.0.0.5>\r\n";
        let ch = challenge_of(r.register(&register(c, 1), peer(), &s, t0));
        let auth = answer(&ch, "alice", "s3cret", 1);
        let req = register(&format!("{c}{auth}"), 2);
        assert_eq!(status(&r.register(&req, peer(), &s, t0)), 200);
        let evil = register(&format!("Contact: <sip:alice@203.0.113.66>\r\n{auth}"), 3);
        let attacker = Peer {
            transport: Transport::Udp,
            addr: "203.0.113.66:5060".parse().unwrap(),
        };
        assert_eq!(status(&r.register(&evil, attacker, &s, t0)), 401);
        assert_eq!(status(&r.register(&evil, peer(), &s, t0)), 401);
        let b = r
            .lookup(&Uri::parse("sip:alice@example.com").unwrap(), &s, t0)
            .unwrap()
            .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].target, "alice@10.0.0.5");
    }

    /// 300 wrong passwords, then the right one: banned, no answer at all.
    #[test]
    fn guessing_passwords_gets_a_source_banned() {
        let t0 = Instant::now();
        let s = settings();
        let mut r = Registrar::new([5; 32], t0);
        let c = "Contact: <sip:alice@10.0.0.5>\r\n";
        let mut answered = 0;
        for i in 0..300u32 {
            let a = r.register(&register(c, i * 2 + 1), peer(), &s, t0);
            let Err(Denial::Challenge(ch)) = a else {
                assert_eq!(a, Err(Denial::Banned));
                continue;
            };
            answered += 1;
            let guess = answer(&ch, "alice", &format!("guess{i}"), 1);
            let _ = r.register(&register(&format!("{c}{guess}"), i * 2 + 2), peer(), &s, t0);
        }
        assert!(answered <= s.auth_failures.max as usize + 1, "{answered}");
        assert!(r.banned(peer(), t0));
        let a = r.register(&register(c, 1000), peer(), &s, t0);
        assert_eq!(a, Err(Denial::Banned), "no challenge while banned");
        let after = t0 + s.auth_failures.ban + Duration::from_secs(1);
        assert!(matches!(
            r.register(&register(c, 1001), peer(), &s, after),
            Err(Denial::Challenge(_))
        ));
    }

    #[test]
    fn expiry_rules_and_removal() {
        let t0 = Instant::now();
        let s = settings();
        let mut r = Registrar::new([1; 32], t0);
        let ch = r.challenge(&s, peer(), t0);
        let mut nc = 0;
        let mut reg = |r: &mut Registrar, extra: &str, cseq: u32| {
            nc += 1;
            let auth = answer(&ch, "alice", "s3cret", nc);
            let a = r.register(&register(&format!("{extra}{auth}"), cseq), peer(), &s, t0);
            a.unwrap_or_else(|d| panic!("{d:?}"))
        };
        let a = reg(&mut r, "Contact: <sip:alice@10.0.0.5>;expires=10\r\n", 1);
        assert_eq!(
            (a.status, a.headers.clone()),
            (423, vec![("Min-Expires", "60".to_string())])
        );
        let a = reg(
            &mut r,
            "Contact: <sip:alice@10.0.0.5>\r\nExpires: 99999\r\n",
            2,
        );
        assert_eq!(a.status, 200);
        assert!(a.headers[0].1.ends_with("expires=3600"), "clamped: {a:?}");
        let a = reg(
            &mut r,
            "Contact: <sip:alice@10.0.0.6>;q=0.5, <sip:alice@10.0.0.7>;q=0.9\r\n",
            3,
        );
        assert_eq!(a.headers.len(), 3);
        let b = r
            .lookup(&Uri::parse("sip:alice@example.com").unwrap(), &s, t0)
            .unwrap()
            .unwrap();
        let order: Vec<&str> = b.iter().map(|b| b.target.as_str()).collect();
        assert_eq!(
            order,
            vec!["alice@10.0.0.5", "alice@10.0.0.7", "alice@10.0.0.6"],
            "by q"
        );
        // out of order CSeq on the same Call-ID: refused, nothing changes
        let a = reg(&mut r, "Contact: <sip:alice@10.0.0.5>;expires=0\r\n", 2);
        assert_eq!(a.status, 500);
        // one removed
        let a = reg(&mut r, "Contact: <sip:alice@10.0.0.5>;expires=0\r\n", 4);
        assert_eq!(a.headers.len(), 2);
        // "*" needs Expires: 0 and to be alone
        assert_eq!(reg(&mut r, "Contact: *\r\n", 5).status, 400);
        let a = reg(&mut r, "Contact: *\r\nExpires: 0\r\n", 6);
        assert_eq!((a.status, a.headers.len()), (200, 0));
        assert_eq!(r.binding_count(t0), 0);
        // a fetch (no Contact) lists bindings and changes nothing
        assert_eq!(reg(&mut r, "", 7).status, 200);
        // not our domain
        let mut req = register("", 8);
        req.uri = "sip:elsewhere.net".into();
        assert_eq!(status(&r.register(&req, peer(), &s, t0)), 404);
    }

    #[test]
    fn hostile_authorization_headers_never_panic() {
        let t0 = Instant::now();
        let mut s = settings();
        s.auth_failures.max = 0;
        let mut r = Registrar::new([1; 32], t0);
        for h in [
            "Digest",
            "Digest ",
            "Digest username",
            "Digest username=\"alice",
            "Digest username=\"a\\\"b\", realm=\"example.com\"",
            "Digest realm=\"example.com\", nonce=\"zz.zz\", username=\"alice\", uri=\"x\", response=\"y\"",
            "Digest realm=\"example.com\", nonce=\"ffffffffffffffff.0123456789abcdef\", username=\"alice\", uri=\"x\", response=\"y\"",
            "Basic YWxpY2U6czNjcmV0",
            "Digest a=b c=d",
        ] {
            let req = register(&format!("Authorization: {h}\r\nContact: <sip:alice@1.2.3.4>\r\n"), 1);
            let a = r.register(&req, peer(), &s, t0);
            assert!(matches!(status(&a), 400 | 401), "{h}: {a:?}");
        }
    }
}
