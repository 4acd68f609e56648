//! Dual stack in the core (RFC 6157, RFC 5118): each leg of a call is written with our address
//! of that leg's family. A caller on IPv6 calling a trunk on IPv4 sees only our IPv6 address
//! (Via, Contact, as `[2001:db8::1]:5060` references), the trunk only our IPv4 address, and the
//! in-dialog requests of each leg keep to its family; the other way round too.

use std::time::Duration;

use signaling::b2bua::{make_response, CoreConfig, StaticPolicy, Target};
use signaling::headers::NameAddr;
use signaling::message::{Request, SipMessage};
use signaling::testing::peer;

const ME4: &str = "192.0.2.1:5060";
const ME6: &str = "[2001:db8::1]:5060";
const CALLER6: &str = "[2001:db8::a]:5070";
const CALLER4: &str = "192.0.2.10:5070";
const TRUNK4: &str = "192.0.2.20:5080";
const TRUNK6: &str = "[2001:db8::20]:5080";

type World = signaling::testing::World<StaticPolicy>;

fn world(trunk: &str) -> World {
    let cfg = CoreConfig {
        local_udp: Some(ME4.parse().unwrap()),
        local_udp_v6: Some(ME6.parse().unwrap()),
        ..CoreConfig::default()
    };
    World::new(
        cfg,
        StaticPolicy {
            targets: vec![Target {
                trunk: "t".into(),
                peer: peer(trunk),
                host: trunk.into(),
            }],
            events: Vec::new(),
            released: Vec::new(),
        },
    )
}

/// An INVITE from `from` (a Via, Contact and Request-URI of its own family).
fn invite(from: &str, me: &str) -> Vec<u8> {
    format!(
        "INVITE sip:+15551234567@{me} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bK-a-1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@{from}>;tag=atag\r\n\
To: <sip:+15551234567@{me}>\r\n\
Call-ID: v6-call\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@{from}>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn text(m: &SipMessage) -> String {
    String::from_utf8_lossy(&m.to_bytes()).into_owned()
}

fn contact_host_port(headers: &signaling::message::Headers) -> (String, Option<u16>) {
    let c = NameAddr::parse(headers.get("Contact").expect("a Contact")).unwrap();
    let (h, p) = c.uri.host_port().unwrap();
    (h.to_string(), p)
}

/// A call from `caller` to `trunk` through the core; each leg's messages must name only the
/// address of our own `caller_me` / `trunk_me` family.
fn call_across(caller: &str, caller_me: &str, trunk: &str, trunk_me: &str) {
    let mut w = world(trunk);
    w.feed(caller, &invite(caller, caller_me));
    let rs = w.take_responses(caller);
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), [100]);

    // Leg B: our Via, Contact and From host are of the trunk's family.
    let b_inv = w.take_request(trunk, "INVITE");
    let b_text = text(&SipMessage::Request(b_inv.clone()));
    let via = b_inv.top_via().unwrap();
    assert_eq!(
        format!("{}:{}", via.host, via.port.unwrap()),
        trunk_me,
        "{b_text}"
    );
    assert_eq!(
        contact_host_port(&b_inv.headers),
        split(trunk_me),
        "{b_text}"
    );
    let from = b_inv.from().unwrap();
    assert_eq!(
        from.uri.host_port().unwrap().0,
        split(trunk_me).0,
        "{b_text}"
    );
    assert_eq!(b_inv.uri, format!("sip:+15551234567@{trunk}"));
    assert!(!b_text.contains(&split(caller_me).0), "{b_text}");
    assert!(!b_text.contains(&split(caller).0), "{b_text}");

    // The trunk answers; leg A's 200 has our Contact of the caller's family.
    let mut ok = make_response(&b_inv, 200, "OK", Some("btag"));
    ok.headers.push("Contact", format!("<sip:bob@{trunk}>"));
    w.feed_msg(trunk, &SipMessage::Response(ok));
    let ack = w.take_request(trunk, "ACK");
    assert_eq!(ack.uri, format!("sip:bob@{trunk}"));
    let v = ack.top_via().unwrap();
    assert_eq!(format!("{}:{}", v.host, v.port.unwrap()), trunk_me);
    let rs = w.take_responses(caller);
    let ok_a = rs.iter().find(|r| r.status == 200).expect("200 to A");
    let a_text = text(&SipMessage::Response(ok_a.clone()));
    assert_eq!(
        contact_host_port(&ok_a.headers),
        split(caller_me),
        "{a_text}"
    );
    assert!(!a_text.contains(&split(trunk_me).0), "{a_text}");
    assert!(!a_text.contains(&split(trunk).0), "{a_text}");
    let a_tag = ok_a.to().unwrap().tag().unwrap().to_string();

    // A BYE from the trunk reaches the caller with our Via of the caller's family.
    let bye = format!(
        "BYE sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {trunk};branch=z9hG4bK-b-bye\r\nMax-Forwards: 70\r\n\
From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        trunk_me,
        b_inv.headers.get("To").unwrap().to_owned() + ";tag=btag",
        b_inv.headers.get("From").unwrap(),
        b_inv.call_id().unwrap(),
    );
    w.feed(trunk, bye.as_bytes());
    let a_bye: Request = w.take_request(caller, "BYE");
    let v = a_bye.top_via().unwrap();
    assert_eq!(format!("{}:{}", v.host, v.port.unwrap()), caller_me);
    assert_eq!(a_bye.uri, format!("sip:alice@{caller}"));
    assert_eq!(a_bye.from().unwrap().tag(), Some(a_tag.as_str()));
    assert_eq!(w.final_to(trunk).status, 200);
    w.respond(caller, &a_bye, 200);
    assert_eq!(w.core.active_calls(), 0);
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.transactions(), 0);
}

