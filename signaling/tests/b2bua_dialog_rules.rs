//! In-dialog request rules of RFC 3261 §12.2.2 on both legs, in virtual time: only a CSeq
//! lower than the last one is out of order (500); an equal one is a new request.

mod flows_common;

use flows_common::*;
use signaling::message::SipMessage;

/// A request from the trunk in leg B's dialog (From its tag `btag`, To our tag).
fn b_request(b_inv: &signaling::message::Request, method: &str, cseq: u32) -> Vec<u8> {
    let our_tag = b_inv.from().unwrap().tag().unwrap().to_string();
    let call_id = b_inv.call_id().unwrap();
    format!(
        "{method} sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-b{method}{cseq}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15551234567@127.0.0.1:5080>;tag=btag\r\n\
To: <sip:alice@127.0.0.1>;tag={our_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:bob@127.0.0.1:5080>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn statuses(w: &mut World, to: &str) -> Vec<u16> {
    w.take_responses(to).iter().map(|r| r.status).collect()
}

#[test]
fn a_bye_with_the_invites_cseq_ends_the_call() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (_, a_tag) = answered_call(&mut w, "cseq-1");
    w.take_to(A);
    // CSeq 1 again (the INVITE's): not lower, so in order.
    w.feed(A, &a_request("BYE", "cseq-1", 1, &a_tag, ""));
    assert_eq!(statuses(&mut w, A), vec![200]);
    let bye = w.take_request(PBX, "BYE");
    w.feed_msg(PBX, &resp_with(&bye, 200, "OK", "btag", "", ""));
    assert_eq!(w.core.active_calls(), 0);
}

#[test]
fn info_reinvite_and_update_repeating_the_cseq_are_relayed_and_lower_is_500() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (_, a_tag) = answered_call(&mut w, "cseq-2");
    w.take_to(A);
    w.feed(A, &a_request("INFO", "cseq-2", 5, &a_tag, ""));
    let info = w.take_request(PBX, "INFO");
    w.feed_msg(PBX, &resp_with(&info, 200, "OK", "btag", "", ""));
    assert_eq!(statuses(&mut w, A), vec![200]);
    // The same number on a new transaction: relayed, not 500.
    w.feed(A, &a_request("UPDATE", "cseq-2", 5, &a_tag, ""));
    let upd = w.take_request(PBX, "UPDATE");
    w.feed_msg(PBX, &resp_with(&upd, 200, "OK", "btag", "", ""));
    assert_eq!(statuses(&mut w, A), vec![200]);
    w.feed(A, &a_request("INVITE", "cseq-2", 5, &a_tag, SDP_A));
    let reinv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &resp_with(&reinv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    w.take_request(PBX, "ACK");
    assert!(statuses(&mut w, A).contains(&200));
    // Lower than the last: out of order, 500, nothing relayed.
    w.feed(A, &a_request("INFO", "cseq-2", 4, &a_tag, ""));
    assert_eq!(statuses(&mut w, A), vec![500]);
    assert!(w
        .take_to(PBX)
        .iter()
        .all(|m| !matches!(m, SipMessage::Request(_))));
    assert_eq!(w.core.active_calls(), 1);
}

#[test]
fn the_trunks_bye_repeating_its_last_cseq_ends_the_call() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (b_inv, _) = answered_call(&mut w, "cseq-3");
    w.take_to(A);
    w.feed(PBX, &b_request(&b_inv, "INFO", 7));
    let info = w.take_request(A, "INFO");
    w.feed_msg(A, &resp_with(&info, 200, "OK", "x", "", ""));
    assert_eq!(statuses(&mut w, PBX), vec![200]);
    w.feed(PBX, &b_request(&b_inv, "INFO", 6));
    assert_eq!(statuses(&mut w, PBX), vec![500]);
    w.feed(PBX, &b_request(&b_inv, "BYE", 7));
    assert_eq!(statuses(&mut w, PBX), vec![200]);
    let bye = w.take_request(A, "BYE");
    w.feed_msg(A, &resp_with(&bye, 200, "OK", "x", "", ""));
    assert_eq!(w.core.active_calls(), 0);
}

/// A NOTIFY from the trunk in the subscription's leg B dialog (`sub` its SUBSCRIBE).
fn notify(sub: &signaling::message::Request, cseq: u32, branch: &str) -> Vec<u8> {
    let our_tag = sub.from().unwrap().tag().unwrap().to_string();
    let call_id = sub.call_id().unwrap();
    format!(
        "NOTIFY sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-n{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15551234567@127.0.0.1:5080>;tag=stag\r\n\
To: <sip:alice@127.0.0.1>;tag={our_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} NOTIFY\r\n\
Contact: <sip:pres@127.0.0.1:5080>\r\n\
Event: presence\r\n\
Subscription-State: active;expires=600\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn a_notify_repeating_the_cseq_is_relayed_and_lower_is_500() {
    let mut w = world(vec![target("pbx", PBX)]);
    let subscribe = "SUBSCRIBE sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-sub\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@10.1.1.1>;tag=atag\r\n\
To: <sip:+15551234567@127.0.0.1>\r\n\
Call-ID: sub-1\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
Event: presence\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, subscribe.as_bytes());
    let sub = w.take_request(PBX, "SUBSCRIBE");
    let mut ok = signaling::b2bua::make_response(&sub, 200, "OK", Some("stag"));
    ok.headers.push("Contact", "<sip:pres@127.0.0.1:5080>");
    ok.headers.push("Expires", "600");
    w.feed_msg(PBX, &SipMessage::Response(ok));
    assert_eq!(w.final_to(A).status, 200);
    for (cseq, branch) in [(3, "x1"), (3, "x2")] {
        w.feed(PBX, &notify(&sub, cseq, branch));
        let n = w.take_request(A, "NOTIFY");
        w.feed_msg(A, &resp_with(&n, 200, "OK", "x", "", ""));
        assert_eq!(statuses(&mut w, PBX), vec![200], "CSeq {cseq} ({branch})");
    }
    w.feed(PBX, &notify(&sub, 2, "x3"));
    assert_eq!(statuses(&mut w, PBX), vec![500]);
}
