//! Operations: the files operators install (issue 4, "What to build" 6).
//! - `deploy/grafana-dashboard.json` is valid JSON in Grafana's dashboard shape, and every
//!   metric its PromQL names exists in a live `/metrics` scrape of trunkline after real calls
//!   (so the dashboard cannot drift from src/metrics.rs); `rate()`/`increase()` only over
//!   counters and histogram series.
//! - `deploy/trunkline.service` has the directives operations rely on and passes
//!   `systemd-analyze verify`.
//!
//! (The shipped `examples/*.yaml` passing `trunkline check` is tests/cli_check.rs.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

// ---------------------------------------------------------------------------------------------
// A small JSON reader (RFC 8259), enough to walk the dashboard; no JSON crate in the tree.

#[derive(Debug, Clone)]
#[allow(dead_code)] // values the dashboard checks do not read are still parsed and kept
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    fn num(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }
    /// Every string value stored under key `key`, anywhere in the tree.
    fn strings_under(&self, key: &str, out: &mut Vec<String>) {
        match self {
            Json::Obj(m) => {
                for (k, v) in m {
                    if k == key {
                        if let Json::Str(s) = v {
                            out.push(s.clone());
                        }
                    }
                    v.strings_under(key, out);
                }
            }
            Json::Arr(a) => a.iter().for_each(|v| v.strings_under(key, out)),
            _ => {}
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn lit(&mut self, s: &str, v: Json) -> Result<Json, String> {
        if self.b[self.i..].starts_with(s.as_bytes()) {
            self.i += s.len();
            Ok(v)
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    if m.iter().any(|(n, _)| *n == k) {
                        return Err(format!("duplicate key {k:?} at byte {}", self.i));
                    }
                    self.eat(b':')?;
                    let v = self.value()?;
                    m.push((k, v));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
                s.parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {s:?}"))
            }
            _ => Err(format!("unexpected byte at {}", self.i)),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at byte {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return Err("unterminated escape".into());
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).ok_or("short \\u")?;
                            let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                            let cp = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            self.i += 4;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    }
                }
                c if c < 0x20 => return Err(format!("control character at byte {}", self.i)),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

fn dashboard() -> Json {
    let p = repo("deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(&p).expect("deploy/grafana-dashboard.json");
    Parser::parse(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()))
}

/// Every PromQL text of the dashboard: panel targets, annotations, template variable queries.
fn promql(d: &Json) -> Vec<String> {
    let mut out = Vec::new();
    d.strings_under("expr", &mut out);
    if let Some(t) = d.get("templating") {
        t.strings_under("query", &mut out);
        t.strings_under("definition", &mut out);
    }
    out
}

/// The `trunkline_...` metric names in a PromQL text, each with whether it is the direct
/// argument of `rate(` or `increase(`.
fn metric_names(expr: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(off) = expr[i..].find("trunkline_") {
        let start = i + off;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b':')
        {
            end += 1;
        }
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if boundary {
            let before = expr[..start].trim_end();
            let rated = before.ends_with("rate(") || before.ends_with("increase(");
            out.push((expr[start..end].to_string(), rated));
        }
        i = end;
    }
    out
}

