//! SIPp runs (UAC and UAS scenarios from `tests/sipp/`) and their statistics.
// Not every test binary uses every helper here: a test binary starts UACs, UASs or both, and reads the results it needs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Net;
use super::process::{read_lossy, ProcGuard, SpawnGroup as _};

/// The SIPp scenario directory (`tests/sipp/`).
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Fails (never skips) when SIPp is not installed.
pub fn require_sipp() {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "`sipp` is not installed: run scripts/install-deps.sh (Debian package sip-tester)"
    );
}

/// A SIPp command line being built.
pub struct Sipp {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
}

/// What one SIPp run reported.
#[derive(Debug, Clone)]
pub struct SippResult {
    pub name: String,
    /// SIPp's exit code: 0 all calls succeeded, 1 some failed, 97/99 other ends, -1/-2 fatal.
    pub code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    /// Calls a UAS saw arrive (IncomingCall(C)).
    pub incoming: u64,
    pub elapsed: Duration,
    pub timed_out: bool,
    pub errors: String,
    pub output: String,
}

impl SippResult {
    /// Panics with SIPp's own error log unless exactly `n` calls succeeded and none failed.
    pub fn assert_all_ok(&self, n: u64, ctx: &str) {
        assert!(
            !self.timed_out && self.failed == 0 && self.successful == n && self.code == Some(0),
            "{ctx}: SIPp {} expected {n} successful calls, got {} successful / {} failed \
             (exit {:?}, timed out: {}).\nSIPp errors:\n{}\nSIPp output tail:\n{}",
            self.name,
            self.successful,
            self.failed,
            self.code,
            self.timed_out,
            truncate(&self.errors, 6000),
            tail(&self.output, 30)
        );
    }
}

