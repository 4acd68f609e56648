//! REFER relayed between a call's legs: no address of one side reaches the other (RFC 3515's
//! Refer-To and RFC 3892's Referred-By rewritten to the user at trunkline's address, a
//! Replaces dropped); the REFER's answer crosses back; a leg whose trunk says `refer: reject`
//! gets 603.

mod flows_common;

use flows_common::*;

fn refer(call_id: &str, to_tag: &str) -> Vec<u8> {
    String::from_utf8(a_request("REFER", call_id, 2, to_tag, ""))
        .unwrap()
        .replace(
            "Content-Length: 0",
            "Refer-To: <sip:2000@10.9.9.9:5062;transport=tcp?Replaces=abc%40pbx%3Bto-tag%3D1>\r\n\
Referred-By: \"Alice\" <sip:alice@10.1.1.1:5070>\r\n\
Content-Length: 0",
        )
        .into_bytes()
}

#[test]
fn a_relayed_refer_names_trunklines_address_only() {
    let mut w = world(vec![target("pbx", PBX)]);
    let (_b_inv, a_tag) = answered_call(&mut w, "xfer-1");
    w.sent().clear();
    w.feed(A, &refer("xfer-1", &a_tag));
    let r = w.take_request(PBX, "REFER");
    assert_eq!(r.headers.get("Refer-To"), Some("<sip:2000@127.0.0.1:5060>"));
    assert_eq!(
        r.headers.get("Referred-By"),
        Some("\"Alice\" <sip:alice@127.0.0.1:5060>")
    );
    let text =
        String::from_utf8_lossy(&signaling::message::SipMessage::Request(r.clone()).to_bytes())
            .to_string();
    for leak in ["10.9.9.9", "10.1.1.1", "Replaces", "xfer-1", "atag-"] {
        assert!(!text.contains(leak), "{leak} leaked:\n{text}");
    }
    // The trunk accepts: 202 reaches the caller.
    w.respond(PBX, &r, 202);
    let rs = w.take_responses(A);
    assert!(rs.iter().any(|x| x.status == 202), "{rs:?}");
}

#[test]
fn a_leg_whose_trunk_may_not_transfer_gets_603() {
    let mut w = tuned_world(vec![target("pbx", PBX)], false);
    w.policy.refer = signaling::b2bua::ReferMode::Reject;
    let (_inv, tag) = answered_call(&mut w, "xfer-2");
    w.sent().clear();
    w.feed(A, &refer("xfer-2", &tag));
    assert_eq!(w.final_to(A).status, 603);
    assert!(requests(&w.take_to(PBX), "REFER").is_empty(), "not relayed");
    assert_eq!(w.core.active_calls(), 1, "the call goes on");
}