/// The shape Grafana imports: title, uid, panels with unique ids, non-overlapping grid
/// positions, and a PromQL target on every panel that is not a row.
#[test]
fn dashboard_is_a_grafana_dashboard() {
    let d = dashboard();
    assert!(d
        .get("title")
        .and_then(Json::str)
        .is_some_and(|t| !t.is_empty()));
    assert!(d
        .get("uid")
        .and_then(Json::str)
        .is_some_and(|u| u.len() <= 40));
    assert!(d.get("schemaVersion").and_then(Json::num).is_some());
    let panels = d.get("panels").expect("panels").arr();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(i64, i64), String> = BTreeMap::new();
    for p in panels {
        let title = p.get("title").and_then(Json::str).expect("panel title");
        let id = p.get("id").and_then(Json::num).expect("panel id") as i64;
        assert!(ids.insert(id), "panel id {id} used twice");
        let g = p.get("gridPos").expect("gridPos");
        let n = |k| g.get(k).and_then(Json::num).expect("gridPos field") as i64;
        let (x, y, w, h) = (n("x"), n("y"), n("w"), n("h"));
        assert!(x >= 0 && w > 0 && x + w <= 24, "{title}: x {x} w {w}");
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.to_string()) {
                    panic!("panels `{other}` and `{title}` overlap at ({cx}, {cy})");
                }
            }
        }
        if p.get("type").and_then(Json::str) == Some("row") {
            continue;
        }
        let targets = p.get("targets").expect("targets").arr();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let e = t.get("expr").and_then(Json::str).unwrap_or("");
            assert!(e.contains("trunkline_"), "{title}: query {e:?}");
            assert!(
                e.contains("instance=~\"$instance\""),
                "{title}: query does not follow the instance selector: {e}"
            );
        }
        let ds = p
            .get("datasource")
            .and_then(|d| d.get("uid"))
            .and_then(Json::str);
        assert_eq!(ds, Some("${datasource}"), "{title}: data source");
    }
    // The panels are there.
    let all = promql(&d).join("\n");
    for must in [
        "trunkline_calls_total",
        "trunkline_active_calls",
        "trunkline_post_dial_delay_seconds_bucket",
        "trunkline_sip_messages_received_total",
        "trunkline_sip_retransmissions_total",
        "trunkline_sip_requests_rejected_total",
        "trunkline_relay_packets_forwarded_total",
        "trunkline_relay_dropped_packets_total",
        "trunkline_relay_mos_bucket",
        "trunkline_relay_jitter_seconds_bucket",
        "trunkline_relay_loss_ratio_bucket",
        "trunkline_relay_backend_info",
        "trunkline_config_reloads_total",
        "trunkline_config_generation",
    ] {
        assert!(all.contains(must), "no panel uses {must}");
    }
}

/// Every metric the dashboard queries exists in a live scrape (after calls and a rejection,
/// so labelled series exist), and rate()/increase() only ever take counters or histogram
/// series.
#[test]
fn dashboard_metrics_exist_in_live_scrape() {
    isolated("dashboard_metrics_exist_in_live_scrape", false, |net| {
        let t = [Trunk {
            name: "pbx",
            port: net.trunk(0),
        }];
        let yaml = config_yaml(net, &t, &["pbx"])
            .replace(
                "dialplan:\n",
                "dialplan:\n  - match: { to_user: '^911$' }\n    reject: { code: 403 }\n",
            )
            .replace(
                "transport: udp }",
                "transport: udp, max_calls: 100, max_cps: 100, probe: { interval: 30 } }",
            )
            // A carrier to register with (nothing answers: the attempt is counted all the same).
            .replace(
                "trunks:\n",
                &format!(
                    "trunks:\n  carrier: {{ address: 127.0.0.1:{}, register: {{ user: sbc, domain: example.com }} }}\n",
                    net.closed()
                ),
            );
        assert!(
            yaml.contains("max_cps: 100") && yaml.contains("register:"),
            "{yaml}"
        );
        let mut tl = Trunkline::start(net, &with_metrics(net, &yaml, ""));
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            3,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        Sipp::uac(net, "uac", "uac_basic.xml", 3, 10)
            .pause_ms(100)
            .run(Duration::from_secs(30))
            .assert_all_ok(3, "uac");
        callee.wait(Duration::from_secs(10)).assert_all_ok(3, "uas");
        let r = invite_once(net.sip_addr(), "911", Duration::from_secs(5)).expect("answer");
        assert_eq!(status_code(r.as_bytes()), Some(403));
        tl.assert_alive();
        let body = scrape(net);

        // Family types from the exposition's # TYPE lines.
        let mut types = BTreeMap::new();
        for l in body.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(n), Some(t)) = (it.next(), it.next()) {
                    types.insert(n.to_string(), t.to_string());
                }
            }
        }
        let names: BTreeSet<String> = samples(&body).into_iter().map(|s| s.0).collect();
        let d = dashboard();
        let exprs = promql(&d);
        let mut checked = BTreeSet::new();
        for e in &exprs {
            for (name, rated) in metric_names(e) {
                assert!(
                    names.contains(&name),
                    "the dashboard queries {name}, which /metrics does not export\n\
                     (query: {e})\n/metrics:\n{body}"
                );
                if rated {
                    let family = name
                        .strip_suffix("_bucket")
                        .or_else(|| name.strip_suffix("_sum"))
                        .or_else(|| name.strip_suffix("_count"))
                        .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
                        .unwrap_or(&name);
                    let ty = types.get(family).map(String::as_str);
                    assert!(
                        matches!(ty, Some("counter" | "histogram")),
                        "rate()/increase() over {name}, a {ty:?}: {e}"
                    );
                }
                checked.insert(name);
            }
        }
        eprintln!(
            "{} queries, {} distinct metric names, all present in /metrics",
            exprs.len(),
            checked.len()
        );
        assert!(checked.len() >= 20, "only {} names checked", checked.len());
    });
}

