//! B2BUA call flows in virtual time: no sockets, no sleeping. Leg A's phone and leg B's trunks
//! are simulated by feeding bytes in and reading what the core transmits.

use std::time::{Duration, Instant};

use signaling::b2bua::{make_response, CallEvent, CoreConfig, StaticPolicy, Target};
use signaling::message::{Request, SipMessage};
use signaling::parse::parse;
use signaling::testing::peer;

const A: &str = "127.0.0.1:5070";
const ME: &str = "127.0.0.1:5060";
const PBX: &str = "127.0.0.1:5080";
const PBX2: &str = "127.0.0.1:5090";

fn target(name: &str, addr: &str) -> Target {
    Target {
        trunk: name.into(),
        peer: peer(addr),
        host: addr.into(),
    }
}

const SDP_A: &str = "v=0\r\no=alice 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";
const SDP_B: &str = "v=0\r\no=bob 1 1 IN IP4 10.2.2.2\r\ns=-\r\nc=IN IP4 10.2.2.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n";

type World = signaling::testing::World<StaticPolicy>;

fn world(targets: Vec<Target>) -> World {
    let cfg = CoreConfig {
        local_udp: Some(ME.parse().unwrap()),
        ..CoreConfig::default()
    };
    World::new(
        cfg,
        StaticPolicy {
            targets,
            events: Vec::new(),
            released: Vec::new(),
        },
    )
}

fn invite(call_id: &str, body: &str) -> Vec<u8> {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "INVITE sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-{call_id}\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-{call_id}\r\n\
To: <sip:+15551234567@127.0.0.1>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
Record-Route: <sip:secret-proxy.a.example;lr>\r\n\
X-Custom: keep me\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn resp_with(
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

fn a_request(method: &str, call_id: &str, cseq: u32, to_tag: &str, body: &str) -> Vec<u8> {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
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

/// Sets up an answered call; returns (leg B's INVITE, A's To tag).
fn answered_call(w: &mut World, call_id: &str) -> (Request, String) {
    w.feed(A, &invite(call_id, SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag", "", ""));
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let _ack = w.take_request(PBX, "ACK");
    let rs = w.take_responses(A);
    let ok = rs.iter().find(|r| r.status == 200).expect("200 to A");
    let tag = ok.to().unwrap().tag().unwrap().to_string();
    w.feed(A, &a_request("ACK", call_id, 1, &tag, ""));
    (b_inv, tag)
}

#[test]
fn basic_call_hides_topology_and_maps_responses() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("call-1", SDP_A));
    let rs = w.take_responses(A);
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![100]);
    let b_inv = w.take_request(PBX, "INVITE");
    // Topology hiding: none of leg A's Call-ID, Via, Contact, Record-Route on leg B.
    let text = String::from_utf8_lossy(&SipMessage::Request(b_inv.clone()).to_bytes()).to_string();
    assert_ne!(b_inv.call_id().unwrap(), "call-1");
    assert!(!text.contains("call-1"), "{text}");
    assert!(!text.contains("5070"), "leg A's port leaked: {text}");
    assert!(!text.contains("secret-proxy"), "{text}");
    assert!(!text.contains("atag-"), "{text}");
    assert!(text.contains("X-Custom: keep me"), "{text}");
    assert_eq!(b_inv.max_forwards(), Some(69));
    assert!(b_inv.uri.starts_with("sip:+15551234567@127.0.0.1:5080"));
    assert_eq!(b_inv.body, SDP_A.as_bytes());
    let via = b_inv.top_via().unwrap();
    assert!(via.branch().unwrap().starts_with("z9hG4bK"));

    // 180 and 200 are mapped to leg A with leg A's identifiers.
    w.feed_msg(
        PBX,
        &resp_with(
            &b_inv,
            180,
            "Ringing",
            "btag",
            "",
            "<sip:bob@127.0.0.1:5080>",
        ),
    );
    let rs = w.take_responses(A);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 180);
    assert_eq!(rs[0].call_id(), Some("call-1"));
    let a_tag = rs[0].to().unwrap().tag().unwrap().to_string();
    assert_ne!(a_tag, "btag");
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let ack = w.take_request(PBX, "ACK");
    assert_eq!(ack.call_id(), b_inv.call_id());
    assert_eq!(ack.uri, "sip:bob@127.0.0.1:5080");
    let rs = w.take_responses(A);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 200);
    assert_eq!(rs[0].body, SDP_B.as_bytes());
    let a_text =
        String::from_utf8_lossy(&SipMessage::Response(rs[0].clone()).to_bytes()).to_string();
    assert!(!a_text.contains("5080"), "leg B leaked into A: {a_text}");
    assert!(!a_text.contains("btag"), "{a_text}");
    assert!(!a_text.contains(b_inv.call_id().unwrap()), "{a_text}");
    // RFC 3261 §12.1.1: leg A's proxies stay on its dialog's path (their Record-Route is
    // echoed in the 2xx, and only on leg A).
    assert_eq!(
        rs[0].headers.get("Record-Route"),
        Some("<sip:secret-proxy.a.example;lr>"),
        "{a_text}"
    );
    w.feed(A, &a_request("ACK", "call-1", 1, &a_tag, ""));

    // BYE from A: 200 to A, BYE to B; once B answers the call is gone.
    w.feed(A, &a_request("BYE", "call-1", 2, &a_tag, ""));
    let rs = w.take_responses(A);
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200]);
    let bye = w.take_request(PBX, "BYE");
    assert_eq!(bye.call_id(), b_inv.call_id());
    assert_eq!(bye.to().unwrap().tag(), Some("btag"));
    w.feed_msg(PBX, &resp_with(&bye, 200, "OK", "btag", "", ""));
    assert_eq!(w.core.active_calls(), 0);
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.transactions(), 0, "transactions leaked");
    assert!(w
        .policy
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::Finished { status: 200, .. })));
}

