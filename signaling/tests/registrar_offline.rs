//! Messages kept for offline users (RFC 3428, like Kamailio's msilo): a MESSAGE to a served
//! user with no binding is accepted (202) and kept; when the user registers the messages go
//! to the new binding one at a time, in order, each with the `Date` it arrived; a failed
//! delivery is retried after a pause and dropped after the last attempt; the store's limits
//! refuse what does not fit; unknown users still get 404 and strangers a challenge.

mod registrar_common;

use std::sync::Arc;
use std::time::Duration;

use registrar_common::*;
use signaling::mailbox::{MailChange, MailboxLimits};
use signaling::message::{Request, SipMessage};

const WALL: u64 = 1_289_690_940; // Sat, 13 Nov 2010 23:29:00 GMT

fn limits() -> MailboxLimits {
    MailboxLimits {
        per_user: 3,
        total: 10,
        max_body: 200,
        ttl: Duration::from_secs(3600),
        attempts: 2,
        retry: Duration::from_secs(30),
    }
}

fn offline_world() -> World {
    let mut s = settings();
    s.offline = Some(limits());
    let mut w = world(s);
    let now = w.now;
    w.core.set_wall_clock(now, WALL);
    w
}

/// A MESSAGE from the carrier (a trunk: trusted) to `to`.
fn message(to: &str, n: u32, body: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKoff{n}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{to}>\r\nFrom: <sip:+15550001@carrier.net>;tag=m{n}\r\n\
         Call-ID: off-{n}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn messages_to(w: &mut World, to: &str) -> Vec<Request> {
    w.take_to(to)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "MESSAGE" => Some(r),
            _ => None,
        })
        .fold(Vec::new(), |mut v: Vec<Request>, r| {
            // A retransmission (UDP) is the same request: counted once.
            let key = |r: &Request| (r.call_id().map(str::to_string), r.cseq().map(|c| c.seq));
            if !v.iter().any(|x| key(x) == key(&r)) {
                v.push(r);
            }
            v
        })
}

const CONTACT: &str = "<sip:alice@192.168.1.20:5060>;expires=600";

#[test]
fn messages_for_an_offline_user_are_kept_and_delivered_in_order_when_she_registers() {
    let mut w = offline_world();
    w.core.persist_locations(w.now);
    for (n, text) in [(1, "first"), (2, "second ünïcode")] {
        w.feed(CARRIER, &message("alice@example.com", n, text));
        let r = w.final_to(CARRIER);
        assert_eq!((r.status, r.reason.as_str()), (202, "Accepted"));
        w.advance(Duration::from_secs(60));
    }
    assert_eq!(w.core.mailbox().len(), 2);
    let puts = w
        .core
        .take_mail_changes()
        .into_iter()
        .filter(|c| matches!(c, MailChange::Put(aor, _) if aor == "alice@example.com"))
        .count();
    assert_eq!(puts, 2, "the store is told of both");
    // An unknown user is no one to keep messages for.
    w.feed(CARRIER, &message("nobody@example.com", 3, "x"));
    assert_eq!(w.final_to(CARRIER).status, 404);

    assert_eq!(register_alice(&mut w, 1, CONTACT), 200);
    let first = messages_to(&mut w, PHONE_NAT);
    assert_eq!(first.len(), 1, "one at a time");
    let m = &first[0];
    assert_eq!(m.uri, "sip:alice@192.168.1.20:5060");
    assert_eq!(m.body, b"first");
    assert_eq!(
        m.headers.get("Content-Type"),
        Some("text/plain;charset=UTF-8")
    );
    assert_eq!(m.headers.get("Date"), Some("Sat, 13 Nov 2010 23:29:00 GMT"));
    assert!(m.headers.get("From").unwrap().contains("sip:+15550001@"));
    assert!(m
        .headers
        .get("To")
        .unwrap()
        .contains("sip:alice@example.com"));
    assert!(!m.headers.get("Call-ID").unwrap().starts_with("off-"));
    w.respond(PHONE_NAT, m, 200);
    let second = messages_to(&mut w, PHONE_NAT);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].body, "second ünïcode".as_bytes());
    assert_eq!(
        second[0].headers.get("Date"),
        Some("Sat, 13 Nov 2010 23:30:00 GMT"),
        "the time the second one came"
    );
    w.respond(PHONE_NAT, &second[0], 202);
    assert!(messages_to(&mut w, PHONE_NAT).is_empty());
    assert!(w.core.mailbox().is_empty());
    assert_eq!(w.core.mailbox().stats.delivered, 2);
    let deletes = w
        .core
        .take_mail_changes()
        .into_iter()
        .filter(|c| matches!(c, MailChange::Delete(..)))
        .count();
    assert_eq!(deletes, 2);
    // Registered now: a new message is relayed at once, as before.
    w.feed(CARRIER, &message("alice@example.com", 4, "live"));
    let live = messages_to(&mut w, PHONE_NAT);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].headers.get("Date"), None);
}

