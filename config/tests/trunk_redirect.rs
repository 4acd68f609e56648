//! A trunk's `redirect:` (relay | follow | reject, default relay) and `100rel:` (supported |
//! required | off, default supported).

use config::{from_yaml, Redirect, Rel100};

const BASE: &str = include_str!("../../examples/b2bua.yaml");

fn with(trunk: &str) -> String {
    BASE.replace("pbx: { address: 127.0.0.1:15080, transport: udp }", trunk)
}

#[test]
fn redirect_defaults_to_relay_and_takes_each_mode() {
    let c = from_yaml(BASE, "t.yaml").expect("the example loads");
    assert_eq!(c.trunks["pbx"].redirect, Redirect::Relay);
    for (text, mode) in [
        ("relay", Redirect::Relay),
        ("follow", Redirect::Follow),
        ("reject", Redirect::Reject),
    ] {
        let src = with(&format!(
            "pbx: {{ address: 127.0.0.1:15080, redirect: {text} }}"
        ));
        let c = from_yaml(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.trunks["pbx"].redirect, mode, "{text}");
    }
}

#[test]
fn an_unknown_redirect_mode_names_the_line() {
    let src = with("pbx: { address: 127.0.0.1:15080, redirect: forward }");
    let e = from_yaml(&src, "t.yaml").expect_err("forward is no mode");
    assert!(e.to_string().starts_with("t.yaml:12:"), "{e}");
    assert!(e.to_string().contains("forward"), "{e}");
}

#[test]
fn rel100_defaults_to_supported_and_takes_each_mode() {
    let c = from_yaml(BASE, "t.yaml").expect("the example loads");
    assert_eq!(c.trunks["pbx"].rel100, Rel100::Supported);
    for (text, mode) in [
        ("supported", Rel100::Supported),
        ("required", Rel100::Required),
        ("off", Rel100::Off),
    ] {
        let src = with(&format!(
            "pbx: {{ address: 127.0.0.1:15080, 100rel: {text} }}"
        ));
        let c = from_yaml(&src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.trunks["pbx"].rel100, mode, "{text}");
    }
    let e = from_yaml(
        &with("pbx: { address: 127.0.0.1:15080, 100rel: yes }"),
        "t.yaml",
    )
    .expect_err("yes is no mode");
    assert!(e.to_string().starts_with("t.yaml:12:"), "{e}");
}
