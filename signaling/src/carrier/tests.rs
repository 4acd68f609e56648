use std::time::{Duration, Instant};

use super::register::{FIRST_BACKOFF, MAX_BACKOFF};
use super::*;
use crate::digest_client::Credentials;
use crate::message::{Request, Response};
use crate::parse::parse;
use crate::SipMessage;

fn settings(auth: bool) -> RegisterSettings {
    RegisterSettings {
        user: "acme".into(),
        domain: "sip.carrier.net".into(),
        expires: Duration::from_secs(600),
        contact_user: "trunk1".into(),
        auth: auth.then(|| Credentials {
            username: "acme".into(),
            password: "pw".into(),
            realm: None,
        }),
    }
}

fn local() -> Local<'static> {
    Local {
        via: "SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKabc;rport".into(),
        contact_host: "192.0.2.5:5060",
        transport_param: None,
    }
}

/// The carrier's response to `req` with `extra` header lines.
fn answer(req: &Request, status: u16, extra: &str) -> Response {
    let mut text = format!("SIP/2.0 {status} Whatever\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        text.push_str(&format!("{name}: {}\r\n", req.headers.get(name).unwrap()));
    }
    text.push_str(extra);
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse(text.as_bytes()) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("{other:?}"),
    }
}

fn via() -> String {
    "SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKnew;rport".into()
}

#[test]
fn registers_then_refreshes_at_half_the_grant_with_the_same_call_id() {
    let t0 = Instant::now();
    let mut r = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
    assert_eq!(r.poll_timeout(), Some(t0));
    let req = r.poll_request(t0, local()).expect("due at start");
    assert_eq!(req.uri, "sip:sip.carrier.net");
    assert_eq!(req.headers.get("To"), Some("<sip:acme@sip.carrier.net>"));
    assert_eq!(
        req.headers.get("From"),
        Some("<sip:acme@sip.carrier.net>;tag=ftag")
    );
    assert_eq!(
        req.headers.get("Contact"),
        Some("<sip:trunk1@192.0.2.5:5060>")
    );
    assert_eq!(req.headers.get("Expires"), Some("600"));
    assert_eq!(req.headers.get("CSeq"), Some("1 REGISTER"));
    // Nothing more while pending.
    assert!(r.poll_request(t0, local()).is_none());
    assert_eq!(r.poll_timeout(), None);
    // The carrier grants 120 s on our Contact (the Expires header says otherwise: the Contact wins).
    let ok = answer(
        &req,
        200,
        "Contact: <sip:other@10.0.0.1>;expires=999, <sip:trunk1@192.0.2.5:5060>;expires=120\r\nExpires: 600\r\n",
    );
    let step = r.on_response(&ok, t0, via(), "c");
    assert!(matches!(step, Step::Done(RegEvent::Registered(d)) if d == Duration::from_secs(120)));
    assert!(r.registered(t0 + Duration::from_secs(119)));
    assert!(!r.registered(t0 + Duration::from_secs(120)));
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    assert!(r
        .poll_request(t0 + Duration::from_secs(59), local())
        .is_none());
    let again = r
        .poll_request(t0 + Duration::from_secs(60), local())
        .expect("refresh");
    assert_eq!(again.headers.get("Call-ID"), Some("cid"));
    assert_eq!(again.headers.get("CSeq"), Some("2 REGISTER"));
}

#[test]
fn a_challenge_is_answered_once_and_a_second_one_backs_off() {
    let t0 = Instant::now();
    let mut r = Registration::new(settings(true), "cid".into(), "ftag".into(), t0);
    let req = r.poll_request(t0, local()).unwrap();
    let ch = "WWW-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\"\r\n";
    let Step::Send(authed) = r.on_response(&answer(&req, 401, ch), t0, via(), "cn") else {
        panic!("no retry with credentials");
    };
    assert_eq!(authed.headers.get("CSeq"), Some("2 REGISTER"));
    assert_eq!(authed.headers.get("Call-ID"), Some("cid"));
    assert_eq!(authed.headers.get("Via"), Some(via().as_str()));
    let auth = authed.headers.get("Authorization").expect("credentials");
    assert!(auth.contains("username=\"acme\"") && auth.contains("uri=\"sip:sip.carrier.net\""));
    assert!(!auth.contains("pw"));
    // Challenged again with the same nonce: the credentials are wrong; back off, no loop.
    let step = r.on_response(&answer(&authed, 401, ch), t0, via(), "cn2");
    assert!(matches!(step, Step::Done(RegEvent::Failed(Some(401)))));
    assert_eq!(r.poll_timeout(), Some(t0 + FIRST_BACKOFF));
    assert!(!r.registered(t0));
}

#[test]
fn without_credentials_a_challenge_is_a_failure() {
    let t0 = Instant::now();
    let mut r = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
    let req = r.poll_request(t0, local()).unwrap();
    let ch = "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n1\"\r\n";
    let step = r.on_response(&answer(&req, 407, ch), t0, via(), "cn");
    assert!(matches!(step, Step::Done(RegEvent::Failed(Some(407)))));
}