#[test]
fn bye_from_callee_is_relayed_to_caller() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (b_inv, a_tag) = answered_call(&mut w, "call-2");
    w.take_to(A);
    let bye = format!(
        "BYE sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKbbye\r\nMax-Forwards: 70\r\nFrom: <sip:+15551234567@127.0.0.1:5080>;tag=btag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        b_inv.headers.get("From").unwrap(),
        b_inv.call_id().unwrap()
    );
    w.feed(PBX, bye.as_bytes());
    let rs = w.take_responses(PBX);
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200]);
    let a_bye = w.take_request(A, "BYE");
    assert_eq!(a_bye.call_id(), Some("call-2"));
    assert_eq!(a_bye.from().unwrap().tag(), Some(a_tag.as_str()));
    assert_eq!(a_bye.to().unwrap().tag(), Some("atag-call-2"));
    assert_eq!(a_bye.uri, "sip:alice@127.0.0.1:5070");
    w.feed_msg(A, &resp_with(&a_bye, 200, "OK", "x", "", ""));
    assert_eq!(w.core.active_calls(), 0);
}

#[test]
fn cancel_while_ringing_gives_487_and_cancels_leg_b() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("call-3", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag", "", ""));
    w.take_to(A);
    let cancel = "CANCEL sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-call-3\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-call-3\r\nTo: <sip:+15551234567@127.0.0.1>\r\nCall-ID: call-3\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, cancel.as_bytes());
    let rs = w.take_responses(A);
    let st: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert!(st.contains(&200) && st.contains(&487), "{st:?}");
    let b_cancel = w.take_request(PBX, "CANCEL");
    assert_eq!(
        b_cancel.top_via().unwrap().branch(),
        b_inv.top_via().unwrap().branch()
    );
    w.feed_msg(PBX, &resp_with(&b_cancel, 200, "OK", "btag", "", ""));
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 487, "Request Terminated", "btag", "", ""),
    );
    let ack = w.take_request(PBX, "ACK");
    assert_eq!(
        ack.top_via().unwrap().branch(),
        b_inv.top_via().unwrap().branch()
    );
    // A's ACK for the 487.
    let a_tag = rs
        .iter()
        .find(|r| r.status == 487)
        .unwrap()
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_string();
    let mut ack_a = a_request("ACK", "call-3", 1, &a_tag, "");
    // Same branch as the INVITE: a non-2xx ACK belongs to the INVITE transaction.
    let s = String::from_utf8(ack_a.clone())
        .unwrap()
        .replace("z9hG4bK-aACK1-call-3", "z9hG4bK-a-call-3");
    ack_a = s.into_bytes();
    w.feed(A, &ack_a);
    assert_eq!(w.core.active_calls(), 0);
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.transactions(), 0);
}

