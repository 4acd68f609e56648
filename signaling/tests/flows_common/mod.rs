//! What the flow tests beside `b2bua_flows.rs` share: a core in the one test `World`
//! (`signaling::testing`) routing to fixed targets, leg A's requests, leg B's answers.
#![allow(dead_code)]

use signaling::b2bua::{make_response, CoreConfig, StaticPolicy, Target};
use signaling::message::{Request, SipMessage};
use signaling::testing::peer;

pub const A: &str = "127.0.0.1:5070";
pub const ME: &str = "127.0.0.1:5060";
pub const PBX: &str = "127.0.0.1:5080";
pub const PBX2: &str = "127.0.0.1:5090";

pub const SDP_A: &str = "v=0\r\no=alice 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";
pub const SDP_B: &str = "v=0\r\no=bob 1 1 IN IP4 10.2.2.2\r\ns=-\r\nc=IN IP4 10.2.2.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n";

pub type World = signaling::testing::World<StaticPolicy>;

pub fn target(name: &str, addr: &str) -> Target {
    Target {
        trunk: name.into(),
        peer: peer(addr),
        host: addr.into(),
    }
}

pub fn world(targets: Vec<Target>) -> World {
    world_with(targets, |_| {})
}

/// [`world`] with settings changed by `set`.
pub fn world_with(targets: Vec<Target>, set: impl FnOnce(&mut CoreConfig)) -> World {
    let mut cfg = CoreConfig {
        local_udp: Some(ME.parse().expect("address")),
        ..CoreConfig::default()
    };
    set(&mut cfg);
    World::new(
        cfg,
        StaticPolicy {
            targets,
            events: Vec::new(),
            released: Vec::new(),
        },
    )
}

