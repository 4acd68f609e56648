//! Call records (`CallEvent::Record`) in virtual time: exactly one per call, with the times,
//! attempts, final code and who hung up that the flow had.

use std::time::Duration;

use signaling::b2bua::{
    make_response, AttemptRecord, CallEvent, CallRecord, CoreConfig, Hangup, StaticPolicy, Target,
};
use signaling::message::{Request, SipMessage};
use signaling::testing::peer;

const A: &str = "127.0.0.1:5070";
const PBX: &str = "127.0.0.1:5080";
const PBX2: &str = "127.0.0.1:5090";

type World = signaling::testing::World<StaticPolicy>;

fn world() -> World {
    let t = |name: &str, addr: &str| Target {
        trunk: name.into(),
        peer: peer(addr),
        host: addr.into(),
    };
    let cfg = CoreConfig {
        local_udp: Some("127.0.0.1:5060".parse().expect("addr")),
        ..CoreConfig::default()
    };
    World::new(
        cfg,
        StaticPolicy {
            targets: vec![t("pbx", PBX), t("pbx2", PBX2)],
            events: Vec::new(),
            released: Vec::new(),
        },
    )
}

fn a_msg(method: &str, call_id: &str, cseq: u32, to_tag: &str, branch: &str) -> Vec<u8> {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "{method} sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@10.1.1.1>;tag=atag\r\n\
To: <sip:+15551234567@127.0.0.1>{to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn resp(req: &Request, status: u16) -> SipMessage {
    let mut r = make_response(req, status, "x", Some("btag"));
    r.headers.push("Contact", "<sip:bob@127.0.0.1:5080>");
    SipMessage::Response(r)
}

fn records(w: &World) -> Vec<CallRecord> {
    w.policy
        .events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Record(r) => Some((**r).clone()),
            _ => None,
        })
        .collect()
}

fn attempts(list: &[(&str, Option<u16>)]) -> Vec<AttemptRecord> {
    list.iter()
        .map(|(t, c)| AttemptRecord {
            trunk: t.to_string(),
            code: *c,
        })
        .collect()
}

#[test]
fn answered_call_ended_by_the_callee_has_its_times() {
    let mut w = world();
    let t0 = w.now;
    w.feed(A, &a_msg("INVITE", "c1", 1, "", "inv"));
    let b_inv = w.take_request(PBX, "INVITE");
    w.advance(Duration::from_millis(100));
    w.feed_msg(PBX, &resp(&b_inv, 180));
    w.advance(Duration::from_millis(400));
    w.feed_msg(PBX, &resp(&b_inv, 200));
    let ok = w.final_to(A);
    let a_tag = ok
        .to()
        .and_then(|t| t.tag().map(str::to_string))
        .expect("tag");
    w.feed(A, &a_msg("ACK", "c1", 1, &a_tag, "ack"));
    w.advance(Duration::from_millis(2500));
    assert!(records(&w).is_empty(), "no record while the call is up");
    let bye = format!(
        "BYE sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKbbye\r\nMax-Forwards: 70\r\nFrom: <sip:x@127.0.0.1:5080>;tag=btag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        b_inv.headers.get("From").expect("from"),
        b_inv.call_id().expect("call-id")
    );
    w.feed(PBX, bye.as_bytes());
    w.advance(Duration::from_secs(40));
    let r = records(&w);
    assert_eq!(r.len(), 1, "{r:?}");
    let r = &r[0];
    assert_eq!((r.final_code, r.hangup), (200, Hangup::Callee));
    assert_eq!(r.a_call_id, "c1");
    assert_eq!(Some(r.b_call_id.as_str()), b_inv.call_id());
    assert_eq!(r.ringing, Some(t0 + Duration::from_millis(100)));
    assert_eq!(r.answered, Some(t0 + Duration::from_millis(500)));
    assert_eq!(r.ended, t0 + Duration::from_millis(3000));
    assert_eq!(
        (r.caller.as_str(), r.callee.as_str()),
        ("alice", "+15551234567")
    );
    assert_eq!(r.attempts, attempts(&[("pbx", Some(200))]));
}

