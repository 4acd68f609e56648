//! trunkline as the presence agent of its served users (RFC 3856, RFC 3903, RFC 6665): a
//! watcher's SUBSCRIBE is answered by trunkline with 200 and a NOTIFY (PIDF) at once; the
//! state follows registration (closed, open when alice registers, closed when she
//! unregisters or her binding lapses) until she PUBLISHes, then her document; refreshes,
//! unsubscribes, expiry and a watcher that answers 481 end subscriptions; bad PUBLISHes are
//! refused with the RFC's codes.

mod registrar_common;

use std::time::Duration;

use registrar_common::*;
use signaling::digest_client::{Credentials, DigestClient, RequestParts};
use signaling::esc::PresenceLimits;
use signaling::message::{Request, Response, SipMessage};

const WATCHER: &str = "198.51.100.20:5060";

fn pa_world() -> World {
    let mut s = settings();
    s.presence = Some(PresenceLimits::default());
    world(s)
}

fn subscribe(to: &str, expires: u32, cseq: u32, to_tag: Option<&str>) -> Vec<u8> {
    let tt = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SUBSCRIBE sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {WATCHER};branch=z9hG4bKw{cseq}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{to}>{tt}\r\nFrom: <sip:watcher@carrier.net>;tag=w1\r\n\
         Call-ID: watch-1\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:watcher@{WATCHER}>\r\n\
         Event: presence\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn basic(n: &Request) -> &'static str {
    let b = String::from_utf8_lossy(&n.body);
    if b.contains("<basic>open</basic>") {
        "open"
    } else if b.contains("<basic>closed</basic>") {
        "closed"
    } else {
        "none"
    }
}

/// The watcher (a trunk: `CARRIER`'s host is trusted) subscribes; the 200 and first NOTIFY.
fn watch(w: &mut World) -> (Response, Request) {
    // The carrier is a trunk; a watcher at another address of it would be challenged.
    let text = String::from_utf8(subscribe("alice@example.com", 600, 1, None)).unwrap();
    w.feed(CARRIER, text.as_bytes());
    let ok = w.take_final(CARRIER);
    let n = w
        .take_to(CARRIER)
        .into_iter()
        .find_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == "NOTIFY" => Some(r),
            _ => None,
        })
        .expect("a NOTIFY at once");
    (ok, n)
}

