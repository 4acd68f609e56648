//! Session timers (RFC 4028) per leg, in virtual time: each leg negotiates its own
//! Session-Expires and refresher, trunkline refreshes the legs it refreshes (UPDATE, or a
//! re-INVITE with the leg's SDP), answers the peers' refreshes, retries a 422, refuses an
//! interval below its Min-SE, and ends a call whose session runs out on either leg.

mod flows_common;

use std::time::Duration;

use flows_common::*;
use signaling::b2bua::{CallEvent, Hangup, SessionTimer};
use signaling::message::{Request, Response, SipMessage};

fn timed(expires: u32, min_se: u32) -> World {
    world_with(vec![target("pbx", PBX)], |c| {
        c.session_timer = Some(SessionTimer { expires, min_se })
    })
}

/// Leg A's INVITE with `extra` header lines.
fn invite_plus(call_id: &str, extra: &str) -> Vec<u8> {
    String::from_utf8(invite(call_id, SDP_A))
        .unwrap()
        .replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{extra}"),
        )
        .into_bytes()
}

/// Leg B's 200 to `inv` with `extra` headers (name, value).
fn ok_with(inv: &Request, body: &str, extra: &[(&str, &str)]) -> SipMessage {
    let mut m = resp_with(inv, 200, "OK", "btag", body, "<sip:bob@127.0.0.1:5080>");
    if let SipMessage::Response(r) = &mut m {
        for (n, v) in extra {
            r.headers.push(n, *v);
        }
    }
    m
}

/// A call set up through `w` with leg A's INVITE headers `a_extra` and leg B's 200 headers
/// `b_extra`; returns (leg B's INVITE, leg A's 200).
fn up(
    w: &mut World,
    call_id: &str,
    a_extra: &str,
    b_extra: &[(&str, &str)],
) -> (Request, Response) {
    w.feed(A, &invite_plus(call_id, a_extra));
    let inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &ok_with(&inv, SDP_B, b_extra));
    w.take_request(PBX, "ACK");
    let ok = w
        .take_responses(A)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200 to A");
    let tag = ok.to().unwrap().tag().unwrap().to_string();
    w.feed(A, &a_request("ACK", call_id, 1, &tag, ""));
    (inv, ok)
}

fn hangup_of(w: &World) -> Option<Hangup> {
    w.policy.events.iter().find_map(|e| match e {
        CallEvent::Record(r) => Some(r.hangup),
        _ => None,
    })
}

fn all(h: &signaling::message::Headers, name: &str) -> Vec<String> {
    h.get_all(name).map(str::to_string).collect()
}

#[test]
fn without_settings_no_timer_header_crosses_or_is_added() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (inv, ok) = up(
        &mut w,
        "st-0",
        "Supported: timer\r\nSession-Expires: 600\r\nMin-SE: 300\r\n",
        &[
            ("Session-Expires", "900;refresher=uac"),
            ("Require", "timer"),
        ],
    );
    for h in [&inv.headers, &ok.headers] {
        assert_eq!(h.get("Session-Expires"), None);
        assert_eq!(h.get("Min-SE"), None);
    }
    w.advance(Duration::from_secs(3600));
    assert!(w.take_to(PBX).is_empty() && w.take_to(A).is_empty());
    assert_eq!(w.core.active_calls(), 1, "no timer ends the call");
}

#[test]
fn each_leg_negotiates_its_own_interval_and_refresher() {
    let mut w = timed(1800, 120);
    let (inv, ok) = up(
        &mut w,
        "st-1",
        "Supported: timer\r\nSession-Expires: 600\r\n",
        &[
            ("Session-Expires", "1200;refresher=uas"),
            ("Require", "timer"),
        ],
    );
    // Leg B: trunkline's own offer, nothing of leg A's 600.
    assert!(all(&inv.headers, "Supported").iter().any(|s| s == "timer"));
    assert_eq!(inv.headers.get("Session-Expires"), Some("1800"));
    assert_eq!(inv.headers.get("Min-SE"), Some("120"));
    // Leg A: its 600 taken; it supports timers and named no refresher: it refreshes (uac).
    assert_eq!(ok.headers.get("Session-Expires"), Some("600;refresher=uac"));
    assert!(all(&ok.headers, "Require").iter().any(|s| s == "timer"));
    assert!(!all(&ok.headers, "Session-Expires")
        .iter()
        .any(|s| s.contains("1200")));
}

