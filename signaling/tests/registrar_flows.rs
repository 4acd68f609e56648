//! Registrar and location service through the B2BUA core, in virtual time: a phone behind NAT
//! registers (Digest challenge, then credentials), and calls to its address of record reach
//! it at the address its REGISTER came from, with its Contact as the Request-URI; unknown and
//! offline users get 404 and 480; other domains still follow the dial plan.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use signaling::b2bua::{
    CallEvent, CallRef, CoreConfig, Leg, MediaRefusal, Policy, RouteOutcome, StaticPolicy, Target,
    REGISTERED,
};
use signaling::message::{Request, SipMessage};
use signaling::parse::parse;
use signaling::registrar::{Algorithm, RegistrarSettings, UserSecret};
use signaling::testing::peer;
use signaling::Peer;

/// The dial plan of StaticPolicy plus a registrar.
struct RegPolicy {
    inner: StaticPolicy,
    settings: Arc<RegistrarSettings>,
    registered_routes: usize,
}

impl Policy for RegPolicy {
    fn route(
        &mut self,
        req: &Request,
        from: Peer,
        to: &str,
        fr: &str,
        now: Instant,
    ) -> RouteOutcome {
        self.inner.route(req, from, to, fr, now)
    }
    fn media_offer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        sdp: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, MediaRefusal> {
        self.inner.media_offer(c, l, sdp, now)
    }
    fn media_answer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        sdp: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, String> {
        self.inner.media_answer(c, l, sdp, now)
    }
    fn media_release(&mut self, c: CallRef<'_>, now: Instant) {
        self.inner.media_release(c, now)
    }
    fn event(&mut self, ev: CallEvent, now: Instant) {
        self.inner.event(ev, now)
    }
    fn registrar(&mut self, _now: Instant) -> Option<Arc<RegistrarSettings>> {
        Some(self.settings.clone())
    }
    fn is_trunk(&mut self, from: Peer, _now: Instant) -> bool {
        from == peer(CARRIER) || from == peer(PBX)
    }
    fn route_registered(
        &mut self,
        _req: &Request,
        _from: Peer,
        targets: Vec<Target>,
        from_user: &str,
        _now: Instant,
    ) -> RouteOutcome {
        self.registered_routes += 1;
        RouteOutcome::Route {
            targets,
            to_user: String::new(),
            from_user: from_user.to_string(),
            from_display: None,
        }
    }
}

const PHONE_NAT: &str = "203.0.113.9:40000";
const CARRIER: &str = "198.51.100.1:5060";
const PBX: &str = "127.0.0.1:5080";

type World = signaling::testing::World<RegPolicy>;

fn world() -> World {
    World::new(
        CoreConfig {
            local_udp: Some("192.0.2.10:5060".parse().unwrap()),
            ..CoreConfig::default()
        },
        RegPolicy {
            inner: StaticPolicy {
                targets: vec![Target {
                    trunk: "pbx".into(),
                    peer: peer(PBX),
                    host: PBX.into(),
                }],
                events: Vec::new(),
                released: Vec::new(),
            },
            settings: Arc::new(RegistrarSettings {
                domains: vec!["example.com".into()],
                realm: "example.com".into(),
                min_expires: 60,
                max_expires: 3600,
                default_expires: 3600,
                users: HashMap::from([
                    ("alice".to_string(), UserSecret::password("s3cret")),
                    ("bob".to_string(), UserSecret::password("pw")),
                ]),
                aliases: HashMap::new(),
                algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
                keepalive: 30,
                authenticate_calls: true,
                auth_failures: Default::default(),
                offline: None,
                presence: None,
            }),
            registered_routes: 0,
        },
    )
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The nonce of a challenge header's value.
fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .expect("nonce")
        .to_string()
}

