use super::*;

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
