use super::*;
use std::sync::Arc;

const ACC: &str = include_str!("../../examples/b2bua.yaml");

fn err(src: &str) -> ConfigError {
    match from_yaml(src, "t.yaml") {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e,
    }
}

/// Assert an error at line:column whose message contains `needle`.
#[track_caller]
fn assert_err(src: &str, line: usize, column: usize, needle: &str) {
    let e = err(src);
    assert_eq!((e.line, e.column), (line, column), "position of: {e}");
    assert!(
        e.message.contains(needle),
        "message of: {e} (wanted `{needle}`)"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("t.yaml:{line}:{column}: ")),
        "{e}"
    );
}

fn q(to_user: &str) -> RouteQuery<'_> {
    RouteQuery {
        to_user,
        from_user: "alice",
        request_uri: "sip:x@example.com",
        source_trunk: None,
        source_ip: None,
        pai_user: None,
        diversion_user: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn default_config_is_loopback_and_routes_to_pbx() {
    let c = default_config();
    assert_eq!(c.source, "<embedded default>");
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[0].transport, TransportKind::Udp);
    assert_eq!(c.listen[1].transport, TransportKind::Tcp);
    for l in &c.listen {
        assert_eq!(l.address, "127.0.0.1:5060".parse().unwrap());
    }
    assert_eq!(c.media.address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!((c.media.port_min, c.media.port_max), (20000, 29999));
    assert_eq!(c.media.timeout, Duration::from_secs(60));
    assert_eq!(
        c.metrics.as_ref().unwrap().listen,
        "127.0.0.1:9464".parse().unwrap()
    );
    assert_eq!(c.trunks["pbx"].address, "127.0.0.1:5080".parse().unwrap());
    let d = c.dialplan.lookup(&q("anything")).unwrap();
    assert_eq!(d.action, Action::Route(vec!["pbx".to_string()].into()));
}

#[test]
fn examples_default_yaml_is_the_embedded_default() {
    let file = include_str!("../../examples/default.yaml");
    assert_eq!(file, DEFAULT_YAML);
}

#[test]
fn all_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("yaml") {
            let c = load_file(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.source, p.display().to_string());
            assert!(!c.dialplan.is_empty());
            n += 1;
        }
    }
    assert!(
        n >= 3,
        "expected b2bua, carrier-pbx, default examples, found {n}"
    );
}

#[test]
fn acceptance_yaml_loads() {
    let c = from_yaml(ACC, "b2bua.yaml").unwrap();
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[0].address, "127.0.0.1:15060".parse().unwrap());
    assert_eq!((c.media.port_min, c.media.port_max), (30000, 39999));
    assert_eq!(c.media.backend, Backend::Auto);
    assert_eq!(c.media.ng_listen, Some("127.0.0.1:12223".parse().unwrap()));
    assert_eq!(
        c.metrics.unwrap().listen,
        "127.0.0.1:19464".parse().unwrap()
    );
    let t = &c.trunks["pbx"];
    assert_eq!((t.name.as_str(), t.transport), ("pbx", TransportKind::Udp));
    assert_eq!(t.address, "127.0.0.1:15080".parse().unwrap());
    assert_eq!((t.max_calls, t.max_cps), (None, None));
    assert_eq!(c.dialplan.len(), 1);
}

#[test]
fn config_is_shareable() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Config>();
    is_send_sync::<Arc<Dialplan>>();
}

#[test]
fn load_file_missing_names_the_file() {
    let e = load_file(Path::new("/nonexistent/trunkline.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/trunkline.yaml:1:1: cannot read"),
        "{e}"
    );
}

#[test]
fn optional_fields_and_limits() {
    let src = ACC
        .replace("  ng_listen: 127.0.0.1:12223\n", "  timeout: 15\n  backend: epoll\n")
        .replace("  backend: auto\n", "")
        .replace("metrics:\n  listen: 127.0.0.1:19464\n", "")
        .replace(
            "pbx: { address: 127.0.0.1:15080, transport: udp }",
            "pbx: { address: '[::1]:15080', transport: tcp, max_calls: 10, max_cps: 2 }\n  gw: { address: 127.0.0.1:5070 }",
        );
    let c = from_yaml(&src, "t.yaml").unwrap();
    assert_eq!(c.media.timeout, Duration::from_secs(15));
    assert_eq!(c.media.backend, Backend::Epoll);
    assert_eq!(c.media.ng_listen, None);
    assert!(c.metrics.is_none());
    let t = &c.trunks["pbx"];
    assert_eq!(t.address, "[::1]:15080".parse().unwrap());
    assert_eq!(
        (t.transport, t.max_calls, t.max_cps),
        (TransportKind::Tcp, Some(10), Some(2))
    );
    assert_eq!(c.trunks["gw"].transport, TransportKind::Udp);
}

#[test]
fn tls_listener_fields() {
    let src = ACC.replace(
        "  - { transport: tcp, address: 127.0.0.1:15060 }\n",
        "  - { transport: tls, address: 127.0.0.1:15061, cert: c.pem, key: k.pem }\n",
    );
    let c = from_yaml(&src, "t.yaml").unwrap();
    assert_eq!(c.listen[1].transport, TransportKind::Tls);
    assert_eq!(c.listen[1].cert.as_deref(), Some(Path::new("c.pem")));
    assert_eq!(c.listen[1].key.as_deref(), Some(Path::new("k.pem")));
}

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

// ---------------------------------------------------------------------------------------------
// Dial plan semantics

