//! A 3xx from leg B, per trunk (`redirect: relay | follow | reject`), in virtual time: relayed
//! to the caller with its Contacts; followed through the dial plan (trunks only, best q first,
//! bounded); or a failed target (the route's next one).

mod flows_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use md5::{Digest as _, Md5};

use flows_common::*;
use signaling::b2bua::{
    CallEvent, CallRef, CoreConfig, Leg, MediaRefusal, Policy, RedirectMode, RouteOutcome,
    StaticPolicy, Target,
};
use signaling::message::{Request, SipMessage};
use signaling::registrar::{Algorithm, RegistrarSettings, UserSecret};
use signaling::Peer;

/// [`StaticPolicy`] with a redirect mode for every trunk and a dial plan for followed
/// Contacts (user -> targets); records what it was asked to route.
struct Redirecting {
    inner: StaticPolicy,
    mode: RedirectMode,
    plan: Vec<(&'static str, Vec<Target>)>,
    asked: Vec<(String, String)>,
    registrar: Option<Arc<RegistrarSettings>>,
}

impl Policy for Redirecting {
    fn route(&mut self, r: &Request, f: Peer, to: &str, from: &str, n: Instant) -> RouteOutcome {
        self.inner.route(r, f, to, from, n)
    }
    fn media_offer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        s: &[u8],
        n: Instant,
    ) -> Result<Vec<u8>, MediaRefusal> {
        self.inner.media_offer(c, l, s, n)
    }
    fn media_answer(
        &mut self,
        c: CallRef<'_>,
        l: Leg,
        s: &[u8],
        n: Instant,
    ) -> Result<Vec<u8>, String> {
        self.inner.media_answer(c, l, s, n)
    }
    fn media_release(&mut self, c: CallRef<'_>, n: Instant) {
        self.inner.media_release(c, n)
    }
    fn event(&mut self, ev: CallEvent, n: Instant) {
        self.inner.event(ev, n)
    }
    fn redirect_mode(&mut self, _trunk: &str, _now: Instant) -> RedirectMode {
        self.mode
    }
    fn registrar(&mut self, _now: Instant) -> Option<Arc<RegistrarSettings>> {
        self.registrar.clone()
    }
    fn route_redirect(
        &mut self,
        uri: &str,
        _from: Peer,
        to_user: &str,
        from_user: &str,
        _now: Instant,
    ) -> RouteOutcome {
        self.asked.push((uri.to_string(), to_user.to_string()));
        match self.plan.iter().find(|(u, _)| *u == to_user) {
            Some((_, targets)) => RouteOutcome::Route {
                targets: targets.clone(),
                to_user: to_user.to_string(),
                from_user: from_user.to_string(),
                from_display: None,
            },
            None => RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            },
        }
    }
}

type RWorld = signaling::testing::World<Redirecting>;

