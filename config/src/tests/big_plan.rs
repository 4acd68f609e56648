use super::*;

// ---------------------------------------------------------------------------------------------
// 100k rules: the indexed lookup agrees with a naive linear regex scan

/// A generated dial plan: `n` prefix rules of assorted shapes, a few generic ones, a catch-all.
pub(super) fn big_plan_yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 64);
    s.push_str(
        "listen: [{ transport: udp, address: 127.0.0.1:5060 }]\nmedia: { address: 127.0.0.1, ports: 20000-29999 }\n\
         trunks:\n  a: { address: 127.0.0.1:5081 }\n  b: { address: 127.0.0.1:5082 }\ndialplan:\n",
    );
    for i in 0..n {
        let pfx = 1_000_000 + i;
        match i % 4 {
            0 => s.push_str(&format!("  - match: {{ to_user: '^\\+?{pfx}\\d{{4}}$' }}\n    route: [a]\n")),
            1 => s.push_str(&format!(
                "  - match: {{ to_user: '^{pfx}(\\d+)$' }}\n    rewrite: {{ to_user: '+{pfx}$1' }}\n    route: [b, a]\n"
            )),
            2 => s.push_str(&format!("  - match: {{ to_user: '^{pfx}' }}\n    route: [b]\n")),
            _ => s.push_str(&format!("  - match: {{ to_user: '^{pfx}[0-4]' }}\n    reject: {{ code: 404 }}\n")),
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

fn samples(n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mid = n / 2;
    for i in [
        0usize,
        1,
        2,
        3,
        4999,
        5000,
        mid,
        mid + 1,
        mid + 2,
        mid + 3,
        n - 4,
        n - 3,
        n - 2,
        n - 1,
    ] {
        let pfx = 1_000_000 + i;
        out.push(format!("{pfx}1234"));
        out.push(format!("+{pfx}1234"));
        out.push(format!("{pfx}9"));
        out.push(format!("{pfx}"));
        out.push(format!("{i}999"));
    }
    out.extend(
        [
            "x1",
            "2",
            "",
            "+",
            "12345678901234567890",
            "99999999",
            "1\u{661}",
        ]
        .map(String::from),
    );
    out
}

/// Differential test against the `regex` crate, rule by rule, in order (regexes compiled on
/// demand and cached, as a naive implementation would).
#[test]
fn plan_matches_a_naive_regex_scan() {
    let n = 12_000;
    let src = big_plan_yaml(n);
    let c = from_yaml(&src, "big.yaml").unwrap();
    let raw: yaml_serde::Value = yaml_serde::from_str(&src).unwrap();
    let pats: Vec<String> = raw["dialplan"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["match"]["to_user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pats.len(), c.dialplan.len());
    let cache: Vec<std::cell::OnceCell<regex::Regex>> =
        (0..pats.len()).map(|_| Default::default()).collect();
    let naive = |to: &str| -> Option<(usize, Option<String>)> {
        let i = (0..pats.len()).find(|&i| {
            cache[i]
                .get_or_init(|| regex::Regex::new(&pats[i]).unwrap())
                .is_match(to)
        })?;
        // rule kind 1 rewrites to '+{pfx}$1' where the pattern is '^{pfx}(\d+)$'
        let re = cache[i].get().unwrap();
        let rw = raw["dialplan"][i]["rewrite"]["to_user"].as_str().map(|t| {
            let caps = re.captures(to).unwrap();
            let mut out = String::new();
            caps.expand(&t.replace("$1", "${1}"), &mut out);
            out
        });
        Some((i, rw))
    };
    for s in samples(n) {
        let got = c.dialplan.lookup(&q(&s)).map(|d| (d.rule_index, d.to_user));
        assert_eq!(got, naive(&s), "to_user {s:?}");
    }
}

/// The full 100k plan: the indexed lookup gives the linear scan's answer, first/middle/last/none.
#[test]
fn big_plan_matches_like_a_linear_scan() {
    let n = 100_000;
    let src = big_plan_yaml(n);
    let c = from_yaml(&src, "big.yaml").unwrap();
    assert!(c.dialplan.len() > n);
    assert!(c.dialplan.indexed_rules() >= n);
    // (a linear scan of 100k rules is slow in a debug build: every third sample, which still
    // covers first, middle, last and no-match; the 12k-rule test above checks them all)
    for s in samples(n).into_iter().step_by(3) {
        let fast = c.dialplan.lookup(&q(&s));
        let linear = c.dialplan.lookup_linear(&q(&s));
        assert_eq!(fast, linear, "to_user {s:?}");
    }
    let idx = |s: &str| c.dialplan.lookup(&q(s)).map(|d| d.rule_index);
    assert_eq!(idx("10000001234"), Some(0));
    let last = c.dialplan.lookup(&q("10999991")).unwrap();
    assert_eq!(last.action, Action::Reject(404, None));
    let d = c.dialplan.lookup(&q("1099997555")).unwrap();
    assert_eq!(d.to_user.as_deref(), Some("+1099997555"));
    assert_eq!(d.action, route(&["b", "a"]));
    assert_eq!(idx("x"), Some(c.dialplan.len() - 1));
    assert_eq!(idx("2"), None);
}