#[test]
fn interval_too_brief_raises_the_expiry_once() {
    let t0 = Instant::now();
    let mut r = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
    let req = r.poll_request(t0, local()).unwrap();
    let Step::Send(longer) =
        r.on_response(&answer(&req, 423, "Min-Expires: 1800\r\n"), t0, via(), "c")
    else {
        panic!("no retry after 423");
    };
    assert_eq!(longer.headers.get("Expires"), Some("1800"));
    // A second 423 for the same attempt is a failure (the carrier moved the goal).
    let step = r.on_response(
        &answer(&longer, 423, "Min-Expires: 3600\r\n"),
        t0,
        via(),
        "c",
    );
    assert!(matches!(step, Step::Done(RegEvent::Failed(Some(423)))));
    // 423 without a usable Min-Expires: a failure at once.
    for bad in ["Min-Expires: soon\r\n", "", "Min-Expires: 99999999\r\n"] {
        let mut r2 = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
        let req2 = r2.poll_request(t0, local()).unwrap();
        let step = r2.on_response(&answer(&req2, 423, bad), t0, via(), "c");
        assert!(
            matches!(step, Step::Done(RegEvent::Failed(Some(423)))),
            "{bad:?}"
        );
    }
}

#[test]
fn failures_back_off_exponentially_to_five_minutes() {
    let t0 = Instant::now();
    let mut r = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        r.poll_request(now, local()).expect("due");
        assert_eq!(r.on_failure(now), RegEvent::Failed(None));
        let next = r.poll_timeout().unwrap();
        waits.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(MAX_BACKOFF.as_secs(), 300);
    // A success resets it.
    let req = r.poll_request(now, local()).unwrap();
    r.on_response(&answer(&req, 200, ""), now, via(), "c");
    let req = r
        .poll_request(now + Duration::from_secs(300), local())
        .unwrap();
    r.on_response(&answer(&req, 503, ""), now, via(), "c");
    assert_eq!(r.poll_timeout(), Some(now + FIRST_BACKOFF));
}

#[test]
fn unregister_sends_expires_zero_only_when_registered() {
    let t0 = Instant::now();
    let mut r = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
    let req = r.poll_request(t0, local()).unwrap();
    r.on_response(&answer(&req, 200, "Expires: 60\r\n"), t0, via(), "c");
    let un = r.unregister(t0, local()).expect("un-REGISTER");
    assert_eq!(un.headers.get("Expires"), Some("0"));
    assert!(!r.registered(t0));
    let step = r.on_response(&answer(&un, 200, ""), t0, via(), "c");
    assert!(matches!(step, Step::Done(RegEvent::Unregistered)));
    assert_eq!(r.poll_timeout(), None);
    // Not registered: nothing to send, and it stays stopped.
    let mut idle = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
    assert!(idle.unregister(t0, local()).is_none());
    assert!(idle.poll_request(t0, local()).is_none());
}

#[test]
fn a_response_when_nothing_is_pending_is_ignored() {
    let t0 = Instant::now();
    let mut r = Registration::new(settings(false), "cid".into(), "ftag".into(), t0);
    let req = r.poll_request(t0, local()).unwrap();
    r.on_response(&answer(&req, 200, ""), t0, via(), "c");
    assert!(matches!(
        r.on_response(&answer(&req, 200, ""), t0, via(), "c"),
        Step::Ignore
    ));
    assert!(matches!(
        r.on_response(&answer(&req, 100, ""), t0, via(), "c"),
        Step::Ignore
    ));
}

fn probe_settings() -> ProbeSettings {
    ProbeSettings {
        interval: Duration::from_secs(5),
        down_after: 3,
        up_after: 2,
    }
}

fn options() -> Request {
    options_request(
        "sip:192.0.2.9:5060".into(),
        via(),
        "<sip:probe@192.0.2.5>;tag=t".into(),
        "cid".into(),
    )
}

#[test]
fn probes_mark_a_trunk_down_after_misses_and_up_after_answers() {
    let t0 = Instant::now();
    let mut p = Probe::new(probe_settings(), t0);
    assert!(p.is_up());
    let step = Duration::from_secs(5);
    let mut now = t0;
    let mut changes = Vec::new();
    // Three probes time out.
    for _ in 0..3 {
        let (serial, req, change) = p.poll_request(now, options).expect("due");
        assert_eq!(req.headers.get("CSeq"), Some("1 OPTIONS"));
        changes.extend(change);
        changes.extend(p.on_failure(serial));
        assert!(p.poll_request(now, options).is_none(), "one per interval");
        now += step;
    }
    assert_eq!(changes, [false]);
    assert!(!p.is_up());
    // One answer is not enough; two are.
    let (s1, _, _) = p.poll_request(now, options).unwrap();
    assert_eq!(p.on_answer(s1), None);
    now += step;
    let (s2, _, _) = p.poll_request(now, options).unwrap();
    assert_eq!(p.on_answer(s2), Some(true));
    assert!(p.is_up());
    // A late answer to an old probe counts for nothing.
    assert_eq!(p.on_answer(s1), None);
}

#[test]
fn an_unanswered_probe_is_a_miss_when_the_next_is_due() {
    let t0 = Instant::now();
    let mut p = Probe::new(probe_settings(), t0);
    let mut now = t0;
    let mut change = None;
    for _ in 0..4 {
        let (_, _, c) = p.poll_request(now, options).unwrap();
        change = change.or(c);
        now += Duration::from_secs(5);
    }
    assert_eq!(change, Some(false));
    assert!(!p.is_up());
}
