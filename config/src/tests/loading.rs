use super::*;

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
    let file = include_str!("../../../examples/default.yaml");
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
