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

const STRANGER: &str = "127.0.0.1:5071";

/// Leg A's INVITE as sent from `STRANGER` (its Via), same Call-ID and From tag as `A`'s.
fn invite_from_stranger(call_id: &str, cseq: u32, branch: &str) -> Vec<u8> {
    String::from_utf8(invite_with(call_id, cseq, branch, SDP_A))
        .unwrap()
        .replace("127.0.0.1:5070;branch", "127.0.0.1:5071;branch")
        .into_bytes()
}

fn no_request_to(w: &mut World, to: &str) -> bool {
    w.take_to(to)
        .iter()
        .all(|m| !matches!(m, SipMessage::Request(_)))
}

#[test]
fn a_merged_request_gets_482_and_another_cseq_on_live_ids_gets_400() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("merge-1", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "btag", "", ""));
    w.take_to(A);
    // RFC 3261 §8.2.2.2: same From tag, Call-ID and CSeq, another transaction: merged.
    w.feed(STRANGER, &invite_from_stranger("merge-1", 1, "other-path"));
    assert_eq!(statuses(&mut w, STRANGER), vec![482]);
    // Same Call-ID and From tag, another CSeq, another source: no merged request, and no
    // part of the call either.
    w.feed(
        STRANGER,
        &invite_from_stranger("merge-1", 2, "second-caller"),
    );
    let st = statuses(&mut w, STRANGER);
    assert_eq!(st, vec![400], "not 482 and not a call: {st:?}");
    assert!(no_request_to(&mut w, PBX), "nothing reached the trunk");
    assert!(w.take_to(A).is_empty(), "nothing reached the caller");
    // The call goes on as before.
    w.feed_msg(
        PBX,
        &resp_with(&b_inv, 200, "OK", "btag", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let rs = w.take_responses(A);
    let ok = rs.iter().find(|r| r.status == 200).expect("200 to A");
    let a_tag = ok.to().unwrap().tag().unwrap().to_string();
    w.feed(A, &a_request("ACK", "merge-1", 1, &a_tag, ""));
    // Answered: another CSeq on its identifiers still gets 400, never 482.
    w.feed(STRANGER, &invite_from_stranger("merge-1", 3, "third"));
    assert_eq!(statuses(&mut w, STRANGER), vec![400]);
    assert_eq!(w.core.active_calls(), 1);
    w.feed(A, &a_request("BYE", "merge-1", 2, &a_tag, ""));
    assert_eq!(statuses(&mut w, A), vec![200]);
    let bye = w.take_request(PBX, "BYE");
    assert_eq!(bye.call_id(), b_inv.call_id());
}

#[test]
fn a_new_invite_on_the_ids_of_a_call_that_is_over_is_its_own_call() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (b_inv, old_tag) = answered_call(&mut w, "merge-2");
    w.feed(A, &a_request("BYE", "merge-2", 2, &old_tag, ""));
    assert_eq!(statuses(&mut w, A), vec![200]);
    // The call is over, but held until the trunk answers its BYE.
    let old_bye = w.take_request(PBX, "BYE");
    assert_eq!(w.core.active_calls(), 1);
    // The caller calls again on the same Call-ID and From tag with a new CSeq.
    w.feed(A, &invite_with("merge-2", 3, "again", SDP_A));
    let b_inv2 = w.take_request(PBX, "INVITE");
    assert_ne!(b_inv2.call_id(), b_inv.call_id(), "a new leg B");
    w.feed_msg(
        PBX,
        &resp_with(&b_inv2, 200, "OK", "b2", SDP_B, "<sip:bob@127.0.0.1:5080>"),
    );
    let rs = w.take_responses(A);
    let ok = rs.iter().find(|r| r.status == 200).expect("200 to A");
    let a_tag = ok.to().unwrap().tag().unwrap().to_string();
    assert_ne!(a_tag, old_tag);
    w.feed(A, &a_request("ACK", "merge-2", 3, &a_tag, ""));
    w.feed_msg(PBX, &resp_with(&old_bye, 200, "OK", "btag", "", ""));
    assert_eq!(
        w.core.active_calls(),
        1,
        "the old call is gone, the new one stays"
    );
    // Each dialog is found by its own To tag: the old one is gone (481), the new one ends.
    w.feed(A, &a_request("INFO", "merge-2", 4, &old_tag, ""));
    assert_eq!(statuses(&mut w, A), vec![481]);
    w.feed(A, &a_request("BYE", "merge-2", 5, &a_tag, ""));
    assert_eq!(statuses(&mut w, A), vec![200]);
    let bye = w.take_request(PBX, "BYE");
    assert_eq!(bye.call_id(), b_inv2.call_id());
    w.feed_msg(PBX, &resp_with(&bye, 200, "OK", "b2", "", ""));
    w.advance(std::time::Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.policy.released.len(), 2);
}