#[test]
fn a_watcher_sees_registration_then_publications() {
    let mut w = pa_world();
    let (ok, n) = watch(&mut w);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get("Expires"), Some("600"));
    let to_tag = ok
        .headers
        .get("To")
        .and_then(|t| t.split("tag=").nth(1))
        .expect("our tag")
        .to_string();
    assert_eq!(basic(&n), "closed", "alice is not registered");
    assert_eq!(n.headers.get("Event"), Some("presence"));
    assert_eq!(n.headers.get("Content-Type"), Some("application/pidf+xml"));
    assert!(n
        .headers
        .get("Subscription-State")
        .unwrap()
        .starts_with("active;expires="));
    assert!(n.headers.get("From").unwrap().contains(&to_tag));
    assert_eq!(n.uri, format!("sip:watcher@{WATCHER}"));
    assert!(String::from_utf8_lossy(&n.body).contains("entity=\"sip:alice@example.com\""));
    w.respond(CARRIER, &n, 200);

    // alice registers: open.
    assert_eq!(
        register_alice(&mut w, 1, "<sip:alice@192.168.1.20:5060>;expires=120"),
        200
    );
    let n: Vec<Request> = requests(&mut w, CARRIER, "NOTIFY");
    assert_eq!(n.len(), 1);
    assert_eq!(basic(&n[0]), "open");
    w.respond(CARRIER, &n[0], 200);
    // A refresh of the same binding changes nothing the watcher sees: no NOTIFY.
    assert_eq!(
        register_alice(&mut w, 3, "<sip:alice@192.168.1.20:5060>;expires=120"),
        200
    );
    assert!(requests(&mut w, CARRIER, "NOTIFY").is_empty());

    // She publishes "closed" (away) with a note: the watcher gets her document.
    let doc = "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
               entity=\"sip:alice@example.com\"><tuple id=\"d1\"><status><basic>closed</basic>\
               </status><note>lunch</note></tuple></presence>";
    let etag = publish_alice(&mut w, 10, None, Some(doc), 300)
        .expect("published")
        .expect("an entity tag");
    let n = requests(&mut w, CARRIER, "NOTIFY");
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].body, doc.as_bytes(), "the published document as sent");
    w.respond(CARRIER, &n[0], 200);
    // Removing the publication: back to the registration's state (open).
    assert_eq!(publish_alice(&mut w, 12, Some(&etag), None, 0), Ok(None));
    let n = requests(&mut w, CARRIER, "NOTIFY");
    assert_eq!(basic(&n[0]), "open");
    w.respond(CARRIER, &n[0], 200);

    // She refreshes (the binding now lasts 120 s from here), then it lapses: closed, without
    // any REGISTER.
    w.advance(Duration::from_secs(60));
    assert_eq!(
        register_alice(&mut w, 20, "<sip:alice@192.168.1.20:5060>;expires=120"),
        200
    );
    assert!(requests(&mut w, CARRIER, "NOTIFY").is_empty());
    w.advance(Duration::from_secs(70));
    assert!(
        requests(&mut w, CARRIER, "NOTIFY").is_empty(),
        "still registered at the first binding's old expiry"
    );
    w.advance(Duration::from_secs(51));
    let n = requests(&mut w, CARRIER, "NOTIFY");
    assert_eq!(n.len(), 1, "one NOTIFY when the binding expired");
    assert_eq!(basic(&n[0]), "closed");
    w.respond(CARRIER, &n[0], 200);

    // Unsubscribe: 200, a terminated NOTIFY, and nothing more.
    let text = String::from_utf8(subscribe("alice@example.com", 0, 2, Some(&to_tag))).unwrap();
    w.feed(CARRIER, text.as_bytes());
    assert_eq!(w.take_final(CARRIER).status, 200);
    let n = requests(&mut w, CARRIER, "NOTIFY");
    assert_eq!(n.len(), 1);
    assert!(n[0]
        .headers
        .get("Subscription-State")
        .unwrap()
        .starts_with("terminated"));
    assert_eq!(w.core.presence_watchers(), 0);
}

#[test]
fn subscriptions_expire_and_a_481_ends_one() {
    let mut w = pa_world();
    let (_, n) = watch(&mut w);
    w.respond(CARRIER, &n, 200);
    assert_eq!(w.core.presence_watchers(), 1);
    w.advance(Duration::from_secs(601));
    let n = requests(&mut w, CARRIER, "NOTIFY");
    assert!(n
        .iter()
        .any(|n| n.headers.get("Subscription-State") == Some("terminated;reason=timeout")));
    assert_eq!(w.core.presence_watchers(), 0);

    let (_, n) = watch(&mut w);
    w.respond(CARRIER, &n, 481);
    assert_eq!(w.core.presence_watchers(), 0, "481: the watcher is gone");
}

#[test]
fn bad_publishes_get_the_rfc_answers() {
    let mut w = pa_world();
    let good = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@example.com\">\
                <tuple id=\"a\"><status><basic>open</basic></status></tuple></presence>";
    assert_eq!(publish_alice(&mut w, 1, Some("nope"), None, 60), Err(412));
    assert_eq!(publish_alice(&mut w, 3, None, Some(good), 5), Err(423));
    assert_eq!(
        publish_alice(&mut w, 5, None, Some("<html/>"), 60),
        Err(400)
    );
    let huge = format!(
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\">{}</presence>",
        " ".repeat(9000)
    );
    assert_eq!(publish_alice(&mut w, 7, None, Some(&huge), 60), Err(413));
    let bomb = "<!DOCTYPE p [<!ENTITY a \"aaaaaaaaaa\">]><presence xmlns=\"urn:ietf:params:xml:ns:pidf\">&a;</presence>";
    assert_eq!(publish_alice(&mut w, 9, None, Some(bomb), 60), Err(400));
    // No such user: nothing to publish for (and no challenge to learn it from).
    let text = publish_text("bob@example.com", 11, None, Some(good), 60, "");
    w.feed(PHONE_NAT, text.as_bytes());
    assert_eq!(w.final_to(PHONE_NAT).status, 404);
    // Wrong event package.
    let text = publish_text("alice@example.com", 13, None, Some(good), 60, "")
        .replace("Event: presence", "Event: dialog");
    w.feed(PHONE_NAT, text.as_bytes());
    assert_eq!(w.final_to(PHONE_NAT).status, 489);
}

