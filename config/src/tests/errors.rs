use super::*;

// ---------------------------------------------------------------------------------------------
// Errors, each with its exact line:column

#[test]
fn missing_bracket_names_the_line() {
    // line 15 is `    route: [pbx`; the flow sequence opens at column 12
    assert_err(
        &ACC.replace("route: [pbx]", "route: [pbx"),
        15,
        12,
        "flow sequence",
    );
}

#[test]
fn missing_bracket_mid_file_names_the_line() {
    let src = ACC.replace(
        "route: [pbx]",
        "route: [pbx\n  - match: {}\n    route: [pbx]",
    );
    let e = err(&src);
    assert_eq!((e.line, e.column), (15, 12), "{e}");
}

#[test]
fn undefined_trunk_points_at_it() {
    assert_err(
        &ACC.replace("route: [pbx]", "route: [nosuch]"),
        15,
        13,
        "`nosuch`",
    );
    assert_err(
        &ACC.replace("route: [pbx]", "route: [pbx, nosuch]"),
        15,
        18,
        "`nosuch`",
    );
    // block sequence form
    assert_err(
        &ACC.replace("route: [pbx]", "route:\n      - pbx\n      - nosuch"),
        17,
        9,
        "`nosuch`",
    );
}

#[test]
fn duplicate_route_entry() {
    assert_err(
        &ACC.replace("route: [pbx]", "route: [pbx, pbx]"),
        15,
        18,
        "twice",
    );
}

#[test]
fn unknown_keys_are_caught() {
    assert_err(
        &ACC.replace("  backend: auto", "  backnd: auto"),
        7,
        3,
        "unknown field `backnd`",
    );
    assert_err(
        &ACC.replace("{ transport: tcp, address", "{ transport: tcp, adress"),
        3,
        23,
        "unknown field `adress`",
    );
    assert_err(&format!("{ACC}extra: 1\n"), 16, 1, "unknown field `extra`");
    assert_err(
        &ACC.replace("{ to_user: '.*' }", "{ to_usr: '.*' }"),
        14,
        14,
        "unknown field `to_usr`",
    );
    assert_err(
        &ACC.replace(
            "transport: udp }\ndialplan",
            "transport: udp, maxcalls: 3 }\ndialplan",
        ),
        12,
        52,
        "unknown field `maxcalls`",
    );
}

#[test]
fn bad_enum_values() {
    assert_err(
        &ACC.replace("backend: auto", "backend: uring"),
        7,
        12,
        "unknown variant `uring`",
    );
    assert_err(
        &ACC.replace(
            "{ transport: udp, address: 127.0.0.1:15060 }",
            "{ transport: sctp, address: 127.0.0.1:15060 }",
        ),
        2,
        18,
        "unknown variant `sctp`",
    );
}

#[test]
fn port_range_errors() {
    assert_err(
        &ACC.replace("30000-39999", "30001-39999"),
        6,
        10,
        "must be even",
    );
    assert_err(
        &ACC.replace("30000-39999", "30000-39998"),
        6,
        10,
        "must be odd",
    );
    assert_err(
        &ACC.replace("30000-39999", "39998-30001"),
        6,
        10,
        "reversed",
    );
    assert_err(&ACC.replace("30000-39999", "30000"), 6, 10, "FIRST-LAST");
    assert_err(
        &ACC.replace("30000-39999", "30000-99999"),
        6,
        10,
        "not a port number",
    );
}

#[test]
fn address_errors() {
    assert_err(
        &ACC.replace(
            "address: 127.0.0.1:15060 }\n  - { transport: tcp",
            "address: 127.0.0.1 }\n  - { transport: tcp",
        ),
        2,
        32,
        "not an IP:port",
    );
    // Trunk names are accepted without resolving them (RFC 3263 at run time).
    let c = from_yaml(&ACC.replace("127.0.0.1:15080", "localhost:15080"), "t.yaml").unwrap();
    assert_eq!(
        c.trunks["pbx"].address,
        TrunkAddress::HostPort("localhost".into(), 15080)
    );
    let c = from_yaml(&ACC.replace("127.0.0.1:15080", "PBX.example"), "t.yaml").unwrap();
    assert_eq!(
        c.trunks["pbx"].address,
        TrunkAddress::Host("pbx.example".into())
    );
    assert_err(
        &ACC.replace("127.0.0.1:15080", "pbx..example"),
        12,
        19,
        "neither IP:port nor a host name",
    );
    assert_err(
        &ACC.replace("127.0.0.1:15080", "127.0.0.1"),
        12,
        19,
        "needs a port",
    );
    assert_err(
        &ACC.replace("address: 127.0.0.1\n", "address: localhost\n"),
        5,
        12,
        "not an IP address",
    );
    assert_err(
        &ACC.replace("address: 127.0.0.1\n", "address: 0.0.0.0\n"),
        5,
        12,
        "concrete",
    );
    assert_err(
        &ACC.replace("ng_listen: 127.0.0.1:12223", "ng_listen: 127.0.0.1"),
        8,
        14,
        "not an IP:port",
    );
    assert_err(
        &ACC.replace("listen: 127.0.0.1:19464", "listen: :19464"),
        10,
        11,
        "not an IP:port",
    );
    assert_err(
        &ACC.replace("127.0.0.1:15080", "127.0.0.1:abc"),
        12,
        19,
        "the port must be 1-65535",
    );
}

