use super::*;

// ---------------------------------------------------------------------------------------------
// Dial plan semantics

pub(super) fn plan(rules: &str) -> Config {
    let src = format!(
        "listen: [{{ transport: udp, address: 127.0.0.1:5060 }}]\nmedia: {{ address: 127.0.0.1, ports: 20000-20999 }}\n\
         trunks:\n  a: {{ address: 127.0.0.1:5081 }}\n  b: {{ address: 127.0.0.1:5082 }}\n  c: {{ address: 127.0.0.1:5083 }}\n\
         dialplan:\n{rules}"
    );
    from_yaml(&src, "plan.yaml").unwrap_or_else(|e| panic!("{e}\n{src}"))
}

pub(super) fn route(names: &[&str]) -> Action {
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
