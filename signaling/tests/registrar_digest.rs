//! The registrar as a modern Digest server (RFC 7616, RFC 8760) and the aliases of its users,
//! through the B2BUA core in virtual time: SHA-256 offered before MD5, HA1 hashes in place of
//! passwords, captured answers refused when replayed, and calls and REGISTERs to an alias
//! (`sip:` and `tel:`) reaching the subscriber.

mod registrar_common;

use std::collections::HashMap;

use md5::{Digest as _, Md5};
use registrar_common::*;
use sha2::Sha256;
use signaling::digest_client::{Algorithm, Challenge, Credentials, DigestClient, RequestParts};
use signaling::message::Response;
use signaling::registrar::{RegistrarSettings, UserSecret};

const CONTACT: &str = "<sip:alice@192.168.1.20:5060>;expires=600";

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn settings(users: Vec<(&str, UserSecret)>, algorithms: Vec<Algorithm>) -> RegistrarSettings {
    RegistrarSettings {
        domains: vec!["example.com".into()],
        realm: "example.com".into(),
        min_expires: 60,
        max_expires: 3600,
        default_expires: 3600,
        users: users.into_iter().map(|(n, s)| (n.to_string(), s)).collect(),
        aliases: HashMap::new(),
        algorithms,
        keepalive: 0,
        authenticate_calls: true,
        auth_failures: Default::default(),
        offline: None,
        presence: None,
    }
}

fn both() -> Vec<Algorithm> {
    vec![Algorithm::Sha256, Algorithm::Md5]
}

fn client(user: &str, pw: &str) -> DigestClient {
    DigestClient::new(Credentials {
        username: user.into(),
        password: pw.into(),
        realm: None,
    })
}

const PARTS: RequestParts<'static> = RequestParts {
    method: "REGISTER",
    uri: "sip:example.com",
    body: b"",
};

/// The 401 to an unauthenticated REGISTER of `to_user`.
fn challenge(w: &mut World, to_user: &str, cseq: u32) -> Response {
    w.feed(PHONE_NAT, &register(to_user, cseq, CONTACT, ""));
    let ch = w.final_to(PHONE_NAT);
    assert_eq!(ch.status, 401);
    ch
}

/// The header line for the challenge of `alg` in `ch`, answered by `c`.
fn answer_with(c: &mut DigestClient, ch: &Response, alg: Algorithm) -> String {
    let chosen = Challenge::all_of(ch)
        .into_iter()
        .find(|x| x.algorithm == alg)
        .expect("challenge of that algorithm");
    let a = c.authorize(&chosen, &PARTS, "0a4f113b");
    format!("{}: {}\r\n", a.header, a.value)
}

fn send(w: &mut World, to_user: &str, cseq: u32, auth: &str) -> u16 {
    w.feed(PHONE_NAT, &register(to_user, cseq, CONTACT, auth));
    w.final_to(PHONE_NAT).status
}

#[test]
fn sha256_is_offered_first_and_accepted() {
    let mut w = world(settings(
        vec![("alice", UserSecret::password("s3cret"))],
        both(),
    ));
    let ch = challenge(&mut w, "alice", 1);
    let www = all(&ch, "WWW-Authenticate");
    assert_eq!(www.len(), 2, "{www:?}");
    assert!(www[0].contains("algorithm=SHA-256"), "{www:?}");
    assert!(www[1].contains("algorithm=MD5"), "{www:?}");
    assert_eq!(param_of(&www[0], "nonce"), param_of(&www[1], "nonce"));
    assert!(www.iter().all(|v| v.contains("qop=\"auth\"")));
    // A client picks the strongest challenge it supports (RFC 7616 §3.7).
    let a = client("alice", "s3cret")
        .answer(&ch, &PARTS, None, "0a4f113b")
        .expect("answerable");
    assert!(a.value.contains("algorithm=SHA-256"), "{}", a.value);
    let auth = format!("{}: {}\r\n", a.header, a.value);
    assert_eq!(send(&mut w, "alice", 2, &auth), 200);
    assert_eq!(w.core.registered_contacts(w.now), 1);
    // MD5 still works for phones that know nothing else.
    let ch = challenge(&mut w, "alice", 3);
    let md5 = answer_with(&mut client("alice", "s3cret"), &ch, Algorithm::Md5);
    assert_eq!(send(&mut w, "alice", 4, &md5), 200);
    // A wrong password under SHA-256: 401 again.
    let ch = challenge(&mut w, "alice", 5);
    let bad = answer_with(&mut client("alice", "guess"), &ch, Algorithm::Sha256);
    assert_eq!(send(&mut w, "alice", 6, &bad), 401);
}

