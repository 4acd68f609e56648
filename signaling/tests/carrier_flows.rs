//! trunkline's own requests to its trunks, in virtual time: registration with a carrier
//! (challenged, refreshed, timed out, un-REGISTERed) and OPTIONS health probes (down after
//! misses, up after answers), as the core sends them and reports them to the policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use signaling::b2bua::{
    make_response, CallEvent, CallRef, CarrierTrunk, CoreConfig, Leg, MediaRefusal, Policy,
    RouteOutcome, StaticPolicy, Target,
};
use signaling::carrier::{ProbeSettings, RegEvent, RegisterSettings};
use signaling::digest_client::Credentials;
use signaling::message::{Request, SipMessage};
use signaling::testing::peer;
use signaling::Peer;

const ME: &str = "127.0.0.1:5060";
const CARRIER: &str = "127.0.0.1:5090";
const PBX: &str = "127.0.0.1:5080";

/// The static policy plus a carrier set.
struct CarrierPolicy {
    inner: StaticPolicy,
    set: Option<Arc<Vec<CarrierTrunk>>>,
    creds: Option<Credentials>,
}

impl Policy for CarrierPolicy {
    fn route(&mut self, r: &Request, f: Peer, t: &str, u: &str, now: Instant) -> RouteOutcome {
        self.inner.route(r, f, t, u, now)
    }
    fn media_offer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        s: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, MediaRefusal> {
        self.inner.media_offer(c, l, s, now)
    }
    fn media_answer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        s: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, String> {
        self.inner.media_answer(c, l, s, now)
    }
    fn media_release(&mut self, c: CallRef<'_>, now: Instant) {
        self.inner.media_release(c, now)
    }
    fn event(&mut self, ev: CallEvent, now: Instant) {
        self.inner.event(ev, now)
    }
    fn carriers(&mut self, _now: Instant) -> Option<Arc<Vec<CarrierTrunk>>> {
        self.set.clone()
    }
    fn credentials(&mut self, trunk: &str, _now: Instant) -> Option<Credentials> {
        self.creds.clone().filter(|_| trunk == "carrier")
    }
}

type World = signaling::testing::World<CarrierPolicy>;

fn world(trunks: Vec<CarrierTrunk>) -> World {
    let cfg = CoreConfig {
        local_udp: Some(ME.parse().unwrap()),
        ..CoreConfig::default()
    };
    let mut w = World::new(
        cfg,
        CarrierPolicy {
            inner: StaticPolicy {
                targets: Vec::new(),
                events: Vec::new(),
                released: Vec::new(),
            },
            set: Some(Arc::new(trunks)),
            creds: None,
        },
    );
    let now = w.now;
    w.core.sync_carriers(now, &mut w.policy);
    w.drain();
    w
}

fn registering(auth: bool) -> CarrierTrunk {
    CarrierTrunk {
        name: "carrier".into(),
        peer: peer(CARRIER),
        host: CARRIER.into(),
        register: Some(RegisterSettings {
            user: "acme".into(),
            domain: "carrier.test".into(),
            expires: Duration::from_secs(600),
            contact_user: "trunk1".into(),
            auth: auth.then(|| Credentials {
                username: "acme".into(),
                password: "secret".into(),
                realm: Some("carrier.test".into()),
            }),
        }),
        probe: None,
    }
}

fn trunk_events(w: &mut World) -> Vec<CallEvent> {
    let evs = std::mem::take(&mut w.policy.inner.events);
    evs.into_iter()
        .filter(|e| {
            matches!(
                e,
                CallEvent::TrunkRegistration { .. } | CallEvent::TrunkProbe { .. }
            )
        })
        .collect()
}

fn reply(w: &mut World, to: &str, req: &Request, status: u16, extra: &[(&str, &str)]) {
    let mut r = make_response(req, status, "X", Some("regtag"));
    for (n, v) in extra {
        r.headers.push(n, *v);
    }
    w.feed_msg(to, &SipMessage::Response(r));
}

