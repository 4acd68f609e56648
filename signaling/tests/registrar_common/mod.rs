//! What the registrar tests beyond `registrar_flows` share: a policy with a dial plan (one PBX
//! trunk) and a registrar, a world built on it, REGISTER and INVITE texts, and the Digest
//! answers a phone computes.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use signaling::b2bua::{
    CallEvent, CallRef, CoreConfig, Leg, MediaRefusal, Policy, RouteOutcome, StaticPolicy, Target,
};
use signaling::message::{Request, Response, SipMessage};
use std::collections::HashMap;

use signaling::digest_client::{Credentials, DigestClient, RequestParts};
use signaling::registrar::{Algorithm, RegistrarSettings, UserSecret};
use signaling::testing::peer;
use signaling::Peer;

pub const PHONE_NAT: &str = "203.0.113.9:40000";
pub const CARRIER: &str = "198.51.100.1:5060";
pub const PBX: &str = "127.0.0.1:5080";

/// The dial plan of StaticPolicy plus a registrar.
pub struct RegPolicy {
    pub inner: StaticPolicy,
    pub settings: Arc<RegistrarSettings>,
    /// Dialled users the dial plan answers `locate` for, with the user it rewrites them to.
    pub locate: Vec<(String, String)>,
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
        if let Some((_, user)) = self.locate.iter().find(|(d, _)| d == to) {
            return RouteOutcome::Locate { user: user.clone() };
        }
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
}

pub type World = signaling::testing::World<RegPolicy>;

pub fn world(settings: RegistrarSettings) -> World {
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
            settings: Arc::new(settings),
            locate: Vec::new(),
        },
    )
}

/// The value of `name=` in a challenge header's value (quoted or not).
pub fn param_of(challenge: &str, name: &str) -> Option<String> {
    let quoted = format!("{name}=\"");
    if let Some(v) = challenge.split(&quoted).nth(1) {
        return v.split('"').next().map(str::to_string);
    }
    let plain = format!("{name}=");
    let v = challenge.split(&plain).nth(1)?;
    v.split([',', ' ']).next().map(str::to_string)
}

/// REGISTER of `to_user`@example.com from a phone at 192.168.1.20.
pub fn register(to_user: &str, cseq: u32, contact: &str, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKreg{cseq}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{to_user}@example.com>\r\nFrom: <sip:{to_user}@example.com>;tag=ph1\r\n\
         Call-ID: reg-call-1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// An INVITE from the carrier to Request-URI `ruri`.
pub fn invite(ruri: &str, call_id: &str) -> Vec<u8> {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nTo: <{ruri}>\r\nFrom: <sip:+15550001@carrier.net>;tag=c1\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+15550001@198.51.100.1:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The INVITEs sent to `to`.
pub fn invites_to(w: &mut World, to: &str) -> Vec<Request> {
    w.take_to(to)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "INVITE" => Some(r),
            _ => None,
        })
        .collect()
}

/// Every value of header `name` in `r`.
pub fn all(r: &Response, name: &str) -> Vec<String> {
    r.headers.get_all(name).map(str::to_string).collect()
}

/// example.com served, alice (password s3cret), calls authenticated.
pub fn settings() -> RegistrarSettings {
    RegistrarSettings {
        domains: vec!["example.com".into()],
        realm: "example.com".into(),
        min_expires: 60,
        max_expires: 3600,
        default_expires: 3600,
        users: HashMap::from([("alice".to_string(), UserSecret::password("s3cret"))]),
        aliases: HashMap::new(),
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        keepalive: 30,
        authenticate_calls: true,
        auth_failures: Default::default(),
        offline: None,
        presence: None,
    }
}

/// alice registers `contact` (challenge, then credentials); the status of the answer.
pub fn register_alice(w: &mut World, cseq: u32, contact: &str) -> u16 {
    w.feed(PHONE_NAT, &register("alice", cseq, contact, ""));
    let ch = w.final_to(PHONE_NAT);
    assert_eq!(ch.status, 401);
    let mut client = DigestClient::new(Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        realm: None,
    });
    let parts = RequestParts {
        method: "REGISTER",
        uri: "sip:example.com",
        body: b"",
    };
    let a = client
        .answer(&ch, &parts, None, "c0ffee")
        .expect("answerable");
    let auth = format!("{}: {}\r\n", a.header, a.value);
    w.feed(PHONE_NAT, &register("alice", cseq + 1, contact, &auth));
    // What else the REGISTER set off (messages held for alice) stays to be looked at.
    w.take_final(PHONE_NAT).status
}