/// The credentials header (`header`: Authorization or Proxy-Authorization) a phone computes
/// for alice from a challenge: RFC 2617 qop=auth, its `nc`-th use of the nonce.
fn credentials(header: &str, nonce: &str, method: &str, uri: &str, pw: &str, nc: u32) -> String {
    let ha1 = md5_hex(&format!("alice:example.com:{pw}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:{nc:08x}:xyz:auth:{ha2}"));
    format!(
        "{header}: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc:08x}, cnonce=\"xyz\"\r\n"
    )
}

fn register(cseq: u32, contact: &str, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKreg{cseq}\r\n\
         Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=ph1\r\n\
         Call-ID: reg-call-1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(to: &str, call_id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{to}>\r\nFrom: <sip:+15550001@carrier.net>;tag=c1\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+15550001@198.51.100.1:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn registered_phone_receives_calls_at_its_nat_address() {
    let mut w = world();
    let contact = "<sip:alice@192.168.1.20:5060>;expires=600";
    w.feed(PHONE_NAT, &register(1, contact, ""));
    let ch = w.final_to(PHONE_NAT);
    assert_eq!(ch.status, 401);
    let www = ch
        .headers
        .get("WWW-Authenticate")
        .expect("challenge")
        .to_string();
    let nonce = nonce_of(&www);
    let auth = |nc| {
        credentials(
            "Authorization",
            &nonce,
            "REGISTER",
            "sip:example.com",
            "s3cret",
            nc,
        )
    };
    w.feed(PHONE_NAT, &register(2, contact, &auth(1)));
    let ok = w.final_to(PHONE_NAT);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        ok.headers.get("Contact"),
        Some("<sip:alice@192.168.1.20:5060>;expires=600")
    );
    assert_eq!(w.core.registered_contacts(w.now), 1);
    assert_eq!(w.core.stats().registers.get(&200), Some(&1));
    assert_eq!(w.core.stats().registers.get(&401), Some(&1));

    // A carrier calls alice: leg B goes to where the REGISTER came from, R-URI = the Contact.
    w.feed(CARRIER, &invite("alice@example.com", "in-1"));
    let to_phone: Vec<Request> = w
        .take_to(PHONE_NAT)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "INVITE" => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(to_phone.len(), 1, "INVITE sent to the phone's NAT address");
    assert_eq!(to_phone[0].uri, "sip:alice@192.168.1.20:5060");
    assert_eq!(w.policy.registered_routes, 1);
    assert!(w.take_to(PBX).is_empty(), "not the dial plan's trunk");

    // bob is a user but not registered: 480; carol is nobody: 404
    w.feed(CARRIER, &invite("bob@example.com", "in-2"));
    assert_eq!(w.final_to(CARRIER).status, 480);
    w.feed(CARRIER, &invite("carol@example.com", "in-3"));
    assert_eq!(w.final_to(CARRIER).status, 404);
    // another domain: the dial plan (the PBX trunk)
    w.feed(CARRIER, &invite("+15551234@pstn.example.net", "in-4"));
    assert!(
        w.take_to(PBX)
            .iter()
            .any(|m| matches!(m, SipMessage::Request(r) if r.method.as_str() == "INVITE")),
        "other domains follow the dial plan"
    );

    // unregister: then alice is offline (480)
    w.feed(
        PHONE_NAT,
        &register(3, "<sip:alice@192.168.1.20:5060>;expires=0", &auth(2)),
    );
    let r = w.final_to(PHONE_NAT);
    assert_eq!((r.status, r.headers.get("Contact")), (200, None));
    w.feed(CARRIER, &invite("alice@example.com", "in-5"));
    assert_eq!(w.final_to(CARRIER).status, 480);
    // and bindings expire by themselves
    w.feed(
        PHONE_NAT,
        &register(4, "<sip:alice@192.168.1.20:5060>;expires=60", &auth(3)),
    );
    assert_eq!(w.final_to(PHONE_NAT).status, 200);
    w.now += Duration::from_secs(61);
    assert_eq!(w.core.registered_contacts(w.now), 0);
}

#[test]
fn register_without_a_registrar_is_405() {
    let mut w = world();
    // a policy without a registrar: the core's old answer
    let mut plain = StaticPolicy {
        targets: vec![],
        events: Vec::new(),
        released: Vec::new(),
    };
    w.core.handle_bytes(
        &register(1, "<sip:alice@192.168.1.20:5060>", ""),
        peer(PHONE_NAT),
        w.now,
        &mut plain,
    );
    let t = w.core.poll_transmit().expect("an answer");
    let SipMessage::Response(r) = parse(&t.data).unwrap() else {
        panic!("response")
    };
    assert_eq!(r.status, 405);
    assert_eq!(REGISTERED, "registered");
}

fn message(to: &str, call_id: &str, body: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKm{call_id}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{to}>\r\nFrom: <sip:+15550001@carrier.net>;tag=m1\r\n\
         Call-ID: {call_id}\r\nCSeq: 7 MESSAGE\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// MESSAGE (RFC 3428) relayed like a call's INVITE, without a dialog: to a registered phone
/// at its NAT address or along the dial plan; the far side's final answer comes back; no
/// answer is 408; too big for UDP is 513.
#[test]
fn messages_are_relayed_and_answered() {
    let mut w = world();
    registered(&mut w);

    w.feed(
        CARRIER,
        &message("alice@example.com", "im-1", "hello alice"),
    );
    let out: Vec<Request> = w
        .take_to(PHONE_NAT)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "MESSAGE" => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(out.len(), 1);
    let m = &out[0];
    assert_eq!(m.uri, "sip:alice@192.168.1.20:5060");
    assert_eq!(m.body, b"hello alice");
    assert_eq!(m.headers.get("Content-Type"), Some("text/plain"));
    assert_ne!(m.headers.get("Call-ID"), Some("im-1"), "topology hidden");
    assert!(!m.headers.get("From").unwrap().contains("carrier.net"));
    // the phone accepts: 202 goes back to the carrier
    let mut ok = signaling::b2bua::make_response(m, 202, "Accepted", Some("ph"));
    ok.headers.push("Server", "phone");
    w.feed(PHONE_NAT, &SipMessage::Response(ok).to_bytes());
    let back = w.final_to(CARRIER);
    assert_eq!(
        (back.status, back.headers.get("Call-ID")),
        (202, Some("im-1"))
    );
    assert_eq!(w.core.stats().messages.get(&202), Some(&1));

    // along the dial plan (another domain); the PBX never answers: 408 after Timer F
    w.feed(
        CARRIER,
        &message("+15551234@pstn.example.net", "im-2", "to the pbx"),
    );
    assert!(w
        .take_to(PBX)
        .iter()
        .any(|m| matches!(m, SipMessage::Request(r) if r.method.as_str() == "MESSAGE")));
    w.advance(Duration::from_secs(40));
    assert_eq!(w.final_to(CARRIER).status, 408);

    // offline user, unknown user, and a body too big for UDP
    w.feed(CARRIER, &message("bob@example.com", "im-3", "x"));
    assert_eq!(w.final_to(CARRIER).status, 480);
    w.feed(CARRIER, &message("carol@example.com", "im-4", "x"));
    assert_eq!(w.final_to(CARRIER).status, 404);
    let big = "y".repeat(1400);
    w.feed(CARRIER, &message("alice@example.com", "im-5", &big));
    assert_eq!(w.final_to(CARRIER).status, 513);
}

/// Register alice (challenge + credentials) in `w`.
fn registered(w: &mut World) {
    let contact = "<sip:alice@192.168.1.20:5060>;expires=600";
    w.feed(PHONE_NAT, &register(1, contact, ""));
    let ch = w.final_to(PHONE_NAT);
    let nonce = nonce_of(ch.headers.get("WWW-Authenticate").expect("challenge"));
    let auth = credentials(
        "Authorization",
        &nonce,
        "REGISTER",
        "sip:example.com",
        "s3cret",
        1,
    );
    w.feed(PHONE_NAT, &register(2, contact, &auth));
    assert_eq!(w.final_to(PHONE_NAT).status, 200);
}

const WATCHER: &str = "198.51.100.20:5060";

fn requests_to(w: &mut World, to: &str, method: &str) -> Vec<Request> {
    w.take_to(to)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == method => Some(r),
            _ => None,
        })
        .collect()
}