#[test]
fn trunkline_refreshes_leg_b_with_update_and_leg_a_with_a_reinvite() {
    let mut w = timed(90, 90);
    // The caller does not support timers (trunkline refreshes leg A) and allows no UPDATE
    // (a re-INVITE with the SDP it was sent); the trunk makes trunkline refresher (uac) and
    // allows UPDATE.
    let (_inv, ok) = up(
        &mut w,
        "st-2",
        "",
        &[
            ("Session-Expires", "90;refresher=uac"),
            ("Require", "timer"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE"),
        ],
    );
    assert_eq!(ok.headers.get("Session-Expires"), Some("90;refresher=uas"));
    assert!(
        ok.headers.get("Require").is_none(),
        "the caller has no timer"
    );
    w.advance(Duration::from_secs(44));
    assert!(
        requests(&w.take_to(PBX), "UPDATE").is_empty(),
        "not before half"
    );
    for round in 0..3 {
        w.advance(Duration::from_secs(2));
        let upd = requests(&w.take_to(PBX), "UPDATE").remove(0);
        assert!(upd.body.is_empty(), "round {round}");
        assert_eq!(upd.headers.get("Session-Expires"), Some("90;refresher=uac"));
        let mut r = signaling::b2bua::make_response(&upd, 200, "OK", None);
        r.headers.push("Session-Expires", "90;refresher=uac");
        w.feed_msg(PBX, &SipMessage::Response(r));
        let reinv = requests(&w.take_to(A), "INVITE").remove(0);
        assert_eq!(reinv.body, SDP_B.as_bytes(), "the SDP leg A has");
        assert_eq!(
            reinv.headers.get("Session-Expires"),
            Some("90;refresher=uac")
        );
        w.respond(A, &reinv, 200);
        let ack = w.take_request(A, "ACK");
        assert_eq!(ack.cseq().unwrap().seq, reinv.cseq().unwrap().seq);
        w.advance(Duration::from_secs(43));
        w.sent().clear();
    }
    assert_eq!(w.core.active_calls(), 1);
    assert_eq!(w.core.stats().session_refreshes, 6);
}

#[test]
fn a_session_the_peer_does_not_refresh_ends_both_legs() {
    let mut w = timed(90, 90);
    let (inv, _) = up(
        &mut w,
        "st-3",
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        &[
            ("Session-Expires", "90;refresher=uas"),
            ("Require", "timer"),
        ],
    );
    // Leg B refreshes in time with a bodiless UPDATE: answered here, not relayed.
    w.advance(Duration::from_secs(40));
    let upd = b_update(&inv, 2);
    w.feed(PBX, &upd);
    let r = w.final_to(PBX);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("Session-Expires"), Some("90;refresher=uac"));
    assert!(requests(&w.take_to(A), "UPDATE").is_empty(), "not relayed");
    // Leg A never refreshes: 90 - min(32, 30) = 60 s after the answer its session is over.
    w.advance(Duration::from_secs(19));
    assert!(w.take_to(A).is_empty());
    w.advance(Duration::from_secs(2));
    let bye_a = w.take_request(A, "BYE");
    let bye_b = w.take_request(PBX, "BYE");
    w.respond(A, &bye_a, 200);
    w.respond(PBX, &bye_b, 200);
    assert_eq!(hangup_of(&w), Some(Hangup::SessionExpired));
    assert_eq!(w.core.stats().sessions_expired, 1);
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
}

/// The trunk's bodiless UPDATE (a refresh, it the refresher) in leg B's dialog of `inv`.
fn b_update(inv: &Request, cseq: u32) -> Vec<u8> {
    let h = &inv.headers;
    format!(
        "UPDATE sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-bupd{cseq}\r\n\
Max-Forwards: 70\r\n\
From: {};tag=btag\r\n\
To: {}\r\n\
Call-ID: {}\r\n\
CSeq: {cseq} UPDATE\r\n\
Contact: <sip:bob@127.0.0.1:5080>\r\n\
Supported: timer\r\n\
Session-Expires: 90;refresher=uac\r\n\
Content-Length: 0\r\n\r\n",
        h.get("To").unwrap(),
        h.get("From").unwrap(),
        inv.call_id().unwrap(),
    )
    .into_bytes()
}

