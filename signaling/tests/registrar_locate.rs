//! The dial plan rewrites before the location lookup (`locate: true`): a carrier's call to a
//! DID that is no served user's name reaches the registered phone the plan names; a rewrite to a
//! user without a binding gets the lookup's 480, to nobody 404.

mod registrar_common;

use registrar_common::*;

#[test]
fn a_did_rewritten_by_the_plan_reaches_the_registered_phone() {
    let mut w = world(settings());
    w.policy.locate = vec![
        ("5550100".into(), "alice".into()),
        ("5550199".into(), "bob".into()),
    ];
    let contact = "<sip:alice@192.168.1.20:5060>";
    assert_eq!(register_alice(&mut w, 1, contact), 200);
    w.sent().clear();
    // To trunkline's address, not a served domain: the dial plan decides, and says `locate`.
    w.feed(CARRIER, &invite("sip:5550100@192.0.2.10", "did-1"));
    let invs = invites_to(&mut w, PHONE_NAT);
    assert_eq!(invs.len(), 1, "to the phone's NAT address");
    assert!(
        invs[0].uri.starts_with("sip:alice@192.168.1.20"),
        "{}",
        invs[0].uri
    );
    assert!(invites_to(&mut w, PBX).is_empty());
    // bob is not a user: 404; anything else follows the plan (the PBX).
    w.feed(CARRIER, &invite("sip:5550199@192.0.2.10", "did-2"));
    assert_eq!(w.final_to(CARRIER).status, 404);
    w.feed(CARRIER, &invite("sip:5550123@192.0.2.10", "did-3"));
    assert_eq!(invites_to(&mut w, PBX).len(), 1);
}

#[test]
fn a_did_rewritten_to_an_offline_user_gets_480() {
    let mut w = world(settings());
    w.policy.locate = vec![("5550100".into(), "alice".into())];
    w.feed(CARRIER, &invite("sip:5550100@192.0.2.10", "did-4"));
    assert_eq!(w.final_to(CARRIER).status, 480);
}

#[test]
fn a_message_to_a_did_the_plan_locates_reaches_the_phone() {
    let mut w = world(settings());
    w.policy.locate = vec![("5550100".into(), "alice".into())];
    assert_eq!(
        register_alice(&mut w, 1, "<sip:alice@192.168.1.20:5060>"),
        200
    );
    w.sent().clear();
    let msg = String::from_utf8(invite("sip:5550100@192.0.2.10", "did-m1"))
        .unwrap()
        .replace("INVITE sip", "MESSAGE sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE")
        .replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        );
    w.feed(CARRIER, msg.as_bytes());
    let to_phone: Vec<_> = w
        .take_to(PHONE_NAT)
        .into_iter()
        .filter_map(|m| match m {
            signaling::message::SipMessage::Request(r) if r.method.as_str() == "MESSAGE" => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(to_phone.len(), 1);
    assert_eq!(to_phone[0].body, b"hi");
}
