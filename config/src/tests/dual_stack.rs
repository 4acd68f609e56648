use super::*;

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