#[test]
fn a_captured_sha256_answer_replayed_gets_401_and_changes_nothing() {
    let mut w = world(settings(
        vec![("alice", UserSecret::password("s3cret"))],
        both(),
    ));
    let ch = challenge(&mut w, "alice", 1);
    let auth = answer_with(&mut client("alice", "s3cret"), &ch, Algorithm::Sha256);
    assert_eq!(send(&mut w, "alice", 2, &auth), 200);
    // The same credentials on a new REGISTER (same nonce, same nc; a retransmission would
    // only get the first answer again): refused, from the phone's address...
    assert_eq!(send(&mut w, "alice", 10, &auth), 401);
    // ...and with the attacker's Contact from the attacker's address.
    let evil = register("alice", 3, "<sip:alice@203.0.113.66>", &auth);
    w.feed("203.0.113.66:5060", &evil);
    assert_eq!(w.final_to("203.0.113.66:5060").status, 401);
    w.feed(CARRIER, &invite("sip:alice@example.com", "c-1"));
    let inv = invites_to(&mut w, PHONE_NAT);
    assert_eq!(inv.len(), 1);
    assert_eq!(
        inv[0].uri, "sip:alice@192.168.1.20:5060",
        "binding unchanged"
    );
    assert!(invites_to(&mut w, "203.0.113.66:5060").is_empty());
}

#[test]
fn ha1_hashes_stand_in_for_passwords() {
    let md5 = hex(&Md5::digest(b"alice:example.com:s3cret"));
    let sha = hex(&Sha256::digest(b"bob:example.com:hunter2"));
    let users = vec![
        (
            "alice",
            UserSecret {
                ha1_md5: Some(md5),
                ..UserSecret::default()
            },
        ),
        (
            "bob",
            UserSecret {
                ha1_sha256: Some(sha),
                ..UserSecret::default()
            },
        ),
    ];
    let mut w = world(settings(users, both()));
    // alice has only an MD5 HA1: her SHA-256 answer cannot be checked, so it fails...
    let ch = challenge(&mut w, "alice", 1);
    let s = answer_with(&mut client("alice", "s3cret"), &ch, Algorithm::Sha256);
    assert_eq!(send(&mut w, "alice", 2, &s), 401);
    // ...and her MD5 answer succeeds.
    let ch = challenge(&mut w, "alice", 3);
    let m = answer_with(&mut client("alice", "s3cret"), &ch, Algorithm::Md5);
    assert_eq!(send(&mut w, "alice", 4, &m), 200);
    // bob has only a SHA-256 HA1: SHA-256 works, MD5 does not.
    let mut w = world(settings(
        vec![(
            "bob",
            UserSecret {
                ha1_sha256: Some(hex(&Sha256::digest(b"bob:example.com:hunter2"))),
                ..UserSecret::default()
            },
        )],
        both(),
    ));
    let reg = |w: &mut World, cseq: u32, alg: Algorithm, pw: &str| {
        w.feed(PHONE_NAT, &register("bob", cseq, CONTACT, ""));
        let ch = w.final_to(PHONE_NAT);
        let a = answer_with(&mut client("bob", pw), &ch, alg);
        send(w, "bob", cseq + 1, &a)
    };
    assert_eq!(reg(&mut w, 1, Algorithm::Md5, "hunter2"), 401);
    assert_eq!(reg(&mut w, 3, Algorithm::Sha256, "wrong"), 401);
    assert_eq!(reg(&mut w, 5, Algorithm::Sha256, "hunter2"), 200);
}