#[test]
fn registration_answers_the_challenge_then_refreshes_at_half_the_grant() {
    let mut w = world(vec![registering(true)]);
    let first = w.take_request(CARRIER, "REGISTER");
    assert_eq!(first.uri, "sip:carrier.test");
    assert_eq!(
        first.headers.get("Contact"),
        Some("<sip:trunk1@127.0.0.1:5060>")
    );
    assert!(first.headers.get("Authorization").is_none());
    let challenge = "Digest realm=\"carrier.test\", nonce=\"abc\", qop=\"auth\", algorithm=SHA-256";
    reply(
        &mut w,
        CARRIER,
        &first,
        401,
        &[("WWW-Authenticate", challenge)],
    );
    let second = w.take_request(CARRIER, "REGISTER");
    assert_eq!(second.headers.get("CSeq"), Some("2 REGISTER"));
    assert_eq!(second.headers.get("Call-ID"), first.headers.get("Call-ID"));
    assert_ne!(second.headers.get("Via"), first.headers.get("Via"));
    let auth = second.headers.get("Authorization").expect("credentials");
    assert!(
        auth.contains("algorithm=SHA-256") && auth.contains("nc=00000001"),
        "{auth}"
    );
    assert!(!auth.contains("secret"));
    assert!(!w.core.carrier_registered("carrier", w.now));
    reply(&mut w, CARRIER, &second, 200, &[("Expires", "60")]);
    assert!(w.core.carrier_registered("carrier", w.now));
    assert_eq!(
        trunk_events(&mut w),
        [CallEvent::TrunkRegistration {
            trunk: "carrier".into(),
            event: RegEvent::Registered(Duration::from_secs(60)),
        }]
    );
    // The refresh goes out at half the grant, not before.
    w.advance(Duration::from_secs(29));
    assert!(w.take_to(CARRIER).is_empty());
    w.advance(Duration::from_secs(1));
    let refresh = w.take_request(CARRIER, "REGISTER");
    assert_eq!(refresh.headers.get("CSeq"), Some("3 REGISTER"));
}

#[test]
fn an_unanswered_registration_fails_and_is_retried_after_a_back_off() {
    let mut w = world(vec![registering(false)]);
    w.take_request(CARRIER, "REGISTER");
    // UDP retransmissions until Timer F (64·T1 = 32 s), then a timeout.
    w.advance(Duration::from_secs(33));
    let resent = w.take_to(CARRIER);
    assert!(resent.len() > 3, "retransmitted: {}", resent.len());
    assert_eq!(
        trunk_events(&mut w),
        [CallEvent::TrunkRegistration {
            trunk: "carrier".into(),
            event: RegEvent::Failed(None),
        }]
    );
    // Retried 10 s after the failure (Timer F fired at 32 s).
    w.advance(Duration::from_secs(8));
    assert!(w.take_to(CARRIER).is_empty());
    w.advance(Duration::from_secs(1));
    let again = w.take_request(CARRIER, "REGISTER");
    assert_eq!(again.headers.get("CSeq"), Some("2 REGISTER"));
}

#[test]
fn wrong_credentials_get_exactly_one_authenticated_retry() {
    let mut w = world(vec![registering(true)]);
    let first = w.take_request(CARRIER, "REGISTER");
    let ch = "Digest realm=\"carrier.test\", nonce=\"n1\", qop=\"auth\"";
    reply(&mut w, CARRIER, &first, 401, &[("WWW-Authenticate", ch)]);
    let second = w.take_request(CARRIER, "REGISTER");
    let ch2 = "Digest realm=\"carrier.test\", nonce=\"n2\", qop=\"auth\"";
    reply(&mut w, CARRIER, &second, 401, &[("WWW-Authenticate", ch2)]);
    assert!(w.take_to(CARRIER).is_empty(), "no third REGISTER");
    assert_eq!(
        trunk_events(&mut w),
        [CallEvent::TrunkRegistration {
            trunk: "carrier".into(),
            event: RegEvent::Failed(Some(401)),
        }]
    );
}

