//! HTTP Digest, the server side (RFC 3261 §22, RFC 7616 §3.3–3.4), built so that a captured
//! answer cannot be used again. Sans-IO: the request, its source and the time come in.
//!
//! * A nonce is `<issued>.<serial>.<mac>`: the time it was issued (seconds since the core
//!   started), a serial number, and an HMAC-SHA256 over both and the client's IP address under a
//!   key drawn from the core's CSPRNG at start. Issuing one keeps no state (a challenge costs the
//!   server nothing, so a flood of them exhausts nothing); a nonce sent from another address,
//!   forged, or from an earlier run is not ours.
//! * RFC 7616 §3.4: "the server ... SHOULD ... maintain a record of the nonce-count values it
//!   has seen, to detect replay". Each nonce that was used successfully is remembered with the
//!   highest `nc` accepted; the next use must bring a higher one. The table is bounded
//!   ([`MAX_TRACKED_NONCES`]); entries leave when their nonce expires ([`NONCE_LIFETIME`]).
//! * `qop=auth` is offered, so it is required (an RFC 2069 answer without `qop`, `nc` and
//!   `cnonce` is refused); the digest `uri` must be the Request-URI (RFC 7616 §3.4.6: "the
//!   server SHOULD check that the 'uri' ... matches the request-target").
//! * An unknown user and a wrong password get the same answer after the same work (a digest is
//!   computed against a dummy secret), so the answers do not list the users.
//! * Failed answers are counted per source address; a source over `max` failures in `window`
//!   is banned for `ban` (its requests needing authentication are dropped unanswered).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;

pub use crate::digest_client::Algorithm;
use crate::message::Request;

/// What a user authenticates with: a password, or the HA1 of one per algorithm (RFC 7616
/// §3.4.2: `H(username ":" realm ":" password)`), so a configuration need not hold passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserSecret {
    pub password: Option<String>,
    /// Lower-case hex.
    pub ha1_md5: Option<String>,
    /// Lower-case hex.
    pub ha1_sha256: Option<String>,
}

/// Secrets are never printed.
impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("UserSecret")
            .field("password", &r(&self.password))
            .field("ha1_md5", &r(&self.ha1_md5))
            .field("ha1_sha256", &r(&self.ha1_sha256))
            .finish()
    }
}

impl UserSecret {
    pub fn password(p: impl Into<String>) -> UserSecret {
        UserSecret {
            password: Some(p.into()),
            ..UserSecret::default()
        }
    }

    /// The HA1 of `user` in `realm` for `alg`, if this secret can answer it.
    fn ha1(&self, alg: Algorithm, user: &str, realm: &str) -> Option<String> {
        if let Some(pw) = &self.password {
            return Some(alg.hash(&[user.as_bytes(), realm.as_bytes(), pw.as_bytes()]));
        }
        match alg {
            Algorithm::Md5 => self.ha1_md5.clone(),
            Algorithm::Sha256 => self.ha1_sha256.clone(),
            Algorithm::Sha512_256 => None,
        }
    }
}

/// Who may authenticate, and how: the users by name, other names (aliases) of theirs, and the
/// algorithms offered.
#[derive(Clone, Copy)]
pub struct Accounts<'a> {
    pub realm: &'a str,
    pub users: &'a HashMap<String, UserSecret>,
    /// alias -> user name.
    pub aliases: &'a HashMap<String, String>,
    pub algorithms: &'a [Algorithm],
}

impl Accounts<'_> {
    /// The user a Digest `username` names (itself or an alias of theirs) and their secret.
    fn user(&self, name: &str) -> Option<(&str, &UserSecret)> {
        if let Some((n, s)) = self.users.get_key_value(name) {
            return Some((n.as_str(), s));
        }
        let n = self.aliases.get(name)?;
        self.users.get(n).map(|s| (n.as_str(), s))
    }
}

/// How long a nonce is accepted; older ones are answered `stale=true`.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Nonces whose nonce-count is tracked at most (the oldest is forgotten beyond: at the default
/// lifetime that takes more than 400 successful authentications a second).
pub const MAX_TRACKED_NONCES: usize = 131_072;
/// Source addresses whose failures are counted at most.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// `limits.auth_failures`: a source with more than `max` failed answers within `window` is
/// banned for `ban`. `max == 0` turns the ban off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureLimits {
    pub max: u32,
    pub window: Duration,
    pub ban: Duration,
}

