//! Kamailio as a test peer: check it is installed, start it from one of `tests/peers/`'s
//! configurations in the test's directory (its process group stopped when the guard drops), and
//! ask it things over its control socket (`kamcmd`).
// Only the Kamailio interop test binaries use it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::netns::{wait_udp_bound, Net};
use super::process::{ProcGuard, SpawnGroup};

pub fn require_kamailio() {
    let ok = Command::new("/usr/sbin/kamailio")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "kamailio is not installed: run `bash scripts/install-deps.sh` (Debian package kamailio)"
    );
}

/// Kamailio's process group: SIGTERM stops it and its children (5 s), then SIGKILL to all.
pub struct Kamailio {
    pub guard: ProcGuard,
    pub log: PathBuf,
    /// The `ctl` module's binrpc socket (`unix:DIR/kamailio_ctl` in our configurations).
    pub ctl: PathBuf,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.guard.terminate(Duration::from_secs(5));
        let _ = std::fs::remove_file(&self.ctl);
    }
}

impl Kamailio {
    /// Start Kamailio with configuration text `cfg` (placeholders already filled in, `@DIR@`
    /// is filled here) and wait until it listens on UDP `port`.
    pub fn start(net: &Net, cfg: &str, port: u16) -> Kamailio {
        Kamailio::start_named(net, "kamailio", cfg, port)
    }

    /// [`Kamailio::start`] with its files named `name.cfg`, `name.log`, `name.pid` (a second
    /// instance in the same test).
    pub fn start_named(net: &Net, name: &str, cfg: &str, port: u16) -> Kamailio {
        require_kamailio();
        // A unix socket path has at most 104 bytes: the control socket lives in /tmp.
        let ctl = PathBuf::from(format!("/tmp/tl-kam-{}-{port}.ctl", std::process::id()));
        let _ = std::fs::remove_file(&ctl);
        let cfg = cfg
            .replace("@DIR@/kamailio_ctl", &ctl.to_string_lossy())
            .replace("@DIR@", &net.dir.to_string_lossy());
        let path = net.dir.join(format!("{name}.cfg"));
        std::fs::write(&path, cfg).expect("kamailio config");
        let log = net.dir.join(format!("{name}.log"));
        let guard = Command::new("/usr/sbin/kamailio")
            .args(["-DD", "-E", "-m", "64", "-f"])
            .arg(&path)
            .arg("-P")
            .arg(net.dir.join(format!("{name}.pid")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("kamailio log"))
            .spawn_group()
            .expect("start kamailio");
        wait_udp_bound(port, Duration::from_secs(10));
        Kamailio { guard, log, ctl }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kamcmd` against this Kamailio's control socket: its output (stdout and stderr).
    pub fn kamcmd(&self, args: &[&str]) -> String {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(args)
            .output()
            .expect("run kamcmd (Debian package kamailio)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}