#[test]
fn duplicate_listener_and_trunk() {
    assert_err(
        &ACC.replace("transport: tcp", "transport: udp"),
        3,
        32,
        "duplicate listener",
    );
    assert_err(
        &ACC.replace("trunks:\n", "trunks:\n  pbx: { address: 127.0.0.1:1 }\n"),
        13,
        3,
        "`pbx` is defined twice",
    );
}

#[test]
fn trunk_limits_must_be_positive() {
    let src = ACC.replace(
        "transport: udp }\ndialplan",
        "transport: udp, max_calls: 0 }\ndialplan",
    );
    assert_err(&src, 12, 63, "max_calls must be > 0");
    let src = ACC.replace(
        "transport: udp }\ndialplan",
        "transport: udp, max_cps: 0 }\ndialplan",
    );
    assert_err(&src, 12, 61, "max_cps must be > 0");
}

#[test]
fn bad_trunk_name() {
    assert_err(
        &ACC.replace("  pbx: {", "  'p x': {")
            .replace("[pbx]", "['p x']"),
        12,
        3,
        "trunk name",
    );
}

#[test]
fn tls_needs_cert_and_key() {
    let src = ACC.replace(
        "{ transport: tcp, address: 127.0.0.1:15060 }",
        "{ transport: tls, address: 127.0.0.1:15061 }",
    );
    assert_err(&src, 3, 5, "needs `cert`");
    let src = ACC.replace(
        "{ transport: tcp, address: 127.0.0.1:15060 }",
        "{ transport: tcp, address: 127.0.0.1:15061, key: k.pem }",
    );
    assert_err(&src, 3, 54, "only for tls");
}

#[test]
fn bad_regex_points_at_the_pattern() {
    assert_err(&ACC.replace("'.*'", "'(ab'"), 14, 23, "unclosed group");
    assert_err(
        &ACC.replace("{ to_user: '.*' }", "{ from_user: 'a{2,1}' }"),
        14,
        25,
        "bad regex",
    );
}

#[test]
fn action_count_errors() {
    assert_err(
        &ACC.replace(
            "    route: [pbx]",
            "    route: [pbx]\n    reject: { code: 403 }",
        ),
        14,
        5,
        "exactly one action",
    );
    assert_err(
        &ACC.replace("    route: [pbx]\n", ""),
        14,
        5,
        "exactly one action",
    );
    assert_err(
        &ACC.replace("route: [pbx]", "route: []"),
        15,
        12,
        "at least one trunk",
    );
}

#[test]
fn redirect_and_reject_errors() {
    let r = |a: &str| ACC.replace("route: [pbx]", a);
    assert_err(&r("reject: { code: 200 }"), 15, 21, "not a 4xx");
    assert_err(
        &r("redirect: { contacts: ['sip:a@b'], code: 404 }"),
        15,
        46,
        "not a 3xx",
    );
    assert_err(
        &r("redirect: { contacts: [] }"),
        15,
        27,
        "at least one contact",
    );
    assert_err(
        &r("redirect: { contacts: ['sip:a@b', 'http://x'] }"),
        15,
        39,
        "not a sip:",
    );
    assert_err(
        &r("reject: { code: 403, reason: \"a\\r\\nVia: x\" }"),
        15,
        34,
        "control characters",
    );
    assert_err(&r("reject: { reason: x }"), 15, 13, "missing field `code`");
}

#[test]
fn source_trunk_must_exist() {
    assert_err(
        &ACC.replace("{ to_user: '.*' }", "{ source_trunk: carrier }"),
        14,
        28,
        "`carrier` is not a defined trunk",
    );
}

#[test]
fn rewrite_errors() {
    let r = |rw: &str| {
        ACC.replace(
            "    route: [pbx]",
            &format!("    rewrite: {{ {rw} }}\n    route: [pbx]"),
        )
    };
    assert_err(&r("to_user: '$1'"), 15, 25, "0 capture group");
    assert_err(&r("to_user: '${num}'"), 15, 25, "`num`");
    assert_err(&r("to_user: 'a$'"), 15, 25, "must be followed");
    let no_to = ACC
        .replace("{ to_user: '.*' }", "{ from_user: '(.*)' }")
        .replace(
            "    route: [pbx]",
            "    rewrite: { to_user: '$1' }\n    route: [pbx]",
        );
    assert_err(&no_to, 15, 25, "no pattern");
}

#[test]
fn wrong_types_and_shapes() {
    assert_err("- a\n- b\n", 1, 1, "expected a mapping");
    assert_err("", 1, 1, "empty");
    assert_err(
        &ACC.replace("ports: 30000-39999\n", "ports: [1, 2]\n"),
        6,
        10,
        "media.ports",
    );
    assert_err(
        "listen: []\nmedia: { address: 127.0.0.1, ports: 2-3 }\n",
        1,
        9,
        "at least one listener",
    );
    assert_err(
        &ACC.replace("timeout", "x")
            .replace("  backend: auto\n", "  timeout: 0\n"),
        7,
        12,
        "timeout must be > 0",
    );
}

#[test]
fn tabs_and_bad_indent_are_syntax_errors() {
    let e = err(&ACC.replace("  address: 127.0.0.1\n", "\taddress: 127.0.0.1\n"));
    assert_eq!(e.line, 5, "{e}");
}
