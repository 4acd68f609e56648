//! The scripted MGCP residential gateway `mgcp-gw-sim` (`tools/mgcp-gw-sim.rs`, built as an
//! example of this package by `cargo test`), its event lines read as they come.
// Not every test binary uses every helper here.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::{poll_until, ProcGuard, SpawnGroup as _};

/// A running simulator; killed on drop.
pub struct GwSim {
    _child: ProcGuard,
    lines: Arc<Mutex<Vec<String>>>,
}

/// The simulator binary next to the binary under test (fails, never skips, when missing).
pub fn sim_bin() -> PathBuf {
    let tl = PathBuf::from(super::process::trunkline_bin());
    let p = tl
        .parent()
        .expect("target dir")
        .join("examples/mgcp-gw-sim");
    assert!(
        p.exists(),
        "{} is missing: `cargo test` builds it (cargo build --example mgcp-gw-sim)",
        p.display()
    );
    p
}

impl GwSim {
    pub fn start(args: &[&str]) -> GwSim {
        let mut child = Command::new(sim_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn_group()
            .expect("spawn mgcp-gw-sim");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let sim = GwSim {
            _child: child,
            lines,
        };
        sim.wait_for("ready", Duration::from_secs(5));
        sim
    }

    /// The first event line starting with `prefix` (waiting up to `limit`), or a panic with
    /// everything the simulator said.
    pub fn wait_for(&self, prefix: &str, limit: Duration) -> String {
        self.wait_nth(prefix, 1, limit)
    }

    /// The `n`-th event line starting with `prefix`.
    pub fn wait_nth(&self, prefix: &str, n: usize, limit: Duration) -> String {
        let mut found = None;
        poll_until(Instant::now() + limit, Duration::from_millis(10), || {
            found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with(prefix))
                .nth(n - 1)
                .cloned();
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "mgcp-gw-sim: no `{prefix}` #{n} within {limit:?}; it said:\n{}",
                self.said()
            )
        })
    }

    pub fn said(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// `key=value` of a simulator event line.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}