fn reply(
    w: &mut World,
    to_peer: &str,
    req: &Request,
    status: u16,
    tag: &str,
    extra: &[(&str, &str)],
) {
    let mut r = signaling::b2bua::make_response(req, status, "OK", Some(tag));
    for (n, v) in extra {
        r.headers.push(n, v.to_string());
    }
    w.feed(to_peer, &SipMessage::Response(r).to_bytes());
}

/// Presence through the B2BUA: a watcher subscribes to alice's presence; the SUBSCRIBE reaches
/// her phone at its NAT address, her NOTIFYs (PIDF) reach the watcher in the watcher's dialog,
/// answers go back both ways, an unsubscribe and the final NOTIFY end both dialogs.
#[test]
fn presence_subscription_is_relayed_both_ways() {
    let mut w = world();
    registered(&mut w);
    let sub = "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKs1\r\n\
        Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:bob@watchers.net>;tag=w1\r\n\
        Call-ID: watch-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@198.51.100.20:5060>\r\n\
        Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
    w.feed(WATCHER, sub.as_bytes());
    let s_b = requests_to(&mut w, PHONE_NAT, "SUBSCRIBE");
    assert_eq!(s_b.len(), 1, "SUBSCRIBE relayed to the phone");
    assert_eq!(s_b[0].uri, "sip:alice@192.168.1.20:5060");
    assert_eq!(s_b[0].headers.get("Event"), Some("presence"));
    assert_ne!(
        s_b[0].headers.get("Call-ID"),
        Some("watch-1"),
        "topology hidden"
    );
    reply(
        &mut w,
        PHONE_NAT,
        &s_b[0],
        200,
        "ph1",
        &[
            ("Contact", "<sip:alice@192.168.1.20:5060>"),
            ("Expires", "600"),
        ],
    );
    let ok = w.final_to(WATCHER);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get("Expires"), Some("600"));
    let a_tag = ok
        .to()
        .and_then(|t| t.tag().map(str::to_string))
        .expect("our To tag");
    assert_eq!(w.core.subscriptions(), 1);

    // the phone notifies (in leg B's dialog): the watcher gets it in leg A's
    let b_call = s_b[0].headers.get("Call-ID").unwrap().to_string();
    let b_our_tag = s_b[0]
        .from()
        .and_then(|f| f.tag().map(str::to_string))
        .unwrap();
    let pidf = "<?xml version=\"1.0\"?><presence entity=\"sip:alice@example.com\"><tuple id=\"t\"><status><basic>open</basic></status></tuple></presence>";
    let notify = |cseq: u32, state: &str| {
        format!(
            "NOTIFY sip:anything@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKn{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=ph1\r\nTo: <sip:x@y>;tag={b_our_tag}\r\n\
             Call-ID: {b_call}\r\nCSeq: {cseq} NOTIFY\r\nContact: <sip:alice@192.168.1.20:5060>\r\n\
             Event: presence\r\nSubscription-State: {state}\r\nContent-Type: application/pidf+xml\r\n\
             Content-Length: {}\r\n\r\n{pidf}",
            pidf.len()
        )
    };
    w.feed(PHONE_NAT, notify(1, "active;expires=600").as_bytes());
    let n_a = requests_to(&mut w, WATCHER, "NOTIFY");
    assert_eq!(n_a.len(), 1, "NOTIFY relayed to the watcher");
    let n = &n_a[0];
    assert_eq!(
        n.uri, "sip:bob@198.51.100.20:5060",
        "to the watcher's Contact"
    );
    assert_eq!(
        n.headers.get("Call-ID"),
        Some("watch-1"),
        "in the watcher's dialog"
    );
    assert_eq!(
        n.from().and_then(|f| f.tag().map(str::to_string)),
        Some(a_tag.clone())
    );
    assert_eq!(
        n.to().and_then(|t| t.tag().map(str::to_string)).as_deref(),
        Some("w1")
    );
    assert_eq!(n.body, pidf.as_bytes());
    assert_eq!(n.headers.get("Content-Type"), Some("application/pidf+xml"));
    assert_eq!(
        n.headers.get("Subscription-State"),
        Some("active;expires=600")
    );
    reply(&mut w, WATCHER, n, 200, "w1", &[]);
    let back = w.final_to(PHONE_NAT);
    assert_eq!(
        (back.status, back.headers.get("CSeq")),
        (200, Some("1 NOTIFY"))
    );

    // the watcher unsubscribes (Expires: 0) in its dialog
    let unsub = format!(
        "SUBSCRIBE sip:alice@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKs2\r\n\
         Max-Forwards: 70\r\nTo: <sip:alice@example.com>;tag={a_tag}\r\nFrom: <sip:bob@watchers.net>;tag=w1\r\n\
         Call-ID: watch-1\r\nCSeq: 2 SUBSCRIBE\r\nContact: <sip:bob@198.51.100.20:5060>\r\n\
         Event: presence\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"
    );
    w.feed(WATCHER, unsub.as_bytes());
    let s2 = requests_to(&mut w, PHONE_NAT, "SUBSCRIBE");
    assert_eq!(s2.len(), 1);
    assert_eq!(s2[0].headers.get("Call-ID"), Some(b_call.as_str()));
    assert_eq!(s2[0].headers.get("Expires"), Some("0"));
    reply(&mut w, PHONE_NAT, &s2[0], 200, "ph1", &[]);
    assert_eq!(w.final_to(WATCHER).status, 200);
    // the final NOTIFY ends it
    w.feed(PHONE_NAT, notify(2, "terminated;reason=timeout").as_bytes());
    let last = requests_to(&mut w, WATCHER, "NOTIFY");
    assert_eq!(last.len(), 1);
    reply(&mut w, WATCHER, &last[0], 200, "w1", &[]);
    assert_eq!(w.final_to(PHONE_NAT).status, 200);
    assert_eq!(w.core.subscriptions(), 0, "both dialogs gone");
    // a NOTIFY for it now: 481
    w.feed(PHONE_NAT, notify(3, "active").as_bytes());
    assert_eq!(w.final_to(PHONE_NAT).status, 481);
}

