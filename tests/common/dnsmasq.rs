//! dnsmasq as the trunks' name server: NAPTR, SRV, A and AAAA records given per test, served
//! on a loopback port of the test's namespace, restartable with new records (a zone change).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::netns::{wait_udp_bound, Net};
use super::process::{ProcGuard, SpawnGroup};

/// A running dnsmasq (killed on drop).
pub struct Dnsmasq {
    pub addr: SocketAddr,
    log: PathBuf,
    _proc: ProcGuard,
}

/// The binary (Debian's `dnsmasq-base`); a missing one is a test failure.
pub fn dnsmasq_bin() -> &'static str {
    for p in ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"] {
        if std::path::Path::new(p).exists() {
            return p;
        }
    }
    panic!("dnsmasq not found: run scripts/install-deps.sh (package dnsmasq-base)");
}

impl Dnsmasq {
    /// Serves `records` (dnsmasq options such as `--srv-host=...`, `--host-record=...`,
    /// `--naptr-record=...`) on 127.0.0.1:`port` with TTL `ttl` seconds; every other name under
    /// `.test` is NXDOMAIN (nothing is forwarded anywhere).
    pub fn start(net: &Net, port: u16, ttl: u32, records: &[String]) -> Dnsmasq {
        let log = net.dir.join(format!("dnsmasq-{port}.log"));
        let mut cmd = Command::new(dnsmasq_bin());
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--group=root",
            "--pid-file=",
            "--local=/test/",
            "--log-queries",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--local-ttl={ttl}"))
        .arg(format!("--log-facility={}", log.display()))
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let proc = cmd.spawn_group().expect("spawn dnsmasq");
        wait_udp_bound(port, Duration::from_secs(5));
        Dnsmasq {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _proc: proc,
        }
    }

    /// What dnsmasq logged (queries and answers).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
