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
//! * Nonces are stateless: the time they were issued and a keyed hash of it; valid for 5
//!   minutes, then answered `stale=true`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};

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
}

impl RegistrarSettings {
    pub fn serves(&self, host: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }
}

/// Bindings per AoR at most (the oldest goes first beyond).
pub const MAX_BINDINGS: usize = 10;
/// How long a nonce is accepted.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

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
    secret: u64,
    epoch: Instant,
    /// REGISTERs handled; every [`PURGE_EVERY`]th sweeps all expired bindings.
    handled: u32,
}

/// A full sweep of expired bindings every this many REGISTERs (each AoR is also cleaned when
/// it is registered or looked up).
const PURGE_EVERY: u32 = 256;

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `name=value` pairs of a Digest credentials header (values may be quoted).
fn digest_params(v: &str) -> Option<HashMap<String, String>> {
    let rest = v.trim_start();
    let scheme_end = rest.find([' ', '\t'])?;
    if !rest[..scheme_end].eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut out = HashMap::new();
    let mut s = rest[scheme_end..].trim_start();
    while !s.is_empty() {
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_ascii_lowercase();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut end = None;
            let mut esc = false;
            for (i, c) in q.char_indices() {
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    end = Some(i);
                    break;
                }
            }
            let end = end?;
            value = q[..end].replace("\\\"", "\"").replace("\\\\", "\\");
            s = q[end + 1..].trim_start();
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        out.insert(name, value);
        s = s.trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r.trim_start();
        } else if !s.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// The AoR key of a SIP URI: `user@host`, host lower case, user as written (case matters in
/// the user part, RFC 3261 section 19.1.4).
fn aor_of(uri: &Uri) -> Option<(String, String)> {
    let sip = uri.as_sip()?;
    let user = sip.user.clone()?;
    Some((user, sip.host.to_ascii_lowercase()))
}

