//! RFC 5118 "SIP Torture Test Messages for IPv6": every message of §4.1–§4.10 gets the verdict
//! the RFC gives it, its IPv6 references parse to the right host and port, and whatever parses
//! re-serialises to the same message (so a Via, Contact or Request-URI with an IPv6 reference
//! crosses trunkline as it came).
//!
//! The messages are written out from the RFC text, one header a line; [`msg`] joins them with
//! CRLF and writes Content-Length from the body (the RFC's own Content-Length values for §4.6,
//! §4.8 and §4.9 do not match their bodies, and framing is RFC 4475's subject, not this one's).
//! The SDP bodies (§4.6, §4.8, §4.9) are checked by the media crate's SDP parser in
//! `media-core/tests/sdp_cases.rs`; here they only have to frame and cross as bytes.

use std::net::Ipv6Addr;

use signaling::check::admission;
use signaling::headers::{NameAddr, Via};
use signaling::parse::{bad_request_response, parse};
use signaling::uri::Uri;
use signaling::{Request, SipMessage};

/// One message: header lines, then the body (its Content-Length computed).
fn msg(head: &[&str], body: &[&str]) -> Vec<u8> {
    let body: String = body.iter().map(|l| format!("{l}\r\n")).collect();
    let mut s: String = head.iter().map(|l| format!("{l}\r\n")).collect();
    if !body.is_empty() {
        s.push_str("Content-Type: application/sdp\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.push_str(&body);
    s.into_bytes()
}

/// §4.1 ipv6-good.
fn ipv6_good() -> Vec<u8> {
    msg(
        &[
            "REGISTER sip:[2001:db8::10] SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:user@example.com;tag=81x2",
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            "Call-ID: SSG9559905523997077@hlau_4100",
            "Max-Forwards: 70",
            "Contact: \"Caller\" <sip:caller@[2001:db8::1]>",
            "CSeq: 98176 REGISTER",
        ],
        &[],
    )
}

/// §4.2 ipv6-bad: the Request-URI's IPv6 address has no brackets.
fn ipv6_bad() -> Vec<u8> {
    msg(
        &[
            "REGISTER sip:2001:db8::10 SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:user@example.com;tag=81x2",
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            "Call-ID: SSG9559905523997077@hlau_4100",
            "Max-Forwards: 70",
            "Contact: \"Caller\" <sip:caller@[2001:db8::1]>",
            "CSeq: 98176 REGISTER",
        ],
        &[],
    )
}

/// §4.3 port-ambiguous and §4.4 port-unambiguous differ only in the Request-URI.
fn register_to(ruri: &str) -> Vec<u8> {
    let start = format!("REGISTER {ruri} SIP/2.0");
    msg(
        &[
            &start,
            "To: sip:user@example.com",
            "From: sip:user@example.com;tag=81x2",
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            "Call-ID: SSG9559905523997077@hlau_4100",
            "Contact: \"Caller\" <sip:caller@[2001:db8::1]>",
            "Max-Forwards: 70",
            "CSeq: 98176 REGISTER",
        ],
        &[],
    )
}

/// §4.5 via-received-param-with-delim: `received=[2001:db8::9:255]`.
fn via_received_with_delim() -> Vec<u8> {
    msg(
        &[
            "BYE sip:[2001:db8::10] SIP/2.0",
            "To: sip:user@example.com;tag=bd76ya",
            "From: sip:user@example.com;tag=81x2",
            "Via: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
            "Call-ID: SSG9559905523997077@hlau_4100",
            "Max-Forwards: 70",
            "CSeq: 321 BYE",
        ],
        &[],
    )
}

/// §4.5 via-received-param-no-delim: `received=2001:db8::9:255`.
fn via_received_no_delim() -> Vec<u8> {
    msg(
        &[
            "OPTIONS sip:[2001:db8::10] SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:user@example.com;tag=81x2",
            "Via: SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
            "Call-ID: SSG95523997077@hlau_4100",
            "Max-Forwards: 70",
            "Contact: \"Caller\" <sip:caller@[2001:db8::9:1]>",
            "CSeq: 921 OPTIONS",
        ],
        &[],
    )
}

/// The SDP of §4.6 (IPv6 addresses in `o=` and `c=`, no brackets).
pub const SDP_4_6: &[&str] = &[
    "v=0",
    "o=assistant 971731711378798081 0 IN IP6 2001:db8::20",
    "s=Live video feed for today's meeting",
    "c=IN IP6 2001:db8::20",
    "t=3338481189 3370017201",
    "m=audio 6000 RTP/AVP 2",
    "a=rtpmap:2 G726-32/8000",
    "m=video 6024 RTP/AVP 107",
    "a=rtpmap:107 H263-1998/90000",
];

/// §4.6 ipv6-in-sdp.
fn ipv6_in_sdp() -> Vec<u8> {
    msg(
        &[
            "INVITE sip:user@[2001:db8::10] SIP/2.0",
            "To: sip:user@[2001:db8::10]",
            "From: sip:user@example.com;tag=81x2",
            "Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111",
            "Call-ID: SSG9559905523997077@hlau_4100",
            "Contact: \"Caller\" <sip:caller@[2001:db8::20]>",
            "CSeq: 8612 INVITE",
            "Max-Forwards: 70",
        ],
        SDP_4_6,
    )
}

/// §4.7 mult-ip-in-header: IPv6 references and IPv4 addresses in one Via list.
fn mult_ip_in_header() -> Vec<u8> {
    msg(
        &[
            "BYE sip:user@host.example.net SIP/2.0",
            "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111",
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144",
            "Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200",
            "Call-ID: 997077@lau_4100",
            "Max-Forwards: 70",
            "CSeq: 89187 BYE",
            "To: sip:user@example.net;tag=9817--94",
            "From: sip:user@example.com;tag=81x2",
        ],
        &[],
    )
}

/// §4.8 mult-ip-in-sdp: one stream on IPv4, one on IPv6, `o=` naming a host.
fn mult_ip_in_sdp() -> Vec<u8> {
    msg(
        &[
            "INVITE sip:user@[2001:db8::10] SIP/2.0",
            "To: sip:user@[2001:db8::10]",
            "From: sip:user@example.com;tag=81x2",
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            "Call-ID: SSG9559905523997077@hlau_4100",
            "Contact: \"Caller\" <sip:caller@[2001:db8::9:1]>",
            "Max-Forwards: 70",
            "CSeq: 8912 INVITE",
        ],
        &[
            "v=0",
            "o=bob 280744730 28977631 IN IP4 host.example.com",
            "s=",
            "t=0 0",
            "m=audio 22334 RTP/AVP 0",
            "c=IN IP4 192.0.2.1",
            "m=video 6024 RTP/AVP 107",
            "c=IN IP6 2001:db8::1",
            "a=rtpmap:107 H263-1998/90000",
        ],
    )
}

/// §4.9 ipv4-mapped-ipv6.
fn ipv4_mapped_ipv6() -> Vec<u8> {
    msg(
        &[
            "INVITE sip:user@example.com SIP/2.0",
            "To: sip:user@example.com",
            "From: sip:user@east.example.com;tag=81x2",
            "Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
            "Via: SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bKas3-111",
            "Call-ID: SSG9559905523997077@hlau_4100",
            "Contact: \"T. desk phone\" <sip:ted@[::ffff:192.0.2.2]>",
            "CSeq: 612 INVITE",
            "Max-Forwards: 70",
        ],
        &[
            "v=0",
            "o=assistant 971731711378798081 0 IN IP6 ::ffff:192.0.2.2",
            "s=Call me soon, please!",
            "c=IN IP6 ::ffff:192.0.2.2",
            "t=3338481189 3370017201",
            "m=audio 6000 RTP/AVP 2",
            "a=rtpmap:2 G726-32/8000",
            "m=video 6024 RTP/AVP 107",
            "a=rtpmap:107 H263-1998/90000",
        ],
    )
}

/// §4.10 ipv6-bug-abnf-3-colons (`host` = `[2001:db8:::192.0.2.1]`) and
/// ipv6-correct-abnf-2-colons (`[2001:db8::192.0.2.1]`).
fn abnf_options(host: &str) -> Vec<u8> {
    let start = format!("OPTIONS sip:user@{host} SIP/2.0");
    let to = format!("To: sip:user@{host}");
    msg(
        &[
            &start,
            &to,
            "From: sip:user@example.com;tag=810x2",
            "Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111",
            "Call-ID: G9559905523997077@hlau_4100",
            "CSeq: 689 OPTIONS",
            "Max-Forwards: 70",
        ],
        &[],
    )
}

/// Every message with its RFC 5118 name and whether the RFC calls it acceptable.
fn corpus() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("ipv6-good (4.1)", ipv6_good(), true),
        ("ipv6-bad (4.2)", ipv6_bad(), false),
        (
            "port-ambiguous (4.3)",
            register_to("sip:[2001:db8::10:5070]"),
            true,
        ),
        (
            "port-unambiguous (4.4)",
            register_to("sip:[2001:db8::10]:5070"),
            true,
        ),
        (
            "via-received-param-with-delim (4.5)",
            via_received_with_delim(),
            true,
        ),
        (
            "via-received-param-no-delim (4.5)",
            via_received_no_delim(),
            true,
        ),
        ("ipv6-in-sdp (4.6)", ipv6_in_sdp(), true),
        ("mult-ip-in-header (4.7)", mult_ip_in_header(), true),
        ("mult-ip-in-sdp (4.8)", mult_ip_in_sdp(), true),
        ("ipv4-mapped-ipv6 (4.9)", ipv4_mapped_ipv6(), true),
        (
            "ipv6-bug-abnf-3-colons (4.10)",
            abnf_options("[2001:db8:::192.0.2.1]"),
            true,
        ),
        (
            "ipv6-correct-abnf-2-colons (4.10)",
            abnf_options("[2001:db8::192.0.2.1]"),
            true,
        ),
    ]
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
            let e = parsed.expect_err(name);
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
    let r = request(&ipv6_good());
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
    let r = request(&register_to("sip:[2001:db8::10:5070]"));
    let (h, p) = ruri_host_port(&r);
    assert_eq!(reference(&h), v6("2001:db8::10:5070"));
    assert_eq!(p, None);
    // §4.4: unambiguous.
    let r = request(&register_to("sip:[2001:db8::10]:5070"));
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
    let a = request(&via_received_with_delim()).top_via().unwrap();
    assert_eq!(reference(&a.host), v6("2001:db8::9:1"));
    assert_eq!(a.received(), Some("[2001:db8::9:255]"));
    assert_eq!(a.branch(), Some("z9hG4bKas3-111"));
    let b = request(&via_received_no_delim()).top_via().unwrap();
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
    let r = request(&mult_ip_in_header());
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
    let r = request(&ipv4_mapped_ipv6());
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
    for host in ["[2001:db8:::192.0.2.1]", "[2001:db8::192.0.2.1]"] {
        let r = request(&abnf_options(host));
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