#[test]
fn busy_is_relayed_without_failover() {
    let mut w = world(vec![target("pbx", PBX), target("pbx2", PBX2)]);
    w.feed(A, &invite("call-4", ""));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 486, "Busy Here", "btag", "", ""));
    let rs = w.take_responses(A);
    assert!(rs.iter().any(|r| r.status == 486));
    assert!(w.take_to(PBX2).is_empty());
}

#[test]
fn failover_on_503_and_not_on_603() {
    let mut w = world(vec![target("pbx", PBX), target("pbx2", PBX2)]);
    w.feed(A, &invite("call-5", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 503, "Service Unavailable", "btag", "", ""),
    );
    let b_inv2 = w.take_request(PBX2, "INVITE");
    assert_eq!(b_inv2.body, SDP_A.as_bytes());
    assert!(b_inv2.uri.contains("127.0.0.1:5090"));
    assert!(!w.take_responses(A).iter().any(|r| r.status >= 200));
    w.feed_msg(
        PBX2,
        &resp_with(
            &b_inv2,
            200,
            "OK",
            "b2tag",
            SDP_B,
            "<sip:bob@127.0.0.1:5090>",
        ),
    );
    let rs = w.take_responses(A);
    assert!(rs.iter().any(|r| r.status == 200));

    let mut w = world(vec![target("pbx", PBX), target("pbx2", PBX2)]);
    w.feed(A, &invite("call-6", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 603, "Decline", "btag", "", ""));
    assert!(w
        .take_to(PBX2)
        .iter()
        .all(|m| !matches!(m, SipMessage::Request(_))));
    let rs = w.take_responses(A);
    assert!(rs.iter().any(|r| r.status == 603));
}

#[test]
fn failover_on_transport_error_is_immediate() {
    let mut w = world(vec![target("pbx", PBX), target("pbx2", PBX2)]);
    w.feed(A, &invite("call-7", SDP_A));
    let _ = w.take_request(PBX, "INVITE");
    let now = w.now;
    w.core.transport_error(peer(PBX), now, &mut w.policy);
    w.drain();
    let b_inv2 = w.take_request(PBX2, "INVITE");
    assert!(b_inv2.uri.contains("5090"));
}

#[test]
fn silent_target_fails_over_after_no_answer_timer() {
    let mut w = world(vec![target("pbx", PBX), target("pbx2", PBX2)]);
    w.feed(A, &invite("call-8", SDP_A));
    let _ = w.take_request(PBX, "INVITE");
    w.advance(Duration::from_secs(5));
    let _ = w.take_request(PBX2, "INVITE");
}

#[test]
fn all_targets_fail_gives_final_error() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("call-9", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 500, "Oops", "btag", "", ""));
    let rs = w.take_responses(A);
    assert!(rs.iter().any(|r| r.status == 500), "{rs:?}");
    assert_eq!(w.core.active_calls(), 0);
}