fn plan(rules: &str) -> Config {
    let src = format!(
        "listen: [{{ transport: udp, address: 127.0.0.1:5060 }}]\nmedia: {{ address: 127.0.0.1, ports: 20000-20999 }}\n\
         trunks:\n  a: {{ address: 127.0.0.1:5081 }}\n  b: {{ address: 127.0.0.1:5082 }}\n  c: {{ address: 127.0.0.1:5083 }}\n\
         dialplan:\n{rules}"
    );
    from_yaml(&src, "plan.yaml").unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn route(names: &[&str]) -> Action {
    Action::Route(
        names
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into(),
    )
}

#[test]
fn first_match_wins() {
    let c = plan(
        "  - match: { to_user: '^1555' }\n    route: [a]\n\
         \x20 - match: { to_user: '^155' }\n    route: [b]\n\
         \x20 - match: { to_user: '^1' }\n    route: [c, a]\n",
    );
    let d = c.dialplan.lookup(&q("15551234")).unwrap();
    assert_eq!((d.rule_index, d.action), (0, route(&["a"])));
    let d = c.dialplan.lookup(&q("1559")).unwrap();
    assert_eq!((d.rule_index, d.action), (1, route(&["b"])));
    let d = c.dialplan.lookup(&q("19")).unwrap();
    assert_eq!((d.rule_index, d.action), (2, route(&["c", "a"])));
    assert_eq!(c.dialplan.lookup(&q("2")), None);
    // a generic rule earlier in the file beats an indexed one later
    let c = plan(
        "  - match: { to_user: '5$' }\n    route: [a]\n\
         \x20 - match: { to_user: '^1555' }\n    route: [b]\n",
    );
    assert_eq!(c.dialplan.lookup(&q("15555")).unwrap().rule_index, 0);
    assert_eq!(c.dialplan.lookup(&q("15556")).unwrap().rule_index, 1);
}

#[test]
fn captures_and_rewrite() {
    let c = plan(
        "  - match: { to_user: '^\\+?1(\\d{3})(\\d{7})$' }\n    rewrite: { to_user: '+1$1$2', request_uri: 'sip:+1${1}${2}@carrier.example' }\n    route: [a]\n\
         \x20 - match: { to_user: '^00(?P<cc>[1-9]\\d?)(?<rest>\\d+)$' }\n    rewrite: { to_user: '+${cc}${rest}$$' }\n    route: [b]\n",
    );
    let d = c.dialplan.lookup(&q("12125551234")).unwrap();
    assert_eq!(d.to_user.as_deref(), Some("+12125551234"));
    assert_eq!(
        d.request_uri.as_deref(),
        Some("sip:+12125551234@carrier.example")
    );
    assert_eq!(d.from_user, None);
    let d = c.dialplan.lookup(&q("+12125551234")).unwrap();
    assert_eq!(d.to_user.as_deref(), Some("+12125551234"));
    let d = c.dialplan.lookup(&q("004930123")).unwrap();
    assert_eq!((d.rule_index, d.to_user.as_deref()), (1, Some("+4930123$")));
}

#[test]
fn rewrite_capture_sources() {
    // from_user rewrite uses match.from_user's captures when the rule has one...
    let c = plan(
        "  - match: { to_user: '^(9)(\\d+)', from_user: '^(\\d{4})$' }\n    rewrite: { to_user: '$2', from_user: '+4930$1' }\n    route: [a]\n\
         \x20 - match: { to_user: '^(8)(\\d+)' }\n    rewrite: { from_user: 'x$2' }\n    route: [b]\n",
    );
    let mut query = q("9123");
    query.from_user = "2001";
    let d = c.dialplan.lookup(&query).unwrap();
    assert_eq!(
        (d.to_user.as_deref(), d.from_user.as_deref()),
        (Some("123"), Some("+49302001"))
    );
    // ...and to_user's otherwise
    let d = c.dialplan.lookup(&q("8777")).unwrap();
    assert_eq!((d.rule_index, d.from_user.as_deref()), (1, Some("x777")));
}

#[test]
fn all_keys_must_match() {
    let c = plan(
        "  - match: { to_user: '^1', from_user: '^bob$', request_uri: 'trunk-a' }\n    route: [a]\n\
         \x20 - match: {}\n    route: [b]\n",
    );
    let mut query = q("100");
    query.from_user = "bob";
    query.request_uri = "sip:100@host;x=trunk-a";
    assert_eq!(c.dialplan.lookup(&query).unwrap().rule_index, 0);
    query.from_user = "bobby";
    assert_eq!(c.dialplan.lookup(&query).unwrap().rule_index, 1);
    query.from_user = "bob";
    query.request_uri = "sip:100@host";
    assert_eq!(c.dialplan.lookup(&query).unwrap().rule_index, 1);
    query.request_uri = "sip:100@host;x=trunk-a";
    query.to_user = "200";
    assert_eq!(c.dialplan.lookup(&query).unwrap().rule_index, 1);
}

#[test]
fn source_trunk_matches() {
    let c = plan(
        "  - match: { source_trunk: a }\n    route: [b]\n\
         \x20 - match: { source_trunk: b, to_user: '^1' }\n    route: [a]\n\
         \x20 - route: [c]\n",
    );
    let mut query = q("123");
    query.source_trunk = Some("a");
    assert_eq!(c.dialplan.lookup(&query).unwrap().action, route(&["b"]));
    query.source_trunk = Some("b");
    assert_eq!(c.dialplan.lookup(&query).unwrap().action, route(&["a"]));
    query.to_user = "223";
    assert_eq!(c.dialplan.lookup(&query).unwrap().action, route(&["c"]));
    query.source_trunk = None;
    query.to_user = "123";
    assert_eq!(c.dialplan.lookup(&query).unwrap().action, route(&["c"]));
}

#[test]
fn redirect_and_reject() {
    let c = plan(
        "  - match: { to_user: '^911$' }\n    reject: { code: 403 }\n\
         \x20 - match: { to_user: '^999$' }\n    reject: { code: 503, reason: No Capacity }\n\
         \x20 - match: { to_user: '^(\\d{3})$' }\n    redirect: { contacts: ['sip:$1@192.0.2.1', 'sips:x@y'] }\n\
         \x20 - match: { to_user: '^moved' }\n    redirect: { contacts: ['sip:m@192.0.2.1'], code: 301 }\n",
    );
    assert_eq!(
        c.dialplan.lookup(&q("911")).unwrap().action,
        Action::Reject(403, None)
    );
    assert_eq!(
        c.dialplan.lookup(&q("999")).unwrap().action,
        Action::Reject(503, Some("No Capacity".into()))
    );
    assert_eq!(
        c.dialplan.lookup(&q("123")).unwrap().action,
        Action::Redirect(vec!["sip:$1@192.0.2.1".into(), "sips:x@y".into()], 302)
    );
    assert_eq!(
        c.dialplan.lookup(&q("movedaway")).unwrap().action,
        Action::Redirect(vec!["sip:m@192.0.2.1".into()], 301)
    );
    assert_eq!(c.dialplan.lookup(&q("1234")), None);
}

#[test]
fn empty_plan_matches_nothing() {
    let c = plan("  []\n");
    assert!(c.dialplan.is_empty());
    assert_eq!(c.dialplan.lookup(&q("1")), None);
}

#[test]
fn non_ascii_and_long_input_fall_back_to_regex() {
    let c = plan(
        "  - match: { to_user: '^\\d{3}$' }\n    route: [a]\n\
         \x20 - match: { to_user: '^(a+)+b$' }\n    route: [b]\n",
    );
    // Arabic-Indic digits are \d for the regex crate (Unicode)
    assert_eq!(
        c.dialplan
            .lookup(&q("\u{661}\u{662}\u{663}"))
            .unwrap()
            .rule_index,
        0
    );
    // long hostile input: answered (no match), not hung
    let long = "a".repeat(5000);
    assert_eq!(c.dialplan.lookup(&q(&long)), None);
}

// ---------------------------------------------------------------------------------------------
// The fast matcher agrees with the regex crate

#[test]
fn fast_matcher_agrees_with_regex() {
    let patterns = [
        "^1555",
        "^\\+?1(\\d{3})(\\d{7})$",
        "^\\+?1555\\d{7}$",
        ".*",
        "^(.*)$",
        "5$",
        "^$",
        "",
        "^[2-9]\\d{2}[2-9]\\d{6}$",
        "^(00|011)",
        "^0(\\d*)(\\d)$",
        "^(\\d+)(\\d+)$",
        "(\\d)(\\d?)x",
        "^a.c",
        "^[^0-9]+$",
        "^\\*(\\d\\d)#$",
        "^(9)?(\\d{1,3})$",
        "^1{2,}",
        "^[a-c.+]{1,3}",
        "()",
        "^(\\+)?((1)\\d)",
        "\\$$",
        "^\\\\$",
        "[+*#]",
        "^sip:(\\d+)@",
        "^(00|011)(\\d+)$",
        "(?:a|bc)d",
        "^(?P<cc>1|44)(?<rest>\\d*)",
        "(a|ab)(c|bcd)(d*)",
        "^(0|00)0",
        "(|1)5",
        "^(?:\\+|00)(1)",
    ];
    let inputs = [
        "",
        "1",
        "15",
        "1555",
        "15551234567",
        "+15551234567",
        "+1555123456",
        "12125551234",
        "2125551234",
        "0",
        "00",
        "0049301234",
        "01130",
        "abc",
        "a\nc",
        "aXc",
        "*72#",
        "9123",
        "123",
        "11",
        "111",
        "x5",
        "12x",
        "1x",
        "a+b",
        "+1",
        "sip:123@host",
        "$",
        "\\",
        "#",
        "55",
        "ab.c",
        "9",
        "91234",
    ];
    for p in patterns {
        let pat = pattern::Pattern::new(p, false).unwrap();
        let re = regex::Regex::new(p).unwrap();
        for h in inputs {
            let mut spans = Vec::new();
            let got = pat.captures(h, &mut spans, &Default::default());
            let want = re.captures(h);
            assert_eq!(got, want.is_some(), "pattern {p:?} on {h:?}");
            if let Some(w) = want {
                let want_spans: Vec<_> =
                    w.iter().map(|m| m.map(|m| (m.start(), m.end()))).collect();
                assert_eq!(spans, want_spans, "captures of {p:?} on {h:?}");
            }
            assert_eq!(pat.is_match(h), re.is_match(h));
        }
    }
    // and these shapes do take the fast path
    for p in [
        "^1555",
        "^\\+?1(\\d{3})(\\d{7})$",
        ".*",
        "^[2-9]\\d{2}$",
        "^(9?)(\\d{1,3})$",
        "^(00|011)(\\d+)$",
        "^(?:\\+|00)(?P<cc>\\d)",
    ] {
        assert!(pattern::Pattern::new(p, false).unwrap().is_fast(), "{p}");
    }
    for p in [
        "^(00|0\\d)",
        "(?i)abc",
        "^a*?",
        "\\w+",
        "^(a)+",
        "^(a|b)?",
        "(a(b|c))",
    ] {
        assert!(!pattern::Pattern::new(p, false).unwrap().is_fast(), "{p}");
    }
}

#[test]
fn prefixes_are_extracted() {
    let pre = |p: &str| pattern::Pattern::new(p, false).unwrap().prefixes().to_vec();
    assert_eq!(pre("^\\+?1555\\d{7}$"), vec!["+1555", "1555"]);
    assert_eq!(pre("^1555"), vec!["1555"]);
    assert_eq!(pre("^(49)(\\d+)"), vec!["49"]);
    assert_eq!(pre("^(00|011)"), vec!["00", "011"]);
    assert_eq!(pre("^(?:\\+|00)?44"), vec!["+44", "0044", "44"]); // regex-syntax path (quantified group)
    assert_eq!(pre("^(?:\\+|00)44(\\d+)"), vec!["+44", "0044"]); // fast path
    assert!(pattern::Pattern::new("^(?:\\+|00)44(\\d+)", false)
        .unwrap()
        .is_fast());
    assert!(pre("1555").is_empty());
    assert!(pre("^.*").is_empty());
    assert!(pre("^\\d+").is_empty());
    assert!(pre("^a?b?").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 100k rules: the indexed lookup agrees with a naive linear regex scan

/// A generated dial plan: `n` prefix rules of assorted shapes, a few generic ones, a catch-all.
pub(crate) fn big_plan_yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 64);
    s.push_str(
        "listen: [{ transport: udp, address: 127.0.0.1:5060 }]\nmedia: { address: 127.0.0.1, ports: 20000-29999 }\n\
         trunks:\n  a: { address: 127.0.0.1:5081 }\n  b: { address: 127.0.0.1:5082 }\ndialplan:\n",
    );
    for i in 0..n {
        let pfx = 1_000_000 + i;
        match i % 4 {
            0 => s.push_str(&format!("  - match: {{ to_user: '^\\+?{pfx}\\d{{4}}$' }}\n    route: [a]\n")),
            1 => s.push_str(&format!(
                "  - match: {{ to_user: '^{pfx}(\\d+)$' }}\n    rewrite: {{ to_user: '+{pfx}$1' }}\n    route: [b, a]\n"
            )),
            2 => s.push_str(&format!("  - match: {{ to_user: '^{pfx}' }}\n    route: [b]\n")),
            _ => s.push_str(&format!("  - match: {{ to_user: '^{pfx}[0-4]' }}\n    reject: {{ code: 404 }}\n")),
        }
        if i % 10_000 == 5_000 {
            s.push_str(&format!(
                "  - match: {{ to_user: '{i}999$' }}\n    route: [a]\n"
            ));
        }
    }
    s.push_str("  - match: { to_user: '^x' }\n    route: [a]\n");
    s
}

fn samples(n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mid = n / 2;
    for i in [
        0usize,
        1,
        2,
        3,
        4999,
        5000,
        mid,
        mid + 1,
        mid + 2,
        mid + 3,
        n - 4,
        n - 3,
        n - 2,
        n - 1,
    ] {
        let pfx = 1_000_000 + i;
        out.push(format!("{pfx}1234"));
        out.push(format!("+{pfx}1234"));
        out.push(format!("{pfx}9"));
        out.push(format!("{pfx}"));
        out.push(format!("{i}999"));
    }
    out.extend(
        [
            "x1",
            "2",
            "",
            "+",
            "12345678901234567890",
            "99999999",
            "1\u{661}",
        ]
        .map(String::from),
    );
    out
}

/// Differential test against the `regex` crate, rule by rule, in order (regexes compiled on
/// demand and cached, as a naive implementation would).
#[test]
fn plan_matches_a_naive_regex_scan() {
    let n = 12_000;
    let src = big_plan_yaml(n);
    let c = from_yaml(&src, "big.yaml").unwrap();
    let raw: yaml_serde::Value = yaml_serde::from_str(&src).unwrap();
    let pats: Vec<String> = raw["dialplan"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["match"]["to_user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pats.len(), c.dialplan.len());
    let cache: Vec<std::cell::OnceCell<regex::Regex>> =
        (0..pats.len()).map(|_| Default::default()).collect();
    let naive = |to: &str| -> Option<(usize, Option<String>)> {
        let i = (0..pats.len()).find(|&i| {
            cache[i]
                .get_or_init(|| regex::Regex::new(&pats[i]).unwrap())
                .is_match(to)
        })?;
        // rule kind 1 rewrites to '+{pfx}$1' where the pattern is '^{pfx}(\d+)$'
        let re = cache[i].get().unwrap();
        let rw = raw["dialplan"][i]["rewrite"]["to_user"].as_str().map(|t| {
            let caps = re.captures(to).unwrap();
            let mut out = String::new();
            caps.expand(&t.replace("$1", "${1}"), &mut out);
            out
        });
        Some((i, rw))
    };
    for s in samples(n) {
        let got = c.dialplan.lookup(&q(&s)).map(|d| (d.rule_index, d.to_user));
        assert_eq!(got, naive(&s), "to_user {s:?}");
    }
}

/// The full 100k plan: the indexed lookup gives the linear scan's answer, first/middle/last/none.
#[test]
fn big_plan_matches_like_a_linear_scan() {
    let n = 100_000;
    let src = big_plan_yaml(n);
    let c = from_yaml(&src, "big.yaml").unwrap();
    assert!(c.dialplan.len() > n);
    assert!(c.dialplan.indexed_rules() >= n);
    // (a linear scan of 100k rules is slow in a debug build: every third sample, which still
    // covers first, middle, last and no-match; the 12k-rule test above checks them all)
    for s in samples(n).into_iter().step_by(3) {
        let fast = c.dialplan.lookup(&q(&s));
        let linear = c.dialplan.lookup_linear(&q(&s));
        assert_eq!(fast, linear, "to_user {s:?}");
    }
    let idx = |s: &str| c.dialplan.lookup(&q(s)).map(|d| d.rule_index);
    assert_eq!(idx("10000001234"), Some(0));
    let last = c.dialplan.lookup(&q("10999991")).unwrap();
    assert_eq!(last.action, Action::Reject(404, None));
    let d = c.dialplan.lookup(&q("1099997555")).unwrap();
    assert_eq!(d.to_user.as_deref(), Some("+1099997555"));
    assert_eq!(d.action, route(&["b", "a"]));
    assert_eq!(idx("x"), Some(c.dialplan.len() - 1));
    assert_eq!(idx("2"), None);
}

// ---------------------------------------------------------------------------------------------
// Trunk TLS settings

const PBX: &str = "pbx: { address: 127.0.0.1:15080, transport: udp }";

#[test]
fn trunk_tls_settings() {
    let src = ACC.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: tls, tls: { ca: ca.pem, server_name: pbx.example, verify: false } }",
    );
    let c = from_yaml(&src, "t.yaml").unwrap();
    let t = &c.trunks["pbx"];
    assert_eq!(t.transport, TransportKind::Tls);
    let tls = t.tls.as_ref().unwrap();
    assert_eq!(tls.ca.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(tls.server_name.as_deref(), Some("pbx.example"));
    assert!(!tls.verify);
    // Without `tls:` a tls trunk has no settings (system roots, IP as name, verified).
    let src = ACC.replace(PBX, "pbx: { address: 127.0.0.1:15080, transport: tls }");
    let c = from_yaml(&src, "t.yaml").unwrap();
    assert_eq!(c.trunks["pbx"].tls, None);
    assert!(TrunkTls::default().verify);
    // verify defaults to true when `tls:` is given.
    let src = ACC.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: tls, tls: { ca: ca.pem } }",
    );
    let c = from_yaml(&src, "t.yaml").unwrap();
    assert!(c.trunks["pbx"].tls.as_ref().unwrap().verify);
}