#[test]
fn metric_name_extraction() {
    let v = metric_names(
        "histogram_quantile(0.5, sum by (le) (rate(trunkline_a_bucket{x=\"1\"}[5m]))) / \
         trunkline_b + my_trunkline_c",
    );
    assert_eq!(
        v,
        vec![
            ("trunkline_a_bucket".to_string(), true),
            ("trunkline_b".to_string(), false)
        ]
    );
    assert!(Parser::parse("{\"a\": [1, 2.5e3, \"x\\u00e9\\n\", true, null]}").is_ok());
    for bad in [
        "{\"a\": 1,}",
        "[1 2]",
        "{\"a\": 1, \"a\": 2}",
        "\"\u{1}\"",
        "{} x",
    ] {
        assert!(Parser::parse(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// systemd unit

fn unit() -> String {
    std::fs::read_to_string(repo("deploy/trunkline.service")).expect("deploy/trunkline.service")
}

/// `Key=value` settings of the unit (the last one of a key wins, as in systemd; list-valued
/// keys are joined).
fn settings(u: &str) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    for l in u.lines() {
        let l = l.trim();
        if l.starts_with('#') || l.starts_with('[') || l.is_empty() {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let e = m.entry(k.to_string()).or_default();
            if !e.is_empty() {
                e.push(' ');
            }
            e.push_str(v);
        }
    }
    m
}

#[test]
fn systemd_unit_has_the_operations_settings() {
    let s = settings(&unit());
    let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
    assert_eq!(
        get("ExecStart"),
        "/usr/local/bin/trunkline run --config /etc/trunkline/trunkline.yaml"
    );
    assert_eq!(get("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(get("KillSignal"), "SIGTERM");
    assert_eq!(get("Type"), "simple");
    assert_eq!(get("Restart"), "on-failure");
    assert!(get("DynamicUser") == "yes" || !get("User").is_empty());
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("ProtectSystem"), "strict");
    assert_eq!(get("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    let nofile: u64 = get("LimitNOFILE").parse().expect("LimitNOFILE is a number");
    assert!(nofile >= 65536, "LimitNOFILE {nofile}");
    // The stop timeout outlasts the default drain and every shipped example's drain.
    let stop: u64 = get("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    let mut drains = vec![30u64];
    for e in std::fs::read_dir(repo("examples")).expect("examples/") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let c = config::load_file(&p).unwrap_or_else(|e| panic!("{e}"));
            drains.push(c.shutdown.drain.as_secs());
        }
    }
    let max = drains.iter().max().copied().unwrap_or(30);
    assert!(stop > max + 5, "TimeoutStopSec {stop} vs drain {max}");
}

/// `systemd-analyze verify` accepts the unit (with ExecStart pointing at the binary under test,
/// since verify checks that the program exists).
#[test]
fn systemd_unit_verifies() {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`systemd-analyze` is not installed: run scripts/install-deps.sh (Debian package systemd)"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let f = dir.join("trunkline.service");
    std::fs::write(
        &f,
        unit().replace("/usr/local/bin/trunkline", trunkline_bin()),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&f)
        .output()
        .expect("systemd-analyze verify");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("trunkline.service"),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&dir);
}