#[test]
fn shutdown_unregisters_with_expires_zero() {
    let mut w = world(vec![registering(false)]);
    let first = w.take_request(CARRIER, "REGISTER");
    reply(&mut w, CARRIER, &first, 200, &[]);
    let now = w.now;
    assert_eq!(w.core.unregister_carriers(now, &mut w.policy), 1);
    w.drain();
    let un = w.take_request(CARRIER, "REGISTER");
    assert_eq!(un.headers.get("Expires"), Some("0"));
    assert_eq!(un.headers.get("Call-ID"), first.headers.get("Call-ID"));
    assert!(!w.core.carrier_registered("carrier", w.now));
}

fn probed(name: &str, addr: &str) -> CarrierTrunk {
    CarrierTrunk {
        name: name.into(),
        peer: peer(addr),
        host: addr.into(),
        register: None,
        probe: Some(ProbeSettings {
            interval: Duration::from_secs(5),
            down_after: 2,
            up_after: 1,
        }),
    }
}

/// The newest probe sent to the PBX (older, unanswered ones are still being retransmitted).
fn newest_probe(w: &mut World) -> Request {
    let probes: Vec<Request> = w
        .take_to(PBX)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "OPTIONS" => Some(r),
            _ => None,
        })
        .collect();
    let newest = probes
        .last()
        .expect("a probe")
        .headers
        .get("Call-ID")
        .map(str::to_string);
    probes
        .into_iter()
        .find(|r| r.headers.get("Call-ID").map(str::to_string) == newest)
        .expect("a probe")
}

#[test]
fn probes_report_a_silent_trunk_down_and_any_answer_up() {
    let mut w = world(vec![probed("pbx", PBX)]);
    let p1 = w.take_request(PBX, "OPTIONS");
    assert_eq!(p1.uri, format!("sip:{PBX}"));
    // Unanswered: the second probe marks the first missed; the third the second: down.
    w.advance(Duration::from_secs(5));
    w.advance(Duration::from_secs(5));
    assert_eq!(
        trunk_events(&mut w),
        [CallEvent::TrunkProbe {
            trunk: "pbx".into(),
            up: false,
        }]
    );
    // A 404 to the next probe is an answer: up again.
    w.advance(Duration::from_secs(5));
    let p = newest_probe(&mut w);
    reply(&mut w, PBX, &p, 404, &[]);
    assert_eq!(
        trunk_events(&mut w),
        [CallEvent::TrunkProbe {
            trunk: "pbx".into(),
            up: true,
        }]
    );
    // An answered trunk stays up without further events.
    for _ in 0..3 {
        w.advance(Duration::from_secs(5));
        let p = newest_probe(&mut w);
        reply(&mut w, PBX, &p, 200, &[]);
    }
    assert!(trunk_events(&mut w).is_empty());
}

#[test]
fn a_transport_error_counts_as_a_miss_and_a_reload_reconciles_the_set() {
    let mut w = world(vec![probed("pbx", PBX)]);
    w.take_request(PBX, "OPTIONS");
    w.transport_error(peer(PBX));
    w.advance(Duration::from_secs(5));
    w.transport_error(peer(PBX));
    assert_eq!(
        trunk_events(&mut w),
        [CallEvent::TrunkProbe {
            trunk: "pbx".into(),
            up: false,
        }]
    );
    // The trunk is no longer probed after a reload: nothing more goes to it.
    w.policy.set = Some(Arc::new(vec![registering(false)]));
    let now = w.now;
    w.core.sync_carriers(now, &mut w.policy);
    w.drain();
    let _ = w.take_to(PBX);
    w.take_request(CARRIER, "REGISTER");
    w.advance(Duration::from_secs(20));
    assert!(
        w.take_to(PBX)
            .iter()
            .all(|m| !matches!(m, SipMessage::Request(r) if r.method.as_str() == "OPTIONS")),
        "a probe after the trunk left the set"
    );
}

// ------------------------------------------------------------------------------------------
// Leg B's INVITE challenged by the carrier.

const A: &str = "127.0.0.1:5070";

fn calling_world() -> World {
    let mut w = world(Vec::new());
    w.policy.inner.targets = vec![Target {
        trunk: "carrier".into(),
        peer: peer(CARRIER),
        host: CARRIER.into(),
    }];
    w.policy.creds = Some(Credentials {
        username: "acme".into(),
        password: "secret".into(),
        realm: None,
    });
    w
}