impl Registrar {
    /// `secret`: the nonce key (random per start); `epoch`: any instant (nonces count from it).
    pub fn new(secret: u64, epoch: Instant) -> Registrar {
        Registrar {
            bindings: HashMap::new(),
            secret,
            epoch,
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

    /// Forget expired bindings.
    pub fn purge(&mut self, now: Instant) {
        self.bindings.retain(|_, v| {
            v.retain(|b| b.expires > now);
            !v.is_empty()
        });
    }

    fn nonce(&self, now: Instant) -> String {
        let ts = now.saturating_duration_since(self.epoch).as_secs();
        let mac = md5_hex(&[&format!("{:x}", self.secret), &format!("{ts:x}")]);
        format!("{ts:x}.{}", &mac[..16])
    }

    /// `Some(true)`: ours and fresh; `Some(false)`: ours but expired (stale); `None`: not ours.
    fn check_nonce(&self, nonce: &str, now: Instant) -> Option<bool> {
        let (ts, mac) = nonce.split_once('.')?;
        let t = u64::from_str_radix(ts, 16).ok()?;
        let want = md5_hex(&[&format!("{:x}", self.secret), &format!("{t:x}")]);
        if mac.len() != 16 || !constant_eq(mac.as_bytes(), &want.as_bytes()[..16]) {
            return None;
        }
        let age = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .checked_sub(t)?;
        Some(age <= NONCE_LIFETIME.as_secs())
    }

    #[cfg(test)]
    fn challenge(&self, s: &RegistrarSettings, now: Instant, stale: bool) -> RegisterAnswer {
        self.challenge_as(s, now, stale, false)
    }

    /// 401 + WWW-Authenticate (registrar), or 407 + Proxy-Authenticate (`proxy`: a call or
    /// message placed through trunkline, RFC 3261 section 22.3).
    fn challenge_as(
        &self,
        s: &RegistrarSettings,
        now: Instant,
        stale: bool,
        proxy: bool,
    ) -> RegisterAnswer {
        let mut v = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
            s.realm,
            self.nonce(now)
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

    /// Check the Authorization header of `req`; the authenticated user name.
    fn authenticate(
        &self,
        req: &Request,
        s: &RegistrarSettings,
        now: Instant,
    ) -> Result<String, RegisterAnswer> {
        self.authenticate_as(req, s, now, false)
    }

    /// A request placed through trunkline by one of the registrar's users (a phone's INVITE,
    /// MESSAGE, SUBSCRIBE): `Proxy-Authorization` checked against the users, else 407 with a
    /// challenge. The authenticated user name.
    pub fn authenticate_caller(
        &self,
        req: &Request,
        s: &RegistrarSettings,
        now: Instant,
    ) -> Result<String, RegisterAnswer> {
        self.authenticate_as(req, s, now, true)
    }

    fn authenticate_as(
        &self,
        req: &Request,
        s: &RegistrarSettings,
        now: Instant,
        proxy: bool,
    ) -> Result<String, RegisterAnswer> {
        let mut stale = false;
        let header = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        for h in req.headers.get_all(header) {
            let Some(p) = digest_params(h) else {
                continue;
            };
            if p.get("realm").map(String::as_str) != Some(s.realm.as_str()) {
                continue;
            }
            let (Some(user), Some(nonce), Some(uri), Some(resp)) = (
                p.get("username"),
                p.get("nonce"),
                p.get("uri"),
                p.get("response"),
            ) else {
                return Err(RegisterAnswer::plain(400, "Bad Request"));
            };
            if let Some(a) = p.get("algorithm") {
                if !a.eq_ignore_ascii_case("MD5") {
                    continue;
                }
            }
            match self.check_nonce(nonce, now) {
                None => continue,
                Some(false) => {
                    stale = true;
                    continue;
                }
                Some(true) => {}
            }
            let Some(password) = s.users.get(user) else {
                return Err(self.challenge_as(s, now, false, proxy));
            };
            let ha1 = md5_hex(&[user, &s.realm, password]);
            let ha2 = md5_hex(&[req.method.as_str(), uri]);
            let want = match p.get("qop").map(String::as_str) {
                Some("auth") => {
                    let (Some(nc), Some(cnonce)) = (p.get("nc"), p.get("cnonce")) else {
                        return Err(RegisterAnswer::plain(400, "Bad Request"));
                    };
                    md5_hex(&[&ha1, nonce, nc, cnonce, "auth", &ha2])
                }
                None => md5_hex(&[&ha1, nonce, &ha2]),
                Some(_) => continue,
            };
            if constant_eq(want.as_bytes(), resp.to_ascii_lowercase().as_bytes()) {
                return Ok(user.clone());
            }
            return Err(self.challenge_as(s, now, false, proxy));
        }
        Err(self.challenge_as(s, now, stale, proxy))
    }

    /// Handle a REGISTER that arrived from `from`.
    pub fn register(
        &mut self,
        req: &Request,
        from: Peer,
        s: &RegistrarSettings,
        now: Instant,
    ) -> RegisterAnswer {
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
            return RegisterAnswer::plain(404, "Not Found");
        }
        let user = match self.authenticate(req, s, now) {
            Ok(u) => u,
            Err(a) => return a,
        };
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

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// The Authorization a phone computes for a challenge (RFC 2617 section 3.2.2, qop=auth).
    fn answer(challenge: &RegisterAnswer, user: &str, password: &str) -> String {
        let v = &challenge.headers[0].1;
        let nonce = v
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ha1 = md5_hex(&[user, "example.com", password]);
        let ha2 = md5_hex(&["REGISTER", "sip:example.com"]);
        let resp = md5_hex(&[&ha1, nonce, "00000001", "abcdef", "auth", &ha2]);
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", \
             uri=\"sip:example.com\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, \
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
        let mut r = Registrar::new(42, t0);
        let contact = "Contact: <sip:alice@10.0.0.5:5062;transport=udp>;expires=120\r\n";
        let ch = r.register(&register(contact, 1), peer(), &s, t0);
        assert_eq!(ch.status, 401);
        assert!(ch.headers[0].1.contains("qop=\"auth\""));
        let auth = answer(&ch, "alice", "s3cret");
        let ok = r.register(&register(&format!("{contact}{auth}"), 2), peer(), &s, t0);
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
        let mut r = Registrar::new(7, t0);
        let c = "Contact: <sip:alice@10.0.0.5>\r\n";
        let ch = r.register(&register(c, 1), peer(), &s, t0);
        let bad = answer(&ch, "alice", "wrong");
        assert_eq!(
            r.register(&register(&format!("{c}{bad}"), 2), peer(), &s, t0)
                .status,
            401
        );
        // mallory authenticates fine but may not register alice's AoR
        let m = answer(&ch, "mallory", "pw");
        assert_eq!(
            r.register(&register(&format!("{c}{m}"), 3), peer(), &s, t0)
                .status,
            403
        );
        // a nonce from another instance (other secret) is not ours: fresh challenge
        let other = Registrar::new(8, t0);
        let ch2 = other.challenge(&s, t0, false);
        let forged = answer(&ch2, "alice", "s3cret");
        let a = r.register(&register(&format!("{c}{forged}"), 4), peer(), &s, t0);
        assert_eq!(a.status, 401);
        assert!(!a.headers[0].1.contains("stale"));
        // an old nonce of ours: stale=true
        let good = answer(&ch, "alice", "s3cret");
        let late = t0 + NONCE_LIFETIME + Duration::from_secs(5);
        let a = r.register(&register(&format!("{c}{good}"), 5), peer(), &s, late);
        assert_eq!(a.status, 401);
        assert!(a.headers[0].1.contains("stale=true"));
    }

    #[test]
    fn expiry_rules_and_removal() {
        let t0 = Instant::now();
        let s = settings();
        let mut r = Registrar::new(1, t0);
        let ch = r.challenge(&s, t0, false);
        let auth = answer(&ch, "alice", "s3cret");
        let reg = |r: &mut Registrar, extra: &str, cseq: u32| {
            r.register(&register(&format!("{extra}{auth}"), cseq), peer(), &s, t0)
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
        assert_eq!(r.register(&req, peer(), &s, t0).status, 404);
    }

    #[test]
    fn hostile_authorization_headers_never_panic() {
        let t0 = Instant::now();
        let s = settings();
        let mut r = Registrar::new(1, t0);
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
            assert!(matches!(a.status, 400 | 401), "{h}: {a:?}");
        }
    }
}