fn rworld(
    targets: Vec<Target>,
    mode: RedirectMode,
    plan: Vec<(&'static str, Vec<Target>)>,
) -> RWorld {
    let cfg = CoreConfig {
        local_udp: Some(ME.parse().unwrap()),
        ..CoreConfig::default()
    };
    RWorld::new(
        cfg,
        Redirecting {
            inner: StaticPolicy {
                targets,
                events: Vec::new(),
                released: Vec::new(),
            },
            mode,
            plan,
            asked: Vec::new(),
            registrar: None,
        },
    )
}

/// A 302 to `inv` with these Contact values, a Record-Route and a Via-like header of leg B's
/// path that must not reach leg A.
fn moved(inv: &Request, contacts: &[&str]) -> SipMessage {
    let mut r = signaling::b2bua::make_response(inv, 302, "Moved Temporarily", Some("rtag"));
    for c in contacts {
        r.headers.push("Contact", c.to_string());
    }
    r.headers
        .push("Record-Route", "<sip:hidden-proxy.b.example;lr>");
    r.headers.push("X-Reason", "forwarded");
    SipMessage::Response(r)
}

fn invites_to(w: &mut RWorld, to: &str) -> Vec<Request> {
    requests(&w.take_to(to), "INVITE")
}

#[test]
fn relay_passes_the_3xx_and_its_contacts_and_nothing_of_leg_bs_path() {
    let mut w = rworld(vec![target("pbx", PBX)], RedirectMode::Relay, vec![]);
    w.feed(A, &invite("r-1", SDP_A));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &moved(
            &inv,
            &[
                "<sip:+15559990000@203.0.113.9:5060>;q=0.7",
                "<sip:bob@elsewhere.example>",
            ],
        ),
    );
    // The transaction layer ACKs the 302 (RFC 3261 §17.1.1.3); nothing else goes to leg B.
    let out = w.take_to(PBX);
    assert_eq!(requests(&out, "ACK").len(), 1);
    assert!(requests(&out, "INVITE").is_empty());
    let resp = w.final_to(A);
    assert_eq!(resp.status, 302);
    let contacts: Vec<&str> = resp.headers.get_all("Contact").collect();
    assert_eq!(
        contacts,
        vec![
            "<sip:+15559990000@203.0.113.9:5060>;q=0.7",
            "<sip:bob@elsewhere.example>"
        ]
    );
    assert_eq!(resp.headers.get("X-Reason"), Some("forwarded"));
    let text = String::from_utf8_lossy(&SipMessage::Response(resp.clone()).to_bytes()).to_string();
    assert!(!text.contains("hidden-proxy"), "{text}");
    assert!(!text.contains("5080"), "{text}");
    assert!(!text.contains(inv.call_id().unwrap()), "{text}");
    assert!(!text.contains("rtag"), "{text}");
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.policy.inner.released.len(), 1);
}

#[test]
fn the_default_policy_relays() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("r-0", SDP_A));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &moved(&inv, &["<sip:+15559990000@203.0.113.9>"]));
    let resp = w.final_to(A);
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.headers.get("Contact"),
        Some("<sip:+15559990000@203.0.113.9>")
    );
}

#[test]
fn follow_routes_each_contact_by_q_through_the_plan_and_never_to_its_host() {
    let plan = vec![("+15557770000", vec![target("pbx2", PBX2)])];
    let mut w = rworld(vec![target("pbx", PBX)], RedirectMode::Follow, plan);
    w.feed(A, &invite("r-2", SDP_A));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &moved(
            &inv,
            &[
                "<sip:+15556660000@203.0.113.9>;q=0.5, <sip:+15557770000@198.51.100.7>;q=0.9",
                "<sip:nouser.example>",
            ],
        ),
    );
    // Asked best q first; the user-less Contact is not routed at all.
    let asked: Vec<&str> = w.policy.asked.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(asked, vec!["+15557770000", "+15556660000"]);
    assert_eq!(w.core.stats().redirects_followed, 3);
    // Leg B goes to the trunk the plan chose, with the Contact's user; the Contact's host
    // gets nothing.
    let inv2 = w.take_request(PBX2, "INVITE");
    assert_eq!(inv2.uri, "sip:+15557770000@127.0.0.1:5090");
    assert_eq!(
        inv2.call_id(),
        inv.call_id(),
        "the same leg B dialog attempt"
    );
    for stranger in ["203.0.113.9:5060", "198.51.100.7:5060"] {
        assert!(w.take_to(stranger).is_empty());
    }
    // The caller hears nothing of the 302 and gets the answer of the followed target.
    assert!(w.take_responses(A).iter().all(|r| r.status < 200));
    w.feed_msg(
        PBX2,
        &resp_with(&inv2, 200, "OK", "p2", SDP_B, "<sip:bob@127.0.0.1:5090>"),
    );
    w.take_request(PBX2, "ACK");
    assert_eq!(w.final_to(A).status, 200);
}

