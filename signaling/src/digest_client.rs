//! HTTP Digest, the client side: trunkline answering a carrier's challenge (RFC 3261 §22.2,
//! RFC 7616, RFC 8760). Sans-IO: the challenge response, the request being retried and a cnonce
//! drawn by the core's CSPRNG come in; an `Authorization` / `Proxy-Authorization` header value
//! goes out.
//!
//! * Algorithms MD5, SHA-256 and SHA-512-256, each also as `-sess`. Of several challenges for
//!   the same realm the strongest supported algorithm is answered (RFC 8760 §2.4 lets a server
//!   offer one challenge per algorithm; preference SHA-512-256 > SHA-256 > MD5, the order of
//!   RFC 7616 §3.7's registry and OpenSIPS/Kamailio's `uac`).
//! * `qop=auth` when offered (with `cnonce` and `nc`), `auth-int` only when it is the only qop
//!   offered (the body is hashed), and the RFC 2069 form when the challenge has no `qop`.
//! * A request is answered once per nonce: [`DigestClient::answer`] is given the nonce the
//!   challenged request already carried, and a challenge that brings the same nonce again, or a
//!   new nonce without `stale=true`, means the credentials were refused: no retry (a carrier that
//!   challenges forever gets one authenticated retry, never a loop).
//! * The password never leaves this type: it is not `Debug`, and only the digest is written.

use md5::{Digest as _, Md5};
use sha2::{Sha256, Sha512_256};

use crate::digest::digest_params;
use crate::message::Response;

/// A hash algorithm of Digest (RFC 7616 §3.2, RFC 8760 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Sha256,
    Sha512_256,
}

impl Algorithm {
    pub(crate) fn hash(self, parts: &[&[u8]]) -> String {
        fn run<D: md5::Digest>(mut h: D, parts: &[&[u8]]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    h.update(b":");
                }
                h.update(p);
            }
            hex(&h.finalize())
        }
        match self {
            Algorithm::Md5 => run(Md5::new(), parts),
            Algorithm::Sha256 => run(Sha256::new(), parts),
            Algorithm::Sha512_256 => run(Sha512_256::new(), parts),
        }
    }
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }
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

/// The quality of protection a challenge is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Qop {
    /// RFC 2069: no qop, no cnonce, no nc.
    None,
    Auth,
    AuthInt,
}

/// One `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    pub sess: bool,
    qop: Qop,
    pub stale: bool,
    /// From a 407 (`Proxy-Authenticate`, answered in `Proxy-Authorization`).
    pub proxy: bool,
}

impl Challenge {
    /// One challenge header value; `None` when it is not Digest, names an algorithm or only
    /// qop values we do not support, or lacks realm or nonce.
    pub fn parse(value: &str, proxy: bool) -> Option<Challenge> {
        let p = digest_params(value)?;
        let (algorithm, sess) = match p.get("algorithm").map(|a| a.to_ascii_uppercase()) {
            None => (Algorithm::Md5, false),
            Some(a) => {
                let (base, sess) = match a.strip_suffix("-SESS") {
                    Some(b) => (b.to_string(), true),
                    None => (a, false),
                };
                let alg = match base.as_str() {
                    "MD5" => Algorithm::Md5,
                    "SHA-256" => Algorithm::Sha256,
                    "SHA-512-256" => Algorithm::Sha512_256,
                    _ => return None,
                };
                (alg, sess)
            }
        };
        let qop = match p.get("qop") {
            None => Qop::None,
            Some(q) => {
                let offered = |v: &str| q.split(',').any(|t| t.trim().eq_ignore_ascii_case(v));
                if offered("auth") {
                    Qop::Auth
                } else if offered("auth-int") {
                    Qop::AuthInt
                } else {
                    return None;
                }
            }
        };
        // RFC 7616 §3.3: a -sess algorithm needs the cnonce, which only a qop answer carries.
        if sess && qop == Qop::None {
            return None;
        }
        Some(Challenge {
            realm: p.get("realm")?.clone(),
            nonce: p.get("nonce").filter(|n| !n.is_empty())?.clone(),
            opaque: p.get("opaque").cloned(),
            algorithm,
            sess,
            qop,
            stale: p
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            proxy,
        })
    }

    /// The challenges of a 401 or 407 response, in the order they came.
    pub fn all_of(resp: &Response) -> Vec<Challenge> {
        let (name, proxy) = if resp.status == 407 {
            ("Proxy-Authenticate", true)
        } else {
            ("WWW-Authenticate", false)
        };
        resp.headers
            .get_all(name)
            .filter_map(|v| Challenge::parse(v, proxy))
            .collect()
    }
}