fn requests(w: &mut World, to: &str, method: &str) -> Vec<Request> {
    w.take_to(to)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) if r.method.as_str() == method => Some(r),
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

fn publish_text(
    to: &str,
    cseq: u32,
    etag: Option<&str>,
    body: Option<&str>,
    expires: u32,
    auth: &str,
) -> String {
    let m = etag
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    let (ct, b) = match body {
        Some(b) => ("Content-Type: application/pidf+xml\r\n", b),
        None => ("", ""),
    };
    format!(
        "PUBLISH sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKpub{cseq}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{to}>\r\nFrom: <sip:alice@example.com>;tag=pub\r\n\
         Call-ID: pub-1\r\nCSeq: {cseq} PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\n\
         {m}{auth}{ct}Content-Length: {}\r\n\r\n{b}",
        b.len()
    )
}

/// alice's Proxy-Authorization for the challenge `ch`.
fn answer(ch: &Response, method: &str, uri: &str) -> String {
    let mut client = DigestClient::new(Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        realm: None,
    });
    let parts = RequestParts {
        method,
        uri,
        body: b"",
    };
    let a = client
        .answer(ch, &parts, None, "c0ffee")
        .expect("answerable");
    format!("{}: {}\r\n", a.header, a.value)
}

/// alice publishes (challenge, then credentials): the new entity tag, or the refusal.
fn publish_alice(
    w: &mut World,
    cseq: u32,
    etag: Option<&str>,
    body: Option<&str>,
    expires: u32,
) -> Result<Option<String>, u16> {
    let text = publish_text("alice@example.com", cseq, etag, body, expires, "");
    w.feed(PHONE_NAT, text.as_bytes());
    let ch = w.final_to(PHONE_NAT);
    assert_eq!(ch.status, 407, "a phone's PUBLISH is authenticated");
    let auth = answer(&ch, "PUBLISH", "sip:alice@example.com");
    let text = publish_text("alice@example.com", cseq + 1, etag, body, expires, &auth);
    w.feed(PHONE_NAT, text.as_bytes());
    let r = w.final_to(PHONE_NAT);
    match r.status {
        200 => Ok(r.headers.get("SIP-ETag").map(str::to_string)),
        s => Err(s),
    }
}

/// A flood of subscriptions costs bounded state: beyond `watchers` each gets 503, and when
/// they expire nothing is left.
#[test]
fn subscriptions_are_bounded_and_leave_nothing_behind() {
    let mut s = settings();
    s.presence = Some(PresenceLimits {
        watchers: 50,
        ..PresenceLimits::default()
    });
    let mut w = world(s);
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..80 {
        let text = String::from_utf8(subscribe("alice@example.com", 60, 1, None))
            .unwrap()
            .replace("Call-ID: watch-1", &format!("Call-ID: flood-{i}"))
            .replace("branch=z9hG4bKw1", &format!("branch=z9hG4bKflood{i}"));
        w.feed(CARRIER, text.as_bytes());
        *codes.entry(w.take_final(CARRIER).status).or_insert(0) += 1;
        w.take_to(CARRIER);
    }
    assert_eq!(codes.get(&200), Some(&50), "{codes:?}");
    assert_eq!(codes.get(&503), Some(&30), "{codes:?}");
    assert_eq!(w.core.presence_watchers(), 50);
    w.advance(Duration::from_secs(61));
    assert_eq!(w.core.presence_watchers(), 0);
    assert_eq!(w.core.presence_stats().0, 0);
}
