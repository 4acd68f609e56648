//! Interop: real Kamailio (`rtpengine` module) drives trunkline's ng server while SIPp places
//! calls through Kamailio: every INVITE is `rtpengine_offer`, every SDP reply `rtpengine_answer`,
//! every BYE `rtpengine_delete`, against our relay instead of rtpengine.
//!
//! Needs `kamailio` (with the rtpengine module) and `sipp` installed, and the shared peer config
//! `shared/peers/kamailio-rtpengine/kamailio.cfg`; ignored by default because it starts system
//! daemons:
//!
//! ```text
//! cargo test -p media-relay --test ng_kamailio -- --ignored --nocapture
//! ```

use media_relay::control::MediaCalls;
use media_relay::ng::{self, NgHandler};
use media_relay::{Backend, Relay, RelayConfig};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROXY_PORT: u16 = 5270;
const UAS_PORT: u16 = 5280;
const UAC_PORT: u16 = 5260;
const CALLS: usize = 10;

fn shared_file(rel: &str) -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel);
    if beside.is_file() {
        return beside;
    }
    let dir = std::env::var_os("TRUNKLINE_SHARED").expect("shared/ not found");
    PathBuf::from(dir).join(rel)
}

/// Stops a daemon with SIGTERM (Kamailio's main process then stops its children).
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: plain kill(2) on a child we spawned.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore]
fn kamailio_rtpengine_module_drives_our_ng_server() {
    let relay = Arc::new(
        Relay::start(RelayConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 38000,
            port_max: 38999,
            backend: Backend::Auto,
            workers: 1,
            timeout: Duration::from_secs(60),
            strict_source: false,
        })
        .unwrap(),
    );
    let calls = Arc::new(Mutex::new(MediaCalls::new(relay.clone())));
    let server = ng::serve(
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        NgHandler::new(calls.clone()),
    )
    .unwrap();

    let dir = std::env::temp_dir().join(format!("trunkline-ng-kamailio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = std::fs::read_to_string(shared_file("peers/kamailio-rtpengine/kamailio.cfg"))
        .unwrap()
        .replace("127.0.0.1:5070", &format!("127.0.0.1:{PROXY_PORT}"))
        .replace("127.0.0.1:5080", &format!("127.0.0.1:{UAS_PORT}"))
        .replace(
            "udp:127.0.0.1:2223",
            &format!("udp:{}", server.local_addr()),
        )
        .replace(
            "unix:/tmp/kamailio-anchor_ctl",
            &format!("unix:{}/ctl", dir.display()),
        );
    let cfg_path = dir.join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();

    let _kamailio = Guard(
        Command::new("kamailio")
            .args(["-DD", "-E", "-A", "WITH_RTPENGINE", "-m", "64", "-f"])
            .arg(&cfg_path)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).unwrap())
            .spawn()
            .expect("kamailio must be installed"),
    );
    let _uas = Guard(
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-nostdin", "-p"])
            .arg(UAS_PORT.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp must be installed"),
    );
    std::thread::sleep(Duration::from_millis(1500));

    // Watch the call table while SIPp runs.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, peak, calls) = (stop.clone(), peak.clone(), calls.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = calls.lock().unwrap().len();
                peak.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let uac = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-timeout",
            "30s",
        ])
        .arg(format!("127.0.0.1:{PROXY_PORT}"))
        .args(["-p", &UAC_PORT.to_string()])
        .args(["-m", &CALLS.to_string(), "-r", "5", "-d", "500"])
        .output()
        .expect("sipp must be installed");
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let log = std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default();
    assert!(
        uac.status.success(),
        "sipp uac failed: {}\n{}\nkamailio log:\n{log}",
        uac.status,
        String::from_utf8_lossy(&uac.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let peak = peak.load(Ordering::Relaxed);
    println!("peak concurrent anchored calls: {peak}");
    assert!(peak >= 1, "no call was ever anchored; kamailio log:\n{log}");
    // Every BYE went through rtpengine_delete.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !calls.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(calls.lock().unwrap().is_empty(), "calls left after BYE");
    assert!(!log.contains("ERROR"), "kamailio logged errors:\n{log}");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
