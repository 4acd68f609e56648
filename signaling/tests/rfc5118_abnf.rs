//! RFC 5118 §4.10 (IPv6 reference bug in RFC 3261's ABNF): "an implementation must tolerate
//! both of the above constructs", the Request-URI `[2001:db8:::192.0.2.1]` (three colons,
//! what RFC 3261's grammar derives) and `[2001:db8::192.0.2.1]`. Through the core in the test
//! World: an OPTIONS to trunkline is answered 200 either way, and three colons anywhere else
//! are still a 400.

mod flows_common;

use flows_common::*;
use signaling::uri::Uri;

/// The §4.10 message (ipv6-bug-abnf-3-colons / ipv6-correct-abnf-2-colons) with `host`.
fn options(host: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:user@[{host}] SIP/2.0\r\n\
To: sip:user@[{host}]\r\n\
From: sip:user@example.com;tag=810x2\r\n\
Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111\r\n\
Call-ID: G9559905523997077@hlau_4100\r\n\
CSeq: 689 OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn answer(host: &str) -> u16 {
    let mut w = world(vec![target("pbx", PBX)]);
    w.feed(A, &options(host));
    w.final_to(A).status
}

#[test]
fn both_section_4_10_request_uris_are_tolerated() {
    assert_eq!(answer("2001:db8::192.0.2.1"), 200);
    assert_eq!(answer("2001:db8:::192.0.2.1"), 200);
    assert_eq!(answer(":::192.0.2.1"), 200);
    // Tolerated, not rewritten: the URI keeps the text it came with.
    let u: Uri = "sip:user@[2001:db8:::192.0.2.1]"
        .parse()
        .expect("tolerated");
    assert_eq!(u.to_string(), "sip:user@[2001:db8:::192.0.2.1]");
}

#[test]
fn three_colons_anywhere_but_before_an_embedded_ipv4_address_stay_refused() {
    for host in [
        "2001:db8:::1",
        "2001:db8::1:::192.0.2.1",
        "2001:db8:::192.0.2",
        "2001:db8:::192.0.2.1.5",
        "2001:db8:::192.0.2.256",
        "::::192.0.2.1",
        "2001:db8:::192.0.2.1:::",
        "1:2:3:4:5:6:7:::192.0.2.1",
    ] {
        assert_eq!(answer(host), 400, "{host}");
        assert!(format!("sip:u@[{host}]").parse::<Uri>().is_err(), "{host}");
    }
}