#[test]
fn trunk_tls_errors() {
    // `tls:` on a udp trunk points at the `tls` value (line 12).
    let src = ACC.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: udp, tls: { verify: false } }",
    );
    let e = err(&src);
    assert_eq!(e.line, 12, "{e}");
    assert!(e.message.contains("only for `transport: tls`"), "{e}");
    // Unknown keys inside `tls:` are caught with their position.
    let src = ACC.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: tls, tls: { cafile: x.pem } }",
    );
    let e = err(&src);
    assert_eq!(e.line, 12, "{e}");
    assert!(e.message.contains("cafile"), "{e}");
    // A server name with a space.
    let src = ACC.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: tls, tls: { server_name: 'a b' } }",
    );
    let e = err(&src);
    assert_eq!(e.line, 12, "{e}");
    assert!(e.message.contains("not a host name"), "{e}");
    // verify must be a boolean.
    let src = ACC.replace(
        PBX,
        "pbx: { address: 127.0.0.1:15080, transport: tls, tls: { verify: maybe } }",
    );
    assert_eq!(err(&src).line, 12);
}

/// Randomised differential test: patterns generated from the fast subset's grammar, random
/// haystacks, the fast matcher's match and capture spans against the `regex` crate's.
#[test]
fn fast_matcher_random_differential() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: usize| -> usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let atoms = [
        "0",
        "1",
        "2",
        "9",
        "\\+",
        "\\*",
        "#",
        "a",
        "\\d",
        ".",
        "[0-4]",
        "[^5]",
        "[a9+]",
        "(0|01)",
        "(?:1|12)",
        "(a|)",
        "(?:\\+|00)",
    ];
    let quants = ["", "", "", "?", "*", "+", "{2}", "{1,3}", "{0,}", "{0,2}"];
    let alphabet: Vec<char> = "0123459+*#a\n".chars().collect();
    let mut fast_count = 0;
    for _ in 0..400 {
        let mut p = String::new();
        if rnd(3) > 0 {
            p.push('^');
        }
        let n = 1 + rnd(5);
        let mut open = 0;
        for _ in 0..n {
            if rnd(4) == 0 {
                p.push('(');
                open += 1;
            }
            p.push_str(atoms[rnd(atoms.len())]);
            p.push_str(quants[rnd(quants.len())]);
            if open > 0 && rnd(3) == 0 {
                p.push(')');
                open -= 1;
            }
        }
        for _ in 0..open {
            p.push(')');
        }
        if rnd(2) == 0 {
            p.push('$');
        }
        let pat = pattern::Pattern::new(&p, false).unwrap();
        fast_count += pat.is_fast() as usize;
        let re = regex::Regex::new(&p).unwrap();
        for _ in 0..60 {
            let len = rnd(12);
            let h: String = (0..len).map(|_| alphabet[rnd(alphabet.len())]).collect();
            let mut spans = Vec::new();
            let got = pat.captures(&h, &mut spans, &Default::default());
            let want = re.captures(&h);
            assert_eq!(got, want.is_some(), "pattern {p:?} on {h:?}");
            if let Some(w) = want {
                let want_spans: Vec<_> =
                    w.iter().map(|m| m.map(|m| (m.start(), m.end()))).collect();
                assert_eq!(spans, want_spans, "captures of {p:?} on {h:?}");
            }
        }
    }
    assert!(
        fast_count > 150,
        "only {fast_count} of 400 generated patterns took the fast path"
    );
}

