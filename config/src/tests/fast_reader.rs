use super::*;

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
        "../../../examples/carrier-pbx.yaml"
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
