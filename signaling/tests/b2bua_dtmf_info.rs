//! DTMF in SIP INFO (a trunk's `dtmf: info`): an INFO with a digit in a call is handed to the
//! media side and answered 200 by trunkline when the media side takes it (it becomes the other
//! leg's telephone-events), relayed as before when not; a digit from the media side leaves
//! as an INFO in the leg's dialog, `application/dtmf-relay`.

mod flows_common;

use flows_common::*;
use signaling::b2bua::Leg;
use signaling::message::SipMessage;

fn info(inv: &signaling::message::Request, cseq: u32, body: &str) -> Vec<u8> {
    let text = String::from_utf8(b_request("INFO", inv, cseq, body)).unwrap();
    text.replace("application/sdp", "application/dtmf-relay")
        .into_bytes()
}

#[test]
fn an_info_digit_is_taken_by_the_media_side_and_answered_here() {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    w.policy.dtmf = Some(Vec::new());
    let (b_inv, _) = answered_call(&mut w, "dtmf-1");
    w.feed(PBX, &info(&b_inv, 2, "Signal=9\r\nDuration=120\r\n"));
    let r = w.final_to(PBX);
    assert_eq!(r.status, 200);
    assert!(
        requests(&w.take_to(A), "INFO").is_empty(),
        "not relayed to the caller"
    );
    let got = w.policy.dtmf.clone().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].1, got[0].2, got[0].3), (Leg::B, 9, 120));
    assert_eq!(w.core.stats().dtmf_info_in, 1);
    // an INFO with another body is relayed as before
    let other = String::from_utf8(b_request("INFO", &b_inv, 3, "<x/>"))
        .unwrap()
        .replace("application/sdp", "application/media_control+xml");
    w.feed(PBX, other.as_bytes());
    assert_eq!(requests(&w.take_to(A), "INFO").len(), 1);
}

#[test]
fn without_the_media_side_the_info_is_relayed() {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    let (b_inv, _) = answered_call(&mut w, "dtmf-2");
    w.feed(PBX, &info(&b_inv, 2, "Signal=1\r\nDuration=100\r\n"));
    let relayed = requests(&w.take_to(A), "INFO");
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].body, b"Signal=1\r\nDuration=100\r\n");
}

#[test]
fn a_digit_from_the_media_side_leaves_as_info_in_the_dialog() {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    let (b_inv, _) = answered_call(&mut w, "dtmf-3");
    let call = w.core.find_call("dtmf-3", "atag-dtmf-3").expect("call");
    let now = w.now;
    assert!(w.core.send_dtmf_info(call, Leg::B, 11, 160, now));
    w.drain();
    let sent = w.take_to(PBX);
    let infos = requests(&sent, "INFO");
    assert_eq!(infos.len(), 1);
    let i = &infos[0];
    assert_eq!(
        i.headers.get("Content-Type"),
        Some("application/dtmf-relay")
    );
    assert_eq!(i.body, b"Signal=#\r\nDuration=160\r\n");
    assert_eq!(i.call_id(), b_inv.call_id(), "leg B's dialog");
    assert!(i.headers.get("To").unwrap().contains("tag=btag"));
    // its answer is absorbed; nothing reaches the caller
    w.feed_msg(
        PBX,
        &SipMessage::Response(signaling::b2bua::make_response(i, 200, "OK", None)),
    );
    assert!(requests(&w.take_to(A), "INFO").is_empty());
    assert!(w.take_responses(A).is_empty());
    assert_eq!(w.core.stats().dtmf_info_out, 1);
    // not a digit, or no such call: nothing
    let now = w.now;
    assert!(!w.core.send_dtmf_info(call, Leg::B, 42, 160, now));
    assert!(!w.core.send_dtmf_info(call + 100, Leg::B, 1, 160, now));
}
