//! osmo-mgw, the real MGCP media gateway the MGCP tests drive.
// Only the MGCP test binaries use it.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Net;
use super::process::{poll_until, ProcGuard, SpawnGroup as _, Trunkline};

/// The port osmo-mgw listens on for MGCP (RFC 3435's 2427).
pub const MGW_PORT: u16 = 2427;

/// osmo-mgw's process group, killed on drop.
pub struct Mgw(#[allow(dead_code)] ProcGuard);

/// Start osmo-mgw on 127.0.0.1:[`MGW_PORT`] (8 endpoints, RTP on 40000-40999), its log in
/// the test's directory; a missing osmo-mgw fails the test.
pub fn start_mgw(net: &Net) -> Mgw {
    let cfg = net.dir.join("osmo-mgw.cfg");
    std::fs::write(
        &cfg,
        [
            "log stderr",
            " logging filter all 1",
            " logging color 0",
            " logging level set-all notice",
            "line vty",
            " bind 127.0.0.1",
            "ctrl",
            " bind 127.0.0.1",
            "mgcp",
            " domain mgw",
            " bind ip 127.0.0.1",
            &format!(" bind port {MGW_PORT}"),
            " rtp bind-ip 127.0.0.1",
            " no rtp ip-probing",
            " rtp port-range 40000 40999",
            " number endpoints 8",
            " force-realloc 0",
            "",
        ]
        .join("\n"),
    )
    .expect("write osmo-mgw.cfg");
    let log = std::fs::File::create(net.dir.join("osmo-mgw.log")).expect("log file");
    let child = Command::new("osmo-mgw")
        .arg("-c")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn_group()
        .expect("osmo-mgw is not installed: run scripts/install-deps.sh (Debian package osmo-mgw)");
    Mgw(child)
}

/// The packets osmo-mgw says it received on the connection trunkline deleted last: the
/// `packets_received=` of trunkline's "mgcp: connection deleted" log line (the DLCX answer's
/// counters), waited for up to `limit`.
pub fn dlcx_packets_received(tl: &Trunkline, limit: Duration) -> Option<u64> {
    let mut received = None;
    poll_until(Instant::now() + limit, Duration::from_millis(50), || {
        let log = strip_ansi(&tl.log_text());
        received = log.lines().rev().find_map(|l| {
            l.contains("mgcp: connection deleted")
                .then(|| {
                    l.split("packets_received=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .flatten()
        });
        received.is_some()
    });
    received
}

/// `s` without terminal colour codes (trunkline's log).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
