//! MGCP gateways: `gateways:` and a trunk's `mgcp:` (lines, digit map, ring time).

use super::*;

fn with_gateways(section: &str) -> String {
    ACC.replace("dialplan:\n", &format!("{section}dialplan:\n"))
}

#[test]
fn a_gateway_section_is_a_trunk_with_lines() {
    let src = with_gateways(
        "gateways:\n  gw1:\n    address: 127.0.0.1:2427\n    endpoints: 'aaln/*@gw1'\n    \
         lines: { '+15551230001': aaln/1, '15551230002': 'aaln/2@gw1' }\n    ring_time: 5\n    \
         max_calls: 4\n",
    );
    let c = from_yaml(&src, "t.yaml").unwrap();
    let t = &c.trunks["gw1"];
    assert_eq!(t.max_calls, Some(4));
    assert_eq!(t.transport, TransportKind::Udp);
    let m = t.mgcp.as_ref().unwrap();
    assert_eq!(m.endpoint, None);
    assert_eq!(m.endpoints.as_deref(), Some("aaln/*@gw1"));
    assert_eq!(
        m.lines,
        [
            Line {
                number: "+15551230001".into(),
                endpoint: "aaln/1@gw1".into()
            },
            Line {
                number: "15551230002".into(),
                endpoint: "aaln/2@gw1".into()
            }
        ]
    );
    assert_eq!(m.digit_map, DEFAULT_DIGIT_MAP);
    assert_eq!(m.ring_time, Duration::from_secs(5));
    assert_eq!(m.audit_interval, Duration::from_secs(30));
    // a gateway is a source and a route like any trunk
    let src = src.replace("route: [pbx]", "route: [gw1]");
    assert!(from_yaml(&src, "t.yaml").is_ok());
}

#[test]
fn a_trunk_mgcp_section_takes_the_same_keys() {
    let src = ACC.replace(
        "trunks:\n",
        "trunks:\n  pstn: { address: 127.0.0.1:2427, mgcp: { endpoint: 'ds/e1-1/*@tgw', \
         digit_map: '(xxxx|9x.T)', lines: { '100': 'aaln/1@tgw' } } }\n",
    );
    let c = from_yaml(&src, "t.yaml").unwrap();
    let m = c.trunks["pstn"].mgcp.as_ref().unwrap();
    assert_eq!(m.endpoint.as_deref(), Some("ds/e1-1/*@tgw"));
    assert_eq!(m.digit_map, "(xxxx|9x.T)");
    assert_eq!(m.lines[0].endpoint, "aaln/1@tgw");
}

#[test]
fn bad_gateways_are_refused_where_they_are_written() {
    let g = |body: &str| {
        with_gateways(&format!(
            "gateways:\n  gw1:\n    address: 127.0.0.1:2427\n{body}"
        ))
    };
    assert_err(
        &g("    endpoint: 'aaln/1@gw1'\n    digit_map: '(12|[9-1])'\n"),
        17,
        16,
        "a range is DIGIT-DIGIT",
    );
    assert_err(
        &g("    lines: { '+1555': aaln/1 }\n"),
        16,
        23,
        "has no @domain",
    );
    assert_err(
        &g("    endpoints: 'aaln/*@gw1'\n    lines: { 'abc': aaln/1 }\n"),
        17,
        14,
        "line number `abc`",
    );
    assert_err(
        &g("    endpoints: 'aaln/*@gw1'\n    lines: { '1': aaln/1, '2': AALN/1 }\n"),
        17,
        32,
        "is already line 1",
    );
    assert_err(
        &g("    max_calls: 3\n"),
        15,
        5,
        "needs a trunking `endpoint`, `lines`",
    );
    assert_err(
        &g("    endpoint: 'aaln/1@gw1'\n    ring_time: 0\n"),
        17,
        16,
        "ring_time 0 s",
    );
    assert_err(
        &g("    endpoint: 'aaln/1@gw1'\n    transport: tcp\n"),
        17,
        5,
        "unknown field `transport`",
    );
    let dup = with_gateways("gateways:\n  pbx: { address: 127.0.0.1:2427, endpoint: 'a/1@g' }\n");
    assert_err(&dup, 14, 3, "already a trunk");
}
