//! `refer: handle`: a blind transfer from the PBX side (leg B) carried out by trunkline. The
//! REFER is accepted, NOTIFY reports the target's progress, the target is called without an
//! offer and connected to the caller by a re-INVITE through the relay (RFC 3725 flow I), and
//! the transferor is let go; a failure leaves the call with the transferor, or ends it when the
//! transferor hung up.

mod flows_common;

use flows_common::*;
use signaling::b2bua::ReferMode;
use signaling::message::{Request, Response, SipMessage};
use signaling::testing::World;

type TWorld = World<Tuned>;

const SDP_C: &str = "v=0\r\no=carol 1 1 IN IP4 10.3.3.3\r\ns=-\r\nc=IN IP4 10.3.3.3\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=sendrecv\r\n";
const SDP_A2: &str = "v=0\r\no=alice 1 2 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

const REFER_TO: &str = "Refer-To: <sip:2000@10.9.9.9:5062;transport=udp>\r\n\
Referred-By: \"Bob\" <sip:bob@10.2.2.2>\r\n";

/// An answered call from A to the PBX, whose trunk says `refer: handle`; the transfer target
/// is `PBX2`. Returns the world, leg B's INVITE and A's To tag.
fn answered() -> (TWorld, Request, String) {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    w.policy.refer = ReferMode::Handle;
    w.policy.transfer_to = Some(target("pbx2", PBX2));
    let (b_inv, tag) = answered_call(&mut w, "xfer");
    w.sent().clear();
    (w, b_inv, tag)
}

/// The PBX's REFER; returns its answer and the NOTIFY that followed.
fn refer(w: &mut TWorld, b_inv: &Request, cseq: u32, extra: &str) -> (Response, Option<Request>) {
    w.feed(PBX, &b_request_with("REFER", b_inv, cseq, extra, ""));
    let msgs = w.take_to(PBX);
    let mut answer = None;
    let mut notify = None;
    for m in msgs {
        match m {
            SipMessage::Response(r) if r.status >= 200 => answer = Some(r),
            SipMessage::Request(r) if r.method.as_str() == "NOTIFY" => notify = Some(r),
            _ => {}
        }
    }
    (answer.expect("an answer to the REFER"), notify)
}

fn sipfrag(n: &Request) -> String {
    String::from_utf8_lossy(&n.body).trim().to_string()
}

/// Answer what the PBX is sent, let every transaction run out: nothing of the call is left.
fn settle(w: &mut TWorld) {
    notifies(w);
    w.advance(std::time::Duration::from_secs(40));
    assert_eq!(w.core.active_calls(), 0);
    assert_eq!(w.core.pending_client_transactions(), 0);
}

/// Every NOTIFY sent to the PBX, answered 200; their sipfrags.
fn notifies(w: &mut TWorld) -> Vec<String> {
    let ns = requests(&w.take_to(PBX), "NOTIFY");
    for n in &ns {
        w.respond(PBX, n, 200);
    }
    ns.iter().map(sipfrag).collect()
}