/// A subscription nobody refreshes is dropped after its lifetime; a refused one at once; a
/// SUBSCRIBE without Event is refused.
#[test]
fn subscriptions_expire_and_refusals_leave_nothing() {
    let mut w = world();
    registered(&mut w);
    let sub = |cid: &str, event: bool| {
        format!(
            "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK{cid}\r\n\
             Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:bob@watchers.net>;tag=w{cid}\r\n\
             Call-ID: {cid}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@198.51.100.20:5060>\r\n\
             {}Expires: 60\r\nContent-Length: 0\r\n\r\n",
            if event { "Event: presence\r\n" } else { "" }
        )
    };
    w.feed(WATCHER, sub("x0", false).as_bytes());
    assert_eq!(w.final_to(WATCHER).status, 400);
    w.feed(WATCHER, sub("x1", true).as_bytes());
    let s = requests_to(&mut w, PHONE_NAT, "SUBSCRIBE");
    reply(&mut w, PHONE_NAT, &s[0], 489, "ph", &[]);
    assert_eq!(w.final_to(WATCHER).status, 489);
    assert_eq!(w.core.subscriptions(), 0, "refused: nothing kept");
    w.feed(WATCHER, sub("x2", true).as_bytes());
    let s = requests_to(&mut w, PHONE_NAT, "SUBSCRIBE");
    reply(&mut w, PHONE_NAT, &s[0], 202, "ph", &[("Expires", "60")]);
    assert_eq!(w.final_to(WATCHER).status, 202);
    assert_eq!(w.core.subscriptions(), 1);
    // 60 s + grace, no refresh
    w.advance(Duration::from_secs(120));
    assert_eq!(w.core.subscriptions(), 0, "expired");
}

