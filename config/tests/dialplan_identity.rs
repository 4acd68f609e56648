//! Dial-plan rules on who the caller claims to be besides its From: `match.pai_user` (the
//! P-Asserted-Identity that crossed), `match.diversion_user` (the first Diversion), and
//! `rewrite.from_display`, in the small (yaml_serde) and the big-plan (fastyaml) reader alike.

use config::{from_yaml, Action, RouteQuery};

const HEAD: &str = concat!(
    "listen:\n  - { transport: udp, address: 127.0.0.1:5060 }\n",
    "media: { address: 127.0.0.1, ports: 20000-20999 }\n",
    "trunks:\n  a: { address: 127.0.0.1:5080 }\n  b: { address: 127.0.0.1:5090 }\n",
    "  c: { address: 127.0.0.1:5100 }\n",
    "dialplan:\n",
);

const RULES: &str = concat!(
    "  - { match: { to_user: '^1', pai_user: '^\\+1(\\d{3})' }, ",
    "rewrite: { from_user: 'n$1', from_display: 'Area $1' }, route: [a] }\n",
    "  - { match: { to_user: '^1', diversion_user: '^2000$' }, route: [b] }\n",
    "  - { match: { to_user: '^1' }, route: [c] }\n",
);

fn q<'a>(pai: Option<&'a str>, div: Option<&'a str>) -> RouteQuery<'a> {
    RouteQuery {
        to_user: "1555",
        from_user: "alice",
        request_uri: "sip:1555@h",
        source_trunk: None,
        source_ip: None,
        pai_user: pai,
        diversion_user: div,
    }
}

fn check(src: &str) {
    let c = from_yaml(src, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let route = |d: &config::Decision| match &d.action {
        Action::Route(r) => r[0].clone(),
        other => panic!("{other:?}"),
    };
    let d = c
        .dialplan
        .lookup(&q(Some("+1212555"), None))
        .expect("match");
    assert_eq!(route(&d), "a");
    assert_eq!(d.from_user.as_deref(), Some("n212"), "the PAI's captures");
    assert_eq!(d.from_display.as_deref(), Some("Area 212"));
    let d = c
        .dialplan
        .lookup(&q(Some("alice"), Some("2000")))
        .expect("match");
    assert_eq!(route(&d), "b");
    assert_eq!(d.from_display, None);
    // No such header: the keys on it match nothing.
    assert_eq!(
        route(&c.dialplan.lookup(&q(None, None)).expect("match")),
        "c"
    );
}

#[test]
fn pai_and_diversion_match_and_from_display_rewrites() {
    check(&format!("{HEAD}{RULES}"));
}

#[test]
fn the_big_plan_reader_reads_them_alike() {
    // Over 64 KiB of plan: the fast reader's path.
    let mut filler = String::new();
    let mut i = 0;
    while filler.len() < 80 * 1024 {
        filler.push_str(&format!(
            "  - {{ match: {{ to_user: '^9{i:07}$' }}, route: [c] }}\n"
        ));
        i += 1;
    }
    check(&format!("{HEAD}{RULES}{filler}"));
}

#[test]
fn a_display_name_with_a_quote_is_refused() {
    let src = format!(
        "{HEAD}  - {{ match: {{ to_user: '^1' }}, rewrite: {{ from_display: 'a\"b' }}, route: [a] }}\n"
    );
    let e = from_yaml(&src, "t.yaml").expect_err("quote");
    assert!(e.to_string().contains("from_display"), "{e}");
    let src = format!("{HEAD}  - {{ match: {{ pai_user: '(' }}, route: [a] }}\n");
    let e = from_yaml(&src, "t.yaml").expect_err("bad regex");
    assert!(e.to_string().contains("pai_user"), "{e}");
}

#[test]
fn a_locate_rule_rewrites_the_user_looked_up() {
    let rule = "  - { match: { to_user: '^0(\\d{8})$' }, rewrite: { to_user: '+5548$1' }, locate: true }\n";
    let e = from_yaml(&format!("{HEAD}{rule}"), "t.yaml").expect_err("no registrar");
    assert!(e.to_string().contains("needs `registrar:`"), "{e}");
    let registrar =
        "registrar:\n  domains: [example.com]\n  users: { alice: { password: s3cret } }\n";
    let c =
        from_yaml(&format!("{registrar}{HEAD}{rule}"), "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let mut query = q(None, None);
    query.to_user = "045678901";
    let d = c.dialplan.lookup(&query).expect("match");
    assert_eq!(d.action, Action::Locate);
    assert_eq!(d.to_user.as_deref(), Some("+554845678901"));
    for (bad, says) in [
        ("locate: true, route: [a]", "exactly one action"),
        ("locate: false", "exactly one action"),
        (
            "rewrite: { from_user: x }, locate: true",
            "rewrites `to_user` only",
        ),
    ] {
        let src = format!("{HEAD}  - {{ match: {{ to_user: '^0' }}, {bad} }}\n");
        let e = from_yaml(&src, "t.yaml").expect_err(bad);
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}