#[test]
fn a_blind_transfer_connects_the_caller_to_the_target() {
    let (mut w, b_inv, a_tag) = answered();
    let (answer, notify) = refer(&mut w, &b_inv, 2, REFER_TO);
    assert_eq!(answer.status, 202);
    let n = notify.expect("NOTIFY 100");
    assert_eq!(sipfrag(&n), "SIP/2.0 100 Trying");
    assert_eq!(n.headers.get("Event"), Some("refer;id=2"));
    assert!(n
        .headers
        .get("Subscription-State")
        .unwrap()
        .starts_with("active"));
    assert_eq!(n.call_id(), b_inv.call_id(), "in the transferor's dialog");
    w.respond(PBX, &n, 200);

    // The target: called without an offer, nothing of either side's dialogs in it.
    let c_inv = w.take_request(PBX2, "INVITE");
    assert!(c_inv.body.is_empty(), "offerless INVITE");
    assert!(c_inv.uri.starts_with("sip:2000@"), "{}", c_inv.uri);
    let text = String::from_utf8_lossy(&SipMessage::Request(c_inv.clone()).to_bytes()).to_string();
    for leak in [
        "10.9.9.9",
        "10.2.2.2",
        "btag",
        "atag-",
        b_inv.call_id().unwrap(),
    ] {
        assert!(!text.contains(leak), "{leak} leaked:\n{text}");
    }
    assert_eq!(
        c_inv.headers.get("Referred-By"),
        Some("\"Bob\" <sip:bob@127.0.0.1:5060>")
    );
    w.feed_msg(PBX2, &resp_with(&c_inv, 180, "Ringing", "ctag", "", ""));
    assert_eq!(notifies(&mut w), ["SIP/2.0 180 Ringing"]);

    // Its offer in the 2xx goes to A in a re-INVITE; A's answer to the target in its ACK.
    let c_ok = resp_with(
        &c_inv,
        200,
        "OK",
        "ctag",
        SDP_C,
        "<sip:carol@127.0.0.1:5090>",
    );
    w.feed_msg(PBX2, &c_ok);
    let reinv = w.take_request(A, "INVITE");
    assert!(String::from_utf8_lossy(&reinv.body).contains("m=audio"));
    assert!(
        requests(&w.take_to(PBX2), "ACK").is_empty(),
        "ACK waits for A's answer"
    );
    w.feed_msg(
        A,
        &resp_with(
            &reinv,
            200,
            "OK",
            &a_tag,
            SDP_A2,
            "<sip:alice@127.0.0.1:5070>",
        ),
    );
    let a_ack = w.take_request(A, "ACK");
    assert_eq!(a_ack.cseq().unwrap().seq, reinv.cseq().unwrap().seq);
    let c_ack = w.take_request(PBX2, "ACK");
    assert!(
        String::from_utf8_lossy(&c_ack.body).contains("m=audio"),
        "the answer"
    );
    // The transferor: told, and let go.
    let to_pbx = w.take_to(PBX);
    let ns = requests(&to_pbx, "NOTIFY");
    assert_eq!(ns.len(), 1);
    assert_eq!(sipfrag(&ns[0]), "SIP/2.0 200 OK");
    assert!(ns[0]
        .headers
        .get("Subscription-State")
        .unwrap()
        .starts_with("terminated"));
    let bye = requests(&to_pbx, "BYE");
    assert_eq!(bye.len(), 1, "{to_pbx:?}");
    assert_eq!(bye[0].call_id(), b_inv.call_id());
    w.respond(PBX, &bye[0], 200);
    // Its own BYE, crossing ours, is answered too.
    w.feed(PBX, &b_request("BYE", &b_inv, 20, ""));
    assert_eq!(w.final_to(PBX).status, 200);

    // The target's 2xx again: the same ACK, no BYE (it is the call now).
    w.feed_msg(PBX2, &c_ok);
    let again = w.take_to(PBX2);
    assert_eq!(requests(&again, "ACK").len(), 1);
    assert!(requests(&again, "BYE").is_empty());
    assert_eq!(w.core.active_calls(), 1);
    assert_eq!(w.core.stats().transfers_completed, 1);

    // A hangs up: the BYE goes to the target.
    w.feed(A, &a_request("BYE", "xfer", 3, &a_tag, ""));
    let bye = w.take_request(PBX2, "BYE");
    assert_eq!(bye.call_id(), c_inv.call_id());
    assert!(requests(&w.take_to(PBX), "BYE").is_empty());
    w.respond(PBX2, &bye, 200);
    settle(&mut w);
}

