//! Bindings other cluster nodes hold (`B2bua::set_remote_bindings`): a call to a user with no
//! binding here goes to the node that has one, with the AoR as Request-URI (that node looks
//! the user up itself); a binding here wins over a remote one; an empty record removes them.

mod registrar_common;

use std::time::{Duration, Instant};

use registrar_common::*;
use signaling::registrar::Binding;
use signaling::testing::peer;

const NODE_B: &str = "10.0.0.2:5060";

fn remote(now: Instant) -> Vec<Binding> {
    vec![Binding {
        contact: "sip:alice@192.168.7.7:5060".into(),
        target: "alice@192.168.7.7:5060".into(),
        source: peer("192.168.7.7:5060"),
        expires: now + Duration::from_secs(300),
        q: 1000,
        call_id: "reg-b".into(),
        cseq: 3,
        updated: now,
    }]
}

#[test]
fn a_call_for_a_user_registered_at_another_node_goes_through_that_node() {
    let mut w = world(settings());
    let now = w.now;
    w.core.set_remote_bindings(
        "b",
        peer(NODE_B),
        "alice@example.com".into(),
        remote(now),
        now,
    );
    assert_eq!(w.core.remote_aors(), 1);
    w.feed(CARRIER, &invite("sip:alice@example.com", "c1"));
    let inv = invites_to(&mut w, NODE_B);
    assert_eq!(inv.len(), 1, "to node b");
    assert_eq!(
        inv[0].uri, "sip:alice@example.com",
        "the AoR: node b looks it up"
    );
    assert!(
        invites_to(&mut w, "192.168.7.7:5060").is_empty(),
        "never to the phone itself"
    );

    // alice registers here too: her own binding wins
    assert_eq!(
        register_alice(&mut w, 1, "<sip:alice@192.168.1.20:5060>"),
        200
    );
    w.feed(CARRIER, &invite("sip:alice@example.com", "c2"));
    assert_eq!(invites_to(&mut w, PHONE_NAT).len(), 1);
    assert!(invites_to(&mut w, NODE_B).is_empty());

    // node b's record goes: nothing remote left
    let now = w.now;
    w.core.set_remote_bindings(
        "b",
        peer(NODE_B),
        "alice@example.com".into(),
        Vec::new(),
        now,
    );
    assert_eq!(w.core.remote_aors(), 0);
}

#[test]
fn expired_remote_bindings_are_not_taken() {
    let mut w = world(settings());
    let now = w.now;
    let mut old = remote(now);
    old[0].expires = now;
    w.core
        .set_remote_bindings("b", peer(NODE_B), "alice@example.com".into(), old, now);
    assert_eq!(w.core.remote_aors(), 0);
    w.feed(CARRIER, &invite("sip:alice@example.com", "c3"));
    assert_eq!(w.final_to(CARRIER).status, 480);
}
