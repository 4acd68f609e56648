//! The location service as a shell keeps it across restarts: the core reports which AoRs'
//! bindings changed, and a new core given those bindings back routes calls to them without a
//! new REGISTER. Virtual time through the shared test World.

mod registrar_common;

use std::time::Duration;

use registrar_common::*;

#[test]
fn changed_bindings_are_reported_and_a_new_core_routes_to_them() {
    let mut w = world(settings());
    w.core.persist_locations(w.now);
    assert!(w.core.take_location_changes().is_empty());
    let contact = "<sip:alice@192.168.1.20:5060>;expires=600";
    assert_eq!(register_alice(&mut w, 1, contact), 200);
    let changes = w.core.take_location_changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].0, "alice@example.com");
    assert_eq!(changes[0].1.len(), 1);
    assert_eq!(changes[0].1[0].target, "alice@192.168.1.20:5060");
    assert!(w.core.take_location_changes().is_empty(), "taken once");

    // A new core (a restart) given the bindings back: the carrier's call reaches the phone at
    // its NAT address with no new REGISTER.
    let mut w2 = world(settings());
    w2.now = w.now + Duration::from_secs(5);
    let now = w2.now;
    for (aor, b) in changes.clone() {
        w2.core.restore_location(aor, b, now);
    }
    assert_eq!(w2.core.registered_contacts(now), 1);
    assert!(
        w2.core.take_location_changes().is_empty(),
        "a restore is no change"
    );
    w2.feed(CARRIER, &invite("sip:alice@example.com", "after-restart"));
    let inv = invites_to(&mut w2, PHONE_NAT);
    assert_eq!(inv.len(), 1, "INVITE to the phone's NAT address");
    assert_eq!(inv[0].uri, "sip:alice@192.168.1.20:5060");

    // Bindings that expired while the process was down are not taken back.
    let mut w3 = world(settings());
    w3.now = w.now + Duration::from_secs(601);
    let now = w3.now;
    for (aor, b) in changes {
        w3.core.restore_location(aor, b, now);
    }
    assert_eq!(w3.core.registered_contacts(now), 0);
    w3.feed(CARRIER, &invite("sip:alice@example.com", "expired"));
    assert_eq!(w3.final_to(CARRIER).status, 480);
}

#[test]
fn removal_is_a_change_with_no_bindings_and_a_fetch_is_none() {
    let mut w = world(settings());
    w.core.persist_locations(w.now);
    assert_eq!(
        register_alice(&mut w, 1, "<sip:alice@192.168.1.20:5060>"),
        200
    );
    assert_eq!(w.core.take_location_changes().len(), 1);
    // the same phone's un-REGISTER: the AoR's record goes
    assert_eq!(
        register_alice(&mut w, 3, "<sip:alice@192.168.1.20:5060>;expires=0"),
        200
    );
    let c = w.core.take_location_changes();
    assert_eq!(c.len(), 1);
    assert!(c[0].1.is_empty(), "{c:?}");
    // the admin API's removal of an AoR is a change too
    assert_eq!(
        register_alice(&mut w, 5, "<sip:alice@192.168.1.20:5060>"),
        200
    );
    let _ = w.core.take_location_changes();
    assert_eq!(w.core.remove_registrations("alice@example.com"), 1);
    let c = w.core.take_location_changes();
    assert_eq!((c.len(), c[0].1.len()), (1, 0));
}

#[test]
fn without_persistence_nothing_is_collected() {
    let mut w = world(settings());
    assert_eq!(
        register_alice(&mut w, 1, "<sip:alice@192.168.1.20:5060>"),
        200
    );
    assert!(w.core.take_location_changes().is_empty());
}