#[test]
fn a_target_that_refuses_leaves_the_call_with_the_transferor() {
    let (mut w, b_inv, a_tag) = answered();
    let (answer, _) = refer(&mut w, &b_inv, 3, REFER_TO);
    assert_eq!(answer.status, 202);
    let c_inv = w.take_request(PBX2, "INVITE");
    w.feed_msg(PBX2, &resp_with(&c_inv, 486, "Busy Here", "ctag", "", ""));
    assert_eq!(notifies(&mut w), ["SIP/2.0 486 Busy Here"]);
    assert!(
        requests(&w.take_to(A), "INVITE").is_empty(),
        "A is not touched"
    );
    // The call goes on: A's BYE goes to the PBX.
    w.feed(A, &a_request("BYE", "xfer", 3, &a_tag, ""));
    let bye = w.take_request(PBX, "BYE");
    w.respond(PBX, &bye, 200);
    settle(&mut w);
}

#[test]
fn a_transferor_that_hangs_up_at_once_still_gets_its_caller_transferred() {
    let (mut w, b_inv, a_tag) = answered();
    refer(&mut w, &b_inv, 4, REFER_TO);
    // RFC 5589 §6: the transferor may hang up as soon as the REFER is accepted.
    w.feed(PBX, &b_request("BYE", &b_inv, 20, ""));
    assert_eq!(w.final_to(PBX).status, 200);
    assert!(requests(&w.take_to(A), "BYE").is_empty(), "A stays");
    let c_inv = w.take_request(PBX2, "INVITE");
    w.feed_msg(
        PBX2,
        &resp_with(
            &c_inv,
            200,
            "OK",
            "ctag",
            SDP_C,
            "<sip:carol@127.0.0.1:5090>",
        ),
    );
    let reinv = w.take_request(A, "INVITE");
    w.feed_msg(
        A,
        &resp_with(
            &reinv,
            200,
            "OK",
            &a_tag,
            SDP_A2,
            "<sip:alice@127.0.0.1:5070>",
        ),
    );
    w.take_request(PBX2, "ACK");
    let to_pbx = w.take_to(PBX);
    assert!(
        to_pbx.is_empty(),
        "nothing more to a transferor gone: {to_pbx:?}"
    );
    assert_eq!(w.core.active_calls(), 1);
}

#[test]
fn a_transferor_gone_and_a_target_that_refuses_end_the_call() {
    let (mut w, b_inv, _) = answered();
    refer(&mut w, &b_inv, 5, REFER_TO);
    w.feed(PBX, &b_request("BYE", &b_inv, 20, ""));
    w.take_to(PBX);
    let c_inv = w.take_request(PBX2, "INVITE");
    w.feed_msg(PBX2, &resp_with(&c_inv, 480, "Unavailable", "ctag", "", ""));
    let bye = w.take_request(A, "BYE");
    w.feed_msg(
        A,
        &SipMessage::Response(signaling::b2bua::make_response(&bye, 200, "OK", None)),
    );
    settle(&mut w);
}

#[test]
fn attended_transfers_and_unroutable_targets_are_declined() {
    let (mut w, b_inv, _) = answered();
    let replaces =
        "Refer-To: <sip:2000@10.9.9.9?Replaces=abc%40pbx%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n";
    assert_eq!(refer(&mut w, &b_inv, 6, replaces).0.status, 603);
    w.policy.transfer_to = None;
    assert_eq!(refer(&mut w, &b_inv, 7, REFER_TO).0.status, 603);
    let two = "Refer-To: <sip:1@h>\r\nRefer-To: <sip:2@h>\r\n";
    assert_eq!(refer(&mut w, &b_inv, 8, two).0.status, 400);
    assert!(requests(&w.take_to(PBX2), "INVITE").is_empty());
    assert_eq!(w.core.active_calls(), 1, "the call goes on");
}

