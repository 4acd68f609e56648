//! Operations helpers (tests/ops_*.rs and others): configurations, the admin HTTP endpoint and
//! its Prometheus exposition, promtool, configuration rewrites.
// Not every test binary uses every helper here: a test binary uses the configuration builders, the metrics readers, or both.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::netns::Net;

/// A trunk entry for [`config_yaml`].
pub struct Trunk<'a> {
    pub name: &'a str,
    pub port: u16,
}

/// A configuration in the shape of the README's configuration: UDP and TCP listeners on the test's
/// SIP port, the given trunks, and one catch-all dial plan rule routing to `route` in order.
pub fn config_yaml(net: &Net, trunks: &[Trunk<'_>], route: &[&str]) -> String {
    config_yaml_rules(net, trunks, &[(".*", route)])
}

/// Like [`config_yaml`] with explicit dial plan rules: `(to_user regex, route)`, first match wins.
pub fn config_yaml_rules(net: &Net, trunks: &[Trunk<'_>], rules: &[(&str, &[&str])]) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "listen:");
    let _ = writeln!(
        y,
        "  - {{ transport: udp, address: 127.0.0.1:{} }}",
        net.sip()
    );
    let _ = writeln!(
        y,
        "  - {{ transport: tcp, address: 127.0.0.1:{} }}",
        net.sip()
    );
    let _ = writeln!(y, "media:");
    let _ = writeln!(y, "  address: 127.0.0.1");
    let _ = writeln!(y, "  ports: {}", net.media_range());
    let _ = writeln!(y, "trunks:");
    for t in trunks {
        let _ = writeln!(
            y,
            "  {}: {{ address: 127.0.0.1:{}, transport: udp }}",
            t.name, t.port
        );
    }
    let _ = writeln!(y, "dialplan:");
    for (re, route) in rules {
        let _ = writeln!(y, "  - match: {{ to_user: '{re}' }}");
        let _ = writeln!(y, "    route: [{}]", route.join(", "));
    }
    y
}

/// [`config_yaml`]'s YAML with `keys` (`refer: handle`, ...) added to trunk `name` at
/// 127.0.0.1:`port`.
pub fn with_trunk_keys(yaml: &str, name: &str, port: u16, keys: &str) -> String {
    let line = format!("{name}: {{ address: 127.0.0.1:{port}, transport: udp");
    assert!(
        yaml.contains(&line),
        "no trunk {name} at {port} in:\n{yaml}"
    );
    yaml.replace(&line, &format!("{line}, {keys}"))
}

impl Net {
    /// trunkline's metrics/admin HTTP port (`metrics.listen`).
    pub fn metrics(&self) -> u16 {
        self.base + 464
    }
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics()))
    }
    /// The configuration file [`Trunkline::start`] writes and trunkline watches.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("trunkline.yaml")
    }
}

/// `yaml` with a `metrics:` section listening on [`Net::metrics`] (and any `extra` top-level
/// YAML appended, e.g. `shutdown:`).
pub fn with_metrics(net: &Net, yaml: &str, extra: &str) -> String {
    format!(
        "{yaml}metrics:\n  listen: 127.0.0.1:{}\n{extra}",
        net.metrics()
    )
}

/// Replaces the configuration file atomically (temporary file + rename, as careful operators
/// and config managers do). With `keep_mtime`, the new file carries the old file's modification
/// time, as a second save within one timestamp tick of a coarse file system would.
pub fn replace_config(net: &Net, yaml: &str, keep_mtime: bool) {
    let path = net.config_path();
    let old = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let tmp = net.dir.join("trunkline.yaml.tmp");
    std::fs::write(&tmp, yaml).expect("write the new configuration");
    if keep_mtime {
        let t = old.expect("old configuration's mtime");
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(t))
            .expect("set mtime");
    }
    std::fs::rename(&tmp, &path).expect("rename over the configuration");
}

/// One HTTP/1.1 request to `addr` (Connection: close); returns the status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (code, body.to_string())
}

/// `GET /metrics`, asserting 200.
pub fn scrape(net: &Net) -> String {
    let (code, body) = http(net.metrics_addr(), "GET", "/metrics");
    assert_eq!(code, 200, "GET /metrics: {body}");
    body
}

/// One sample of a Prometheus text exposition: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// The samples of a Prometheus text exposition (comments skipped).
pub fn samples(body: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((n, rest)) => {
                let rest = rest.trim_end_matches('}');
                let labels = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| {
                        let (k, v) = p.split_once('=')?;
                        Some((k.to_string(), v.trim_matches('"').to_string()))
                    })
                    .collect();
                (n, labels)
            }
        };
        out.push((name.to_string(), labels, v));
    }
    out
}

/// The sum of every sample named `name` whose labels include all of `labels` (None if none).
pub fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for (n, ls, v) in samples(body) {
        if n == name
            && labels
                .iter()
                .all(|(k, want)| ls.iter().any(|(lk, lv)| lk == k && lv == want))
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// Fails (never skips) when `promtool` is not installed.
pub fn require_promtool() {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`promtool` is not installed: run scripts/install-deps.sh (Debian package prometheus)"
    );
}

/// `promtool check metrics` over an exposition; panics with promtool's findings if it refuses.
pub fn promtool_check(exposition: &str) {
    use std::io::Write;
    require_promtool();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