/// `host:port` as (host, Some(port)), the host as the URI views hold it.
fn split(a: &str) -> (String, Option<u16>) {
    let s: std::net::SocketAddr = a.parse().unwrap();
    let host = match s {
        std::net::SocketAddr::V6(v) => format!("[{}]", v.ip()),
        std::net::SocketAddr::V4(v) => v.ip().to_string(),
    };
    (host, Some(s.port()))
}

#[test]
fn caller_on_ipv6_trunk_on_ipv4() {
    call_across(CALLER6, ME6, TRUNK4, ME4);
}

#[test]
fn caller_on_ipv4_trunk_on_ipv6() {
    call_across(CALLER4, ME4, TRUNK6, ME6);
}

#[test]
fn ipv6_caller_gets_received_without_brackets_and_rport() {
    // RFC 3261 §18.2.1 / RFC 3581: `received` holds an IPv6address (no brackets, RFC 3261
    // §25.1 `via-received`), and the response goes back to the source.
    let mut w = world(TRUNK4);
    let inv = String::from_utf8(invite(CALLER6, ME6))
        .unwrap()
        .replace("branch=z9hG4bK-a-1", "branch=z9hG4bK-a-1;rport")
        .replace(
            "Via: SIP/2.0/UDP [2001:db8::a]:5070",
            "Via: SIP/2.0/UDP [2001:db8:0::a]:5070",
        );
    w.feed(CALLER6, inv.as_bytes());
    let rs = w.take_responses(CALLER6);
    let via = rs[0].top_via().unwrap();
    assert_eq!(via.received(), Some("2001:db8::a"));
    assert_eq!(via.rport(), Some(Some(5070)));
    // A caller with no IPv6 listener of ours gets our IPv4 address (the only one we have).
    let cfg = CoreConfig {
        local_udp: Some(ME4.parse().unwrap()),
        ..CoreConfig::default()
    };
    let mut w4 = World::new(
        cfg,
        StaticPolicy {
            targets: vec![Target {
                trunk: "t".into(),
                peer: peer(TRUNK6),
                host: TRUNK6.into(),
            }],
            events: Vec::new(),
            released: Vec::new(),
        },
    );
    w4.feed(CALLER4, &invite(CALLER4, ME4));
    let b = w4.take_request(TRUNK6, "INVITE");
    let v = b.top_via().unwrap();
    assert_eq!(format!("{}:{}", v.host, v.port.unwrap()), ME4);
}

/// StaticPolicy that writes, into the SDP it hands leg B, the family of leg B's peer (as the
/// relay's rewrite would: `c=IN IP6` towards an IPv6 trunk).
struct FamilyPolicy {
    inner: StaticPolicy,
    offers: Vec<std::net::SocketAddr>,
}

impl signaling::b2bua::Policy for FamilyPolicy {
    fn route(
        &mut self,
        req: &Request,
        from: signaling::Peer,
        to_user: &str,
        from_user: &str,
        now: std::time::Instant,
    ) -> signaling::b2bua::RouteOutcome {
        self.inner.route(req, from, to_user, from_user, now)
    }
    fn media_offer(
        &mut self,
        call: signaling::b2bua::CallRef<'_>,
        from: signaling::b2bua::Leg,
        _sdp: &[u8],
        _now: std::time::Instant,
    ) -> Result<Vec<u8>, signaling::b2bua::MediaRefusal> {
        let to = call.peer(match from {
            signaling::b2bua::Leg::A => signaling::b2bua::Leg::B,
            signaling::b2bua::Leg::B => signaling::b2bua::Leg::A,
        });
        self.offers.push(to);
        let fam = if to.is_ipv6() {
            "IP6 2001:db8::5"
        } else {
            "IP4 192.0.2.5"
        };
        Ok(format!(
            "v=0\r\no=- 1 1 IN {fam}\r\ns=-\r\nc=IN {fam}\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
        )
        .into_bytes())
    }
    fn media_answer(
        &mut self,
        call: signaling::b2bua::CallRef<'_>,
        from: signaling::b2bua::Leg,
        sdp: &[u8],
        now: std::time::Instant,
    ) -> Result<Vec<u8>, String> {
        self.inner.media_answer(call, from, sdp, now)
    }
    fn media_release(&mut self, call: signaling::b2bua::CallRef<'_>, now: std::time::Instant) {
        self.inner.media_release(call, now)
    }
    fn event(&mut self, ev: signaling::b2bua::CallEvent, now: std::time::Instant) {
        self.inner.event(ev, now)
    }
}