/// Leg A's INVITE from `A` with Call-ID `call_id`, From tag `atag-{call_id}`, CSeq `cseq`,
/// branch `z9hG4bK-a-{branch}`.
pub fn invite_with(call_id: &str, cseq: u32, branch: &str, body: &str) -> Vec<u8> {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-{branch}\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-{call_id}\r\n\
To: <sip:+15551234567@127.0.0.1>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn invite(call_id: &str, body: &str) -> Vec<u8> {
    invite_with(call_id, 1, call_id, body)
}

/// An in-dialog request of leg A (From tag `atag-{call_id}`, To tag `to_tag`).
pub fn a_request(method: &str, call_id: &str, cseq: u32, to_tag: &str, body: &str) -> Vec<u8> {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a{method}{cseq}-{call_id}\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-{call_id}\r\n\
To: <sip:+15551234567@127.0.0.1>;tag={to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A request of the trunk in leg B's dialog of `inv` (From/To swapped, To tag `btag`).
pub fn b_request(method: &str, inv: &Request, cseq: u32, body: &str) -> Vec<u8> {
    b_request_with(method, inv, cseq, "", body)
}

/// [`b_request`] with `extra` header lines (each ending in CRLF).
pub fn b_request_with(method: &str, inv: &Request, cseq: u32, extra: &str, body: &str) -> Vec<u8> {
    let h = &inv.headers;
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-b{method}{cseq}\r\n\
Max-Forwards: 70\r\n\
From: {};tag=btag\r\n\
To: {}\r\n\
Call-ID: {}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:bob@127.0.0.1:5080>\r\n\
{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        h.get("To").unwrap(),
        h.get("From").unwrap(),
        inv.call_id().unwrap(),
        body.len()
    )
    .into_bytes()
}

/// A response to `req` with To tag `tag`, and `contact` / SDP `body` when not empty.
pub fn resp_with(
    req: &Request,
    status: u16,
    reason: &str,
    tag: &str,
    body: &str,
    contact: &str,
) -> SipMessage {
    let mut r = make_response(req, status, reason, Some(tag));
    if !contact.is_empty() {
        r.headers.push("Contact", contact.to_string());
    }
    if !body.is_empty() {
        r.headers.push("Content-Type", "application/sdp");
        r.body = body.as_bytes().to_vec();
    }
    SipMessage::Response(r)
}

/// Requests of `method` among `msgs`.
pub fn requests(msgs: &[SipMessage], method: &str) -> Vec<Request> {
    msgs.iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == method => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Sets up an answered call to `PBX` (leg B's To tag `btag`); returns (leg B's INVITE, A's
/// To tag).
pub fn answered_call<P: signaling::b2bua::Policy>(
    w: &mut signaling::testing::World<P>,
    call_id: &str,
) -> (Request, String) {
    w.feed(A, &invite(call_id, SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let _ack = w.take_request(PBX, "ACK");
    let rs = w.take_responses(A);
    let ok = rs.iter().find(|r| r.status == 200).expect("200 to A");
    let tag = ok.to().expect("To").tag().expect("tag").to_string();
    w.feed(A, &a_request("ACK", call_id, 1, &tag, ""));
    (b_inv, tag)
}

/// [`StaticPolicy`] with per-trunk settings a test turns on (everything else as it is).
pub struct Tuned {
    pub inner: StaticPolicy,
    /// [`Policy::tcp_fallback`] for every trunk.
    pub tcp_fallback: bool,
    /// [`Policy::refer_mode`] for every leg.
    pub refer: signaling::b2bua::ReferMode,
    /// [`Policy::is_trunk`] for every caller.
    pub a_trunk: bool,
    /// [`Policy::header_policy`] of the caller (a trunk) and of every leg B trunk.
    pub a_headers: Option<std::sync::Arc<signaling::b2bua::HeaderPolicy>>,
    pub b_headers: Option<std::sync::Arc<signaling::b2bua::HeaderPolicy>>,
    /// The From display name every route gives leg B (a dial plan's `rewrite.from_display`).
    pub from_display: Option<String>,
    /// Where [`Policy::route_redirect`] sends every URI (a transfer's target); `None`: 404.
    pub transfer_to: Option<Target>,
    /// [`Policy::dtmf_info`]: `Some`: every digit is taken (and recorded here as (call, leg,
    /// code, ms)); `None`: none is.
    pub dtmf: Option<Vec<(u64, signaling::b2bua::Leg, u8, u32)>>,
    /// [`Policy::media_export`] / [`Policy::media_adopt`]: `Some`: a call's media is
    /// `media:<Call-ID>` and every adoption is recorded here (with the call's leg A peers);
    /// `None`: media is not replicable.
    pub replicas: Option<Vec<Vec<u8>>>,
}

impl signaling::b2bua::Policy for Tuned {
    fn route(
        &mut self,
        r: &Request,
        f: signaling::Peer,
        to: &str,
        fr: &str,
        n: std::time::Instant,
    ) -> signaling::b2bua::RouteOutcome {
        let mut out = self.inner.route(r, f, to, fr, n);
        if let signaling::b2bua::RouteOutcome::Route { from_display, .. } = &mut out {
            from_display.clone_from(&self.from_display);
        }
        out
    }
    fn media_offer(
        &mut self,
        c: signaling::b2bua::CallRef<'_>,
        l: signaling::b2bua::Leg,
        s: &[u8],
        n: std::time::Instant,
    ) -> Result<Vec<u8>, signaling::b2bua::MediaRefusal> {
        self.inner.media_offer(c, l, s, n)
    }
    fn media_answer(
        &mut self,
        c: signaling::b2bua::CallRef<'_>,
        l: signaling::b2bua::Leg,
        s: &[u8],
        n: std::time::Instant,
    ) -> Result<Vec<u8>, String> {
        self.inner.media_answer(c, l, s, n)
    }
    fn media_release(&mut self, c: signaling::b2bua::CallRef<'_>, n: std::time::Instant) {
        self.inner.media_release(c, n)
    }
    fn event(&mut self, ev: signaling::b2bua::CallEvent, n: std::time::Instant) {
        self.inner.event(ev, n)
    }
    fn tcp_fallback(
        &mut self,
        _trunk: &str,
        udp: std::net::SocketAddr,
        _now: std::time::Instant,
    ) -> Option<std::net::SocketAddr> {
        self.tcp_fallback.then_some(udp)
    }
    fn refer_mode(
        &mut self,
        _trunk: Option<&str>,
        _peer: signaling::Peer,
        _now: std::time::Instant,
    ) -> signaling::b2bua::ReferMode {
        self.refer
    }
    fn dtmf_info(
        &mut self,
        call: signaling::b2bua::CallRef<'_>,
        from: signaling::b2bua::Leg,
        code: u8,
        ms: u32,
        _now: std::time::Instant,
    ) -> bool {
        match &mut self.dtmf {
            Some(v) => {
                v.push((call.id, from, code, ms));
                true
            }
            None => false,
        }
    }
    fn media_export(
        &mut self,
        call: signaling::b2bua::CallRef<'_>,
        _now: std::time::Instant,
    ) -> Option<Vec<u8>> {
        self.replicas
            .as_ref()
            .map(|_| format!("media:{}", call.call_id).into_bytes())
    }
    fn media_adopt(
        &mut self,
        _call: signaling::b2bua::CallRef<'_>,
        media: &[u8],
        _now: std::time::Instant,
    ) -> bool {
        match &mut self.replicas {
            Some(v) => {
                v.push(media.to_vec());
                true
            }
            None => false,
        }
    }
    fn is_trunk(&mut self, _from: signaling::Peer, _now: std::time::Instant) -> bool {
        self.a_trunk
    }
    fn route_redirect(
        &mut self,
        _uri: &str,
        _from: signaling::Peer,
        to_user: &str,
        from_user: &str,
        _now: std::time::Instant,
    ) -> signaling::b2bua::RouteOutcome {
        match &self.transfer_to {
            Some(t) => signaling::b2bua::RouteOutcome::Route {
                targets: vec![t.clone()],
                to_user: to_user.to_string(),
                from_user: from_user.to_string(),
                from_display: None,
            },
            None => signaling::b2bua::RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            },
        }
    }
    fn header_policy(
        &mut self,
        trunk: Option<&str>,
        _peer: signaling::Peer,
        _now: std::time::Instant,
    ) -> Option<std::sync::Arc<signaling::b2bua::HeaderPolicy>> {
        match trunk {
            None => self.a_headers.clone(),
            Some(_) => self.b_headers.clone(),
        }
    }
}

/// A world whose policy is [`Tuned`].
pub fn tuned_world(targets: Vec<Target>, tcp_fallback: bool) -> signaling::testing::World<Tuned> {
    let cfg = CoreConfig {
        local_udp: Some(ME.parse().expect("address")),
        local_tcp: Some(ME.parse().expect("address")),
        ..CoreConfig::default()
    };
    signaling::testing::World::new(
        cfg,
        Tuned {
            inner: StaticPolicy {
                targets,
                events: Vec::new(),
                released: Vec::new(),
            },
            tcp_fallback,
            refer: signaling::b2bua::ReferMode::Relay,
            a_trunk: false,
            a_headers: None,
            b_headers: None,
            from_display: None,
            transfer_to: None,
            dtmf: None,
            replicas: None,
        },
    )
}
