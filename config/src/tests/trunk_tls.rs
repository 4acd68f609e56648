use super::*;

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
