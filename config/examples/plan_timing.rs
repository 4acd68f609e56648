//! Load-time and lookup-time of a generated N-rule dial plan, without criterion:
//! `cargo run --release -p trunkline-config --example plan_timing -- 100000`
//! (the criterion bench is `cargo bench --bench dialplan` at the workspace root).

use std::time::Instant;

use config::{from_yaml, RouteQuery};

fn plan_yaml(n: usize, general: bool) -> String {
    let mut s = String::with_capacity(n * 64);
    s.push_str(
        "listen: [{ transport: udp, address: 127.0.0.1:5060 }]\nmedia: { address: 127.0.0.1, ports: 20000-29999 }\n\
         trunks:\n  a: { address: 127.0.0.1:5081 }\n  b: { address: 127.0.0.1:5082 }\ndialplan:\n",
    );
    for i in 0..n {
        let pfx = 1_000_000 + i;
        if general {
            // outside the fast subset: alternation, non-capturing group, \w
            s.push_str(&format!(
                "  - match: {{ to_user: '^(?:{pfx}|00{pfx})(\\w*)$' }}\n    route: [a]\n"
            ));
            continue;
        }
        match i % 4 {
            0 => s.push_str(&format!("  - match: {{ to_user: '^\\+?{pfx}\\d{{4}}$' }}\n    route: [a]\n")),
            1 => s.push_str(&format!(
                "  - match: {{ to_user: '^{pfx}(\\d+)$' }}\n    rewrite: {{ to_user: '+{pfx}$1' }}\n    route: [b, a]\n"
            )),
            2 => s.push_str(&format!("  - match: {{ to_user: '^{pfx}' }}\n    route: [b]\n")),
            _ => s.push_str(&format!("  - match: {{ to_user: '^{pfx}[0-4]' }}\n    reject: {{ code: 404 }}\n")),
        }
    }
    s.push_str("  - match: { to_user: '.*' }\n    route: [a]\n");
    s
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let general = std::env::args().nth(2).as_deref() == Some("general");
    let src = plan_yaml(n, general);
    if let Ok(k) = std::env::var("PLAN_TIMING_LOOP") {
        // for profilers: just load it k times
        for _ in 0..k.parse().unwrap_or(1) {
            drop(std::hint::black_box(
                from_yaml(&src, "gen.yaml").expect("config"),
            ));
        }
        return;
    }
    let t = Instant::now();
    let n_parsed = config::parse_only(&src).expect("parse");
    let t_parse = t.elapsed();
    assert!(n_parsed >= n);
    let t = Instant::now();
    let cfg = from_yaml(&src, "gen.yaml").expect("config");
    let t_total = t.elapsed();
    let t = Instant::now();
    let v: yaml_serde::Value = yaml_serde::from_str(&src).expect("yaml");
    let t_value = t.elapsed();
    drop(v);
    println!(
        "{n} rules, {} bytes of YAML: from_yaml {:?} = parse {:?} + validate/compile/index {:?} \
         (for comparison, yaml_serde::Value of the whole text: {:?})",
        src.len(),
        t_total,
        t_parse,
        t_total.saturating_sub(t_parse),
        t_value
    );
    for (what, to) in [
        ("first", "10000001234".to_string()),
        ("first-00", "0010000001234".to_string()),
        ("middle", format!("{}1234", 1_000_000 + n / 2)),
        ("last", format!("{}1", 1_000_000 + n - 1)),
        ("catch-all", "x".to_string()),
    ] {
        let q = RouteQuery {
            to_user: &to,
            from_user: "a",
            request_uri: "sip:a@b",
            source_trunk: None,
            source_ip: None,
            pai_user: None,
            diversion_user: None,
        };
        let iters = 200_000;
        let t = Instant::now();
        let mut hit = 0;
        for _ in 0..iters {
            hit += cfg
                .dialplan
                .lookup(std::hint::black_box(&q))
                .map(|d| d.rule_index)
                .unwrap_or(0);
        }
        println!(
            "lookup {what:9}: {:?} per lookup (rule {})",
            t.elapsed() / iters,
            hit / iters as usize
        );
    }
}
