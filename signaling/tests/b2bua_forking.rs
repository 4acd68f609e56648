//! Leg B's INVITE answered 2xx on more than one branch (a forking trunk), in virtual time:
//! RFC 3261 §13.2.2.4, every 2xx is ACKed in its own dialog and the dialogs not kept are ended
//! with BYE; retransmissions get the same ACK again, once each, and never another BYE.

mod flows_common;

use std::time::Duration;

use flows_common::*;
use signaling::message::{Request, SipMessage};

/// A 200 to `b_inv` from the fork with To tag `tag`, Contact `sip:{user}@PBX` and a
/// Record-Route of its own.
fn fork_200(b_inv: &Request, tag: &str, user: &str) -> SipMessage {
    let mut m = resp_with(
        b_inv,
        200,
        "OK",
        tag,
        SDP_B,
        &format!("<sip:{user}@127.0.0.1:5080>"),
    );
    if let SipMessage::Response(r) = &mut m {
        r.headers
            .push("Record-Route", format!("<sip:rr-{tag}.b.example;lr>"));
    }
    m
}

fn to_tag(r: &Request) -> String {
    r.to()
        .and_then(|t| t.tag().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_second_2xx_is_acked_in_its_own_dialog_and_byed_once() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("fork-1", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    let inv_seq = b_inv.cseq().unwrap().seq;
    w.feed_msg(PBX, &fork_200(&b_inv, "tag1", "bob1"));
    let ack1 = w.take_request(PBX, "ACK");
    assert_eq!(to_tag(&ack1), "tag1");
    assert_eq!(ack1.uri, "sip:bob1@127.0.0.1:5080");
    let rs = w.take_responses(A);
    assert_eq!(rs.iter().filter(|r| r.status == 200).count(), 1);
    let ok = rs.iter().find(|r| r.status == 200).unwrap();
    let a_tag = ok.to().unwrap().tag().unwrap().to_string();
    w.feed(A, &a_request("ACK", "fork-1", 1, &a_tag, ""));

    // The second branch answers: its own ACK (its tag, its Contact, its route set), then BYE.
    w.feed_msg(PBX, &fork_200(&b_inv, "tag2", "bob2"));
    let out = w.take_to(PBX);
    let acks = requests(&out, "ACK");
    let byes = requests(&out, "BYE");
    assert_eq!((acks.len(), byes.len()), (1, 1), "{out:?}");
    for r in [&acks[0], &byes[0]] {
        assert_eq!(to_tag(r), "tag2");
        assert_eq!(r.uri, "sip:bob2@127.0.0.1:5080");
        assert_eq!(r.headers.get("Route"), Some("<sip:rr-tag2.b.example;lr>"));
        assert_eq!(r.call_id(), b_inv.call_id());
        assert_eq!(r.from().unwrap().tag(), b_inv.from().unwrap().tag());
    }
    assert_eq!(acks[0].cseq().unwrap().seq, inv_seq);
    assert_eq!(byes[0].cseq().unwrap().seq, inv_seq + 1);
    // Nothing of it reaches the caller.
    assert!(w.take_responses(A).is_empty());

    // Retransmissions of both 200s: one ACK each, in the dialog it names; no new BYE.
    for _ in 0..50 {
        w.feed_msg(PBX, &fork_200(&b_inv, "tag2", "bob2"));
    }
    for _ in 0..7 {
        w.feed_msg(PBX, &fork_200(&b_inv, "tag1", "bob1"));
    }
    let out = w.take_to(PBX);
    let acks = requests(&out, "ACK");
    assert_eq!(out.len(), 57, "{out:?}");
    assert_eq!(acks.iter().filter(|a| to_tag(a) == "tag2").count(), 50);
    assert_eq!(acks.iter().filter(|a| to_tag(a) == "tag1").count(), 7);
    assert!(acks
        .iter()
        .filter(|a| to_tag(a) == "tag1")
        .all(|a| a.uri == "sip:bob1@127.0.0.1:5080"));

    // The fork's BYE is answered; the call stays up in the kept dialog.
    w.feed_msg(PBX, &resp_with(&byes[0], 200, "OK", "tag2", "", ""));
    assert_eq!(w.core.active_calls(), 1);
    w.feed(A, &a_request("BYE", "fork-1", 2, &a_tag, ""));
    let bye = w.take_request(PBX, "BYE");
    assert_eq!(to_tag(&bye), "tag1");
    assert_eq!(bye.uri, "sip:bob1@127.0.0.1:5080");
    w.feed_msg(PBX, &resp_with(&bye, 200, "OK", "tag1", "", ""));
    assert_eq!(w.core.active_calls(), 0);
    w.advance(Duration::from_secs(64));
    assert_eq!(
        w.core.transactions(),
        0,
        "{:?}",
        w.core.describe_transactions()
    );
    assert_eq!(w.core.stats().forks_ended, 1);
    assert_eq!(w.policy.released.len(), 1);
}

#[test]
fn forks_beyond_the_bound_are_dropped_and_a_storm_stays_one_ack_per_2xx() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("fork-2", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &fork_200(&b_inv, "kept", "bob"));
    w.take_to(PBX);
    let mut received = 0;
    for round in 0..20 {
        for i in 0..12 {
            w.feed_msg(PBX, &fork_200(&b_inv, &format!("f{i}"), "bob"));
            received += 1;
        }
        let out = w.take_to(PBX);
        let acks = requests(&out, "ACK").len();
        let byes = requests(&out, "BYE").len();
        // 8 forks are remembered (ACK, and BYE the first time); the others get nothing.
        assert_eq!(acks, 8, "round {round}: {out:?}");
        assert_eq!(byes, if round == 0 { 8 } else { 0 }, "round {round}");
    }
    assert_eq!(received, 240);
    assert_eq!(w.core.stats().forks_ended, 8);
    assert_eq!(w.core.stats().forks_dropped, 80);
}

#[test]
fn a_late_2xx_of_an_abandoned_branch_is_acked_in_its_dialog_at_its_target() {
    let mut w = world(vec![target("pbx", PBX), target("pbx2", PBX2)]);
    w.feed(A, &invite("fork-3", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    // No answer: the call moves to PBX2, which answers.
    w.advance(Duration::from_secs(5));
    let b_inv2 = w.take_request(PBX2, "INVITE");
    w.feed_msg(
        PBX2,
        &resp_with(&b_inv2, 200, "OK", "p2", SDP_B, "<sip:bob@127.0.0.1:5090>"),
    );
    w.take_request(PBX2, "ACK");
    w.take_to(PBX2);
    w.take_to(PBX);
    // PBX answers late: ACK and BYE at PBX, in PBX's dialog.
    w.feed_msg(PBX, &fork_200(&b_inv, "late", "bob1"));
    let out = w.take_to(PBX);
    let acks = requests(&out, "ACK");
    let byes = requests(&out, "BYE");
    assert_eq!((acks.len(), byes.len()), (1, 1), "{out:?}");
    assert_eq!(to_tag(&acks[0]), "late");
    assert_eq!(acks[0].cseq().unwrap().seq, b_inv.cseq().unwrap().seq);
    let p2 = w.take_to(PBX2);
    assert!(p2.is_empty(), "nothing of it goes to PBX2: {p2:?}");
    // Its retransmissions: the same ACK again, at PBX; PBX2's dialog is untouched.
    for _ in 0..5 {
        w.feed_msg(PBX, &fork_200(&b_inv, "late", "bob1"));
    }
    let out = w.take_to(PBX);
    assert_eq!(requests(&out, "ACK").len(), 5);
    assert!(requests(&out, "BYE").is_empty());
    assert!(w.take_to(PBX2).is_empty());
    w.feed_msg(PBX, &resp_with(&byes[0], 200, "OK", "late", "", ""));
    assert_eq!(w.core.active_calls(), 1);
}

#[test]
fn two_2xx_crossing_our_cancel_are_both_acked_and_byed() {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &invite("fork-4", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &resp_with(&b_inv, 180, "Ringing", "t1", "", ""));
    let cancel = "CANCEL sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a-fork-4\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@10.1.1.1>;tag=atag-fork-4\r\nTo: <sip:+15551234567@127.0.0.1>\r\nCall-ID: fork-4\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    w.feed(A, cancel.as_bytes());
    w.take_to(PBX);
    w.feed_msg(PBX, &fork_200(&b_inv, "t1", "bob1"));
    w.feed_msg(PBX, &fork_200(&b_inv, "t2", "bob2"));
    let out = w.take_to(PBX);
    let acks: Vec<String> = requests(&out, "ACK").iter().map(to_tag).collect();
    let byes = requests(&out, "BYE");
    assert_eq!(acks, vec!["t1", "t2"]);
    assert_eq!(
        byes.iter().map(to_tag).collect::<Vec<_>>(),
        vec!["t1", "t2"]
    );
    for b in &byes {
        let tag = to_tag(b);
        w.feed_msg(PBX, &resp_with(b, 200, "OK", &tag, "", ""));
    }
    w.advance(Duration::from_secs(64));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.core.transactions(), 0);
    assert_eq!(w.policy.released.len(), 1);
}