#[test]
fn busy_cancel_and_failover_each_get_one_record() {
    let mut w = world();
    // Busy: no failover, the callee refused.
    w.feed(A, &a_msg("INVITE", "busy", 1, "", "busy"));
    let b = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp(&b, 486));
    w.take_to(A);
    // Failover past a 503, answered by the second, hung up by the caller.
    w.feed(A, &a_msg("INVITE", "fo", 1, "", "fo"));
    let b = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp(&b, 503));
    let b2 = w.take_request(PBX2, "INVITE");
    w.feed_msg(PBX2, &resp(&b2, 200));
    let ok = w.final_to(A);
    let tag = ok
        .to()
        .and_then(|t| t.tag().map(str::to_string))
        .expect("tag");
    w.feed(A, &a_msg("ACK", "fo", 1, &tag, "foack"));
    w.feed(A, &a_msg("BYE", "fo", 2, &tag, "fobye"));
    // Cancelled while ringing.
    w.feed(A, &a_msg("INVITE", "cx", 1, "", "cx"));
    let b = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp(&b, 180));
    w.feed(A, &a_msg("CANCEL", "cx", 1, "", "cx"));
    let cancel = w.take_request(PBX, "CANCEL");
    w.feed_msg(PBX, &resp(&cancel, 200));
    w.feed_msg(PBX, &resp(&b, 487));
    // Ended by the media timeout.
    w.feed(A, &a_msg("INVITE", "mt", 1, "", "mt"));
    let b = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp(&b, 200));
    let id = w.core.find_call("mt", "atag").expect("call");
    w.core
        .terminate_call_for(id, Hangup::MediaTimeout, w.now, &mut w.policy);
    // Hung up by an operator (the admin API's terminate_call).
    w.feed(A, &a_msg("INVITE", "adm", 1, "", "adm"));
    let b = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp(&b, 200));
    let id = w.core.find_call("adm", "atag").expect("call");
    w.core.terminate_call(id, w.now, &mut w.policy);
    w.advance(Duration::from_secs(64));
    let r = records(&w);
    let by = |cid: &str| {
        let v: Vec<_> = r.iter().filter(|x| x.a_call_id == cid).collect();
        assert_eq!(v.len(), 1, "{cid}: {r:?}");
        v[0].clone()
    };
    let busy = by("busy");
    assert_eq!((busy.final_code, busy.hangup), (486, Hangup::Callee));
    assert_eq!(busy.attempts, attempts(&[("pbx", Some(486))]));
    assert!(busy.answered.is_none());
    let fo = by("fo");
    assert_eq!((fo.final_code, fo.hangup), (200, Hangup::Caller));
    assert_eq!(
        fo.attempts,
        attempts(&[("pbx", Some(503)), ("pbx2", Some(200))])
    );
    let cx = by("cx");
    assert_eq!((cx.final_code, cx.hangup), (487, Hangup::Caller));
    assert!(cx.ringing.is_some() && cx.answered.is_none());
    assert_eq!(cx.attempts, attempts(&[("pbx", Some(487))]));
    let mt = by("mt");
    assert_eq!((mt.final_code, mt.hangup), (200, Hangup::MediaTimeout));
    let adm = by("adm");
    assert_eq!((adm.final_code, adm.hangup), (200, Hangup::Admin));
    assert_eq!(r.len(), 5);
    // The record comes before the call's one media release.
    assert_eq!(w.policy.released.len(), 5);
}

/// An INVITE trunkline answers itself before it becomes a call gets a record too: its own
/// call number and `b_call_id` (unique per record), final code, hangup `refused`.
#[test]
fn invites_refused_before_they_become_calls_get_a_record_each() {
    let cfg = CoreConfig {
        local_udp: Some("127.0.0.1:5060".parse().expect("addr")),
        ..CoreConfig::default()
    };
    // No targets: every call is refused 404 by the route.
    let mut w = World::new(
        cfg,
        StaticPolicy {
            targets: Vec::new(),
            events: Vec::new(),
            released: Vec::new(),
        },
    );
    w.feed(A, &a_msg("INVITE", "nr-1", 1, "", "nr1"));
    w.feed(A, &a_msg("INVITE", "nr-2", 1, "", "nr2"));
    let hop = String::from_utf8(a_msg("INVITE", "nr-3", 1, "", "nr3"))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    w.feed(A, hop.as_bytes());
    // Not INVITEs: no records.
    w.feed(A, &a_msg("MESSAGE", "nr-4", 1, "", "nr4"));
    let recs = records(&w);
    assert_eq!(recs.len(), 3, "{recs:?}");
    let codes: Vec<u16> = recs.iter().map(|r| r.final_code).collect();
    assert_eq!(codes, [404, 404, 483]);
    assert!(recs
        .iter()
        .all(|r| r.refused && r.hangup == Hangup::Refused));
    assert!(recs
        .iter()
        .all(|r| r.attempts.is_empty() && r.answered.is_none()));
    assert_eq!(recs[0].a_call_id, "nr-1");
    assert_eq!(
        (recs[0].caller.as_str(), recs[0].callee.as_str()),
        ("alice", "+15551234567")
    );
    assert_ne!(recs[0].b_call_id, recs[1].b_call_id);
    assert_ne!(recs[0].call, recs[1].call);
    assert!(w.policy.released.is_empty(), "no media to release");
}