#[test]
fn follow_is_bounded_and_a_loop_ends_with_480() {
    let plan = vec![("+15557770000", vec![target("pbx2", PBX2)])];
    let mut w = rworld(vec![target("pbx", PBX)], RedirectMode::Follow, plan);
    w.feed(A, &invite("r-3", SDP_A));
    let mut inv = w.take_request(PBX, "INVITE");
    let mut at = PBX;
    let mut invites = 1;
    // PBX2 redirects to itself again and again.
    loop {
        w.feed_msg(at, &moved(&inv, &["<sip:+15557770000@198.51.100.7>"]));
        at = PBX2;
        match invites_to(&mut w, PBX2).pop() {
            Some(next) => {
                invites += 1;
                inv = next;
            }
            None => break,
        }
        assert!(invites <= 10, "a redirect loop that does not end");
    }
    assert_eq!(invites, 6, "the first INVITE and five followed Contacts");
    let resp = w.final_to(A);
    assert_eq!(resp.status, 480);
    assert!(resp.headers.get("Contact").is_none());
    assert_eq!(w.core.active_calls(), 0);
}

#[test]
fn reject_fails_over_to_the_routes_next_target_and_ends_with_480() {
    let targets = vec![target("pbx", PBX), target("pbx2", PBX2)];
    let mut w = rworld(targets, RedirectMode::Reject, vec![]);
    w.feed(A, &invite("r-4", SDP_A));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &moved(&inv, &["<sip:+15557770000@198.51.100.7>"]));
    assert!(w.policy.asked.is_empty(), "a rejected 3xx is not followed");
    let inv2 = w.take_request(PBX2, "INVITE");
    assert_eq!(inv2.uri, "sip:+15551234567@127.0.0.1:5090");
    assert!(w.take_responses(A).iter().all(|r| r.status < 200));
    w.feed_msg(PBX2, &moved(&inv2, &["<sip:+15557770000@198.51.100.7>"]));
    let resp = w.final_to(A);
    assert_eq!(resp.status, 480);
    assert!(resp.headers.get("Contact").is_none());
    assert!(w.take_to("198.51.100.7:5060").is_empty());
}

const PHONE_NAT: &str = "203.0.113.9:40000";

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// alice registers `sip:alice@192.168.1.20:5060` from `PHONE_NAT` (Digest, RFC 7616 qop=auth).
fn register_alice(w: &mut RWorld) {
    let reg = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKr{cseq}\r\n\
             Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=ph\r\n\
             Call-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@192.168.1.20:5060>\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    w.feed(PHONE_NAT, &reg(1, ""));
    let ch = w.final_to(PHONE_NAT);
    let www = ch.headers.get("WWW-Authenticate").expect("challenge");
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap();
    let ha1 = md5_hex("alice:example.com:s3cret");
    let ha2 = md5_hex("REGISTER:sip:example.com");
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:xyz:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", \
         uri=\"sip:example.com\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"xyz\"\r\n"
    );
    w.feed(PHONE_NAT, &reg(2, &auth));
    assert_eq!(w.final_to(PHONE_NAT).status, 200);
}

#[test]
fn follow_reaches_a_served_user_at_its_binding_and_skips_unknown_ones() {
    let mut w = rworld(vec![target("pbx", PBX)], RedirectMode::Follow, vec![]);
    w.policy.registrar = Some(Arc::new(RegistrarSettings {
        domains: vec!["example.com".into()],
        realm: "example.com".into(),
        min_expires: 60,
        max_expires: 3600,
        default_expires: 3600,
        users: HashMap::from([("alice".to_string(), UserSecret::password("s3cret"))]),
        aliases: HashMap::new(),
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        keepalive: 0,
        authenticate_calls: false,
        auth_failures: Default::default(),
        offline: None,
        presence: None,
    }));
    register_alice(&mut w);
    w.feed(A, &invite("r-5", SDP_A));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &moved(
            &inv,
            &[
                "<sip:nobody@example.com>;q=1",
                "<sip:alice@example.com>;q=0.5",
            ],
        ),
    );
    // Both Contacts are at the served domain: the location service alone decides (the unknown
    // user goes nowhere), never the dial plan.
    assert!(w.policy.asked.is_empty(), "{:?}", w.policy.asked);
    let to_phone = w.take_request(PHONE_NAT, "INVITE");
    assert_eq!(to_phone.uri, "sip:alice@192.168.1.20:5060");
    assert_eq!(to_phone.call_id(), inv.call_id());
    assert!(w.take_to("192.168.1.20:5060").is_empty());
}