fn invite_from_a(call_id: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=a 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {A};branch=z9hG4bK-a-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@10.1.1.1>;tag=atag\r\n\
         To: <sip:+15551234567@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{A}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

const PROXY_CHALLENGE: &str =
    "Digest realm=\"carrier.test\", nonce=\"n-1\", qop=\"auth\", algorithm=MD5";

#[test]
fn a_challenged_invite_is_resent_once_with_credentials_and_leg_a_never_sees_it() {
    let mut w = calling_world();
    w.feed(A, &invite_from_a("c1"));
    let first = w.take_request(CARRIER, "INVITE");
    reply(
        &mut w,
        CARRIER,
        &first,
        407,
        &[("Proxy-Authenticate", PROXY_CHALLENGE)],
    );
    // The 407 is ACKed by the transaction layer; the INVITE goes again with credentials.
    let msgs = w.take_to(CARRIER);
    let mut acks = 0;
    let mut retry = None;
    for m in msgs {
        match m {
            SipMessage::Request(r) if r.method.as_str() == "ACK" => acks += 1,
            SipMessage::Request(r) if r.method.as_str() == "INVITE" => retry = Some(r),
            _ => {}
        }
    }
    assert_eq!(acks, 1, "the 407 is ACKed");
    let retry = retry.expect("INVITE resent with credentials");
    assert_eq!(retry.headers.get("Call-ID"), first.headers.get("Call-ID"));
    assert_eq!(retry.headers.get("From"), first.headers.get("From"));
    let seq = |r: &Request| r.cseq().map(|c| c.seq).unwrap();
    assert_eq!(seq(&retry), seq(&first) + 1);
    assert_ne!(retry.headers.get("Via"), first.headers.get("Via"));
    assert_eq!(retry.body, first.body);
    let auth = retry
        .headers
        .get("Proxy-Authorization")
        .expect("credentials");
    assert!(
        auth.contains("username=\"acme\"") && auth.contains("nonce=\"n-1\""),
        "{auth}"
    );
    assert!(auth.contains(&format!("uri=\"{}\"", first.uri)), "{auth}");
    assert!(!auth.contains("secret"));
    // Leg A saw no challenge.
    assert!(w.take_responses(A).iter().all(|r| r.status < 300));
    // Answered: 200 to A, ACK to B with the retried INVITE's CSeq.
    let mut ok = make_response(&retry, 200, "OK", Some("btag"));
    ok.headers.push("Contact", format!("<sip:b@{CARRIER}>"));
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = retry.body.clone();
    w.feed_msg(CARRIER, &SipMessage::Response(ok));
    let ack = w.take_request(CARRIER, "ACK");
    assert_eq!(seq(&ack), seq(&retry));
    let finals: Vec<u16> = w.take_responses(A).iter().map(|r| r.status).collect();
    assert!(finals.contains(&200), "{finals:?}");
    assert_eq!(w.core.stats().auth_retries, 1);
}

#[test]
fn a_second_challenge_ends_the_call_with_the_failure_and_no_third_invite() {
    let mut w = calling_world();
    w.feed(A, &invite_from_a("c2"));
    let first = w.take_request(CARRIER, "INVITE");
    reply(
        &mut w,
        CARRIER,
        &first,
        407,
        &[("Proxy-Authenticate", PROXY_CHALLENGE)],
    );
    let retry = w.take_request(CARRIER, "INVITE");
    let again = "Digest realm=\"carrier.test\", nonce=\"n-2\", qop=\"auth\"";
    reply(
        &mut w,
        CARRIER,
        &retry,
        407,
        &[("Proxy-Authenticate", again)],
    );
    let invites = w
        .take_to(CARRIER)
        .into_iter()
        .filter(|m| matches!(m, SipMessage::Request(r) if r.method.as_str() == "INVITE"))
        .count();
    assert_eq!(invites, 0, "a third INVITE");
    let fin = w.final_to(A);
    assert_eq!(fin.status, 407);
    assert!(
        fin.headers.get("Proxy-Authenticate").is_none(),
        "the carrier's challenge leaked"
    );
    assert_eq!(w.core.stats().auth_refused, 1);
}

#[test]
fn without_credentials_a_challenge_is_a_plain_failure() {
    let mut w = calling_world();
    w.policy.creds = None;
    w.feed(A, &invite_from_a("c3"));
    let first = w.take_request(CARRIER, "INVITE");
    reply(
        &mut w,
        CARRIER,
        &first,
        401,
        &[("WWW-Authenticate", PROXY_CHALLENGE)],
    );
    assert_eq!(w.final_to(A).status, 401);
    assert!(
        w.take_to(CARRIER)
            .iter()
            .all(|m| !matches!(m, SipMessage::Request(r) if r.method.as_str() == "INVITE")),
        "resent without credentials"
    );
}

#[test]
fn a_cancel_after_the_retry_cancels_the_retried_invite() {
    let mut w = calling_world();
    w.feed(A, &invite_from_a("c4"));
    let first = w.take_request(CARRIER, "INVITE");
    reply(
        &mut w,
        CARRIER,
        &first,
        407,
        &[("Proxy-Authenticate", PROXY_CHALLENGE)],
    );
    let retry = w.take_request(CARRIER, "INVITE");
    let mut ringing = make_response(&retry, 180, "Ringing", Some("btag"));
    ringing
        .headers
        .push("Contact", format!("<sip:b@{CARRIER}>"));
    w.feed_msg(CARRIER, &SipMessage::Response(ringing));
    let cancel = format!(
        "CANCEL sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {A};branch=z9hG4bK-a-c4\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@10.1.1.1>;tag=atag\r\nTo: <sip:+15551234567@127.0.0.1>\r\n\
         Call-ID: c4\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    w.feed(A, cancel.as_bytes());
    let c = w.take_request(CARRIER, "CANCEL");
    assert_eq!(c.headers.get("Via"), retry.headers.get("Via"));
    assert_eq!(c.cseq().map(|x| x.seq), retry.cseq().map(|x| x.seq));
}

/// A call answered after the carrier challenged its INVITE; returns (the retried INVITE,
/// leg A's To tag).
fn challenged_call(w: &mut World, call_id: &str) -> (Request, String) {
    w.feed(A, &invite_from_a(call_id));
    let first = w.take_request(CARRIER, "INVITE");
    reply(
        w,
        CARRIER,
        &first,
        407,
        &[("Proxy-Authenticate", PROXY_CHALLENGE)],
    );
    let retry = w.take_request(CARRIER, "INVITE");
    let mut ok = make_response(&retry, 200, "OK", Some("btag"));
    ok.headers.push("Contact", format!("<sip:b@{CARRIER}>"));
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = retry.body.clone();
    w.feed_msg(CARRIER, &SipMessage::Response(ok));
    let _ = w.take_to(CARRIER);
    let ok_a = w
        .take_responses(A)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200 to A");
    let tag = ok_a.to().unwrap().tag().unwrap().to_string();
    w.feed(A, &a_in_dialog("ACK", call_id, 1, &tag, ""));
    (retry, tag)
}

fn a_in_dialog(method: &str, call_id: &str, cseq: u32, to_tag: &str, body: &str) -> Vec<u8> {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:alice@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {A};branch=z9hG4bK-a-{call_id}-{method}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@10.1.1.1>;tag=atag\r\n\
         To: <sip:+15551234567@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@{A}>\r\n\
         {ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn in_dialog_requests_to_the_carrier_answer_its_challenges_too() {
    let mut w = calling_world();
    let (invite, tag) = challenged_call(&mut w, "d1");
    let seq = |r: &Request| r.cseq().map(|c| c.seq).unwrap();
    // A re-INVITE from A, challenged on leg B: resent with credentials; its 2xx ACKed with
    // the resent CSeq; leg A gets the 200.
    let sdp = "v=0\r\no=a 1 2 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
    w.feed(A, &a_in_dialog("INVITE", "d1", 2, &tag, sdp));
    let reinv = w.take_request(CARRIER, "INVITE");
    reply(
        &mut w,
        CARRIER,
        &reinv,
        401,
        &[("WWW-Authenticate", PROXY_CHALLENGE)],
    );
    let msgs = w.take_to(CARRIER);
    let again = msgs
        .into_iter()
        .find_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "INVITE" => Some(r),
            _ => None,
        })
        .expect("re-INVITE resent");
    assert_eq!(seq(&again), seq(&reinv) + 1);
    let auth = again.headers.get("Authorization").expect("credentials");
    // The same nonce as the INVITE's: its nonce-count goes on.
    assert!(auth.contains("nc=00000002"), "{auth}");
    assert!(w.take_responses(A).iter().all(|r| r.status < 300));
    let mut ok = make_response(&again, 200, "OK", Some("btag"));
    ok.headers.push("Contact", format!("<sip:b@{CARRIER}>"));
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = invite.body.clone();
    w.feed_msg(CARRIER, &SipMessage::Response(ok));
    let ack = w.take_request(CARRIER, "ACK");
    assert_eq!(seq(&ack), seq(&again));
    assert!(w.take_responses(A).iter().any(|r| r.status == 200));
    w.feed(A, &a_in_dialog("ACK", "d1", 2, &tag, ""));

    // BYE from A: 200 to A; the BYE on leg B is challenged and resent once.
    w.feed(A, &a_in_dialog("BYE", "d1", 3, &tag, ""));
    let bye = w.take_request(CARRIER, "BYE");
    let ch = "Digest realm=\"carrier.test\", nonce=\"n-9\", qop=\"auth\", stale=true";
    reply(&mut w, CARRIER, &bye, 407, &[("Proxy-Authenticate", ch)]);
    let bye2 = w.take_request(CARRIER, "BYE");
    assert_eq!(seq(&bye2), seq(&bye) + 1);
    assert!(bye2.headers.get("Proxy-Authorization").is_some());
    reply(&mut w, CARRIER, &bye2, 200, &[]);
    w.advance(Duration::from_secs(40));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.core.stats().auth_retries, 3);
    assert!(
        w.core.describe_calls().is_empty(),
        "{:?}",
        w.core.describe_calls()
    );
}

fn standalone_from_a(method: &str, call_id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {A};branch=z9hG4bK-a-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@10.1.1.1>;tag=atag\r\n\
         To: <sip:+15551234567@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:alice@{A}>\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_message_and_a_subscribe_to_the_carrier_answer_its_challenge() {
    let mut w = calling_world();
    let seq = |r: &Request| r.cseq().map(|c| c.seq).unwrap();
    w.feed(
        A,
        &standalone_from_a("MESSAGE", "m1", "Content-Type: text/plain\r\n", "hello"),
    );
    let m = w.take_request(CARRIER, "MESSAGE");
    reply(
        &mut w,
        CARRIER,
        &m,
        407,
        &[("Proxy-Authenticate", PROXY_CHALLENGE)],
    );
    let m2 = w.take_request(CARRIER, "MESSAGE");
    assert_eq!(seq(&m2), seq(&m) + 1);
    assert_eq!(m2.headers.get("Call-ID"), m.headers.get("Call-ID"));
    assert_eq!(m2.body, b"hello");
    assert!(m2.headers.get("Proxy-Authorization").is_some());
    assert!(w.take_responses(A).is_empty(), "leg A saw the challenge");
    reply(&mut w, CARRIER, &m2, 200, &[]);
    assert_eq!(w.final_to(A).status, 200);

    w.feed(
        A,
        &standalone_from_a("SUBSCRIBE", "s1", "Event: presence\r\nExpires: 600\r\n", ""),
    );
    let s = w.take_request(CARRIER, "SUBSCRIBE");
    reply(
        &mut w,
        CARRIER,
        &s,
        401,
        &[("WWW-Authenticate", PROXY_CHALLENGE)],
    );
    let s2 = w.take_request(CARRIER, "SUBSCRIBE");
    assert_eq!(seq(&s2), seq(&s) + 1);
    assert!(s2.headers.get("Authorization").is_some());
    let mut ok = make_response(&s2, 200, "OK", Some("btag"));
    ok.headers.push("Contact", format!("<sip:b@{CARRIER}>"));
    ok.headers.push("Expires", "600");
    w.feed_msg(CARRIER, &SipMessage::Response(ok));
    assert_eq!(w.final_to(A).status, 200);
    assert_eq!(w.core.stats().auth_retries, 2);
}
