//! Dial-plan benches (criterion): building a 100k-rule plan from YAML, and looking up the
//! first, middle and last rule, the catch-all and a number that matches nothing.
//!
//! `cargo bench --bench dialplan -- --warm-up-time 1 --measurement-time 3`
//!
//! Built with the binary's allocator (mimalloc). `from_yaml` is the whole load as a reload does
//! it (the dial plan read and compiled on one thread per core); `yaml_parse_only` is the
//! single-threaded reading alone, for comparison.
//!
//! The plan is generated here: 100k prefix rules in four shapes (`^\+?PFX\d{4}$`,
//! `^PFX(\d+)$` with a rewrite, `^PFX`, `^PFX[0-4]` -> reject) plus one generic rule every
//! 10k (`N999$`, not indexable) and a final catch-all.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use config::{from_yaml, Action, RouteQuery};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const RULES: usize = 100_000;

fn plan_yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 70);
    s.push_str(
        "listen: [{ transport: udp, address: 127.0.0.1:5060 }]\n\
         media: { address: 127.0.0.1, ports: 20000-29999 }\n\
         trunks:\n  a: { address: 127.0.0.1:5081 }\n  b: { address: 127.0.0.1:5082 }\n\
         dialplan:\n",
    );
    for i in 0..n {
        let pfx = 1_000_000 + i;
        match i % 4 {
            0 => s.push_str(&format!(
                "  - match: {{ to_user: '^\\+?{pfx}\\d{{4}}$' }}\n    route: [a]\n"
            )),
            1 => s.push_str(&format!(
                "  - match: {{ to_user: '^{pfx}(\\d+)$' }}\n    rewrite: {{ to_user: '+{pfx}$1' }}\n    route: [b, a]\n"
            )),
            2 => s.push_str(&format!("  - match: {{ to_user: '^{pfx}' }}\n    route: [b]\n")),
            _ => s.push_str(&format!(
                "  - match: {{ to_user: '^{pfx}[0-4]' }}\n    reject: {{ code: 404 }}\n"
            )),
        }
        if i % 10_000 == 5_000 {
            s.push_str(&format!(
                "  - match: {{ to_user: '{i}999$' }}\n    route: [a]\n"
            ));
        }
    }
    s.push_str("  - match: { to_user: '^x' }\n    route: [a]\n");
    s
}

fn query(to_user: &str) -> RouteQuery<'_> {
    RouteQuery {
        to_user,
        from_user: "1001",
        request_uri: "sip:x@127.0.0.1",
        source_trunk: None,
        source_ip: None,
        pai_user: None,
        diversion_user: None,
    }
}

fn bench(c: &mut Criterion) {
    let src = plan_yaml(RULES);
    let cfg = from_yaml(&src, "bench.yaml").expect("generated plan loads");

    // Sanity: each query hits the rule it is named after.
    let cases: [(&str, String, Option<usize>); 5] = [
        ("first", "10000001234".into(), Some(0)),
        ("middle", format!("{}1234", 1_000_000 + RULES / 2), None),
        ("last", format!("{}1", 1_000_000 + RULES - 1), None),
        ("catch_all", "x42".into(), Some(cfg.dialplan.len() - 1)),
        ("no_match", "2125551234".into(), None),
    ];
    for (name, to, want) in &cases {
        let d = cfg.dialplan.lookup(&query(to));
        assert_eq!(
            d.as_ref().map(|d| d.rule_index),
            cfg.dialplan.lookup_linear(&query(to)).map(|d| d.rule_index),
            "{name}"
        );
        if want.is_some() {
            assert_eq!(d.as_ref().map(|d| d.rule_index), *want, "{name}");
        }
    }
    let last = cfg.dialplan.lookup(&query(&cases[2].1)).expect("last");
    assert_eq!(last.action, Action::Reject(404, None));
    assert!(last.rule_index + 2 >= cfg.dialplan.len());
    assert!(cfg.dialplan.lookup(&query(&cases[4].1)).is_none());

    let mut g = c.benchmark_group("dialplan_lookup_100k");
    for (name, to, _) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| cfg.dialplan.lookup(black_box(&query(to))))
        });
    }
    // The linear scan, for comparison (what trying every rule in turn costs).
    g.bench_function("last_linear_scan", |b| {
        b.iter(|| cfg.dialplan.lookup_linear(black_box(&query(&cases[2].1))))
    });
    g.finish();

    let mut g = c.benchmark_group("dialplan_build_100k");
    g.sample_size(10);
    g.bench_function("from_yaml", |b| {
        b.iter_batched(
            || (),
            |_| from_yaml(black_box(&src), "bench.yaml").expect("loads"),
            BatchSize::PerIteration,
        )
    });
    // the YAML -> serde step alone (yaml_serde); from_yaml minus this = validate + compile + index
    g.bench_function("yaml_parse_only", |b| {
        b.iter(|| config::parse_only(black_box(&src)).expect("parses"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