/// A trunk's credentials (`auth: { username, password, realm }`). Deliberately not `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Answer only challenges of this realm; `None`: any realm.
    pub realm: Option<String>,
}

/// The request being authorized.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The Request-URI as sent (the digest `uri`).
    pub uri: &'a str,
    pub body: &'a [u8],
}

/// Why a challenge is not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No challenge we can answer (other scheme or realm, unsupported algorithm, malformed).
    NoUsableChallenge,
    /// The request already carried credentials for this nonce, or the new nonce is not marked
    /// stale: the credentials were refused.
    CredentialsRejected,
}

/// An answer to a challenge: the header to add to the retried request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// `Authorization` or `Proxy-Authorization`.
    pub header: &'static str,
    pub value: String,
    /// The nonce answered (give it back to [`DigestClient::answer`] if this request is
    /// challenged again).
    pub nonce: String,
}

/// The client state of one set of credentials: the nonce last answered and its nonce-count.
pub struct DigestClient {
    cred: Credentials,
    /// (realm, nonce, nc) of the last answer, so a reused nonce counts up (RFC 7616 §3.4).
    last: Option<(String, String, u32)>,
}

impl DigestClient {
    pub fn new(cred: Credentials) -> DigestClient {
        DigestClient { cred, last: None }
    }

    pub fn username(&self) -> &str {
        &self.cred.username
    }

    /// Answer the challenge in `resp` (a 401 or 407) for `req`. `sent_nonce` is the nonce the
    /// challenged request already answered (`None` when it carried no credentials). `cnonce`
    /// is a fresh random token from the caller's CSPRNG.
    pub fn answer(
        &mut self,
        resp: &Response,
        req: &RequestParts<'_>,
        sent_nonce: Option<&str>,
        cnonce: &str,
    ) -> Result<Authorization, Refused> {
        let ch = self
            .pick(Challenge::all_of(resp))
            .ok_or(Refused::NoUsableChallenge)?;
        if let Some(sent) = sent_nonce {
            //= rfc7616#section-3.3
            //# stale: A case-insensitive flag indicating that the previous request from the
            //# client was rejected because the nonce value was stale.
            // Anything else after credentials means they were wrong: give up, never loop.
            if sent == ch.nonce || !ch.stale {
                return Err(Refused::CredentialsRejected);
            }
        }
        Ok(self.authorize(&ch, req, cnonce))
    }

    /// The strongest challenge of an acceptable realm.
    fn pick(&self, challenges: Vec<Challenge>) -> Option<Challenge> {
        let mut best: Option<Challenge> = None;
        for c in challenges {
            if self.cred.realm.as_ref().is_some_and(|r| *r != c.realm) {
                continue;
            }
            if best.as_ref().is_none_or(|b| c.algorithm > b.algorithm) {
                best = Some(c);
            }
        }
        best
    }

    /// Credentials for `ch` (RFC 7616 §3.4.1-3.4.3; RFC 2617 §3.2.2 for the no-qop form).
    pub fn authorize(
        &mut self,
        ch: &Challenge,
        req: &RequestParts<'_>,
        cnonce: &str,
    ) -> Authorization {
        let nc = match &self.last {
            Some((realm, nonce, nc)) if *realm == ch.realm && *nonce == ch.nonce => nc + 1,
            _ => 1,
        };
        self.last = Some((ch.realm.clone(), ch.nonce.clone(), nc));
        let alg = ch.algorithm;
        let user = self.cred.username.as_bytes();
        let mut ha1 = alg.hash(&[user, ch.realm.as_bytes(), self.cred.password.as_bytes()]);
        if ch.sess {
            ha1 = alg.hash(&[ha1.as_bytes(), ch.nonce.as_bytes(), cnonce.as_bytes()]);
        }
        let ha2 = match ch.qop {
            Qop::AuthInt => {
                let body = alg.hash(&[req.body]);
                alg.hash(&[req.method.as_bytes(), req.uri.as_bytes(), body.as_bytes()])
            }
            _ => alg.hash(&[req.method.as_bytes(), req.uri.as_bytes()]),
        };
        let nc_text = format!("{nc:08x}");
        let response = match ch.qop {
            Qop::None => alg.hash(&[ha1.as_bytes(), ch.nonce.as_bytes(), ha2.as_bytes()]),
            q => alg.hash(&[
                ha1.as_bytes(),
                ch.nonce.as_bytes(),
                nc_text.as_bytes(),
                cnonce.as_bytes(),
                if q == Qop::Auth { b"auth" } else { b"auth-int" },
                ha2.as_bytes(),
            ]),
        };
        let mut v = String::with_capacity(256);
        v.push_str("Digest username=");
        push_quoted(&mut v, &self.cred.username);
        v.push_str(", realm=");
        push_quoted(&mut v, &ch.realm);
        v.push_str(", nonce=");
        push_quoted(&mut v, &ch.nonce);
        v.push_str(", uri=");
        push_quoted(&mut v, req.uri);
        v.push_str(", response=\"");
        v.push_str(&response);
        v.push_str("\", algorithm=");
        v.push_str(alg.token());
        if ch.sess {
            v.push_str("-sess");
        }
        if ch.qop != Qop::None {
            v.push_str(", cnonce=");
            push_quoted(&mut v, cnonce);
            v.push_str(if ch.qop == Qop::Auth {
                ", qop=auth, nc="
            } else {
                ", qop=auth-int, nc="
            });
            v.push_str(&nc_text);
        }
        if let Some(o) = &ch.opaque {
            v.push_str(", opaque=");
            push_quoted(&mut v, o);
        }
        Authorization {
            header: if ch.proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            },
            value: v,
            nonce: ch.nonce.clone(),
        }
    }
}

