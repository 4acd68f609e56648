//! Packet captures with tshark on `lo`.
// Not every test binary uses every helper here: only the capturing tests use it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{wait_until, ProcGuard, SpawnGroup as _};

/// tshark must be installed (`scripts/install-deps.sh`); a missing one fails the test.
pub fn require_tshark() {
    let ok = Command::new("tshark")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "tshark is not installed: run `bash scripts/install-deps.sh` (Debian package tshark)"
    );
}

/// Capture UDP on `lo` into `file` (tshark's log in `log`), once capturing has begun. The guard
/// kills tshark and its dumpcap if the test ends without [`stop_capture`].
pub fn capture(file: &Path, log: &Path) -> ProcGuard {
    capture_filtered(file, log, "udp")
}

/// [`capture`] with a capture filter.
pub fn capture_filtered(file: &Path, log: &Path, filter: &str) -> ProcGuard {
    let child = Command::new("tshark")
        .args(["-i", "lo", "-f", filter, "-q", "-w"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("capture log"))
        .spawn_group()
        .expect("spawn tshark");
    let capturing = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("Capturing on")
    };
    if !wait_until(Instant::now() + Duration::from_secs(20), capturing) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        drop(child);
        panic!("tshark did not start capturing:\n{text}");
    }
    // dumpcap has opened the interface; give it a moment to start reading (nothing outside
    // it tells when it has).
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// Stop a capture, letting it flush its file.
pub fn stop_capture(mut child: ProcGuard) {
    // SIGINT lets dumpcap flush and close the file.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    // then (or after 10 s) the guard kills what is left of the group
    child.wait_timeout(Duration::from_secs(10));
}