#[test]
fn hold_reinvite_is_relayed_with_sdp() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (b_inv, a_tag) = answered_call(&mut w, "call-10");
    w.take_to(A);
    w.take_to(PBX);
    let hold = SDP_A.replace("sendrecv", "sendonly");
    w.feed(A, &a_request("INVITE", "call-10", 2, &a_tag, &hold));
    let reinv = w.take_request(PBX, "INVITE");
    assert_eq!(reinv.call_id(), b_inv.call_id());
    assert_eq!(reinv.to().unwrap().tag(), Some("btag"));
    assert!(String::from_utf8_lossy(&reinv.body).contains("a=sendonly"));
    let held = SDP_B.replace("sendrecv", "recvonly");
    w.feed_msg(
        PBX,
        &resp_with(&reinv, 200, "OK", "btag", &held, "<sip:bob@127.0.0.1:5080>"),
    );
    let _ack_b = w.take_request(PBX, "ACK");
    let rs = w.take_responses(A);
    let ok = rs
        .iter()
        .find(|r| r.status == 200)
        .expect("200 for re-INVITE");
    assert!(String::from_utf8_lossy(&ok.body).contains("a=recvonly"));
    assert_eq!(ok.call_id(), Some("call-10"));
}

#[test]
fn options_to_trunkline_is_answered() {
    let mut w = world(vec![]);
    let opt = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1:5060>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, opt.as_bytes());
    let rs = w.take_responses(A);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 200);
    assert!(rs[0].headers.get("Allow").unwrap().contains("INVITE"));
}

/// RFC 3261 §11: an OPTIONS to trunkline itself with Max-Forwards 0 (a next-hop probe) is
/// answered 200, not 483; an INVITE with 0 is still 483 (the next test).
#[test]
fn options_with_max_forwards_zero_is_answered() {
    let mut w = world(vec![]);
    let opt = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKopt0\r\nMax-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=p0\r\nTo: <sip:127.0.0.1:5060>\r\nCall-ID: opt0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, opt.as_bytes());
    let rs = w.take_responses(A);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 200);
}

#[test]
fn no_route_is_404_and_max_forwards_zero_is_483() {
    let mut w = world(vec![]);
    w.feed(A, &invite("call-11", SDP_A));
    let rs = w.take_responses(A);
    assert!(rs.iter().any(|r| r.status == 404), "{rs:?}");
    let mut w = world(vec![target("pbx", PBX)]);
    let inv = String::from_utf8(invite("call-12", SDP_A))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    w.feed(A, inv.as_bytes());
    let rs = w.take_responses(A);
    assert!(rs.iter().any(|r| r.status == 483), "{rs:?}");
    assert!(w.take_to(PBX).is_empty());
}

#[test]
fn garbage_gets_400_or_nothing_and_core_survives() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKg\r\nCSeq: banana\r\n\r\n");
    for r in w.take_responses(A) {
        assert_eq!(r.status / 100, 4);
    }
    assert!(w.take_to(PBX).is_empty());
    let mut x: u32 = 12345;
    let base = invite("call-g", SDP_A);
    for _ in 0..2000 {
        let mut m = base.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = (x as usize) % m.len();
            m[i] = (x >> 8) as u8;
        }
        // A 400 echoes the sender's (possibly broken) headers, so what comes back to A need not
        // parse; what trunkline itself builds for leg B must.
        let now = w.now;
        w.core.handle_bytes(&m, peer(A), now, &mut w.policy);
        while let Some(t) = w.core.poll_transmit() {
            if t.to == peer(PBX) {
                assert!(
                    parse(&t.data).is_ok(),
                    "malformed leg B message: {:?}",
                    String::from_utf8_lossy(&t.data)
                );
            }
        }
    }
    w.take_to(A);
    w.take_to(PBX);
    let (_b, _t) = answered_call(&mut w, "call-after-garbage");
}