#[test]
fn a_refresh_answered_481_ends_the_call() {
    let mut w = timed(90, 90);
    up(
        &mut w,
        "st-4",
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        &[("Session-Expires", "90;refresher=uac"), ("Allow", "UPDATE")],
    );
    w.advance(Duration::from_secs(46));
    let upd = w.take_request(PBX, "UPDATE");
    w.respond(PBX, &upd, 481);
    w.take_request(A, "BYE");
    assert_eq!(hangup_of(&w), Some(Hangup::SessionExpired));
    assert_eq!(w.core.stats().sessions_expired, 1);
}

#[test]
fn a_caller_below_min_se_gets_422_and_a_trunks_422_is_retried() {
    let mut w = timed(1800, 300);
    w.feed(
        A,
        &invite_plus("st-5", "Supported: timer\r\nSession-Expires: 120\r\n"),
    );
    let r = w.final_to(A);
    assert_eq!(r.status, 422);
    assert_eq!(r.headers.get("Min-SE"), Some("300"));
    assert!(w.take_to(PBX).is_empty(), "nothing goes to the trunk");
    // A trunk asking for more: the same INVITE again with its Min-SE, a new CSeq.
    let mut w = timed(600, 90);
    w.feed(A, &invite_plus("st-6", ""));
    let inv = w.take_request(PBX, "INVITE");
    let mut too_small = signaling::b2bua::make_response(&inv, 422, "Too Small", Some("x"));
    too_small.headers.push("Min-SE", "1800");
    w.feed_msg(PBX, &SipMessage::Response(too_small));
    let again = w.take_request(PBX, "INVITE");
    assert_eq!(again.headers.get("Session-Expires"), Some("1800"));
    assert_eq!(again.headers.get("Min-SE"), Some("1800"));
    assert_eq!(again.cseq().unwrap().seq, inv.cseq().unwrap().seq + 1);
    assert_eq!(again.call_id(), inv.call_id());
    assert!(w.take_responses(A).iter().all(|r| r.status < 200));
    assert_eq!(w.core.stats().session_retries, 1);
}

#[test]
fn a_relayed_reinvite_carries_each_legs_own_session_expires() {
    let mut w = timed(90, 90);
    let (_inv, ok) = up(
        &mut w,
        "st-7",
        "Supported: timer\r\nSession-Expires: 300;refresher=uac\r\n",
        &[
            ("Session-Expires", "120;refresher=uac"),
            ("Require", "timer"),
        ],
    );
    let tag = ok.to().unwrap().tag().unwrap().to_string();
    let reinv = String::from_utf8(a_request("INVITE", "st-7", 2, &tag, SDP_A))
        .unwrap()
        .replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 200;refresher=uac\r\n",
        );
    w.feed(A, reinv.as_bytes());
    let to_b = w.take_request(PBX, "INVITE");
    assert_eq!(
        to_b.headers.get("Session-Expires"),
        Some("120;refresher=uac")
    );
    let mut r = signaling::b2bua::make_response(&to_b, 200, "OK", None);
    r.headers.push("Contact", "<sip:bob@127.0.0.1:5080>");
    r.headers.push("Session-Expires", "120;refresher=uac");
    r.headers.push("Content-Type", "application/sdp");
    r.body = SDP_B.as_bytes().to_vec();
    w.feed_msg(PBX, &SipMessage::Response(r));
    let ok2 = w
        .take_responses(A)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200");
    // Leg A's own (the 200 it asked for; its refresher), never leg B's 120.
    assert_eq!(ok2.headers.get("Session-Expires"), Some("90;refresher=uac"));
}

#[test]
fn short_calls_do_not_pile_up_session_deadlines() {
    let mut w = timed(1800, 90);
    for i in 0..6000 {
        let id = format!("st-many-{i}");
        let (_inv, ok) = up(
            &mut w,
            &id,
            "",
            &[("Session-Expires", "1800;refresher=uas")],
        );
        let tag = ok.to().unwrap().tag().unwrap().to_string();
        w.feed(A, &a_request("BYE", &id, 2, &tag, ""));
        let bye = w.take_request(PBX, "BYE");
        w.respond(PBX, &bye, 200);
        w.sent().clear();
    }
    assert_eq!(w.core.active_calls(), 0);
    // Each call left 3 deadlines behind (no answer at 4 s, both legs' sessions at ~30 min):
    // 18,000 without sweeping.
    let held = w.core.pending_deadlines();
    assert!(held <= 4096 + 16, "{held} deadlines held for no call");
}
