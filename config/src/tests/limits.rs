use super::*;

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