#[test]
fn rfc2543_invite_without_from_tag_is_carried() {
    let mut w = world(vec![target("pbx", PBX)]);
    let inv = String::from_utf8(invite("call-2543", SDP_A))
        .unwrap()
        .replace(";tag=atag-call-2543", "");
    w.feed(A, inv.as_bytes());
    assert!(w.take_responses(A).iter().all(|r| r.status < 300));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let ok = w
        .take_responses(A)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200");
    let a_tag = ok.to().unwrap().tag().unwrap().to_string();
    // BYE from the RFC 2543 caller, again without a From tag, finds the call.
    let bye = String::from_utf8(a_request("BYE", "call-2543", 2, &a_tag, ""))
        .unwrap()
        .replace(";tag=atag-call-2543", "");
    w.feed(A, bye.as_bytes());
    let bye_b = w.take_request(PBX, "BYE");
    w.feed_msg(PBX, &resp_with(&bye_b, 200, "OK", "btag", "", ""));
    assert_eq!(w.core.active_calls(), 0);
}

/// A 2xx that crosses our CANCEL on leg B: leg B is ACKed and BYEd, and the call's media is
/// released exactly once (relay ports and the trunk slot must not leak).
#[test]
fn ok_crossing_cancel_is_acked_byed_and_releases_media_once() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("call-x", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag", "", ""));
    w.take_to(A);
    let cancel = "CANCEL sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-call-x\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-call-x\r\nTo: <sip:+15551234567@127.0.0.1>\r\nCall-ID: call-x\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, cancel.as_bytes());
    let st: Vec<u16> = w.take_responses(A).iter().map(|r| r.status).collect();
    assert!(st.contains(&487), "{st:?}");
    let b_cancel = w.take_request(PBX, "CANCEL");
    // The callee answered before our CANCEL reached it.
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    w.feed_msg(
        PBX,
        &resp_with(&b_cancel, 481, "No Transaction", "btag", "", ""),
    );
    let ack = w.take_request(PBX, "ACK");
    assert_eq!(ack.cseq().unwrap().method.as_str(), "ACK");
    let bye = w.take_request(PBX, "BYE");
    assert_eq!(w.policy.released.len(), 1, "media released once at the 2xx");
    // Nothing of the 200 reaches the caller, who already has its 487.
    assert!(w.take_responses(A).iter().all(|r| r.status != 200));
    w.feed_msg(PBX, &resp_with(&bye, 200, "OK", "btag", "", ""));
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.core.transactions(), 0);
    assert_eq!(w.policy.released.len(), 1, "and never again");
}

/// Every ordinary way a call ends releases its media exactly once.
#[test]
fn media_released_once_for_cancel_busy_and_bye() {
    let mut w = world(vec![target("pbx", PBX)]);
    // Busy.
    w.feed(A, &invite("call-busy", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 486, "Busy Here", "btag", "", ""));
    w.advance(Duration::from_secs(1));
    assert_eq!(w.policy.released.len(), 1, "busy");
    // Answered, then BYE.
    let (_b_inv, a_tag) = answered_call(&mut w, "call-bye");
    w.advance(Duration::from_secs(64));
    assert_eq!(w.policy.released.len(), 1, "answered call still up");
    w.feed(A, &a_request("BYE", "call-bye", 2, &a_tag, ""));
    let bye = w.take_request(PBX, "BYE");
    w.feed_msg(PBX, &resp_with(&bye, 200, "OK", "btag", "", ""));
    w.advance(Duration::from_secs(64));
    assert_eq!(w.policy.released.len(), 2, "BYE");
    assert_eq!(w.core.active_calls(), 0);
    // Cancelled while ringing, the callee confirms with 487.
    w.feed(A, &invite("call-c", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag", "", ""));
    let cancel = "CANCEL sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-call-c\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-call-c\r\nTo: <sip:+15551234567@127.0.0.1>\r\nCall-ID: call-c\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, cancel.as_bytes());
    let b_cancel = w.take_request(PBX, "CANCEL");
    w.feed_msg(PBX, &resp_with(&b_cancel, 200, "OK", "btag", "", ""));
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 487, "Request Terminated", "btag", "", ""),
    );
    w.advance(Duration::from_secs(64));
    assert_eq!(w.policy.released.len(), 3, "cancel");
}