#[test]
fn a_failed_delivery_is_retried_then_dropped_and_the_next_goes() {
    let mut w = offline_world();
    w.feed(CARRIER, &message("alice@example.com", 1, "one"));
    w.feed(CARRIER, &message("alice@example.com", 2, "two"));
    assert_eq!(register_alice(&mut w, 1, CONTACT), 200);
    let m = messages_to(&mut w, PHONE_NAT);
    assert_eq!(m.len(), 1);
    w.respond(PHONE_NAT, &m[0], 486);
    assert!(messages_to(&mut w, PHONE_NAT).is_empty(), "a pause first");
    w.advance(Duration::from_secs(31));
    let again = messages_to(&mut w, PHONE_NAT);
    assert_eq!(again.len(), 1, "the same message again: {again:?}");
    assert_eq!(again[0].body, b"one");
    // The second attempt times out (no answer at all): dropped; the next one goes.
    w.advance(Duration::from_secs(40));
    let sent = messages_to(&mut w, PHONE_NAT);
    let bodies: Vec<&[u8]> = sent.iter().map(|r| r.body.as_slice()).collect();
    assert!(bodies.contains(&&b"two"[..]), "{bodies:?}");
    assert_eq!(w.core.mailbox().stats.failed, 1);
}

#[test]
fn the_store_refuses_what_does_not_fit() {
    let mut w = offline_world();
    for n in 0..3 {
        w.feed(CARRIER, &message("alice@example.com", n, "x"));
        assert_eq!(w.final_to(CARRIER).status, 202);
    }
    w.feed(CARRIER, &message("alice@example.com", 9, "one too many"));
    assert_eq!(w.final_to(CARRIER).status, 480);
    let big = "y".repeat(201);
    w.feed(CARRIER, &message("alice@example.com", 10, &big));
    assert_eq!(w.final_to(CARRIER).status, 513);
    let s = &w.core.mailbox().stats;
    assert_eq!((s.stored, s.refused_full, s.refused_too_large), (3, 1, 1));
    // Kept messages outlive nothing: after the TTL they are gone and there is room again.
    w.advance(Duration::from_secs(3601));
    w.feed(CARRIER, &message("alice@example.com", 11, "fresh"));
    assert_eq!(w.final_to(CARRIER).status, 202);
    assert_eq!(w.core.mailbox().len(), 1);
}

#[test]
fn without_offline_messages_an_offline_user_is_480_and_strangers_are_challenged() {
    let mut w = world(settings());
    w.feed(CARRIER, &message("alice@example.com", 1, "x"));
    assert_eq!(w.final_to(CARRIER).status, 480);
    assert!(w.core.mailbox().is_empty());

    // With the store on, a stranger (not a trunk) is challenged, not stored for.
    let mut w = offline_world();
    let stranger = "203.0.113.77:5060";
    let text = String::from_utf8(message("alice@example.com", 2, "spam"))
        .unwrap()
        .replace("198.51.100.1:5060", stranger);
    w.feed(stranger, text.as_bytes());
    assert_eq!(w.final_to(stranger).status, 407);
    assert!(w.core.mailbox().is_empty());
    let _ = Arc::clone(&w.policy.settings);
}