/// A quoted-string (RFC 3261 §25.1): `"` and `\` escaped.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        // CR/LF cannot be in a header value: dropped (a configured name never has them; a
        // challenge's realm or nonce with them is hostile).
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use crate::SipMessage;

    fn response(status: u16, headers: &[&str]) -> Response {
        let mut text = format!(
            "SIP/2.0 {status} Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        );
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match parse(text.as_bytes()) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    fn client(realm: Option<&str>) -> DigestClient {
        DigestClient::new(Credentials {
            username: "Mufasa".into(),
            password: "Circle of Life".into(),
            realm: realm.map(str::to_string),
        })
    }

    fn param<'a>(v: &'a str, name: &str) -> &'a str {
        let start = v.find(&format!("{name}=")).expect(name) + name.len() + 1;
        let rest = &v[start..];
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        let end = rest.find(['"', ',']).unwrap_or(rest.len());
        &rest[..end]
    }

    const GET: RequestParts<'static> = RequestParts {
        method: "GET",
        uri: "/dir/index.html",
        body: b"",
    };

    /// RFC 7616 §3.9.1's example: the MD5 and the SHA-256 answer for the same request.
    #[test]
    fn rfc7616_examples() {
        let challenge = |alg: &str| {
            format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                 algorithm={alg}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            )
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let cases = [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ];
        for (alg, expected) in cases {
            let resp = response(401, &[&format!("WWW-Authenticate: {}", challenge(alg))]);
            let mut c = client(None);
            let a = c.answer(&resp, &GET, None, cnonce).expect("answered");
            assert_eq!(a.header, "Authorization");
            assert_eq!(param(&a.value, "response"), expected, "{alg}");
            assert_eq!(param(&a.value, "nc"), "00000001");
            assert_eq!(param(&a.value, "qop"), "auth");
            assert_eq!(
                param(&a.value, "opaque"),
                "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
            );
        }
    }

    /// RFC 2617 §3.5's example (qop=auth, MD5): the answer the RFC gives.
    #[test]
    fn rfc2617_example() {
        let resp = response(
            401,
            &[
                "WWW-Authenticate: Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
               nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
               opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
            ],
        );
        // RFC 2617 spells the password "Circle Of Life" (RFC 7616: "Circle of Life").
        let mut c = DigestClient::new(Credentials {
            username: "Mufasa".into(),
            password: "Circle Of Life".into(),
            realm: None,
        });
        let a = c.answer(&resp, &GET, None, "0a4f113b").expect("answered");
        assert_eq!(
            param(&a.value, "response"),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn strongest_algorithm_of_the_realm_is_answered_and_407_uses_proxy_authorization() {
        let resp = response(
            407,
            &[
                "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
                "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"",
                "Proxy-Authenticate: Digest realm=\"other\", nonce=\"n3\", algorithm=SHA-512-256, qop=\"auth\"",
                "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n4\", algorithm=SHA3-256, qop=\"auth\"",
            ],
        );
        let mut c = client(Some("carrier"));
        let a = c.answer(&resp, &GET, None, "cn").expect("answered");
        assert_eq!(a.header, "Proxy-Authorization");
        assert_eq!(a.nonce, "n2");
        assert!(a.value.contains("algorithm=SHA-256"));
        // Any realm: the strongest overall.
        let mut any = client(None);
        assert_eq!(any.answer(&resp, &GET, None, "cn").unwrap().nonce, "n3");
        // A realm nobody challenged for: nothing to answer.
        let mut wrong = client(Some("elsewhere"));
        assert_eq!(
            wrong.answer(&resp, &GET, None, "cn"),
            Err(Refused::NoUsableChallenge)
        );
    }

    #[test]
    fn a_request_is_answered_once_per_nonce_and_only_stale_gets_a_second_try() {
        let ch = |nonce: &str, stale: bool| {
            response(
                401,
                &[&format!(
                    "WWW-Authenticate: Digest realm=\"r\", nonce=\"{nonce}\", qop=auth{}",
                    if stale { ", stale=TRUE" } else { "" }
                )],
            )
        };
        let mut c = client(None);
        let first = c.answer(&ch("a", false), &GET, None, "c1").unwrap();
        // The same nonce again: refused credentials, no loop.
        assert_eq!(
            c.answer(&ch("a", false), &GET, Some(&first.nonce), "c2"),
            Err(Refused::CredentialsRejected)
        );
        // A new nonce without stale: refused as well.
        assert_eq!(
            c.answer(&ch("b", false), &GET, Some(&first.nonce), "c2"),
            Err(Refused::CredentialsRejected)
        );
        // stale=true with a new nonce: one more try.
        let second = c
            .answer(&ch("b", true), &GET, Some(&first.nonce), "c2")
            .unwrap();
        assert_eq!(second.nonce, "b");
        // stale=true but the same nonce: refused.
        assert_eq!(
            c.answer(&ch("b", true), &GET, Some("b"), "c3"),
            Err(Refused::CredentialsRejected)
        );
    }

    #[test]
    fn a_reused_nonce_counts_up() {
        let resp = response(
            401,
            &["WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=auth"],
        );
        let mut c = client(None);
        let ch = Challenge::all_of(&resp).remove(0);
        assert_eq!(param(&c.authorize(&ch, &GET, "x").value, "nc"), "00000001");
        assert_eq!(param(&c.authorize(&ch, &GET, "y").value, "nc"), "00000002");
    }

    #[test]
    fn no_qop_sess_and_auth_int() {
        // RFC 2069 form: no cnonce, no nc.
        let plain = response(401, &["WWW-Authenticate: Digest realm=\"r\", nonce=\"n\""]);
        let mut c = client(None);
        let a = c.answer(&plain, &GET, None, "x").unwrap();
        assert!(!a.value.contains("cnonce") && !a.value.contains("nc="));
        let expect = Algorithm::Md5.hash(&[
            Algorithm::Md5
                .hash(&[b"Mufasa", b"r", b"Circle of Life"])
                .as_bytes(),
            b"n",
            Algorithm::Md5
                .hash(&[b"GET", b"/dir/index.html"])
                .as_bytes(),
        ]);
        assert_eq!(param(&a.value, "response"), expect);
        // -sess without qop cannot be answered (no cnonce to send).
        let sess = response(
            401,
            &["WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess"],
        );
        assert_eq!(
            c.answer(&sess, &GET, None, "x"),
            Err(Refused::NoUsableChallenge)
        );
        // auth-int only: the body is in the digest.
        let int = response(
            401,
            &["WWW-Authenticate: Digest realm=\"r\", nonce=\"m\", qop=\"auth-int\", algorithm=SHA-256-sess"],
        );
        let with_body = RequestParts {
            body: b"v=0\r\n",
            ..GET
        };
        let a = c.answer(&int, &with_body, None, "cn").unwrap();
        assert!(a.value.contains("qop=auth-int") && a.value.contains("algorithm=SHA-256-sess"));
        let b = client(None).answer(&int, &GET, None, "cn").unwrap();
        assert_ne!(param(&a.value, "response"), param(&b.value, "response"));
    }

    #[test]
    fn hostile_challenges_never_panic_or_inject() {
        let values = [
            "Digest",
            "Digest ",
            "Digest realm",
            "Digest realm=\"unterminated",
            "Digest realm=\"r\", nonce=\"\"",
            "Digest nonce=\"n\"",
            "Basic realm=\"r\"",
            "Digest realm=\"r\\\"\", nonce=\"n\", qop=\"bogus\"",
            "Digest realm=r, nonce=n, algorithm=",
        ];
        for v in values {
            let resp = response(401, &[&format!("WWW-Authenticate: {v}")]);
            assert_eq!(
                client(None).answer(&resp, &GET, None, "c"),
                Err(Refused::NoUsableChallenge),
                "{v}"
            );
        }
        // Quotes in the realm are escaped in the answer.
        let resp = response(
            401,
            &["WWW-Authenticate: Digest realm=\"a\\\"b\", nonce=\"n\", qop=auth"],
        );
        let a = client(None).answer(&resp, &GET, None, "c").unwrap();
        assert!(a.value.contains("realm=\"a\\\"b\""), "{}", a.value);
    }
}