#[test]
fn failover_to_a_trunk_of_the_other_family_reoffers_for_it() {
    let cfg = CoreConfig {
        local_udp: Some(ME4.parse().unwrap()),
        local_udp_v6: Some(ME6.parse().unwrap()),
        ..CoreConfig::default()
    };
    let t = |name: &str, a: &str| Target {
        trunk: name.into(),
        peer: peer(a),
        host: a.into(),
    };
    let mut w = signaling::testing::World::new(
        cfg,
        FamilyPolicy {
            inner: StaticPolicy {
                targets: vec![t("v6", TRUNK6), t("v4", TRUNK4)],
                events: Vec::new(),
                released: Vec::new(),
            },
            offers: Vec::new(),
        },
    );
    let sdp = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let inv = String::from_utf8(invite(CALLER4, ME4)).unwrap().replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    w.feed(CALLER4, inv.as_bytes());
    let first = w.take_request(TRUNK6, "INVITE");
    assert!(String::from_utf8_lossy(&first.body).contains("c=IN IP6 2001:db8::5"));
    assert_eq!(first.top_via().unwrap().host, "[2001:db8::1]");
    // The IPv6 trunk fails: the IPv4 one gets an offer made for IPv4, and our IPv4 Via.
    w.respond(TRUNK6, &first, 503);
    let second = w.take_request(TRUNK4, "INVITE");
    assert!(
        String::from_utf8_lossy(&second.body).contains("c=IN IP4 192.0.2.5"),
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    assert_eq!(second.top_via().unwrap().host, "192.0.2.1");
    assert_eq!(
        w.policy.offers,
        [TRUNK6.parse().unwrap(), TRUNK4.parse().unwrap()]
    );
}

/// RFC 5118 references in a dialog's route set and remote target (Record-Route and Contact of
/// an IPv6 trunk's 2xx) come back as written in the ACK and BYE: Route and Request-URI.
#[test]
fn ipv6_record_route_and_contact_make_the_route_set_and_target() {
    let mut w = world(TRUNK6);
    w.feed(CALLER4, &invite(CALLER4, ME4));
    let b_inv = w.take_request(TRUNK6, "INVITE");
    let mut ok = make_response(&b_inv, 200, "OK", Some("btag"));
    ok.headers.push(
        "Record-Route",
        "<sip:[2001:db8::30]:5060;lr>, <sip:[2001:DB8::31];lr>",
    );
    ok.headers.push("Contact", "<sip:bob@[2001:db8::20]:5080>");
    w.feed_msg(TRUNK6, &SipMessage::Response(ok));
    let ack = w.take_request(TRUNK6, "ACK");
    assert_eq!(ack.uri, "sip:bob@[2001:db8::20]:5080");
    let routes: Vec<&str> = ack.headers.get_all("Route").collect();
    assert_eq!(
        routes.join(", "),
        "<sip:[2001:DB8::31];lr>, <sip:[2001:db8::30]:5060;lr>",
        "the UAC's route set is the Record-Route reversed (RFC 3261 §12.1.2)"
    );
    let a_ok = w.final_to(CALLER4);
    let a_tag = a_ok.to().unwrap().tag().unwrap().to_string();
    let bye = format!(
        "BYE sip:{ME4} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER4};branch=z9hG4bK-a-bye\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@{CALLER4}>;tag=atag\r\n\
To: <sip:+15551234567@{ME4}>;tag={a_tag}\r\nCall-ID: v6-call\r\nCSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    w.feed(CALLER4, bye.as_bytes());
    let b_bye = w.take_request(TRUNK6, "BYE");
    assert_eq!(b_bye.uri, "sip:bob@[2001:db8::20]:5080");
    assert_eq!(
        b_bye
            .headers
            .get_all("Route")
            .collect::<Vec<_>>()
            .join(", "),
        "<sip:[2001:DB8::31];lr>, <sip:[2001:db8::30]:5060;lr>"
    );
    let v = b_bye.top_via().unwrap();
    assert_eq!(format!("{}:{}", v.host, v.port.unwrap()), ME6);
}