#[test]
fn a_caller_that_hangs_up_while_the_target_rings_cancels_it() {
    let (mut w, b_inv, a_tag) = answered();
    refer(&mut w, &b_inv, 9, REFER_TO);
    let c_inv = w.take_request(PBX2, "INVITE");
    w.feed_msg(PBX2, &resp_with(&c_inv, 180, "Ringing", "ctag", "", ""));
    w.feed(A, &a_request("BYE", "xfer", 3, &a_tag, ""));
    let bye = w.take_request(PBX, "BYE");
    w.respond(PBX, &bye, 200);
    let cancel = w.take_request(PBX2, "CANCEL");
    w.respond(PBX2, &cancel, 200);
    w.feed_msg(
        PBX2,
        &resp_with(&c_inv, 487, "Request Terminated", "ctag", "", ""),
    );
    for n in requests(&w.take_to(PBX), "NOTIFY") {
        w.respond(PBX, &n, 200);
    }
    settle(&mut w);
}

#[test]
fn a_reinvite_during_a_transfer_gets_491() {
    let (mut w, b_inv, a_tag) = answered();
    refer(&mut w, &b_inv, 10, REFER_TO);
    w.feed(A, &a_request("INVITE", "xfer", 2, &a_tag, SDP_A2));
    assert_eq!(w.final_to(A).status, 491);
    // A second REFER meanwhile too.
    assert_eq!(refer(&mut w, &b_inv, 11, REFER_TO).0.status, 491);
}

/// A second answered call from A to the PBX (Call-ID `xfer2`): its leg B INVITE and A's tag.
fn second_call(w: &mut TWorld) -> (Request, String) {
    w.feed(A, &invite("xfer2", SDP_A));
    let b_inv = w.take_request(PBX, "INVITE");
    w.feed_msg(
        PBX,
        &resp_with(
            &b_inv,
            200,
            "OK",
            "btag2",
            SDP_B,
            "<sip:bob@127.0.0.1:5080>",
        ),
    );
    let ok = w
        .take_responses(A)
        .into_iter()
        .find(|r| r.status == 200)
        .expect("200 to A");
    let tag = ok.to().unwrap().tag().unwrap().to_string();
    w.feed(A, &a_request("ACK", "xfer2", 1, &tag, ""));
    w.sent().clear();
    (b_inv, tag)
}

/// Refer-To naming call 2's leg B dialog (as the PBX sees it) in a Replaces.
fn replaces(b_inv2: &Request) -> String {
    let ours = b_inv2.from().unwrap().tag().unwrap().to_string();
    let cid = b_inv2.call_id().unwrap().replace('@', "%40");
    format!("Refer-To: <sip:2000@10.9.9.9?Replaces={cid}%3Bto-tag%3D{ours}%3Bfrom-tag%3Dbtag2>\r\n")
}

