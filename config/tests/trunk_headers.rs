//! A trunk's `identity:` and `headers:` (what crosses to it, RFC 3325 trust).

use config::{from_yaml, Identity, TrunkHeaders};

const BASE: &str = include_str!("../../examples/b2bua.yaml");
const PBX: &str = "pbx: { address: 127.0.0.1:15080, transport: udp }";

fn load(pbx: &str) -> Result<config::Config, String> {
    from_yaml(&BASE.replace(PBX, pbx), "t.yaml").map_err(|e| e.to_string())
}

#[test]
fn a_trunk_is_trusted_and_unchanged_by_default() {
    let c = load(PBX).unwrap();
    assert_eq!(c.trunks["pbx"].identity, Identity::Trusted);
    assert!(c.trunks["pbx"].headers.is_default());
}

#[test]
fn identity_and_headers_load() {
    let c = load(
        "pbx: { address: 127.0.0.1:15080, identity: untrusted, headers: { remove: [Diversion, 'X-*'], \
         keep: [User-Agent, P-Asserted-Identity], add: { X-Account: acme-42 } } }",
    )
    .unwrap();
    let t = &c.trunks["pbx"];
    assert_eq!(t.identity, Identity::Untrusted);
    assert_eq!(
        t.headers,
        TrunkHeaders {
            remove: vec!["Diversion".into(), "X-*".into()],
            keep: Some(vec!["User-Agent".into(), "P-Asserted-Identity".into()]),
            add: vec![("X-Account".into(), "acme-42".into())],
        }
    );
}

#[test]
fn bad_policies_are_refused_with_where_and_why() {
    for (pbx, says) in [
        ("identity: maybe", "identity"),
        (
            "headers: { remove: [Contact] }",
            "trunks.pbx.headers.remove[0]",
        ),
        ("headers: { keep: [Via] }", "each leg's own"),
        (
            "headers: { add: { Call-ID: x } }",
            "trunks.pbx.headers.add.Call-ID",
        ),
        (
            "headers: { add: { X-A: \"a\\r\\nVia: evil\" } }",
            "one line",
        ),
        ("headers: { remove: ['X Y'] }", "not a header name"),
    ] {
        let e = load(&format!("pbx: {{ address: 127.0.0.1:15080, {pbx} }}")).expect_err(pbx);
        assert!(e.contains(says), "{pbx}: {e}");
    }
}
