//! RFC 5118 "SIP Torture Test Messages for IPv6": every message of §4.1–§4.10 gets the verdict
//! the RFC gives it, its IPv6 references parse to the right host and port, and whatever parses
//! re-serialises to the same message (so a Via, Contact or Request-URI with an IPv6 reference
//! crosses trunkline as it came).
//!
//! The messages are in `tests/rfc5118/` (one file each, named as in the RFC, written out from
//! its text; see the README there: the RFC's own Content-Length values for §4.6, §4.8 and §4.9
//! do not match their bodies, and framing is RFC 4475's subject, not this one's). The SDP
//! bodies (§4.6, §4.8, §4.9) are rewritten by the media crate's SDP code in
//! `media-core/tests/sdp_cases.rs` (`rfc5118_*`); here they only have to frame and cross as
//! bytes. `tests/ipv6_e2e.rs` sends the same files to a running trunkline over IPv6.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use signaling::check::admission;
use signaling::headers::{NameAddr, Via};
use signaling::parse::{bad_request_response, parse};
use signaling::uri::Uri;
use signaling::{Request, SipMessage};

/// The corpus directory (`signaling/tests/rfc5118/`, see its README).
fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rfc5118")
}

/// The message the RFC names `name` (`ipv6-good`, `port-ambiguous`, ...).
fn load(name: &str) -> Vec<u8> {
    let p = corpus_dir().join(format!("{name}.dat"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every message with its RFC 5118 name and section, and whether the RFC calls it acceptable.
const CORPUS: &[(&str, &str, bool)] = &[
    ("ipv6-good", "4.1", true),
    ("ipv6-bad", "4.2", false),
    ("port-ambiguous", "4.3", true),
    ("port-unambiguous", "4.4", true),
    ("via-received-param-with-delim", "4.5", true),
    ("via-received-param-no-delim", "4.5", true),
    ("ipv6-in-sdp", "4.6", true),
    ("mult-ip-in-header", "4.7", true),
    ("mult-ip-in-sdp", "4.8", true),
    ("ipv4-mapped-ipv6", "4.9", true),
    ("ipv6-bug-abnf-3-colons", "4.10", true),
    ("ipv6-correct-abnf-2-colons", "4.10", true),
];

fn corpus() -> Vec<(String, Vec<u8>, bool)> {
    CORPUS
        .iter()
        .map(|&(n, sec, ok)| (format!("{n} ({sec})"), load(n), ok))
        .collect()
}

#[test]
fn corpus_is_complete_and_framed() {
    let files = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dat"))
        })
        .count();
    assert_eq!(files, CORPUS.len());
    for (name, bytes, _) in corpus() {
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.replace("\r\n", "").contains('\n'), "{name}: bare LF");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let cl = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap();
        assert_eq!(cl.trim().parse::<usize>().unwrap(), body.len(), "{name}");
    }
}