/// Shutdown: a draining core answers new INVITEs 503 + Retry-After (counted as rejected), and
/// at the end of the drain a call still ringing is ended: 503 + Retry-After to the caller,
/// CANCEL to the callee, whose 487 is ACKed; an answered call gets BYE on both legs.
#[test]
fn shutdown_rejects_new_calls_and_ends_ringing_and_answered_ones() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (_b1, _a_tag) = answered_call(&mut w, "call-up");
    w.feed(A, &invite("call-ring", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag2", "", ""));
    w.take_to(A);
    w.core.set_draining(true);
    w.feed(A, &invite("call-new", SDP_A));
    let rs = w.take_responses(A);
    let r = rs.iter().find(|r| r.status >= 200).expect("final answer");
    assert_eq!(r.status, 503);
    assert!(r.headers.get("Retry-After").is_some());
    assert!(w
        .policy
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::Rejected { status: 503, .. })));
    assert!(
        w.take_to(PBX).is_empty(),
        "nothing reaches the trunk while draining"
    );

    let live = w.core.live_calls();
    assert_eq!(live.len(), 2);
    let now = w.now;
    for id in live {
        w.core.terminate_call(id, now, &mut w.policy);
    }
    w.drain();
    let rs = w.take_responses(A);
    let r = rs
        .iter()
        .find(|r| r.status >= 200 && r.call_id() == Some("call-ring"))
        .expect("final answer to the ringing call");
    assert_eq!(r.status, 503);
    assert!(r.headers.get("Retry-After").is_some());
    let msgs = w.take_to(PBX);
    let methods: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) => Some(r.method.as_str()),
            _ => None,
        })
        .collect();
    assert!(methods.contains(&"CANCEL"), "{methods:?}");
    assert!(methods.contains(&"BYE"), "{methods:?}");
    assert!(w.core.live_calls().is_empty());
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 487, "Request Terminated", "btag2", "", ""),
    );
    assert!(w
        .take_to(PBX)
        .iter()
        .any(|m| matches!(m, SipMessage::Request(r) if r.method.as_str() == "ACK")));
}

// Regressions found by tests/b2bua_chaos.rs: a call must never hang without a final answer.

/// A callee that rings and never answers: after `ringing_timeout` it is CANCELled and the call
/// fails over (here: to the next target, which answers).
#[test]
fn endless_ringing_is_cancelled_and_fails_over() {
    let mut w = world(vec![target("pbx", PBX), target("pbx2", PBX2)]);
    w.feed(A, &invite("call-ring", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag", "", ""));
    w.take_to(A);
    w.advance(Duration::from_secs(182));
    let cancel = w.take_request(PBX, "CANCEL");
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        b_inv.top_via().unwrap().branch()
    );
    let b2 = w.take_request(PBX2, "INVITE");
    w.feed_msg(PBX, &resp_with(&cancel, 200, "OK", "btag", "", ""));
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 487, "Request Terminated", "btag", "", ""),
    );
    w.feed_msg(
        PBX2,
        &resp_with(&b2, 200, "OK", "b2tag", SDP_B, "<sip:bob@127.0.0.1:5090>"),
    );
    assert!(w.take_responses(A).iter().any(|r| r.status == 200));
}

/// A BYE on the caller's early dialog ends the INVITE with 487 (RFC 3261 §15.1.2) and
/// cancels leg B; nothing is left once the callee confirms.
#[test]
fn bye_on_early_dialog_answers_487_and_cancels() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("call-eb", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag", "", ""));
    let a_tag = w
        .take_responses(A)
        .iter()
        .find(|r| r.status == 180)
        .and_then(|r| r.to().and_then(|t| t.tag().map(str::to_string)))
        .expect("180 with a To tag");
    w.feed(A, &a_request("BYE", "call-eb", 2, &a_tag, ""));
    let st: Vec<u16> = w.take_responses(A).iter().map(|r| r.status).collect();
    assert!(st.contains(&200) && st.contains(&487), "{st:?}");
    let cancel = w.take_request(PBX, "CANCEL");
    w.feed_msg(PBX, &resp_with(&cancel, 200, "OK", "btag", "", ""));
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 487, "Request Terminated", "btag", "", ""),
    );
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(
        w.core.transactions(),
        0,
        "{:?}",
        w.core.describe_transactions()
    );
}

