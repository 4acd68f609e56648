use super::*;
use crate::Transport;

fn peer(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: s.parse().unwrap(),
    }
}

#[test]
fn via_view_parses_spaced_protocol_and_params() {
    let v = ViaView::parse("SIP / 2.0 / UDP  192.0.2.1:5060 ; branch = z9hG4bKabc ;rport").unwrap();
    assert_eq!(v.sent_by, "192.0.2.1:5060");
    assert_eq!(v.host(), "192.0.2.1");
    assert_eq!(v.param("branch"), Some("z9hG4bKabc"));
    assert_eq!(v.param("rport"), Some(""));
    let v6 = ViaView::parse("SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx").unwrap();
    assert_eq!(v6.host(), "2001:db8::1");
    assert!(ViaView::parse("garbage").is_none());
    assert!(ViaView::parse("").is_none());
}

#[test]
fn tag_param_handles_quotes_and_addr_spec() {
    assert_eq!(
        tag_param("\"a;tag=x>\" <sip:a@b;tag=no>;tag=yes"),
        Some("yes")
    );
    assert_eq!(tag_param("sip:a@b;tag=t1"), Some("t1"));
    assert_eq!(tag_param("<sip:a@b>"), None);
    assert_eq!(tag_param("<sip:a@b"), None);
}

#[test]
fn received_and_rport_are_set_on_top_via_only() {
    let mut h = Headers::new();
    h.push(
        "Via",
        "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;rport, SIP/2.0/UDP other;branch=z9hG4bK2",
    );
    h.push("Via", "SIP/2.0/UDP third;branch=z9hG4bK3");
    set_received(&mut h, peer("192.0.2.9:3333"));
    let vias: Vec<_> = h.get_all("Via").collect();
    assert_eq!(
        vias[0],
        "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;rport=3333;received=192.0.2.9, SIP/2.0/UDP other;branch=z9hG4bK2"
    );
    assert_eq!(vias[1], "SIP/2.0/UDP third;branch=z9hG4bK3");

    // Same IP, no rport: untouched.
    let mut h = Headers::new();
    h.push("Via", "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1");
    set_received(&mut h, peer("192.0.2.9:5060"));
    assert_eq!(
        h.get("Via"),
        Some("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1")
    );
}