#[test]
fn source_ip_matches() {
    let c = plan(
        "  - match: { source_ip: 192.0.2.0/24 }\n    route: [a]\n\
         \x20 - match: { source_ip: '2001:db8::/32', to_user: '^1' }\n    route: [b]\n\
         \x20 - match: { source_ip: 198.51.100.7 }\n    route: [c]\n",
    );
    let at = |ip: &str, to: &'static str| {
        let mut query = q(to);
        query.source_ip = Some(ip.parse().unwrap());
        c.dialplan.lookup(&query).map(|d| d.rule_index)
    };
    assert_eq!(at("192.0.2.200", "5"), Some(0));
    assert_eq!(at("::ffff:192.0.2.1", "5"), Some(0));
    assert_eq!(at("192.0.3.1", "5"), None);
    assert_eq!(at("2001:db8:1::5", "123"), Some(1));
    assert_eq!(at("2001:db8:1::5", "23"), None);
    assert_eq!(at("198.51.100.7", "5"), Some(2));
    assert_eq!(at("198.51.100.8", "5"), None);
    assert_eq!(
        c.dialplan.lookup(&q("5")),
        None,
        "no source address: no source_ip match"
    );
    let bad = |v: &str| ACC.replace("{ to_user: '.*' }", &format!("{{ source_ip: '{v}' }}"));
    assert_err(&bad("10.0.0.1/8"), 14, 25, "host bits");
    assert_err(&bad("10.0.0.0/33"), 14, 25, "prefix length");
    assert_err(&bad("ten"), 14, 25, "not an IP address");
}

#[test]
fn shutdown_drain_default_and_set() {
    let c = from_yaml(ACC, "t.yaml").unwrap();
    assert_eq!(c.shutdown.drain, Duration::from_secs(30), "default drain");
    let c = from_yaml(&format!("{ACC}shutdown:\n  drain: 2\n"), "t.yaml").unwrap();
    assert_eq!(c.shutdown.drain, Duration::from_secs(2));
    let c = from_yaml(&format!("{ACC}shutdown: {{ drain: 0 }}\n"), "t.yaml").unwrap();
    assert_eq!(c.shutdown.drain, Duration::ZERO, "0 = BYE at once");
    let c = from_yaml(&format!("{ACC}shutdown: {{}}\n"), "t.yaml").unwrap();
    assert_eq!(c.shutdown.drain, Duration::from_secs(30));
    // Unknown keys, bad values and out-of-range values are positioned errors.
    assert_err(
        &format!("{ACC}shutdown:\n  drian: 2\n"),
        17,
        3,
        "unknown field `drian`",
    );
    assert_err(&format!("{ACC}shutdown:\n  drain: soon\n"), 17, 10, "drain");
    assert_err(&format!("{ACC}shutdown:\n  drain: -1\n"), 17, 10, "drain");
    assert_err(
        &format!("{ACC}shutdown:\n  drain: 100000\n"),
        17,
        10,
        "more than a day",
    );
}

#[test]
fn lazy_regexes_can_be_compiled_ahead() {
    // 1000 non-fast patterns are compiled at load; the ones after that wait for first use
    let mut rules = String::new();
    for i in 0..1003 {
        rules.push_str(&format!(
            "  - match: {{ to_user: '^(?i)x{i}$' }}\n    route: [a]\n"
        ));
    }
    let c = plan(&rules);
    assert_eq!(
        c.dialplan.lookup(&q("X1002")).map(|d| d.rule_index),
        Some(1002)
    );
    // 1002 was compiled by that lookup; 1000 and 1001 are still pending
    assert_eq!(c.dialplan.compile_pending(), 2);
    assert_eq!(c.dialplan.compile_pending(), 0);
    assert_eq!(
        c.dialplan.lookup(&q("x1001")).map(|d| d.rule_index),
        Some(1001)
    );
}