#[test]
fn an_attended_transfer_joins_the_two_callers() {
    let (mut w, b_inv, a_tag) = answered();
    let (b_inv2, a_tag2) = second_call(&mut w);
    assert_eq!(w.core.active_calls(), 2);
    let (answer, notify) = refer(&mut w, &b_inv, 2, &replaces(&b_inv2));
    assert_eq!(answer.status, 202);
    assert_eq!(sipfrag(&notify.expect("NOTIFY 100")), "SIP/2.0 100 Trying");
    // A2 (call 2's caller) is re-INVITEd without an offer in its own dialog.
    let reinv2 = w.take_request(A, "INVITE");
    assert_eq!(reinv2.call_id(), Some("xfer2"));
    assert!(reinv2.body.is_empty());
    assert!(
        requests(&w.take_to(PBX2), "INVITE").is_empty(),
        "nobody new is called"
    );
    w.feed_msg(
        A,
        &resp_with(
            &reinv2,
            200,
            "OK",
            &a_tag2,
            SDP_A2,
            "<sip:alice@127.0.0.1:5070>",
        ),
    );
    // Its offer goes to A1 through call 1's relay; call 2's PBX leg is ended.
    let reinv1 = w.take_request(A, "INVITE");
    assert_eq!(reinv1.call_id(), Some("xfer"));
    assert!(String::from_utf8_lossy(&reinv1.body).contains("m=audio"));
    let to_pbx = w.take_to(PBX);
    let byes = requests(&to_pbx, "BYE");
    assert_eq!(byes.len(), 1, "{to_pbx:?}");
    assert_eq!(byes[0].call_id(), b_inv2.call_id(), "the replaced dialog");
    w.respond(PBX, &byes[0], 200);
    for n in requests(&to_pbx, "NOTIFY") {
        w.respond(PBX, &n, 200);
    }
    w.feed_msg(
        A,
        &resp_with(
            &reinv1,
            200,
            "OK",
            &a_tag,
            SDP_A,
            "<sip:alice@127.0.0.1:5070>",
        ),
    );
    let acks = requests(&w.take_to(A), "ACK");
    let ack2 = acks
        .iter()
        .find(|a| a.call_id() == Some("xfer2"))
        .expect("A2's ACK");
    assert!(
        String::from_utf8_lossy(&ack2.body).contains("m=audio"),
        "the answer"
    );
    assert!(acks.iter().any(|a| a.call_id() == Some("xfer")));
    // Call 1's transferor: told, and let go.
    let to_pbx = w.take_to(PBX);
    let ns = requests(&to_pbx, "NOTIFY");
    assert_eq!(
        ns.iter().map(sipfrag).collect::<Vec<_>>(),
        ["SIP/2.0 200 OK"]
    );
    let bye = requests(&to_pbx, "BYE");
    assert_eq!(bye.len(), 1);
    assert_eq!(bye[0].call_id(), b_inv.call_id());
    w.respond(PBX, &ns[0], 200);
    w.respond(PBX, &bye[0], 200);
    assert_eq!(w.core.active_calls(), 1, "one call: A1 with A2");
    // A2 hangs up: the BYE reaches A1.
    w.feed(A, &a_request("BYE", "xfer2", 3, &a_tag2, ""));
    let msgs = w.take_to(A);
    let bye = requests(&msgs, "BYE");
    assert_eq!(bye.len(), 1, "{msgs:?}");
    assert_eq!(bye[0].call_id(), Some("xfer"));
    assert!(msgs
        .iter()
        .any(|m| matches!(m, SipMessage::Response(r) if r.status == 200)));
    w.feed_msg(
        A,
        &SipMessage::Response(signaling::b2bua::make_response(&bye[0], 200, "OK", None)),
    );
    settle(&mut w);
}

#[test]
fn an_attended_transfer_the_other_caller_refuses_leaves_both_calls() {
    let (mut w, b_inv, _) = answered();
    let (b_inv2, a_tag2) = second_call(&mut w);
    refer(&mut w, &b_inv, 2, &replaces(&b_inv2));
    let reinv2 = w.take_request(A, "INVITE");
    w.feed_msg(
        A,
        &resp_with(&reinv2, 488, "Not Acceptable Here", &a_tag2, "", ""),
    );
    assert_eq!(notifies(&mut w), ["SIP/2.0 488 Not Acceptable Here"]);
    assert!(requests(&w.take_to(PBX), "BYE").is_empty());
    assert_eq!(w.core.active_calls(), 2);
}

#[test]
fn a_replaces_naming_no_call_of_ours_is_declined() {
    let (mut w, b_inv, _) = answered();
    let (b_inv2, _) = second_call(&mut w);
    let wrong = replaces(&b_inv2).replace("btag2", "other");
    assert_eq!(refer(&mut w, &b_inv, 2, &wrong).0.status, 603);
    // Its own dialog cannot be the one replaced.
    assert_eq!(
        refer(
            &mut w,
            &b_inv,
            3,
            &replaces(&b_inv).replace("btag2", "btag")
        )
        .0
        .status,
        603
    );
    assert_eq!(w.core.active_calls(), 2);
}
