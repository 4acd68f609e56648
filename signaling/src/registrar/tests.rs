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
        users: [("alice".to_string(), UserSecret::password("s3cret"))].into(),
        aliases: HashMap::new(),
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        keepalive: 0,
        authenticate_calls: true,
        auth_failures: FailureLimits::default(),
        offline: None,
        presence: None,
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
    s.users.insert("mallory".into(), UserSecret::password("pw"));
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