impl Default for FailureLimits {
    fn default() -> Self {
        FailureLimits {
            max: 10,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
        }
    }
}

/// What a request's credentials came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this user.
    User(String),
    /// No usable credentials (none, another realm, not our nonce): challenge.
    Missing,
    /// Our nonce, but too old: challenge with `stale=true`.
    Stale,
    /// Credentials that fail (wrong password, unknown user, replayed nonce-count, wrong `uri`,
    /// no `qop`): challenge, and counted against the source. The value tells one answer from
    /// another: the same answer again (a retransmission, or the same guess) is not a new try.
    Failed(u64),
    /// Credentials that are not even well formed.
    Malformed,
}

struct Tracked {
    nc: u32,
    expires: Instant,
}

struct Failures {
    count: u32,
    /// The last failed answer counted (a resend of it is not counted again).
    last: u64,
    window_start: Instant,
    banned_until: Option<Instant>,
}

/// The server side of Digest: nonces, nonce-counts, failure bans.
pub struct DigestServer {
    key: [u8; 32],
    epoch: Instant,
    serial: u64,
    used: HashMap<String, Tracked>,
    /// Nonces in the order they entered `used` (for expiry and the bound).
    order: VecDeque<(String, Instant)>,
    failures: HashMap<IpAddr, Failures>,
}

type HmacSha256 = Hmac<Sha256>;

