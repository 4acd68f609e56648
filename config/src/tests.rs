use super::*;

#[test]
fn default_loads() {
    let c = default_config();
    assert_eq!(c.source, "<embedded default>");
    assert_eq!(c.listen.len(), 2);
}

#[test]
fn explore() {
    let acc = include_str!("../../examples/b2bua.yaml");
    let cases = [
        acc.replace("route: [pbx]", "route: [pbx"),
        acc.replace("route: [pbx]", "route: [pbx, nosuch]"),
        acc.replace("route: [pbx]", "route: [nosuch]"),
        acc.replace("backend: auto", "backend: autox"),
        acc.replace("backend: auto", "backnd: auto"),
        acc.replace("ports: 30000-39999", "ports: 30001-39999"),
        acc.replace("'.*'", "'(ab'"),
        acc.replace(
            "transport: udp }\n  - { transport: tcp",
            "transport: udp }\n  - { transport: tcp, adress: x }\n  - { transport: tcp",
        ),
        acc.replace("127.0.0.1:15080", "127.0.0.1:abc"),
        acc.replace(
            "    route: [pbx]",
            "    route: [pbx]\n    reject: { code: 403 }",
        ),
        acc.replace("pbx: {", "pbx: {\n"),
        acc.replace(
            "  - match",
            "  - match: { to_user: x }\n    reject: { code: 99999 }\n  - match",
        ),
        acc.replace("media:\n", ""),
        acc.replace(
            "trunks:\n",
            "trunks:\n  pbx: { address: 127.0.0.1:1, transport: udp }\n",
        ),
        "".to_string(),
        "- a\n- b\n".to_string(),
    ];
    for c in cases {
        match from_yaml(&c, "t.yaml") {
            Ok(_) => println!("OK"),
            Err(e) => println!("{e}"),
        }
    }
}