pub fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Sipp {
    /// A UAC running `scenario` (a file in tests/sipp/) against trunkline, `calls` calls at
    /// `rate` per second, each paused `pause_ms` where the scenario pauses. The Call-ID carries
    /// the `uac-` marker that the UAS scenarios refuse to see.
    pub fn uac(net: &Net, name: &str, scenario_file: &str, calls: u32, rate: u32) -> Sipp {
        Sipp::uac_to(net, name, scenario_file, net.sip_addr(), calls, rate)
    }

    /// Like [`Sipp::uac`] against trunkline listening on `target`.
    pub fn uac_to(
        net: &Net,
        name: &str,
        scenario_file: &str,
        target: SocketAddr,
        calls: u32,
        rate: u32,
    ) -> Sipp {
        let mut s = Sipp::base(net, name, scenario_file, net.uac(), net.sipp_media(0));
        s.args.insert(0, target.to_string());
        s.args.extend(
            [
                "-s",
                "1000",
                "-m",
                &calls.to_string(),
                "-r",
                &rate.to_string(),
                "-cid_str",
                "uac-%u-%p@%s",
                "-timeout_error",
                "-recv_timeout",
                "10000",
            ]
            .map(String::from),
        );
        s
    }

    /// A UAS on trunk port `port` (SIPp media on `media`) that ends after `calls` calls.
    pub fn uas(
        net: &Net,
        name: &str,
        scenario_file: &str,
        port: u16,
        media: u16,
        calls: u32,
    ) -> Sipp {
        let mut s = Sipp::base(net, name, scenario_file, port, media);
        s.args.extend(["-m".to_string(), calls.to_string()]);
        s
    }

    fn base(net: &Net, name: &str, scenario_file: &str, port: u16, media: u16) -> Sipp {
        let sf = scenario(scenario_file);
        assert!(sf.exists(), "missing scenario {}", sf.display());
        let args = [
            "-sf",
            &sf.to_string_lossy(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mp",
            &media.to_string(),
            "-nostdin",
            "-timeout",
            "60s",
            "-trace_err",
            "-error_file",
            &net.dir.join(format!("{name}.errors.log")).to_string_lossy(),
            "-trace_stat",
            "-stf",
            &net.dir.join(format!("{name}.stats.csv")).to_string_lossy(),
        ]
        .map(String::from)
        .to_vec();
        Sipp {
            name: name.to_string(),
            dir: net.dir.clone(),
            args,
        }
    }

    /// SIPp's built-in scenario `name` (`uas`, `uac`) in place of the scenario file.
    pub fn builtin(mut self, name: &str) -> Sipp {
        if let Some(i) = self.args.iter().position(|a| a == "-sf") {
            self.args[i] = "-sn".into();
            if let Some(f) = self.args.get_mut(i + 1) {
                *f = name.into();
            }
        }
        self
    }

    /// SIPp's local address (`-i`, 127.0.0.1 unless set): `::1` for a SIPp on IPv6 (its
    /// `[local_ip]` is then `[::1]` and `[media_ip]` `::1`).
    pub fn local_ip(mut self, ip: &str) -> Sipp {
        if let Some(i) = self.args.iter().position(|a| a == "-i") {
            if let Some(v) = self.args.get_mut(i + 1) {
                *v = ip.to_string();
            }
        }
        self
    }

    /// Appends raw SIPp arguments.
    pub fn arg(mut self, a: &str) -> Sipp {
        self.args.push(a.to_string());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Sipp {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    /// The pause length of the scenario's `<pause/>` (ms).
    pub fn pause_ms(self, ms: u32) -> Sipp {
        self.args(&["-d", &ms.to_string()])
    }

    /// Starts SIPp in the background.
    pub fn spawn(self) -> SippRun {
        require_sipp();
        let out = self.dir.join(format!("{}.out", self.name));
        let f = std::fs::File::create(&out).expect("create sipp output");
        let child = Command::new("sipp")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("clone"))
            .stderr(f)
            .spawn_group()
            .expect("spawn sipp");
        SippRun {
            child: Some(child),
            name: self.name,
            dir: self.dir,
            out,
            started: Instant::now(),
        }
    }

    /// Runs SIPp to its end (bounded by `limit`).
    pub fn run(self, limit: Duration) -> SippResult {
        self.spawn().wait(limit)
    }
}

/// A SIPp process; killed on drop.
pub struct SippRun {
    child: Option<ProcGuard>,
    name: String,
    dir: PathBuf,
    out: PathBuf,
    started: Instant,
}

impl SippRun {
    /// Waits for SIPp to end by itself, at most `limit` (then SIGTERM, SIGKILL), and reads
    /// its statistics file.
    pub fn wait(mut self, limit: Duration) -> SippResult {
        let mut child = self.child.take().expect("child");
        let mut timed_out = false;
        let status = match child.wait_timeout(limit) {
            Some(st) => Some(st),
            None => {
                timed_out = true;
                // SIGUSR1 makes SIPp dump its statistics and quit; give it a moment.
                // SAFETY: signalling our own child by its pid.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGUSR1);
                }
                match child.wait_timeout(Duration::from_secs(3)) {
                    Some(st) => Some(st),
                    None => {
                        let _ = child.kill();
                        child.wait().ok()
                    }
                }
            }
        };
        let elapsed = self.started.elapsed();
        let stats = read_stats(&self.dir.join(format!("{}.stats.csv", self.name)));
        let get = |k: &str| {
            stats
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| *v)
                .unwrap_or(0)
        };
        SippResult {
            name: self.name.clone(),
            code: status.and_then(|s| s.code()),
            successful: get("SuccessfulCall(C)"),
            failed: get("FailedCall(C)"),
            incoming: get("IncomingCall(C)"),
            elapsed,
            timed_out,
            errors: std::fs::read_to_string(self.dir.join(format!("{}.errors.log", self.name)))
                .unwrap_or_default(),
            output: read_lossy(&self.out),
        }
    }

    /// Stops a SIPp that is not expected to end by itself (SIGUSR1: dump stats and quit).
    pub fn stop(self) -> SippResult {
        self.wait(Duration::ZERO)
    }
}

impl Drop for SippRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The cumulative counters of the last line of a SIPp `-trace_stat` CSV file.
pub fn read_stats(p: &Path) -> Vec<(String, u64)> {
    let s = read_lossy(p);
    let mut lines = s.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let Some(last) = lines.next_back() else {
        return Vec::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse::<u64>().ok()?)))
        .collect()
}
