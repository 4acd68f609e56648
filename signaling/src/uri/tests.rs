use super::*;

fn sip(s: &str) -> SipUri {
    match Uri::parse(s).unwrap() {
        Uri::Sip(u) => u,
        other => panic!("not sip: {other:?}"),
    }
}

#[test]
fn full_sip_uri() {
    let u = sip("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&priority=urgent");
    assert!(u.secure);
    assert_eq!(u.user.as_deref(), Some("alice"));
    assert_eq!(u.password.as_deref(), Some("secret"));
    assert_eq!(u.host, "[2001:db8::1]");
    assert_eq!(u.port, Some(5061));
    assert_eq!(
        u.params,
        vec![
            ("transport".into(), Some("tcp".into())),
            ("lr".into(), None)
        ]
    );
    assert_eq!(u.headers.len(), 2);
    let uri = Uri::Sip(u);
    assert_eq!(
        uri.to_string(),
        "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x&priority=urgent"
    );
    assert_eq!(uri.param("LR"), Some(None));
    assert_eq!(uri.param("Transport"), Some(Some("tcp")));
    assert_eq!(uri.param("maddr"), None);
}

#[test]
fn user_with_semicolon_and_escapes() {
    // RFC 4475 §3.1.1.10 (semiuri) and §3.1.1.3 (esc01).
    let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
    assert_eq!(u.user(), Some("user;par=u%40example.net"));
    assert_eq!(u.host_port(), Some(("example.com", None)));
    assert!(u.params().is_empty());
    let e = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
    assert_eq!(e.user_unescaped().unwrap(), "sips:user@example.com");
    let h = Uri::parse("sip:*67#5551234@pbx.example.com").unwrap();
    assert_eq!(h.user(), Some("*67#5551234"));
    assert_eq!(h.to_string(), "sip:*67#5551234@pbx.example.com");
    let n = Uri::parse("sip:null-%00-null@example.com").unwrap();
    assert_eq!(n.user_unescaped().unwrap(), "null-\0-null");
}

#[test]
fn intmeth_uri() {
    let s = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
    let u = sip(s);
    assert_eq!(
        u.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.host, "example.com");
    assert_eq!(Uri::Sip(u).to_string(), s);
}

#[test]
fn validate_agrees_with_parse() {
    for s in [
        "sip:a@b",
        "sips:alice:pw@[::1]:5061;lr?x=y",
        "sip:a@b;;lr",
        "sip:a@b?x",
        "sip: a@b",
        "tel:+1555",
        "tel:555",
        "im:x@y",
        "x",
    ] {
        assert_eq!(Uri::validate(s).is_ok(), Uri::parse(s).is_ok(), "{s}");
    }
}

#[test]
fn rejects_bad() {
    for s in [
        "sip:user@example.com; lr",
        "<sip:user@example.com>",
        "sip:",
        "sip:@host",
        "sip:host:99999",
        "sip:host:",
        "sip:ho st",
        "sip:[::1",
        "sip:host;;lr",
        "sip:host?x",
        "1abc:foo",
        "nocolon",
        "tel:5551234",
        "tel:+",
        "sip:a@b%zz",
    ] {
        assert!(Uri::parse(s).is_err(), "{s} should not parse");
    }
}

#[test]
fn tel_and_other() {
    let t = Uri::parse("tel:+1-201-555-0123;ext=45").unwrap();
    match &t {
        Uri::Tel(tu) => {
            assert!(tu.is_global());
            assert_eq!(tu.digits(), "+12015550123");
        }
        _ => panic!(),
    }
    assert_eq!(t.to_string(), "tel:+1-201-555-0123;ext=45");
    let l = Uri::parse("tel:7042;phone-context=example.com").unwrap();
    match &l {
        Uri::Tel(tu) => {
            assert!(!tu.is_global());
            assert_eq!(tu.phone_context(), Some("example.com"));
        }
        _ => panic!(),
    }
    let o = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
    assert_eq!(o.scheme(), "soap.beep");
    assert_eq!(o.to_string(), "soap.beep://192.0.2.103:3002");
    assert!(matches!(
        Uri::parse("im:user@example.com"),
        Ok(Uri::Other { .. })
    ));
}

#[test]
fn setters() {
    let mut u = Uri::parse("sip:bob@example.com;transport=udp").unwrap();
    u.set_user(Some("+15551234"));
    u.set_host_port("10.0.0.1", Some(5080));
    u.remove_param("TRANSPORT");
    u.set_param("lr", None);
    assert_eq!(u.to_string(), "sip:+15551234@10.0.0.1:5080;lr");
}

#[test]
fn ipv6_references() {
    assert_eq!(
        ipv6_reference("[2001:DB8::1]"),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(ipv6_reference("2001:db8::1"), None);
    assert_eq!(ipv6_reference("192.0.2.1"), None);
    assert_eq!(ipv6_reference("[example.com]"), None);
    // RFC 5118 §4.10: the three-colon form RFC 3261's ABNF derives names the two-colon address.
    assert_eq!(
        ipv6_reference("[2001:db8:::192.0.2.1]"),
        ipv6_reference("[2001:db8::192.0.2.1]")
    );
    assert_eq!(
        ipv6_reference("[:::192.0.2.1]"),
        Some("::192.0.2.1".parse().unwrap())
    );
    for bad in [
        "[2001:db8:::10]",
        "[1::2:::192.0.2.1]",
        "[::::192.0.2.1]",
        "[:::]",
    ] {
        assert_eq!(ipv6_reference(bad), None, "{bad}");
    }
    // RFC 5954 §3: IPv6 references compare as addresses.
    let eq = |a: &str, b: &str| Uri::parse(a).unwrap().equivalent(&Uri::parse(b).unwrap());
    assert!(eq(
        "sip:a@[2001:db8::1]:5060",
        "sip:a@[2001:0DB8:0:0::1]:5060"
    ));
    assert!(!eq("sip:a@[2001:db8::1]", "sip:a@[2001:db8::2]"));
    assert!(!eq("sip:a@[::ffff:192.0.2.1]", "sip:a@192.0.2.1"));
}

#[test]
fn comparison_rfc3261_19_1_4() {
    let eq = |a: &str, b: &str| Uri::parse(a).unwrap().equivalent(&Uri::parse(b).unwrap());
    // Examples from RFC 3261 §19.1.4.
    assert!(eq(
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    ));
    assert!(eq(
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
    ));
    assert!(!eq(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com;transport=udp"
    ));
    assert!(!eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;security=off"
    ));
    assert!(!eq("sip:alice@atlanta.com", "sips:alice@atlanta.com"));
}
