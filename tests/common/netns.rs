//! Private network namespaces: every test re-executes itself under `unshare` with only `lo`
//! inside (see the crate doc in `mod.rs`), the port layout one test uses ([`Net`]), and waiting
//! for a peer to bind its port.
// Not every test binary uses every helper here: `Net` has accessors for every peer role, and each test binary plays a few of them.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::{poll_until, read_lossy};

/// Set in the environment of a test re-executed inside its private network namespace.
pub const NETNS_ENV: &str = "TRUNKLINE_TEST_IN_NETNS";

/// The ports one test uses. Inside a namespace the layout is fixed around `base` 5000
/// (trunkline on 5060, caller on 5061, trunks on 5080, 5090, ...).
#[derive(Clone, Debug)]
pub struct Net {
    pub base: u16,
    pub isolated: bool,
    pub dir: PathBuf,
}

impl Net {
    /// trunkline's SIP port (UDP and TCP).
    pub fn sip(&self) -> u16 {
        self.base + 60
    }
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip()))
    }
    /// The caller's (SIPp UAC's) SIP port.
    pub fn uac(&self) -> u16 {
        self.base + 61
    }
    /// Trunk `i` (0-based): 5080, 5090, 5100, ...
    pub fn trunk(&self, i: u16) -> u16 {
        self.base + 80 + 10 * i
    }
    /// A port nobody listens on (for the "trunk is down" failover test).
    pub fn closed(&self) -> u16 {
        self.base + 79
    }
    /// SIPp media port for party `i` (0 = caller, 1.. = trunks); SIPp binds a few above it.
    pub fn sipp_media(&self, i: u16) -> u16 {
        self.base + 300 + 20 * i
    }
    /// trunkline's relay port range, "lo-hi": 1000 ports, 250 anchored calls (2 legs x RTP+RTCP).
    pub fn media_range(&self) -> String {
        format!("{}-{}", self.base + 1000, self.base + 1999)
    }
    /// The first free port for ad-hoc helpers (raw sockets acting as a peer).
    pub fn spare(&self, i: u16) -> u16 {
        self.base + 500 + i
    }
}

/// Block size of the host-port fallback: every offset `Net` uses is below it.
const BLOCK: u16 = 2100;

/// `unshare` flags for a private network namespace: as root a plain one (`-n`), so that what
/// needs real privileges inside works (the relay's eBPF kernel path); otherwise a user
/// namespace with it (`-rn`).
fn unshare_flags() -> &'static str {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        "-n"
    } else {
        "-rn"
    }
}

/// Whether this process runs as root (the relay's kernel path is expected to work then).
#[allow(dead_code)]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn unshare_works() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("unshare")
            .args([unshare_flags(), "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Brings `lo` up inside a fresh network namespace (it starts down).
fn bring_loopback_up() {
    // SAFETY: plain ioctls on a datagram socket with a zeroed, NUL-terminated ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket() for the loopback ioctl failed");
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        assert_eq!(rc, 0, "SIOCGIFFLAGS(lo) failed");
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        assert_eq!(rc, 0, "SIOCSIFFLAGS(lo up) failed");
        libc::close(fd);
    }
}

fn port_free(p: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// Host fallback: a block of ports whose key ports are free now.
fn host_block() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..10 {
        let k = NEXT.fetch_add(1, Ordering::SeqCst) % 10;
        let base = 10000 + k * BLOCK;
        let n = Net {
            base,
            isolated: false,
            dir: PathBuf::new(),
        };
        let keys = [
            n.sip(),
            n.uac(),
            n.trunk(0),
            n.trunk(1),
            n.trunk(2),
            n.closed(),
        ];
        if keys.iter().all(|&p| port_free(p)) {
            return base;
        }
    }
    panic!("no free block of loopback ports for the host fallback");
}

fn work_dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create the test's work directory");
    d
}

/// Runs `body` inside a private network namespace: the first call (in the normal test process)
/// re-executes this test binary under `unshare -rn` filtered to `test` and asserts that it
/// passed; the re-executed process runs `body`. With `required == false`, a machine that refuses
/// namespaces runs `body` directly on free host ports instead.
pub fn isolated(test: &str, required: bool, body: impl FnOnce(&Net)) {
    if std::env::var_os(NETNS_ENV).is_some() {
        bring_loopback_up();
        let net = Net {
            base: 5000,
            isolated: true,
            dir: work_dir(test),
        };
        body(&net);
        return;
    }
    if !unshare_works() {
        assert!(
            !required,
            "{test}: needs a private network namespace (`unshare -rn`), which this machine \
             refuses; it sends hostile input that must not leave loopback, so it does not run \
             on host ports"
        );
        eprintln!("{test}: unshare -rn refused; running on host loopback ports");
        let net = Net {
            base: host_block(),
            isolated: false,
            dir: work_dir(test),
        };
        body(&net);
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("unshare")
        .args([unshare_flags(), "--"])
        .arg(exe)
        .args([
            test,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(NETNS_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("spawn unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown by libtest only when this test fails (or with --nocapture).
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{test} failed inside its network namespace (status {})",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{test}: did not run exactly one passing test in its namespace (filter mismatch?)"
    );
}

/// Waits until something is bound to UDP `port` (a peer that just started), as listed in
/// this namespace's `/proc/net/udp` (binding it ourselves to probe would race the peer).
pub fn wait_udp_bound(port: u16, limit: Duration) {
    wait_in_table("udp", port, None, limit);
}

/// Waits until something listens on TCP `port` (`/proc/net/tcp`, state LISTEN); connecting to
/// probe would be taken by the peer as a connection of its own.
pub fn wait_tcp_listening(port: u16, limit: Duration) {
    wait_in_table("tcp", port, Some("0A"), limit);
}

/// `/proc/net/{proto}` and its IPv6 twin list local port `port` (in `state`, when given).
fn wait_in_table(proto: &str, port: u16, state: Option<&str>, limit: Duration) {
    let needle = format!(":{port:04X} ");
    let bound = || {
        let tables = read_lossy(Path::new(&format!("/proc/net/{proto}")))
            + &read_lossy(Path::new(&format!("/proc/net/{proto}6")));
        tables.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1)
                .is_some_and(|local| format!("{local} ").ends_with(&needle))
                && state.is_none_or(|s| f.get(3) == Some(&s))
        })
    };
    if !poll_until(Instant::now() + limit, Duration::from_millis(20), bound) {
        panic!("nothing bound {proto} port {port} within {limit:?}");
    }
}