fn request(b: &[u8]) -> Request {
    match parse(b) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn ruri_host_port(r: &Request) -> (String, Option<u16>) {
    let u = Uri::parse(&r.uri).unwrap_or_else(|e| panic!("{}: {e}", r.uri));
    let (h, p) = u.host_port().expect("a SIP Request-URI");
    (h.to_string(), p)
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// `[addr]` (a host as the URI and Via views hold it) as an address.
fn reference(h: &str) -> Ipv6Addr {
    let inner = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{h} is not an IPv6 reference"));
    v6(inner)
}

#[test]
fn every_message_gets_the_rfc_verdict() {
    for (name, bytes, valid) in corpus() {
        let parsed = parse(&bytes);
        if valid {
            let r = match parsed {
                Ok(SipMessage::Request(r)) => r,
                other => panic!("{name}: expected a request, got {other:?}"),
            };
            assert_eq!(admission(&r), Ok(()), "{name}: refused by admission");
        } else {
            // §4.2: "A SIP implementation receiving this request should respond with a 400 Bad
            // Request error."
            let e = parsed.expect_err(&name);
            assert!(e.is_request, "{name}");
            assert_eq!(e.status, 400, "{name}: {e}");
            let resp = bad_request_response(&e).expect("a 400 can be built");
            assert_eq!(resp.status, 400);
            assert_eq!(resp.call_id(), Some("SSG9559905523997077@hlau_4100"));
            // The 400 goes back along the IPv6 Via it came on.
            let via = resp.top_via().expect("the request's Via");
            assert_eq!(reference(&via.host), v6("2001:db8::9:1"));
        }
    }
}

#[test]
fn ipv6_references_in_request_uri_contact_and_via() {
    // §4.1
    let r = request(&load("ipv6-good"));
    assert_eq!(ruri_host_port(&r), ("[2001:db8::10]".into(), None));
    let via = r.top_via().unwrap();
    assert_eq!(reference(&via.host), v6("2001:db8::9:1"));
    assert_eq!(via.port, None);
    let c = NameAddr::parse(r.headers.get("Contact").unwrap()).unwrap();
    assert_eq!(c.display.as_deref(), Some("\"Caller\""));
    let (h, p) = c.uri.host_port().unwrap();
    assert_eq!((reference(h), p), (v6("2001:db8::1"), None));
}

#[test]
fn port_ambiguous_uri_has_no_port() {
    // §4.3: everything inside the brackets is the address; a port comes only after `]`. So the
    // host is 2001:db8::10:5070 and there is no port (not 2001:db8::10 on 5070).
    let r = request(&load("port-ambiguous"));
    let (h, p) = ruri_host_port(&r);
    assert_eq!(reference(&h), v6("2001:db8::10:5070"));
    assert_eq!(p, None);
    // §4.4: unambiguous.
    let r = request(&load("port-unambiguous"));
    let (h, p) = ruri_host_port(&r);
    assert_eq!(reference(&h), v6("2001:db8::10"));
    assert_eq!(p, Some(5070));
    assert_eq!(r.uri, "sip:[2001:db8::10]:5070");
}

#[test]
fn via_received_with_and_without_delimiters() {
    // §4.5: RFC 3261 writes `received` as IPv4address / IPv6address (no brackets); the
    // bracketed form is not strictly valid, but "robust implementations must nonetheless be able
    // to parse the topmost Via header field and continue processing the request".
    let a = request(&load("via-received-param-with-delim"))
        .top_via()
        .unwrap();
    assert_eq!(reference(&a.host), v6("2001:db8::9:1"));
    assert_eq!(a.received(), Some("[2001:db8::9:255]"));
    assert_eq!(a.branch(), Some("z9hG4bKas3-111"));
    let b = request(&load("via-received-param-no-delim"))
        .top_via()
        .unwrap();
    assert_eq!(b.received(), Some("2001:db8::9:255"));
    assert_eq!(b.branch(), Some("z9hG4bKas3"));
    // Both re-serialise as received.
    assert_eq!(
        a.to_string(),
        "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111"
    );
    assert_eq!(
        b.to_string(),
        "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3"
    );
}

#[test]
fn mixed_families_in_one_via_list() {
    // §4.7
    let r = request(&load("mult-ip-in-header"));
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(reference(&vias[0].host), v6("2001:db8::9:1"));
    assert_eq!(
        (vias[0].transport.as_str(), vias[0].port),
        ("UDP", Some(6050))
    );
    assert_eq!((vias[1].host.as_str(), vias[1].port), ("192.0.2.1", None));
    assert_eq!(reference(&vias[2].host), v6("2001:db8::9:255"));
    assert_eq!(vias[2].transport, "TCP");
    assert_eq!(vias[2].received(), Some("192.0.2.200"));
}

#[test]
fn ipv4_mapped_addresses() {
    // §4.9: "A SIP implementation receiving a message that contains such a mapped address must
    // be prepared to parse it successfully."
    let r = request(&load("ipv4-mapped-ipv6"));
    let vias = r.vias().unwrap();
    assert_eq!(reference(&vias[0].host), v6("::ffff:192.0.2.10"));
    assert_eq!(vias[0].port, Some(19823));
    assert_eq!(reference(&vias[1].host), v6("::ffff:192.0.2.2"));
    let c = NameAddr::parse(r.headers.get("Contact").unwrap()).unwrap();
    assert_eq!(
        reference(c.uri.host_port().unwrap().0),
        v6("::ffff:192.0.2.2")
    );
    assert!(r.body.starts_with(b"v=0\r\n"));
}

#[test]
fn abnf_bug_three_colons_is_tolerated() {
    // §4.10: RFC 3261's IPv6address production (from the obsoleted RFC 2373) derives
    // `2001:db8:::192.0.2.1`; RFC 4291 does not. "Following the Robustness Principle [RFC1122],
    // an implementation must tolerate both of the above constructs." Both name the same address.
    for (name, host) in [
        ("ipv6-bug-abnf-3-colons", "[2001:db8:::192.0.2.1]"),
        ("ipv6-correct-abnf-2-colons", "[2001:db8::192.0.2.1]"),
    ] {
        let r = request(&load(name));
        let (h, p) = ruri_host_port(&r);
        assert_eq!(h, host, "the host is kept as written");
        assert_eq!(p, None);
        assert_eq!(
            signaling::uri::ipv6_reference(&h),
            Some(v6("2001:db8::c000:201")),
            "{host}"
        );
        let to = r.to().unwrap();
        assert_eq!(to.uri.host_port().unwrap().0, host);
    }
    // The tolerance is that one derivation only: `:::` right before an embedded IPv4 address
    // that ends the reference.
    for bad in [
        "sip:[2001:db8:::10]",
        "sip:[2001:db8::::192.0.2.1]",
        "sip:[2001:db8::1:::192.0.2.1]",
        "sip:[:::10]",
        "sip:[2001:db8:::192.0.2.1:5]",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad} must not parse");
    }
}

#[test]
fn everything_that_parses_round_trips() {
    for (name, bytes, valid) in corpus() {
        let Ok(m) = parse(&bytes) else {
            assert!(!valid, "{name}");
            continue;
        };
        let out = m.to_bytes();
        assert_eq!(out, bytes, "{name}: re-serialised differently");
        if let SipMessage::Request(r) = &m {
            let u = Uri::parse(&r.uri).unwrap();
            assert_eq!(u.to_string(), r.uri, "{name}");
            for v in r.vias().unwrap() {
                assert_eq!(Via::parse(&v.to_string()).unwrap(), v, "{name}");
            }
        }
    }
}