pub fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Tells one answer from another (not a secret: a resend of the same answer is not a new try).
fn answer_fingerprint(nonce: &str, response: &str, uri: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x7472_756e).build_hasher();
    h.write(nonce.as_bytes());
    h.write(response.as_bytes());
    h.write(uri.as_bytes());
    h.finish() | 1
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `name=value` pairs of a Digest credentials header (values may be quoted).
pub(crate) fn digest_params(v: &str) -> Option<HashMap<String, String>> {
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

impl DigestServer {
    /// `key`: the nonce MAC key (random per start); `epoch`: any instant (nonces count from it).
    pub fn new(key: [u8; 32], epoch: Instant) -> DigestServer {
        DigestServer {
            key,
            epoch,
            serial: 0,
            used: HashMap::new(),
            order: VecDeque::new(),
            failures: HashMap::new(),
        }
    }

    fn mac(&self, issued: u64, serial: u64, client: IpAddr) -> String {
        // A key of any length is accepted by HMAC: this cannot fail.
        let Ok(mut m) = HmacSha256::new_from_slice(&self.key) else {
            return String::new();
        };
        m.update(&issued.to_be_bytes());
        m.update(&serial.to_be_bytes());
        match client {
            IpAddr::V4(a) => m.update(&a.octets()),
            IpAddr::V6(a) => m.update(&a.octets()),
        }
        hex(&m.finalize().into_bytes()[..16])
    }

    /// A fresh nonce for a challenge to `client`.
    pub fn nonce(&mut self, client: IpAddr, now: Instant) -> String {
        let issued = now.saturating_duration_since(self.epoch).as_secs();
        self.serial = self.serial.wrapping_add(1);
        let mac = self.mac(issued, self.serial, client);
        format!("{issued:x}.{:x}.{mac}", self.serial)
    }

    /// `Some(true)`: ours, for this client, fresh; `Some(false)`: ours but expired; `None`: not
    /// ours (forged, another run's, or issued to another address).
    fn check_nonce(&self, nonce: &str, client: IpAddr, now: Instant) -> Option<bool> {
        let mut parts = nonce.splitn(3, '.');
        let issued = u64::from_str_radix(parts.next()?, 16).ok()?;
        let serial = u64::from_str_radix(parts.next()?, 16).ok()?;
        let mac = parts.next()?;
        if !constant_eq(mac.as_bytes(), self.mac(issued, serial, client).as_bytes()) {
            return None;
        }
        let age = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .checked_sub(issued)?;
        Some(age <= NONCE_LIFETIME.as_secs())
    }

    /// Check the `header` credentials of `req` (from `client`) against `accounts`.
    ///
    /// RFC 7616 §3.7: "the server MAY send multiple WWW-Authenticate header fields ... each one
    /// of them with a different algorithm" and the client answers one of them: credentials
    /// name their algorithm (none: MD5, RFC 2617), which must be one the server offers.
    pub fn verify(
        &mut self,
        req: &Request,
        header: &str,
        accounts: &Accounts<'_>,
        client: IpAddr,
        now: Instant,
    ) -> Verdict {
        let realm = accounts.realm;
        let mut verdict = Verdict::Missing;
        for h in req.headers.get_all(header) {
            let Some(p) = digest_params(h) else {
                continue;
            };
            if p.get("realm").map(String::as_str) != Some(realm) {
                continue;
            }
            let alg = match p.get("algorithm").map(|a| a.to_ascii_uppercase()) {
                None => Algorithm::Md5,
                Some(a) if a == "MD5" => Algorithm::Md5,
                Some(a) if a == "SHA-256" => Algorithm::Sha256,
                Some(_) => continue,
            };
            if !accounts.algorithms.contains(&alg) {
                continue;
            }
            let (Some(user), Some(nonce), Some(uri), Some(resp)) = (
                p.get("username"),
                p.get("nonce"),
                p.get("uri"),
                p.get("response"),
            ) else {
                return Verdict::Malformed;
            };
            match self.check_nonce(nonce, client, now) {
                None => continue,
                Some(false) => {
                    verdict = Verdict::Stale;
                    continue;
                }
                Some(true) => {}
            }
            let answer = (user, nonce, uri, resp);
            return self.check_response(req, &p, answer, alg, accounts, now);
        }
        verdict
    }

    fn check_response(
        &mut self,
        req: &Request,
        p: &HashMap<String, String>,
        (user, nonce, uri, resp): (&String, &String, &String, &String),
        alg: Algorithm,
        accounts: &Accounts<'_>,
        now: Instant,
    ) -> Verdict {
        let realm = accounts.realm;
        let failed = Verdict::Failed(answer_fingerprint(nonce, resp, uri));
        // qop=auth was offered: an answer without it (RFC 2069) is refused.
        let (Some("auth"), Some(nc), Some(cnonce)) = (
            p.get("qop").map(String::as_str),
            p.get("nc"),
            p.get("cnonce"),
        ) else {
            return failed;
        };
        let Ok(nc_value) = u32::from_str_radix(nc, 16) else {
            return Verdict::Malformed;
        };
        // Unknown users (and users with no secret for this algorithm) cost the same digest as
        // known ones, against a secret nobody has.
        let found = accounts
            .user(user)
            .and_then(|(name, secret)| Some((name, secret.ha1(alg, user, realm)?)));
        let (known, name, ha1) = match found {
            Some((name, ha1)) => (true, name, ha1),
            None => {
                let dummy = "\u{0}unknown user\u{0}";
                let ha1 = alg.hash(&[user.as_bytes(), realm.as_bytes(), dummy.as_bytes()]);
                (false, "", ha1)
            }
        };
        let ha2 = alg.hash(&[req.method.as_str().as_bytes(), uri.as_bytes()]);
        let want = alg.hash(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ]);
        let matches = constant_eq(want.as_bytes(), resp.to_ascii_lowercase().as_bytes());
        let uri_ok = uri == &req.uri || uri.eq_ignore_ascii_case(&req.uri);
        if !(matches && known && uri_ok) {
            return failed;
        }
        // Each (nonce, nc) once, and nc only grows.
        self.expire(now);
        match self.used.get_mut(nonce) {
            Some(t) if nc_value <= t.nc => return failed,
            Some(t) => t.nc = nc_value,
            None => {
                if self.used.len() >= MAX_TRACKED_NONCES {
                    if let Some((old, _)) = self.order.pop_front() {
                        self.used.remove(&old);
                    }
                }
                let expires = now + NONCE_LIFETIME;
                self.used.insert(
                    nonce.clone(),
                    Tracked {
                        nc: nc_value,
                        expires,
                    },
                );
                self.order.push_back((nonce.clone(), expires));
            }
        }
        Verdict::User(name.to_string())
    }

    fn expire(&mut self, now: Instant) {
        while let Some((n, at)) = self.order.front() {
            if *at > now {
                break;
            }
            if self.used.get(n).is_some_and(|t| t.expires <= now) {
                self.used.remove(n);
            }
            self.order.pop_front();
        }
    }

    /// Nonces whose nonce-count is remembered now.
    pub fn tracked_nonces(&self) -> usize {
        self.used.len()
    }

    /// Is `client` banned for failed answers? (Failures count per [`crate::source_key`]: an IPv6
    /// client by its /64.)
    pub fn banned(&self, client: IpAddr, now: Instant) -> bool {
        self.failures
            .get(&crate::source_key(client))
            .and_then(|f| f.banned_until)
            .is_some_and(|t| t > now)
    }

    /// Count failed answer `fingerprint` ([`Verdict::Failed`]) from `client`; `true` when this
    /// one starts a ban.
    pub fn failed(
        &mut self,
        client: IpAddr,
        fingerprint: u64,
        lim: FailureLimits,
        now: Instant,
    ) -> bool {
        if lim.max == 0 {
            return false;
        }
        let client = crate::source_key(client);
        if self.failures.len() >= MAX_TRACKED_SOURCES && !self.failures.contains_key(&client) {
            self.failures.retain(|_, f| {
                f.banned_until.is_some_and(|t| t > now) || now < f.window_start + lim.window
            });
            if self.failures.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        let f = self.failures.entry(client).or_insert(Failures {
            count: 0,
            last: 0,
            window_start: now,
            banned_until: None,
        });
        if f.banned_until.is_some_and(|t| t <= now) {
            f.banned_until = None;
            f.count = 0;
            f.window_start = now;
        }
        if now >= f.window_start + lim.window {
            f.count = 0;
            f.window_start = now;
        }
        if f.last == fingerprint {
            return false;
        }
        f.last = fingerprint;
        f.count += 1;
        if f.count > lim.max && f.banned_until.is_none() {
            f.banned_until = Some(now + lim.ban);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse as parse_message;
    use crate::SipMessage;

    const ALICE: &str = "198.51.100.7";

    fn users() -> HashMap<String, UserSecret> {
        [("alice".to_string(), UserSecret::password("s3cret"))].into()
    }

    fn invite(uri: &str, auth: &str) -> Request {
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\n\
             Max-Forwards: 70\r\nTo: <{uri}>\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
             Call-ID: c-1\r\nCSeq: 1 INVITE\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        match parse_message(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn answer(nonce: &str, uri: &str, password: &str, nc: u32, qop: bool) -> String {
        let nc = format!("{nc:08x}");
        let ha1 = md5_hex(&["alice", "example.com", password]);
        let ha2 = md5_hex(&["INVITE", uri]);
        if !qop {
            let resp = md5_hex(&[&ha1, nonce, &ha2]);
            return format!(
                "Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", \
                 nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\"\r\n"
            );
        }
        let resp = md5_hex(&[&ha1, nonce, &nc, "c0ffee", "auth", &ha2]);
        format!(
            "Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", \
             nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", qop=auth, nc={nc}, \
             cnonce=\"c0ffee\"\r\n"
        )
    }

    fn verify(d: &mut DigestServer, req: &Request, from: &str, now: Instant) -> Verdict {
        let ip = from.parse().unwrap();
        let (users, aliases) = (users(), HashMap::new());
        let accounts = Accounts {
            realm: "example.com",
            users: &users,
            aliases: &aliases,
            algorithms: &[Algorithm::Sha256, Algorithm::Md5],
        };
        d.verify(req, "Proxy-Authorization", &accounts, ip, now)
    }

    #[test]
    fn a_captured_answer_cannot_be_used_again() {
        let t0 = Instant::now();
        let mut d = DigestServer::new([7; 32], t0);
        let uri = "sip:+12125550100@carrier.example";
        let nonce = d.nonce(ALICE.parse().unwrap(), t0);
        let req = invite(uri, &answer(&nonce, uri, "s3cret", 1, true));
        assert_eq!(
            verify(&mut d, &req, ALICE, t0),
            Verdict::User("alice".into())
        );
        // the same answer again, even from alice's own address: the nonce-count was used
        assert!(matches!(
            verify(&mut d, &req, ALICE, t0),
            Verdict::Failed(_)
        ));
        // from another address: not even our nonce
        assert_eq!(verify(&mut d, &req, "203.0.113.66", t0), Verdict::Missing);
        // a higher nc on the same nonce is the client's next request: accepted once
        let next = invite(uri, &answer(&nonce, uri, "s3cret", 2, true));
        assert_eq!(
            verify(&mut d, &next, ALICE, t0),
            Verdict::User("alice".into())
        );
        assert!(matches!(
            verify(&mut d, &next, ALICE, t0),
            Verdict::Failed(_)
        ));
        // the answer moved to another Request-URI (other numbers): refused
        let mut moved = invite(uri, &answer(&nonce, uri, "s3cret", 3, true));
        moved.uri = "sip:+442079460000@carrier.example".into();
        assert!(matches!(
            verify(&mut d, &moved, ALICE, t0),
            Verdict::Failed(_)
        ));
        assert_eq!(d.tracked_nonces(), 1);
        // after its lifetime the nonce is stale, and its record is gone
        let late = t0 + NONCE_LIFETIME + Duration::from_secs(1);
        let again = invite(uri, &answer(&nonce, uri, "s3cret", 9, true));
        assert_eq!(verify(&mut d, &again, ALICE, late), Verdict::Stale);
    }

    #[test]
    fn qop_is_required_and_unknown_users_look_like_wrong_passwords() {
        let t0 = Instant::now();
        let mut d = DigestServer::new([1; 32], t0);
        let uri = "sip:bob@example.com";
        let nonce = d.nonce(ALICE.parse().unwrap(), t0);
        let rfc2069 = invite(uri, &answer(&nonce, uri, "s3cret", 1, false));
        assert!(matches!(
            verify(&mut d, &rfc2069, ALICE, t0),
            Verdict::Failed(_)
        ));
        let wrong = invite(uri, &answer(&nonce, uri, "guess", 1, true));
        assert!(matches!(
            verify(&mut d, &wrong, ALICE, t0),
            Verdict::Failed(_)
        ));
        let unknown = invite(
            uri,
            &answer(&nonce, uri, "s3cret", 1, true)
                .replace("username=\"alice\"", "username=\"eve\""),
        );
        assert!(matches!(
            verify(&mut d, &unknown, ALICE, t0),
            Verdict::Failed(_)
        ));
        // another key (another run) never accepts our nonce
        let mut other = DigestServer::new([2; 32], t0);
        let good = invite(uri, &answer(&nonce, uri, "s3cret", 1, true));
        assert_eq!(verify(&mut other, &good, ALICE, t0), Verdict::Missing);
        assert_eq!(
            verify(&mut d, &good, ALICE, t0),
            Verdict::User("alice".into())
        );
    }

    #[test]
    fn failures_ban_a_source_for_a_while() {
        let t0 = Instant::now();
        let mut d = DigestServer::new([3; 32], t0);
        let lim = FailureLimits {
            max: 3,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
        };
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(!d.failed(ip, 1, lim, t0));
        assert!(!d.failed(ip, 1, lim, t0), "a resend is not a new try");
        assert!(!d.failed(ip, 2, lim, t0));
        assert!(!d.failed(ip, 3, lim, t0));
        assert!(!d.banned(ip, t0));
        assert!(d.failed(ip, 4, lim, t0), "the fourth failure bans");
        assert!(d.banned(ip, t0 + Duration::from_secs(299)));
        assert!(!d.banned(ALICE.parse().unwrap(), t0), "others are not");
        assert!(!d.banned(ip, t0 + Duration::from_secs(301)));
        // failures spread wider than the window never ban
        let slow: IpAddr = "203.0.113.10".parse().unwrap();
        for i in 0..10 {
            assert!(!d.failed(slow, i + 1, lim, t0 + Duration::from_secs(61 * i)));
        }
        // An IPv6 source is its /64: guessing from fresh addresses of it bans them all.
        let v6 = |i: u32| -> IpAddr { format!("2001:db8:5:6::{i:x}").parse().unwrap() };
        for i in 1..=3 {
            assert!(!d.failed(v6(i), u64::from(i), lim, t0));
        }
        assert!(d.failed(v6(4), 4, lim, t0));
        assert!(d.banned(v6(999), t0), "the whole /64");
        assert!(!d.banned("2001:db8:5:7::1".parse().unwrap(), t0));
        // max 0: off
        let off = FailureLimits { max: 0, ..lim };
        for i in 0..100 {
            assert!(!d.failed(slow, i + 1, off, t0));
        }
    }

    #[test]
    fn hostile_nonces_never_panic() {
        let t0 = Instant::now();
        let mut d = DigestServer::new([4; 32], t0);
        for n in [
            "",
            ".",
            "..",
            "zz.zz.zz",
            "ffffffffffffffff.1.00",
            "1.2",
            "1.2.3.4",
        ] {
            let a = format!(
                "Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", \
                 nonce=\"{n}\", uri=\"sip:x@y\", response=\"00\", qop=auth, nc=zz, cnonce=\"c\"\r\n"
            );
            let v = verify(&mut d, &invite("sip:x@y", &a), ALICE, t0);
            assert!(
                matches!(v, Verdict::Missing | Verdict::Malformed),
                "{n}: {v:?}"
            );
        }
    }
}
