use super::*;

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
fn offline_messages_and_the_presence_agent() {
    let base = "  domains: [x.example]\n  users: { a: { password: p } }\n";
    let r = from_yaml(&with_registrar(base), "t.yaml")
        .unwrap()
        .registrar
        .unwrap();
    assert_eq!(
        r.offline_messages,
        Some(OfflineMessages::default()),
        "kept by default"
    );
    assert!(
        r.presence_agent,
        "trunkline is the presence agent by default"
    );
    let src = with_registrar(&format!(
        "{base}  offline_messages: {{ per_user: 5, ttl: 60 }}\n  presence: relay\n"
    ));
    let r = from_yaml(&src, "t.yaml").unwrap().registrar.unwrap();
    let o = r.offline_messages.unwrap();
    assert_eq!((o.per_user, o.ttl, o.total), (5, 60, 10_000));
    assert!(!r.presence_agent);
    let src = with_registrar(&format!("{base}  offline_messages: false\n"));
    let r = from_yaml(&src, "t.yaml").unwrap().registrar.unwrap();
    assert_eq!(r.offline_messages, None);
    for (bad, want) in [
        ("offline_messages: { per_user: 0 }", "per_user: at least 1"),
        (
            "offline_messages: { total: 2000000 }",
            "total: 1 to 1000000",
        ),
        ("offline_messages: { max_size: 0 }", "max_size: 1 to 65536"),
        ("offline_messages: { attempts: 0 }", "attempts: at least 1"),
        ("offline_messages: { size: 3 }", "size"),
        ("presence: server", "agent (the default) or relay"),
    ] {
        let src = with_registrar(&format!("{base}  {bad}\n"));
        let e = err(&src);
        assert!(e.message.contains(want), "{bad}: {}", e.message);
        assert_eq!(e.line, line_of(&src, bad), "{bad}");
    }
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
        t.mgcp.as_ref().and_then(|m| m.endpoint.as_deref()),
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

#[test]
fn cluster_section() {
    assert_eq!(
        from_yaml(ACC, "t.yaml").unwrap().cluster,
        None,
        "off by default"
    );
    let src = format!(
        "{ACC}cluster:\n  redis: redis://127.0.0.1:6379/0\n  node: a\n  peers: {{ b: 10.0.0.2:5060 }}\n"
    );
    let c = from_yaml(&src, "t.yaml").unwrap().cluster.unwrap();
    assert_eq!((c.node.as_str(), c.role), ("a", Role::Active));
    assert_eq!(c.peers["b"], "10.0.0.2:5060".parse().unwrap());
    assert_eq!(c.shared_address, None);
    let standby = format!("{ACC}cluster:\n  redis: redis://x\n  node: b\n  role: standby\n  shared_address: 10.0.0.9\n");
    let c = from_yaml(&standby, "t.yaml").unwrap().cluster.unwrap();
    assert_eq!(
        (c.role, c.shared_address),
        (Role::Standby, Some("10.0.0.9".parse().unwrap()))
    );
    for (bad, want) in [
        ("  redis: http://x\n  node: a\n", "a redis:// URL"),
        ("  redis: redis://x\n  node: 'a b'\n", "cluster.node"),
        (
            "  redis: redis://x\n  node: a\n  peers: { a: 10.0.0.1:5060 }\n",
            "no other node",
        ),
        (
            "  redis: redis://x\n  node: a\n  peers: { b: nowhere }\n",
            "cluster.peers.b",
        ),
        ("  redis: redis://x\n  node: a\n  role: leader\n", "role"),
        (
            "  redis: redis://x\n  node: a\n  role: standby\n",
            "set cluster.shared_address",
        ),
        (
            "  redis: redis://x\n  node: a\n  shared_address: 10.0.0.300\n",
            "no IP address",
        ),
    ] {
        let e = err(&format!("{ACC}cluster:\n{bad}"));
        assert!(e.message.contains(want), "{bad}: {}", e.message);
    }
}