/// A CANCEL from the caller before leg B answered anything is held back (§9.1) and goes out
/// with leg B's first response, even a bare 100 Trying.
#[test]
fn cancel_held_back_goes_out_on_100_trying() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("call-c100", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    let cancel = "CANCEL sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-call-c100\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-call-c100\r\nTo: <sip:+15551234567@127.0.0.1>\r\nCall-ID: call-c100\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, cancel.as_bytes());
    assert!(w.take_responses(A).iter().any(|r| r.status == 487));
    assert!(
        w.take_to(PBX)
            .iter()
            .all(|m| !matches!(m, SipMessage::Request(r) if r.method.as_str() == "CANCEL")),
        "no CANCEL before leg B answered anything"
    );
    w.feed_msg(PBX, &resp_with(&b_inv, 100, "Trying", "", "", ""));
    let c = w.take_request(PBX, "CANCEL");
    w.feed_msg(PBX, &resp_with(&c, 200, "OK", "btag", "", ""));
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 487, "Request Terminated", "btag", "", ""),
    );
    w.advance(Duration::from_secs(64));
    assert_eq!(
        w.core.transactions(),
        0,
        "{:?}",
        w.core.describe_transactions()
    );
}

/// A policy whose media relay takes no answer (SDP it cannot anchor).
struct RefuseAnswers(StaticPolicy);

impl signaling::b2bua::Policy for RefuseAnswers {
    fn route(
        &mut self,
        req: &Request,
        from: signaling::Peer,
        to_user: &str,
        from_user: &str,
        now: Instant,
    ) -> signaling::b2bua::RouteOutcome {
        self.0.route(req, from, to_user, from_user, now)
    }
    fn media_offer(
        &mut self,
        call: signaling::b2bua::CallRef<'_>,
        from: signaling::b2bua::Leg,
        sdp: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, signaling::b2bua::MediaRefusal> {
        self.0.media_offer(call, from, sdp, now)
    }
    fn media_answer(
        &mut self,
        _: signaling::b2bua::CallRef<'_>,
        _: signaling::b2bua::Leg,
        _: &[u8],
        _now: Instant,
    ) -> Result<Vec<u8>, String> {
        Err("no media line the relay can take".into())
    }
    fn media_release(&mut self, call: signaling::b2bua::CallRef<'_>, now: Instant) {
        self.0.media_release(call, now)
    }
    fn event(&mut self, ev: CallEvent, now: Instant) {
        self.0.event(ev, now)
    }
}

/// Leg B answers 200 with SDP the relay refuses: leg A gets 488 (never a 200 without SDP),
/// leg B's 200 is ACKed and ended with BYE, the media is released once, and it is counted.
#[test]
fn a_refused_media_answer_ends_the_offer_with_488() {
    let cfg = CoreConfig {
        local_udp: Some(ME.parse().unwrap()),
        ..CoreConfig::default()
    };
    let mut w = signaling::testing::World::new(
        cfg,
        RefuseAnswers(StaticPolicy {
            targets: vec![target("pbx", PBX)],
            events: Vec::new(),
            released: Vec::new(),
        }),
    );
    w.feed(A, &invite("call-488", SDP_A));
    let _ = w.take_responses(A);
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let rs = w.take_responses(A);
    assert_eq!(
        rs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![488],
        "{rs:?}"
    );
    let to_b = w.take_to(PBX);
    let methods: Vec<&str> = to_b
        .iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) => Some(r.method.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(methods, vec!["ACK", "BYE"], "leg B's 200 ACKed and ended");
    assert_eq!(w.policy.0.released.len(), 1, "media released once");
    assert_eq!(w.core.stats().media_failures, 1);
}
