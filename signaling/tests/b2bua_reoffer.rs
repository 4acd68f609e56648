//! Re-INVITEs in a confirmed call, in virtual time: an offerless re-INVITE from either leg
//! (the offer in the other leg's 2xx reaches the asking leg, whose ACK brings the answer to the
//! other), a re-INVITE 2xx retransmitted (its ACK again, never a BYE), a leg that never ACKs
//! such a 2xx (the call ends), and glare with trunkline's own re-INVITE (491).

mod flows_common;

use std::time::Duration;

use flows_common::*;
use signaling::b2bua::{make_response, SessionTimer};
use signaling::message::{Request, SipMessage};

const SDP_A2: &str = "v=0\r\no=alice 1 2 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\na=sendrecv\r\n";
const SDP_B2: &str = "v=0\r\no=bob 1 2 IN IP4 10.2.2.2\r\ns=-\r\nc=IN IP4 10.2.2.2\r\nt=0 0\r\nm=audio 6002 RTP/AVP 0\r\na=sendrecv\r\n";

fn ok(to: &Request, body: &str) -> SipMessage {
    resp_with(to, 200, "OK", "btag", body, "<sip:peer@127.0.0.1:5999>")
}

#[test]
fn an_offerless_reinvite_from_leg_a_gets_the_offer_and_leg_b_the_answer_in_the_ack() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (_b_inv, a_tag) = answered_call(&mut w, "ro-1");
    w.sent().clear();
    w.feed(A, &a_request("INVITE", "ro-1", 2, &a_tag, ""));
    let reinv = w.take_request(PBX, "INVITE");
    assert!(reinv.body.is_empty(), "no offer invented");
    w.feed_msg(PBX, &ok(&reinv, SDP_B2));
    assert!(
        requests(&w.take_to(PBX), "ACK").is_empty(),
        "leg B is not ACKed before leg A answered"
    );
    let a_ok = w
        .take_responses(A)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200 to A");
    assert_eq!(a_ok.body, SDP_B2.as_bytes(), "the offer reaches leg A");
    // A retransmission of leg B's 2xx meanwhile: absorbed (no ACK without the answer, no BYE).
    w.feed_msg(PBX, &ok(&reinv, SDP_B2));
    assert!(w.take_to(PBX).is_empty());
    w.feed(A, &a_request("ACK", "ro-1", 2, &a_tag, SDP_A2));
    let ack = w.take_request(PBX, "ACK");
    assert_eq!(ack.body, SDP_A2.as_bytes(), "leg A's answer in leg B's ACK");
    assert_eq!(ack.cseq().unwrap().seq, reinv.cseq().unwrap().seq);
    // And again for the next retransmission of the 2xx, once.
    w.feed_msg(PBX, &ok(&reinv, SDP_B2));
    let again = requests(&w.take_to(PBX), "ACK");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, SDP_A2.as_bytes());
    assert!(requests(&w.take_to(PBX), "BYE").is_empty());
    assert_eq!(w.core.active_calls(), 1);
}

#[test]
fn an_offerless_reinvite_from_leg_b_works_the_other_way() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (b_inv, _a_tag) = answered_call(&mut w, "ro-2");
    w.sent().clear();
    w.feed(PBX, &b_request("INVITE", &b_inv, 1, ""));
    let reinv = w.take_request(A, "INVITE");
    assert!(reinv.body.is_empty());
    w.feed_msg(A, &ok(&reinv, SDP_A2));
    assert!(requests(&w.take_to(A), "ACK").is_empty());
    let b_ok = w
        .take_responses(PBX)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200 to B");
    assert_eq!(b_ok.body, SDP_A2.as_bytes());
    w.feed(PBX, &b_request("ACK", &b_inv, 1, SDP_B2));
    let ack = w.take_request(A, "ACK");
    assert_eq!(ack.body, SDP_B2.as_bytes());
}

#[test]
fn a_leg_that_never_acks_the_offer_ends_the_call() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (_b_inv, a_tag) = answered_call(&mut w, "ro-3");
    w.sent().clear();
    w.feed(A, &a_request("INVITE", "ro-3", 2, &a_tag, ""));
    let reinv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &ok(&reinv, SDP_B2));
    w.advance(Duration::from_secs(33));
    let to_b = w.take_to(PBX);
    let acks = requests(&to_b, "ACK");
    assert_eq!(acks.len(), 1, "leg B still gets its ACK");
    assert!(acks[0].body.is_empty());
    // (Counted once per transaction: the BYEs are retransmitted meanwhile.)
    let byes = |msgs: &[SipMessage]| {
        let mut seqs: Vec<u32> = requests(msgs, "BYE")
            .iter()
            .map(|r| r.cseq().unwrap().seq)
            .collect();
        seqs.dedup();
        seqs.len()
    };
    assert_eq!(byes(&to_b), 1);
    assert_eq!(byes(&w.take_to(A)), 1);
}

#[test]
fn a_retransmitted_reinvite_2xx_is_acked_again_never_ended() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (_b_inv, a_tag) = answered_call(&mut w, "ro-4");
    w.sent().clear();
    w.feed(A, &a_request("INVITE", "ro-4", 2, &a_tag, SDP_A2));
    let reinv = w.take_request(PBX, "INVITE");
    w.feed_msg(PBX, &ok(&reinv, SDP_B2));
    assert_eq!(requests(&w.take_to(PBX), "ACK").len(), 1);
    for _ in 0..3 {
        w.feed_msg(PBX, &ok(&reinv, SDP_B2));
        let to_b = w.take_to(PBX);
        assert_eq!(requests(&to_b, "ACK").len(), 1, "one ACK per 2xx");
        assert!(
            requests(&to_b, "BYE").is_empty(),
            "not a fork: the call's own dialog"
        );
    }
    assert_eq!(w.core.stats().forks_ended, 0);
    assert_eq!(w.core.active_calls(), 1);
}

#[test]
fn a_reinvite_while_trunklines_own_is_pending_on_that_leg_gets_491() {
    let mut w = world_with(vec![target("pbx", PBX)], |c| {
        c.session_timer = Some(SessionTimer {
            expires: 90,
            min_se: 90,
        })
    });
    // The caller supports no timers and no UPDATE: trunkline refreshes leg A with re-INVITEs.
    let (_b_inv, a_tag) = answered_call(&mut w, "ro-5");
    w.sent().clear();
    w.advance(Duration::from_secs(46));
    let refresh = requests(&w.take_to(A), "INVITE").remove(0);
    w.feed(A, &a_request("INVITE", "ro-5", 2, &a_tag, SDP_A2));
    let r = w.final_to(A);
    assert_eq!(r.status, 491);
    assert!(
        requests(&w.take_to(PBX), "INVITE").is_empty(),
        "not relayed"
    );
    // Once trunkline's re-INVITE is answered, the caller's next one goes through.
    let mut resp = make_response(&refresh, 200, "OK", None);
    resp.headers.push("Contact", "<sip:alice@127.0.0.1:5070>");
    w.feed_msg(A, &SipMessage::Response(resp));
    w.feed(A, &a_request("INVITE", "ro-5", 3, &a_tag, SDP_A2));
    assert_eq!(requests(&w.take_to(PBX), "INVITE").len(), 1);
}