#[test]
fn long_patterns_stay_correct() {
    // more pieces than the fast matcher takes: handled by the regex crate, same answers
    for p in [
        format!("^{}", "(0|1)".repeat(80)),
        format!("^{}$", "\\d".repeat(100)),
        "(a|b)".repeat(70),
    ] {
        let pat = pattern::Pattern::new(&p, false).unwrap();
        assert!(!pat.is_fast(), "{p}");
        let re = regex::Regex::new(&p).unwrap();
        for h in [
            "0".repeat(80),
            "1".repeat(100),
            "ab".repeat(35),
            String::new(),
        ] {
            assert_eq!(pat.is_match(&h), re.is_match(&h), "{p} on {h}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fast dial-plan section reader gives exactly what yaml_serde gives

/// Parse both ways; they must agree (both Ok and equal, or both Err). Returns whether the
/// fast reader took the section.
#[track_caller]
fn same_both_ways(src: &str) -> bool {
    let slow = parse_raw(src, "t.yaml", false);
    let fast = parse_raw(src, "t.yaml", true);
    match (&slow, &fast) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "fast and yaml_serde readings differ for:\n{src}"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "one reading failed:\nslow {:?}\nfast {:?}\n{src}",
            slow.err(),
            fast.err()
        ),
    }
    fastyaml::split_dialplan(src).is_some()
}

#[test]
fn fast_section_reader_agrees_on_examples_and_generated_plans() {
    assert!(same_both_ways(ACC));
    assert!(same_both_ways(include_str!(
        "../../examples/carrier-pbx.yaml"
    )));
    assert!(same_both_ways(DEFAULT_YAML));
    assert!(same_both_ways(&big_plan_yaml(3000)));
    // dial plan not last, items at column 0, comments and blank lines between rules
    let src = "dialplan:\n- match: { to_user: '^1' }\n  route: [pbx]\n\n# note\n- route: [pbx]\n"
        .to_string()
        + &ACC.replace(
            "dialplan:\n  - match: { to_user: '.*' }\n    route: [pbx]\n",
            "",
        );
    assert!(same_both_ways(&src));
    let c = from_yaml(&src, "t.yaml").unwrap();
    assert_eq!(c.dialplan.len(), 2);
}

#[test]
fn fast_section_reader_agrees_or_steps_aside_on_odd_input() {
    let rule = |r: &str| ACC.replace("  - match: { to_user: '.*' }\n    route: [pbx]\n", r);
    let taken = [
        "  - match: { to_user: 'it''s', from_user: '' }\n    route: [pbx]\n",
        "  - match: { to_user: 'null' }\n    route: [ pbx ]\n",
        "  - match: {}\n    reject: { code: 403, reason: Not Found }\n",
        "  - match: { to_user: '^(a|b)#x' }\n    reject: { reason: No_Way.x-1, code: 486 }\n",
        "  - route: [pbx]\n    match: { source_trunk: pbx }\n    rewrite: { to_user: '+1$1', request_uri: 'sip:x@y' }\n",
        "  - match: { to_user: 'ü€' }\n    redirect: { contacts: ['sip:a@b', 'tel:+1'], code: 301 }\n",
        "  - match: { to_user: x }\n    route: [pbx]\n",
        "  - match: { to_user: '.*' }   \n    route: [pbx]\n\n\n",
    ];
    for r in taken {
        assert!(same_both_ways(&rule(r)), "fast reader should take:\n{r}");
    }
    let declined = [
        "  - match: { to_user: null }\n    route: [pbx]\n",
        "  - match: { to_user: ~ }\n    route: [pbx]\n",
        "  - match: { to_user: true }\n    route: [pbx]\n",
        "  - match: { to_user: 1555 }\n    route: [pbx]\n",
        "  - match: { to_user: \"x\" }\n    route: [pbx]\n",
        "  - match: { to_user: '.*' } # comment\n    route: [pbx]\n",
        "  - match: { to_user: '.*', to_user: 'x' }\n    route: [pbx]\n",
        "  - match: { to_usr: '.*' }\n    route: [pbx]\n",
        "  - match: { to_user: '.*' }\n    route: [pbx]\n    route: [pbx]\n",
        "  - match:\n      to_user: '.*'\n    route: [pbx]\n",
        "  - match: { to_user: '.*' }\n    route:\n      - pbx\n",
        "  - match: { to_user: 'a\n      b' }\n    route: [pbx]\n",
        "  - match: { to_user: '.*' }\n    route: [pbx\n",
        "  - match: { to_user: '.*' }\n    reject: { code: 0403 }\n",
        "  - match: { to_user: '.*' }\n    reject: { code: '403' }\n",
        "  - match: { to_user: '.*' }\n    reject: { code: 403, reason: yes }\n",
        "  - match: { to_user: '.*' }\n    reject: { code: 403, reason: a: b }\n",
        "  - match: { to_user: &a '.*' }\n    route: [pbx]\n",
        "  - match: { to_user: '.*' }\n\troute: [pbx]\n",
        "  - match: { to_user: '.*' }\n     route: [pbx]\n",
        "  -  match: { to_user: '.*' }\n     route: [pbx]\n",
        "  - match: { to_user: '.*' }\n    redirect: { code: 302 }\n",
        "  - match: { to_user: '.*' }\n    reject: { reason: x }\n",
    ];
    for r in declined {
        assert!(
            !same_both_ways(&rule(r)),
            "fast reader should step aside:\n{r}"
        );
    }
}

#[test]
fn fast_section_reader_keeps_error_positions() {
    // big enough for the fast reader; the error is located in the original text
    let mut src = big_plan_yaml(2000);
    assert!(src.len() >= FAST_SECTION_MIN_BYTES);
    assert!(fastyaml::split_dialplan(&src).is_some());
    src = src.replacen("route: [b]", "route: [b, nosuch]", 1);
    let e = from_yaml(&src, "big.yaml").unwrap_err();
    let line = src.lines().position(|l| l.contains("nosuch")).unwrap() + 1;
    assert_eq!((e.line, e.column), (line, 16), "{e}");
    // a header error after the section keeps its line number too
    let src = big_plan_yaml(2000).replace("trunks:\n", "bogus: 1\ntrunks:\n");
    let e = from_yaml(&src, "big.yaml").unwrap_err();
    assert_eq!(e.line, 3, "{e}");
}

/// A 100k-rule plan is ~100k of these: keep them small (rare parts are boxed).
#[test]
fn rule_stays_small() {
    assert!(
        std::mem::size_of::<dialplan::Rule>() <= 400,
        "{}",
        std::mem::size_of::<dialplan::Rule>()
    );
}

#[test]
fn hostile_non_ascii_input_cannot_make_every_rule_keep_a_regex() {
    let mut rules = String::new();
    for i in 0..1100 {
        rules.push_str(&format!(
            "  - match: {{ to_user: '^{}\\d$' }}\n    route: [a]\n",
            10_000 + i
        ));
    }
    let c = plan(&rules);
    // each lookup hits one rule with a non-ASCII digit: answered right every time...
    for i in 0..1100 {
        let to = format!("{}\u{663}", 10_000 + i);
        assert_eq!(
            c.dialplan.lookup(&q(&to)).map(|d| d.rule_index),
            Some(i),
            "{to}"
        );
    }
    // ...but only the first 1024 patterns kept their compiled fallback
    assert_eq!(
        c.dialplan
            .fallback_budget
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn limits_defaults() {
    let c = from_yaml(ACC, "t.yaml").unwrap();
    let l = &c.limits;
    assert_eq!(l.source_rate, None, "source rate limit off by default");
    assert_eq!(l.max_calls, None);
    assert_eq!(l.overload_queue, 2000);
    assert_eq!(l.retry_after, 5);
    for s in [
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "VaxSIPUserAgent",
    ] {
        assert!(
            l.user_agent_block.iter().any(|x| x == s),
            "{s} in the default block list"
        );
    }
    let c = from_yaml(&format!("{ACC}limits: {{}}\n"), "t.yaml").unwrap();
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn limits_set() {
    let c = from_yaml(
        &format!(
            "{ACC}limits: {{ source_rate: 50, source_burst: 100, max_calls: 5000, \
             overload_queue: 3000, retry_after: 9, user_agent_block: ['friendly-scanner', 'Evil'] }}\n"
        ),
        "t.yaml",
    )
    .unwrap();
    let l = &c.limits;
    assert_eq!(l.source_rate, Some(50));
    assert_eq!(l.source_burst, 100);
    assert_eq!(l.max_calls, Some(5000));
    assert_eq!(l.overload_queue, 3000);
    assert_eq!(l.retry_after, 9);
    assert_eq!(l.user_agent_block, vec!["friendly-scanner", "Evil"]);
    // burst defaults to twice the rate; an empty list turns blocking off
    let c = from_yaml(
        &format!("{ACC}limits:\n  source_rate: 30\n  user_agent_block: []\n"),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(c.limits.source_burst, 60);
    assert!(c.limits.user_agent_block.is_empty());
}

#[test]
fn limits_errors_are_positioned() {
    assert_err(
        &format!("{ACC}limits:\n  source_rat: 5\n"),
        17,
        3,
        "unknown field `source_rat`",
    );
    assert_err(&format!("{ACC}limits:\n  source_rate: 0\n"), 17, 16, "> 0");
    assert_err(&format!("{ACC}limits:\n  source_rate: fast\n"), 17, 16, "");
    assert_err(
        &format!("{ACC}limits:\n  source_burst: 10\n"),
        17,
        17,
        "needs source_rate",
    );
    assert_err(
        &format!("{ACC}limits:\n  source_rate: 5\n  source_burst: 0\n"),
        18,
        17,
        "> 0",
    );
    assert_err(&format!("{ACC}limits:\n  max_calls: 0\n"), 17, 14, "> 0");
    assert_err(
        &format!("{ACC}limits:\n  overload_queue: 0\n"),
        17,
        19,
        "overload_queue",
    );
    assert_err(
        &format!("{ACC}limits:\n  overload_queue: 70000\n"),
        17,
        19,
        "overload_queue",
    );
    assert_err(
        &format!("{ACC}limits:\n  retry_after: 0\n"),
        17,
        16,
        "retry_after",
    );
    assert_err(
        &format!("{ACC}limits:\n  user_agent_block: [a, '']\n"),
        17,
        25,
        "block every request",
    );
    assert_err(
        &format!("{ACC}limits:\n  user_agent_block:\n    - ok\n    - \"x\\r\\ny\"\n"),
        19,
        7,
        "control characters",
    );
}

#[test]
fn media_workers_and_batching_delay() {
    let c = from_yaml(ACC, "t.yaml").unwrap();
    assert_eq!(c.media.workers, 0, "default: automatic");
    assert_eq!(c.media.io_uring_batch_us, None, "default: the relay's");
    let set = |extra: &str| ACC.replace("  backend: auto\n", &format!("  backend: auto\n{extra}"));
    let c = from_yaml(&set("  workers: 1\n  io_uring_batch_us: 50\n"), "t.yaml").unwrap();
    assert_eq!((c.media.workers, c.media.io_uring_batch_us), (1, Some(50)));
    let c = from_yaml(&set("  io_uring_batch_us: 0\n"), "t.yaml").unwrap();
    assert_eq!(c.media.io_uring_batch_us, Some(0), "0 = no batching");
    // Out-of-range and malformed values are positioned errors (line 8: after `backend`).
    assert_err(&set("  workers: 300\n"), 8, 12, "at most 256");
    assert_err(&set("  workers: -1\n"), 8, 12, "workers");
    assert_err(&set("  io_uring_batch_us: 20000\n"), 8, 22, "at most 10000");
    assert_err(
        &set("  io_uring_batch_us: soon\n"),
        8,
        22,
        "io_uring_batch_us",
    );
    assert!(!c.media.strict_source, "default: latching");
    let c = from_yaml(&set("  strict_source: true\n"), "t.yaml").unwrap();
    assert!(c.media.strict_source);
    assert_err(&set("  strict_source: maybe\n"), 8, 18, "strict_source");
    assert_eq!(c.media.kernel_forwarding, KernelForwarding::Auto, "default");
    for (v, want) in [
        ("auto", KernelForwarding::Auto),
        ("on", KernelForwarding::On),
        ("off", KernelForwarding::Off),
    ] {
        let c = from_yaml(&set(&format!("  kernel_forwarding: {v}\n")), "t.yaml").unwrap();
        assert_eq!(c.media.kernel_forwarding, want, "{v}");
    }
    assert_err(
        &set("  kernel_forwarding: xdp\n"),
        8,
        22,
        "kernel_forwarding",
    );
}

// ---------------------------------------------------------------------------------------------
// Big plans: read and compiled in chunks on several threads, same result as the plain path

/// The rules of `cfg` as (action, rewrite) decisions for a set of numbers, to compare plans.
fn decisions(cfg: &Config, numbers: &[String]) -> Vec<Option<(usize, Action, Option<String>)>> {
    numbers
        .iter()
        .map(|n| {
            cfg.dialplan
                .lookup(&RouteQuery {
                    to_user: n,
                    from_user: "1",
                    request_uri: "sip:x@y",
                    source_trunk: None,
                    source_ip: None,
                    pai_user: None,
                    diversion_user: None,
                })
                .map(|d| (d.rule_index, d.action.clone(), d.to_user.clone()))
        })
        .collect()
}

#[test]
fn chunked_big_plan_equals_the_plain_reading() {
    let src = big_plan_yaml(20_000);
    assert!(src.len() >= FAST_SECTION_MIN_BYTES);
    let sec = fastyaml::split_sections(&src, 3).expect("fast shape");
    assert_eq!(sec.chunks.len(), 3);
    for c in &sec.chunks[1..] {
        assert!(
            c.text.starts_with("  - match:"),
            "cut at a rule: {:?}",
            &c.text[..40]
        );
    }
    let sizes: Vec<usize> = sec.chunks.iter().map(|c| c.text.len()).collect();
    assert!(
        sizes.iter().all(|&n| n > src.len() / 4),
        "about equal: {sizes:?}"
    );
    let fast = from_yaml(&src, "big.yaml").expect("loads");
    let Ok(plain) = build(parse_raw(&src, "big.yaml", false).expect("parses")) else {
        panic!("the plain reading builds");
    };
    assert_eq!(fast.dialplan.len(), plain.dialplan.len());
    let numbers: Vec<String> = (0..20_000)
        .step_by(97)
        .flat_map(|i| {
            [
                format!("{}1234", 1_000_000 + i),
                format!("+{}1234", 1_000_000 + i),
                format!("{}3", 1_000_000 + i),
                format!("{i}999"),
            ]
        })
        .chain(["x1".to_string(), "nothing".to_string()])
        .collect();
    assert_eq!(decisions(&fast, &numbers), decisions(&plain, &numbers));
}

#[test]
fn chunked_big_plan_reports_the_first_bad_rule_in_file_order() {
    let good = big_plan_yaml(20_000);
    // Two bad rules, one late in the file (another thread's chunk) and one early: the early one
    // is reported, with its own line.
    let late = "  - match: { to_user: '^1019002' }\n    route: [b]\n";
    let early = "  - match: { to_user: '^1000902' }\n    route: [b]\n";
    assert!(good.contains(late) && good.contains(early));
    let one = good.replace(
        late,
        "  - match: { to_user: '^1019002' }\n    route: [nope]\n",
    );
    let e = from_yaml(&one, "big.yaml").unwrap_err();
    let line = one
        .lines()
        .position(|l| l.contains("route: [nope]"))
        .unwrap()
        + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains("nope"), "{e}");
    let two = one.replace(
        early,
        "  - match: { to_user: '^1000902(' }\n    route: [b]\n",
    );
    let e = from_yaml(&two, "big.yaml").unwrap_err();
    let line = two.lines().position(|l| l.contains("'^1000902('")).unwrap() + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains("regex"), "{e}");
}

#[test]
fn chunked_big_plan_with_an_odd_rule_late_goes_the_plain_way() {
    let good = big_plan_yaml(20_000);
    let late = "  - match: { to_user: '^1019002' }\n    route: [b]\n";
    // A double-quoted scalar is outside the fast shape: the whole document is read by
    // yaml_serde, with the same result.
    let odd = good.replace(
        late,
        "  - match: { to_user: \"^1019002\" }\n    route: [b]\n",
    );
    assert_ne!(odd, good);
    assert!(
        fastyaml::split_sections(&odd, 2).is_some(),
        "layout is fine"
    );
    let c = from_yaml(&odd, "big.yaml").expect("loads the plain way");
    let plain = from_yaml(&good, "big.yaml").expect("loads");
    let numbers = vec!["10190021".to_string(), "10000001234".to_string()];
    assert_eq!(decisions(&c, &numbers), decisions(&plain, &numbers));
}

#[test]
fn sip_call_timers() {
    let c = from_yaml(ACC, "t.yaml").unwrap();
    assert_eq!(c.sip, Sip::default());
    assert_eq!(c.sip.no_answer_timeout, Duration::from_secs(4));
    assert_eq!(c.sip.ringing_timeout, Duration::from_secs(181));
    let with = |s: &str| format!("{ACC}sip:\n{s}");
    let c = from_yaml(
        &with("  no_answer_timeout: 2\n  ringing_timeout: 60\n"),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        (c.sip.no_answer_timeout, c.sip.ringing_timeout),
        (Duration::from_secs(2), Duration::from_secs(60))
    );
    let lines = ACC.lines().count();
    assert_err(&with("  no_answer_timeout: 0\n"), lines + 2, 22, "1 to 32");
    assert_err(&with("  ringing_timeout: 1\n"), lines + 2, 20, "2 to 3600");
    assert_err(&with("  ringing: 60\n"), lines + 2, 3, "ringing");
}

// ---------------------------------------------------------------------------------------------
// registrar:

fn with_registrar(section: &str) -> String {
    format!("{ACC}registrar:\n{section}")
}

/// Line of `needle` in `src` (1-based).
fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn registrar_section() {
    assert_eq!(
        from_yaml(ACC, "t.yaml").unwrap().registrar,
        None,
        "off by default"
    );
    let src = with_registrar(
        "  domains: [Example.COM, 192.0.2.1]\n  users:\n    alice: { password: s3cret }\n    bob: { password: 'x y' }\n",
    );
    let r = from_yaml(&src, "t.yaml").unwrap().registrar.unwrap();
    assert_eq!(r.domains, vec!["example.com", "192.0.2.1"]);
    assert_eq!(r.realm, "example.com", "default realm: the first domain");
    assert_eq!(
        (r.min_expires, r.max_expires, r.default_expires),
        (60, 3600, 3600)
    );
    let users: Vec<(&str, Option<&str>)> = r
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.password.as_deref()))
        .collect();
    assert_eq!(users, vec![("alice", Some("s3cret")), ("bob", Some("x y"))]);
    assert_eq!(
        r.algorithms,
        vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
        "both by default, SHA-256 first"
    );
    assert_eq!(r.store, None, "in memory by default");
    let src = with_registrar(
        "  domains: [a.example]\n  realm: office\n  min_expires: 30\n  max_expires: 600\n  default_expires: 9999\n  users: { u1: { password: p } }\n",
    );
    let r = from_yaml(&src, "t.yaml").unwrap().registrar.unwrap();
    assert_eq!(
        (
            r.realm.as_str(),
            r.min_expires,
            r.max_expires,
            r.default_expires
        ),
        ("office", 30, 600, 600)
    );
}

#[test]
fn registrar_errors_are_positioned() {
    let src = with_registrar("  domains: []\n  users: { a: { password: p } }\n");
    assert_err(
        &src,
        line_of(&src, "domains: []"),
        12,
        "at least one domain",
    );
    let src = with_registrar("  domains: [x.example]\n  users: {}\n");
    assert_err(&src, line_of(&src, "users: {}"), 10, "at least one user");
    let src = with_registrar("  domains: [x.example]\n  min_expires: 600\n  max_expires: 60\n  users: { a: { password: p } }\n");
    assert_err(
        &src,
        line_of(&src, "max_expires: 60"),
        16,
        "below min_expires",
    );
    let src = with_registrar("  domains: [x.example]\n  users:\n    'al ice': { password: p }\n");
    assert_err(&src, line_of(&src, "'al ice'"), 5, "user name");
    let src = with_registrar("  domains: [x.example]\n  users:\n    a: { password: '' }\n");
    assert!(err(&src).message.contains("empty password"));
    let src =
        with_registrar("  domains: [x.example]\n  users: { a: { password: p } }\n  open: true\n");
    assert!(
        err(&src).message.contains("open"),
        "unknown keys are errors"
    );
    let src = with_registrar(
        "  domains: [x.example]\n  keepalive: 7200\n  users: { a: { password: p } }\n",
    );
    assert!(err(&src).message.contains("at most 3600"));
    let src = with_registrar("  domains: ['bad domain']\n  users: { a: { password: p } }\n");
    assert!(err(&src).message.contains("registrar domain"));
    let src = with_registrar(
        "  domains: [x.example]\n  users:\n    a: { password: p }\n    a: { password: q }\n",
    );
    assert_eq!(
        err(&src).line,
        line_of(&src, "a: { password: q }"),
        "a repeated user"
    );
}

#[test]
fn mgcp_gateway_trunks() {
    let src = ACC.replace(
        "trunks:\n",
        "trunks:\n  pstn: { address: 127.0.0.1:2427, mgcp: { endpoint: 'aaln/*@gw1' } }\n",
    );
    let c = from_yaml(&src, "t.yaml").unwrap();
    let t = &c.trunks["pstn"];
    assert_eq!(
        t.mgcp.as_ref().map(|m| m.endpoint.as_str()),
        Some("aaln/*@gw1")
    );
    assert_eq!(
        c.trunks.values().filter(|t| t.mgcp.is_none()).count(),
        c.trunks.len() - 1
    );
    for (bad, needle) in [
        (
            "{ address: 127.0.0.1:2427, mgcp: { endpoint: 'no-domain' } }",
            "local@domain",
        ),
        (
            "{ address: 127.0.0.1:2427, transport: tcp, mgcp: { endpoint: 'a@b' } }",
            "over udp",
        ),
        ("{ address: 127.0.0.1:2427, mgcp: { } }", "endpoint"),
    ] {
        let src = ACC.replace("trunks:\n", &format!("trunks:\n  pstn: {bad}\n"));
        assert!(err(&src).message.contains(needle), "{bad}: {}", err(&src));
    }
}

// ---------------------------------------------------------------------------------------------
// limits.tcp, metrics.allow / reload_token

const SEC_BASE: &str = "listen:\n  - { transport: udp, address: 127.0.0.1:5060 }\nmedia:\n  address: 127.0.0.1\n  ports: 20000-20099\n";

#[test]
fn tcp_limits_default_on_and_are_read() {
    let c = from_yaml(SEC_BASE, "t.yaml").unwrap();
    assert_eq!(c.limits.tcp, TcpLimits::default());
    assert_eq!(c.limits.tcp.max_per_source, 64);
    assert_eq!(c.limits.tcp.handshake_timeout, Duration::from_secs(5));
    let y = format!(
        "{SEC_BASE}limits:\n  tcp: {{ max_connections: 100, max_per_source: 4, handshake_timeout: 2, idle_timeout: 30, partial_message_timeout: 3 }}\n"
    );
    let t = from_yaml(&y, "t.yaml").unwrap().limits.tcp;
    assert_eq!(
        (t.max_connections, t.max_per_source, t.idle_timeout),
        (100, 4, Duration::from_secs(30))
    );
    assert_eq!(t.partial_message_timeout, Duration::from_secs(3));
    let y = format!("{SEC_BASE}limits:\n  tcp: {{ max_per_source: 0 }}\n");
    assert_err(&y, 7, 26, "max_per_source");
    let y = format!("{SEC_BASE}limits:\n  tcp: {{ idle_timeout: 0 }}\n");
    assert_err(&y, 7, 24, "idle_timeout must be");
}

#[test]
fn a_non_loopback_admin_listener_needs_an_allow_list() {
    let y = format!("{SEC_BASE}metrics:\n  listen: 0.0.0.0:9464\n");
    assert_err(&y, 7, 11, "not a loopback address");
    let y = format!(
        "{SEC_BASE}metrics:\n  listen: 0.0.0.0:9464\n  allow: [192.0.2.0/24, 10.1.2.3]\n  reload_token: 0123456789abcdef0123\n"
    );
    let m = from_yaml(&y, "t.yaml").unwrap().metrics.unwrap();
    assert!(m.allows("192.0.2.77".parse().unwrap()));
    assert!(m.allows("10.1.2.3".parse().unwrap()));
    assert!(!m.allows("10.1.2.4".parse().unwrap()));
    assert!(
        !m.allows("127.0.0.1".parse().unwrap()),
        "loopback is not implied off loopback"
    );
    assert_eq!(m.reload_token.as_deref(), Some("0123456789abcdef0123"));
    let y = format!("{SEC_BASE}metrics:\n  listen: 0.0.0.0:9464\n  allow: [192.0.2.1/24]\n");
    assert_err(&y, 8, 11, "host bits");
    let y = format!("{SEC_BASE}metrics:\n  listen: 127.0.0.1:9464\n  reload_token: short\n");
    assert_err(&y, 8, 17, "reload_token");
    let lo = from_yaml(
        &format!("{SEC_BASE}metrics:\n  listen: 127.0.0.1:9464\n"),
        "t.yaml",
    )
    .unwrap()
    .metrics
    .unwrap();
    assert!(lo.allows("127.0.0.5".parse().unwrap()));
    assert!(lo.allows("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!lo.allows("192.0.2.1".parse().unwrap()));
}

#[test]
fn failover_from_tls_to_plaintext_is_a_warning() {
    let y = format!(
        "{SEC_BASE}trunks:\n  sec: {{ address: 127.0.0.1:5061, transport: tls }}\n  sec2: {{ address: 127.0.0.1:5062, transport: tls }}\n  plain: {{ address: 127.0.0.1:5070, transport: udp }}\ndialplan:\n  - match: {{ to_user: '^1' }}\n    route: [plain, sec]\n  - match: {{ to_user: '^2' }}\n    route: [sec, sec2]\n  - match: {{ to_user: '^3' }}\n    route: [sec, plain]\n  - match: {{ to_user: '^4' }}\n    route: [sec, plain]\n"
    );
    let c = from_yaml(&y, "t.yaml").unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = c.warnings[0].to_string();
    assert!(
        w.starts_with("t.yaml:16:12: warning: dialplan[2].route: fails over from TLS trunk `sec` to plaintext trunk `plain` (udp)"),
        "{w}"
    );
    assert!(from_yaml(ACC, "t.yaml").unwrap().warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// IPv6 and dual stack

const DUAL: &str = "listen:\n  - { transport: udp, address: 127.0.0.1:5060 }\n  - { transport: udp, address: '[::1]:5060' }\n  - { transport: tcp, address: '[::]:5060' }\nmedia:\n  address: 192.0.2.5\n  address_v6: 2001:db8::5\n  ports: 20000-20099\ntrunks:\n  carrier: { address: '[2001:db8::7]:5060' }\n  pbx: { address: 127.0.0.1:5080 }\ndialplan:\n  - route: [carrier]\n";

#[test]
fn dual_stack_listeners_media_and_trunks() {
    let c = from_yaml(DUAL, "t.yaml").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.listen[1].address, "[::1]:5060".parse().unwrap());
    assert_eq!(c.listen[2].address, "[::]:5060".parse().unwrap());
    assert_eq!(c.media.address_v6, Some("2001:db8::5".parse().unwrap()));
    assert_eq!(
        c.trunks["carrier"].address,
        "[2001:db8::7]:5060".parse().unwrap()
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Each leg gets the relay address of its peer's family (RFC 6157).
    assert_eq!(c.media.address_for(ip("2001:db8::7")), ip("2001:db8::5"));
    assert_eq!(c.media.address_for(ip("192.0.2.9")), ip("192.0.2.5"));
    assert_eq!(c.media.address_for(ip("::ffff:192.0.2.9")), ip("192.0.2.5"));
    assert_eq!(c.media.address_of_family(true), Some(ip("2001:db8::5")));
    // An IPv4-mapped trunk address is the IPv4 trunk.
    let y = DUAL.replace("127.0.0.1:5080", "'[::ffff:127.0.0.1]:5080'");
    let c = from_yaml(&y, "t.yaml").unwrap();
    assert_eq!(c.trunks["pbx"].address, "127.0.0.1:5080".parse().unwrap());
    // IPv6 registrar domains are served as the URI host they appear as.
    let y = format!("{DUAL}registrar:\n  domains: ['2001:DB8::5', '[2001:db8::6]']\n  users: {{ a: {{ password: p }} }}\n");
    let c = from_yaml(&y, "t.yaml").unwrap();
    assert_eq!(
        c.registrar.unwrap().domains,
        ["[2001:db8::5]", "[2001:db8::6]"]
    );
}

#[test]
fn address_v6_is_a_concrete_ipv6_address_beside_an_ipv4_one() {
    assert_err(
        &DUAL.replace("address_v6: 2001:db8::5", "address_v6: 192.0.2.6"),
        7,
        15,
        "not an IPv6 address",
    );
    assert_err(
        &DUAL.replace("address_v6: 2001:db8::5", "address_v6: '::'"),
        7,
        15,
        "concrete IPv6",
    );
    assert_err(
        &DUAL.replace("address_v6: 2001:db8::5", "address_v6: '::ffff:192.0.2.6'"),
        7,
        15,
        "IPv4-mapped",
    );
    assert_err(
        &DUAL.replace("address: 192.0.2.5", "address: 2001:db8::9"),
        7,
        15,
        "media.address is IPv6 already",
    );
    // An IPv6-only relay is fine: every leg gets media.address.
    let y = DUAL.replace(
        "address: 192.0.2.5\n  address_v6: 2001:db8::5",
        "address: 2001:db8::5",
    );
    let c = from_yaml(&y, "t.yaml").unwrap();
    assert_eq!(
        c.media.address_for("192.0.2.9".parse().unwrap()),
        "2001:db8::5".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn a_trunk_of_a_family_without_listener_or_relay_address() {
    // No IPv6 listener: the carrier on IPv6 cannot be reached at all.
    let y = DUAL
        .replace("  - { transport: udp, address: '[::1]:5060' }\n", "")
        .replace("  - { transport: tcp, address: '[::]:5060' }\n", "");
    assert_err(
        &y,
        8,
        23,
        "udp trunk `carrier` is on IPv6 ([2001:db8::7]:5060) but no udp listener is",
    );
    // Over TCP it can be reached (trunkline connects), with a warning.
    let y = y.replace(
        "'[2001:db8::7]:5060' }",
        "'[2001:db8::7]:5060', transport: tcp }",
    );
    let c = from_yaml(&y, "t.yaml").unwrap();
    assert!(
        c.warnings[0]
            .to_string()
            .contains("trunk `carrier` is on IPv6 but no listener is"),
        "{:?}",
        c.warnings
    );
    // No IPv6 relay address: a warning at the trunk, and one at the IPv6 listener.
    let y = DUAL.replace("  address_v6: 2001:db8::5\n", "");
    let c = from_yaml(&y, "t.yaml").unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("t.yaml:9:23: warning: trunk `carrier` is on IPv6 but the relay has no IPv6 address: its SDP names 192.0.2.5; set media.address_v6"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("t.yaml:3:32: warning: listener [::1]:5060 is IPv6"),
        "{w:?}"
    );
    // An MGCP gateway is reached over IPv4.
    let y = DUAL.replace(
        "pbx: { address: 127.0.0.1:5080 }",
        "gw: { address: '[2001:db8::8]:2427', mgcp: { endpoint: 'ds/*@gw' } }",
    );
    assert_err(&y, 11, 18, "an `mgcp` gateway is reached over IPv4");
}
