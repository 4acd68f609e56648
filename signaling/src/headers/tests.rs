use super::*;

#[test]
fn via_basic_and_params() {
    let v =
        Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport;received=10.0.0.1").unwrap();
    assert_eq!(v.transport, "UDP");
    assert_eq!(v.host, "192.0.2.1");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.branch(), Some("z9hG4bK776"));
    assert!(v.has_magic_cookie());
    assert_eq!(v.rport(), Some(None));
    assert_eq!(v.received(), Some("10.0.0.1"));
    let mut v2 = v.clone();
    v2.set_param("rport", Some("5062"));
    assert_eq!(v2.rport(), Some(Some(5062)));
    assert_eq!(
        v2.to_string(),
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport=5062;received=10.0.0.1"
    );
    assert_eq!(Via::parse(&v2.to_string()).unwrap(), v2);
}

#[test]
fn via_wsinv_lws_everywhere() {
    // RFC 4475 §3.1.1.1 after unfolding.
    let l = Via::parse_list(
        "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
    )
    .unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].transport, "TCP");
    assert_eq!(l[0].host, "spindle.example.com");
    assert_eq!(l[0].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(l[1].host, "192.168.255.111");
    assert_eq!(l[1].branch(), Some("z9hG4bK30239"));
    let v = Via::parse("SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx").unwrap();
    assert_eq!(v.host, "[2001:db8::9]");
    assert_eq!(v.port, Some(5061));
}

#[test]
fn via_rejects() {
    for s in [
        "192.0.2.15;;,;,,",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/7.0/UDP c.example.com",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host,",
    ] {
        assert!(Via::parse_list(s).is_err(), "{s}");
    }
}

#[test]
fn name_addr_forms() {
    let a =
        NameAddr::parse("\"Bob \\\"B\\\"\" <sip:bob@example.com;transport=tcp>;tag=abc").unwrap();
    assert_eq!(a.display.as_deref(), Some("\"Bob \\\"B\\\"\""));
    assert_eq!(a.display_unquoted().as_deref(), Some("Bob \"B\""));
    assert_eq!(a.uri.param("transport"), Some(Some("tcp")));
    assert_eq!(a.tag(), Some("abc"));
    // addr-spec: params belong to the header.
    let b = NameAddr::parse("sip:bob@example.com;tag=1").unwrap();
    assert_eq!(b.tag(), Some("1"));
    assert!(b.uri.params().is_empty());
    // token display name without space (lwsdisp)
    let c = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
    assert_eq!(c.display.as_deref(), Some("caller"));
    let mut d = NameAddr::parse("<sip:x@y>").unwrap();
    d.set_tag("t9");
    assert_eq!(d.to_string(), "<sip:x@y>;tag=t9");
    let e = NameAddr::parse("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").unwrap();
    assert_eq!(e.display.as_deref(), Some("A. Bell"));
    // wsinv From after unfolding
    let f =
        NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8")
            .unwrap();
    assert_eq!(f.tag(), Some("98asjd8"));
}

#[test]
fn name_addr_rejects() {
    for s in [
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "\"Mr. J. User <sip:j.user@example.com>",
        "\"Watson, Thomas\" < sip:t.watson@example.org >",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:x@y>;;;;",
        "<sip:x@y",
        "",
    ] {
        assert!(NameAddr::parse(s).is_err(), "{s}");
    }
}

#[test]
fn lists() {
    assert_eq!(
        split_comma_list("<sip:a@b;x=1,2>, \"x,y\" <sip:c@d>,sip:e@f"),
        vec!["<sip:a@b;x=1,2>", "\"x,y\" <sip:c@d>", "sip:e@f"]
    );
    let l = NameAddr::parse_list("<sip:a@b>;q=0.5, \"x,y\" <sip:c@d>,sip:e@f;expires=3").unwrap();
    assert_eq!(l.len(), 3);
    assert_eq!(l[2].param("expires"), Some(Some("3")));
    assert_eq!(Contact::parse_list(" * ").unwrap(), vec![Contact::Star]);
}

#[test]
fn cseq() {
    assert_eq!(
        CSeq::parse("0009 INVITE").unwrap(),
        CSeq {
            seq: 9,
            method: Method::Invite
        }
    );
    assert_eq!(CSeq::parse("4294967295 BYE").unwrap().seq, u32::MAX);
    assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
    assert!(CSeq::parse("1").is_err());
    assert!(CSeq::parse("1INVITE").is_err());
    assert!(CSeq::parse("x INVITE").is_err());
    assert_eq!(CSeq::parse("7 FOO").unwrap().to_string(), "7 FOO");
}
