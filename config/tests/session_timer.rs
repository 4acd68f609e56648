//! `session_expires` / `min_se` in `sip:` and on a trunk (RFC 4028 session timers), and the
//! trunk's other per-message settings: `tcp_fallback`, `refer`.

use config::{from_yaml, SessionTimer, DEFAULT_SESSION_TIMER};

const BASE: &str = include_str!("../../examples/b2bua.yaml");
const PBX: &str = "pbx: { address: 127.0.0.1:15080, transport: udp }";

fn with(sip: &str, pbx: &str) -> String {
    format!("{}\nsip: {sip}\n", BASE.replace(PBX, pbx))
}

fn st(expires: u32, min_se: u32) -> Option<SessionTimer> {
    Some(SessionTimer { expires, min_se })
}

#[test]
fn session_timers_default_to_1800_and_90_on_every_leg() {
    let c = from_yaml(BASE, "t.yaml").expect("the example loads");
    assert_eq!(c.sip.session_timer, Some(DEFAULT_SESSION_TIMER));
    assert_eq!(c.trunks["pbx"].session_timer, Some(DEFAULT_SESSION_TIMER));
}

#[test]
fn a_trunk_takes_its_own_or_sips_and_zero_turns_them_off() {
    let cases = [
        (
            "{ session_expires: 600, min_se: 120 }",
            PBX,
            st(600, 120),
            st(600, 120),
        ),
        (
            "{ session_expires: 600 }",
            "pbx: { address: 127.0.0.1:15080, session_expires: 300 }",
            st(600, 90),
            st(300, 90),
        ),
        (
            "{ session_expires: 0 }",
            "pbx: { address: 127.0.0.1:15080, session_expires: 900, min_se: 300 }",
            None,
            st(900, 300),
        ),
        (
            "{ ringing_timeout: 60 }",
            "pbx: { address: 127.0.0.1:15080, session_expires: 0 }",
            Some(DEFAULT_SESSION_TIMER),
            None,
        ),
    ];
    for (sip, pbx, want_sip, want_pbx) in cases {
        let src = with(sip, pbx);
        let c = from_yaml(&src, "t.yaml").unwrap_or_else(|e| panic!("{sip} {pbx}: {e}"));
        assert_eq!(c.sip.session_timer, want_sip, "{sip}");
        assert_eq!(c.trunks["pbx"].session_timer, want_pbx, "{pbx}");
    }
}

#[test]
fn intervals_outside_rfc_4028s_bounds_are_refused_with_the_key() {
    for (sip, pbx, key) in [
        ("{ min_se: 60 }", PBX, "min_se 60"),
        (
            "{ session_expires: 100, min_se: 120 }",
            PBX,
            "session_expires 100",
        ),
        (
            "{ session_expires: 0, min_se: 120 }",
            PBX,
            "min_se with session_expires 0",
        ),
        (
            "{ ringing_timeout: 60 }",
            "pbx: { address: 127.0.0.1:15080, session_expires: 100000 }",
            "session_expires 100000",
        ),
    ] {
        let e = from_yaml(&with(sip, pbx), "t.yaml").expect_err(sip);
        assert!(e.to_string().contains(key), "{sip} {pbx}: {e}");
    }
}

#[test]
fn tcp_fallback_is_off_by_default_and_only_for_udp_trunks() {
    let c = from_yaml(BASE, "t.yaml").expect("the example loads");
    assert!(!c.trunks["pbx"].tcp_fallback);
    let src = BASE.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: udp, tcp_fallback: true }",
    );
    let c = from_yaml(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(c.trunks["pbx"].tcp_fallback);
    let src = BASE.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: tcp, tcp_fallback: true }",
    );
    let e = from_yaml(&src, "t.yaml").expect_err("tcp trunk");
    assert!(e.to_string().contains("tcp_fallback"), "{e}");
}

#[test]
fn refer_defaults_to_relay_and_takes_reject_and_handle() {
    let c = from_yaml(BASE, "t.yaml").expect("the example loads");
    assert_eq!(c.trunks["pbx"].refer, config::Refer::Relay);
    let src = BASE.replace(PBX, "pbx: { address: 127.0.0.1:15080, refer: reject }");
    let c = from_yaml(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.trunks["pbx"].refer, config::Refer::Reject);
    let src = BASE.replace(PBX, "pbx: { address: 127.0.0.1:15080, refer: handle }");
    let c = from_yaml(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.trunks["pbx"].refer, config::Refer::Handle);
    let src = BASE.replace(PBX, "pbx: { address: 127.0.0.1:15080, refer: maybe }");
    let e = from_yaml(&src, "t.yaml").expect_err("no such mode");
    assert!(e.to_string().contains("refer"), "{e}");
}