#[test]
fn only_the_configured_algorithms_are_offered_and_taken() {
    let mut w = world(settings(
        vec![("alice", UserSecret::password("s3cret"))],
        vec![Algorithm::Sha256],
    ));
    let ch = challenge(&mut w, "alice", 1);
    let www = all(&ch, "WWW-Authenticate");
    assert_eq!(www.len(), 1);
    assert!(www[0].contains("SHA-256"));
    // An MD5 answer to the same nonce is not one of ours: a new challenge.
    let mut forged = ch.clone();
    forged.headers.remove("WWW-Authenticate");
    forged
        .headers
        .push("WWW-Authenticate", www[0].replace("SHA-256", "MD5"));
    let m = answer_with(&mut client("alice", "s3cret"), &forged, Algorithm::Md5);
    assert_eq!(send(&mut w, "alice", 2, &m), 401);
    assert_eq!(w.core.registered_contacts(w.now), 0);
}

fn alias_settings() -> RegistrarSettings {
    let mut s = settings(
        vec![
            ("johndoe", UserSecret::password("jd-pw")),
            ("alice", UserSecret::password("s3cret")),
        ],
        both(),
    );
    s.aliases = HashMap::from([
        ("+554845678901".to_string(), "johndoe".to_string()),
        ("45678901".to_string(), "johndoe".to_string()),
    ]);
    s
}

#[test]
fn a_register_for_an_alias_binds_the_subscriber_and_calls_to_any_alias_reach_it() {
    let mut w = world(alias_settings());
    // Offline: the alias is a known user (480), not an unknown one (404).
    w.feed(CARRIER, &invite("sip:45678901@example.com", "c-0"));
    assert_eq!(w.final_to(CARRIER).status, 480);
    // REGISTER To: <sip:+554845678901@example.com>, authenticated as johndoe: binds johndoe.
    let ch = challenge(&mut w, "+554845678901", 1);
    let a = answer_with(&mut client("johndoe", "jd-pw"), &ch, Algorithm::Sha256);
    assert_eq!(send(&mut w, "+554845678901", 2, &a), 200);
    let regs = w.core.registrations(None, w.now);
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].aor, "johndoe@example.com");
    for (i, ruri) in [
        "sip:johndoe@example.com",
        "sip:45678901@example.com",
        "sip:+554845678901@example.com",
        "tel:+554845678901",
        "tel:+55-48-4567-8901",
    ]
    .iter()
    .enumerate()
    {
        w.feed(CARRIER, &invite(ruri, &format!("alias-{i}")));
        let inv = invites_to(&mut w, PHONE_NAT);
        assert_eq!(inv.len(), 1, "{ruri} reaches johndoe's contact");
        assert_eq!(inv[0].uri, "sip:alice@192.168.1.20:5060");
    }
    // A tel: number nobody has is the dial plan's (the PBX trunk).
    w.feed(CARRIER, &invite("tel:+15551234567", "other"));
    assert_eq!(invites_to(&mut w, PBX).len(), 1);
    assert!(invites_to(&mut w, PHONE_NAT).is_empty());
}

#[test]
fn an_alias_of_someone_else_is_403_and_an_alias_may_authenticate() {
    let mut w = world(alias_settings());
    // alice may not register johndoe's alias.
    let ch = challenge(&mut w, "45678901", 1);
    let a = answer_with(&mut client("alice", "s3cret"), &ch, Algorithm::Sha256);
    assert_eq!(send(&mut w, "45678901", 2, &a), 403);
    // A phone whose auth user is the number (HA1 over the alias and the password) is johndoe.
    let ch = challenge(&mut w, "45678901", 3);
    let a = answer_with(&mut client("45678901", "jd-pw"), &ch, Algorithm::Md5);
    assert_eq!(send(&mut w, "45678901", 4, &a), 200);
    let regs = w.core.registrations(None, w.now);
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].aor, "johndoe@example.com");
}