/// NAT keep-alive: every 30 s an OPTIONS to each phone registered over UDP, at the address its
/// REGISTER came from, with its Contact as Request-URI; none once nobody is registered.
#[test]
fn registered_phones_get_keepalives() {
    let mut w = world();
    registered(&mut w);
    w.advance(Duration::from_secs(95));
    let pings = requests_to(&mut w, PHONE_NAT, "OPTIONS");
    assert_eq!(pings.len(), 3, "one every 30 s");
    assert_eq!(pings[0].uri, "sip:alice@192.168.1.20:5060");
    assert_eq!(w.core.stats().keepalives, 3);
    // after the binding expires (600 s) the pings stop and no timer is left
    w.advance(Duration::from_secs(600));
    w.sent().clear();
    w.advance(Duration::from_secs(120));
    assert!(requests_to(&mut w, PHONE_NAT, "OPTIONS").is_empty());
    assert_eq!(
        w.core.poll_timeout(),
        None,
        "no keep-alive timer without bindings"
    );
}

/// Toll-fraud guard: a phone's call to another domain (the carriers) must authenticate as a
/// registrar user (407 + Proxy-Authenticate, then Proxy-Authorization); a trunk's does not; a
/// call to a local user does not; wrong credentials get a new challenge.
#[test]
fn calls_from_phones_to_other_domains_authenticate() {
    let mut w = world();
    let out = |call_id: &str, auth: &str| {
        format!(
            "INVITE sip:+15559876@pstn.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{call_id}\r\n\
             Max-Forwards: 70\r\nTo: <sip:+15559876@pstn.example.net>\r\nFrom: <sip:alice@example.com>;tag=p1\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.20:5060>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    w.feed(PHONE_NAT, &out("o1", ""));
    let ch = w.final_to(PHONE_NAT);
    assert_eq!(ch.status, 407);
    let pa = ch
        .headers
        .get("Proxy-Authenticate")
        .expect("challenge")
        .to_string();
    assert!(
        w.take_to(PBX).is_empty(),
        "nothing placed before credentials"
    );
    let nonce = nonce_of(&pa);
    let uri = "sip:+15559876@pstn.example.net";
    let cred = |pw: &str| credentials("Proxy-Authorization", &nonce, "INVITE", uri, pw, 1);
    w.feed(PHONE_NAT, &out("o2", &cred("wrong")));
    assert_eq!(
        w.final_to(PHONE_NAT).status,
        407,
        "wrong password: challenged again"
    );
    w.feed(PHONE_NAT, &out("o3", &cred("s3cret")));
    let placed = w
        .take_to(PBX)
        .into_iter()
        .filter(|m| matches!(m, SipMessage::Request(r) if r.method.as_str() == "INVITE"))
        .count();
    assert_eq!(placed, 1, "authenticated: the call goes to the carrier");
    // a trunk's call needs nothing
    w.feed(CARRIER, &invite("+15551234@pstn.example.net", "t1"));
    assert!(w
        .take_to(PBX)
        .iter()
        .any(|m| matches!(m, SipMessage::Request(r) if r.method.as_str() == "INVITE")));
    assert!(w.core.stats().rejected.get("auth").copied().unwrap_or(0) >= 2);
}

/// The SIPp/phone flow: INVITE, 407, ACK, the same INVITE (same Call-ID and From tag, a new
/// branch) with credentials: placed once. The challenge went out once, with no 100 and no
/// transaction left behind (no retransmission to a forged source).
#[test]
fn challenge_is_stateless_and_the_retry_goes_through() {
    let mut w = world();
    let inv = |branch: &str, auth: &str| {
        format!(
            "INVITE sip:+15559876@pstn.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nTo: <sip:+15559876@pstn.example.net>\r\nFrom: <sip:alice@example.com>;tag=p1\r\n\
             Call-ID: same-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.20:5060>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    w.feed(PHONE_NAT, &inv("b1", ""));
    let out = w.take_to(PHONE_NAT);
    assert_eq!(out.len(), 1, "one packet, no 100: {out:?}");
    let SipMessage::Response(ch) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(ch.status, 407);
    assert_eq!(
        w.core.transactions(),
        0,
        "{:?}",
        w.core.describe_transactions()
    );
    w.advance(Duration::from_secs(40));
    assert!(w.take_to(PHONE_NAT).is_empty(), "no retransmission");
    let to_tag = ch.headers.get("To").unwrap().to_string();
    let ack = format!(
        "ACK sip:+15559876@pstn.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKb1\r\n\
         Max-Forwards: 70\r\nTo: {to_tag}\r\nFrom: <sip:alice@example.com>;tag=p1\r\n\
         Call-ID: same-1\r\nCSeq: 1 ACK\r\nContact: <sip:alice@192.168.1.20:5060>\r\nContent-Length: 0\r\n\r\n"
    );
    w.feed(PHONE_NAT, ack.as_bytes());
    let nonce = nonce_of(ch.headers.get("Proxy-Authenticate").expect("challenge"));
    let uri = "sip:+15559876@pstn.example.net";
    let cred = credentials("Proxy-Authorization", &nonce, "INVITE", uri, "s3cret", 1);
    w.feed(PHONE_NAT, &inv("b2", &cred));
    let placed = w
        .take_to(PBX)
        .into_iter()
        .filter(|m| matches!(m, SipMessage::Request(r) if r.method.as_str() == "INVITE"))
        .count();
    assert_eq!(placed, 1, "the authenticated retry is placed");
    let back = w.take_to(PHONE_NAT);
    assert!(
        back.iter()
            .any(|m| matches!(m, SipMessage::Response(r) if r.status == 100)),
        "the call in progress gets its 100: {back:?}"
    );
}

/// An authenticated caller calls as itself: bob's credentials with `From: alice` and a forged
/// P-Asserted-Identity reach the trunk as bob, asserted by trunkline alone.
#[test]
fn an_authenticated_caller_is_the_identity_leg_b_carries() {
    let mut w = world();
    let uri = "sip:+15559876@pstn.example.net";
    let inv = |branch: &str, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nTo: <{uri}>\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=p9\r\n\
             Call-ID: id-1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@192.168.1.20:5060>\r\n\
             P-Asserted-Identity: <sip:ceo@example.com>\r\nRemote-Party-ID: <sip:ceo@example.com>\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    w.feed(PHONE_NAT, &inv("i1", ""));
    let ch = w.final_to(PHONE_NAT);
    let nonce = nonce_of(ch.headers.get("Proxy-Authenticate").expect("challenge"));
    // bob's password: the helper computes alice's digest, so compute bob's here
    let ha1 = md5_hex("bob:example.com:pw");
    let ha2 = md5_hex(&format!("INVITE:{uri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:xyz:auth:{ha2}"));
    let cred = format!(
        "Proxy-Authorization: Digest username=\"bob\", realm=\"example.com\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"xyz\"\r\n"
    );
    w.feed(PHONE_NAT, &inv("i2", &cred));
    let out: Vec<Request> = w
        .take_to(PBX)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "INVITE" => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(out.len(), 1, "bob's call is placed");
    let from = out[0].headers.get("From").unwrap_or_default();
    assert!(
        from.contains("sip:bob@"),
        "From is the authenticated user: {from}"
    );
    assert!(!from.contains("alice"), "{from}");
    let pai: Vec<&str> = out[0].headers.get_all("P-Asserted-Identity").collect();
    assert_eq!(
        pai,
        vec!["<sip:bob@example.com>"],
        "asserted by trunkline only"
    );
    assert_eq!(out[0].headers.get("Remote-Party-ID"), None);
}

/// A stranger may ring a registered phone, a few calls at a time: the ninth unanswered call
/// from one source gets 503 + Retry-After; an ended one frees its place; other sources and
/// trunks are not affected.
#[test]
fn a_stranger_has_few_unanswered_calls_at_a_time() {
    let mut w = world();
    registered(&mut w);
    let stranger = "198.51.100.66:5060";
    let call = |n: u32| {
        format!(
            "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {stranger};branch=z9hG4bKs{n}\r\n\
             Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:x@{stranger}>;tag=s{n}\r\n\
             Call-ID: stranger-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{stranger}>\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    for n in 0..8 {
        w.feed(stranger, &call(n));
    }
    let rung = requests_to(&mut w, PHONE_NAT, "INVITE");
    assert_eq!(rung.len(), 8);
    w.feed(stranger, &call(8));
    let r = w.final_to(stranger);
    assert_eq!(r.status, 503);
    assert!(r.headers.get("Retry-After").is_some());
    assert_eq!(w.core.stats().rejected.get("caps"), Some(&1));
    // a trunk's call to alice is not counted against the stranger
    w.feed(CARRIER, &invite("alice@example.com", "from-trunk"));
    assert_eq!(requests_to(&mut w, PHONE_NAT, "INVITE").len(), 1);
    // the phone declines one of the stranger's calls: its place is free again
    reply(&mut w, PHONE_NAT, &rung[0], 486, "ph", &[]);
    w.feed(stranger, &call(9));
    assert_eq!(requests_to(&mut w, PHONE_NAT, "INVITE").len(), 1);
}

/// Subscriptions from strangers are bounded per source (32) and per target (64): the 33rd
/// from one watcher gets 503, other watchers fill alice up to 64, then 503 for everyone but
/// trunks; an ended subscription frees its place.
#[test]
fn strangers_subscriptions_are_capped_per_source_and_target() {
    let mut w = world();
    registered(&mut w);
    let sub = |src: &str, n: u32| {
        format!(
            "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKc{n}\r\n\
             Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:w@{src}>;tag=c{n}\r\n\
             Call-ID: cap-{src}-{n}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w@{src}>\r\n\
             Event: presence\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let one = "198.51.100.21:5060";
    for n in 0..32 {
        w.feed(one, &sub(one, n));
    }
    let relayed = requests_to(&mut w, PHONE_NAT, "SUBSCRIBE");
    assert_eq!(relayed.len(), 32);
    w.feed(one, &sub(one, 32));
    assert_eq!(w.final_to(one).status, 503, "per source");
    let two = "198.51.100.22:5060";
    for n in 0..32 {
        w.feed(two, &sub(two, 100 + n));
    }
    assert_eq!(requests_to(&mut w, PHONE_NAT, "SUBSCRIBE").len(), 32);
    let three = "198.51.100.23:5060";
    w.feed(three, &sub(three, 200));
    assert_eq!(
        w.final_to(three).status,
        503,
        "per target: 64 strangers' watchers at most"
    );
    // the phone refuses one: its place is free again
    reply(&mut w, PHONE_NAT, &relayed[0], 403, "ph", &[]);
    w.feed(three, &sub(three, 201));
    assert_eq!(requests_to(&mut w, PHONE_NAT, "SUBSCRIBE").len(), 1);
}
