//! Shared harness for the end-to-end tests: private network namespaces, the `trunkline`
//! process (killed on drop), SIPp runs with their statistics, and small SIP helpers.
//!
//! Isolation: every test re-executes itself inside a fresh network namespace
//! (`unshare -rn`, a user + network namespace, only `lo` inside). There, ports are fixed and
//! cannot collide with other tests, with other engineers' processes, or with anything on the
//! host; and whatever trunkline might send elsewhere than loopback (a torture message's Via
//! naming 192.0.2.1, a mutated datagram naming 10.x) fails with "network unreachable" instead of
//! leaving the machine. Where `unshare` is refused, tests that only exchange well-formed
//! loopback traffic fall back to host ports picked free at run time; tests that feed trunkline
//! hostile input refuse to run outside a namespace (they fail, they do not skip).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::fmt::Write as _;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set in the environment of a test re-executed inside its private network namespace.
pub const NETNS_ENV: &str = "TRUNKLINE_TEST_IN_NETNS";

/// The SIPp scenario directory (`tests/sipp/`).
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

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

// ---------------------------------------------------------------------------------------------
// trunkline

/// The path of the binary under test.
pub fn trunkline_bin() -> &'static str {
    env!("CARGO_BIN_EXE_trunkline")
}

/// A trunk entry for [`config_yaml`].
pub struct Trunk<'a> {
    pub name: &'a str,
    pub port: u16,
}

/// A configuration in the shape of DESIGN.md's contract: UDP and TCP listeners on the test's
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

/// Waits until something is bound to UDP `port` (a peer that just started), as listed in
/// this namespace's `/proc/net/udp` (binding it ourselves to probe would race the peer).
pub fn wait_udp_bound(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    let needle = format!(":{port:04X} ");
    while Instant::now() < deadline {
        let tables =
            read_lossy(Path::new("/proc/net/udp")) + &read_lossy(Path::new("/proc/net/udp6"));
        let bound = tables.lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| format!("{local} ").ends_with(&needle))
        });
        if bound {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing bound UDP port {port} within {limit:?}");
}

/// A running trunkline; SIGTERM (then SIGKILL) on drop, so no test leaves one behind.
pub struct Trunkline {
    child: Child,
    pub log: PathBuf,
    pub addr: SocketAddr,
}

impl Trunkline {
    /// Writes `yaml` to the test directory, starts `trunkline run --config`, and waits until it
    /// serves on UDP (an OPTIONS probe is answered, or at least not refused).
    pub fn start(net: &Net, yaml: &str) -> Trunkline {
        Trunkline::start_at(net, yaml, net.sip_addr())
    }

    /// Like [`Trunkline::start`] for a configuration whose first UDP listener is `addr`.
    pub fn start_at(net: &Net, yaml: &str, addr: SocketAddr) -> Trunkline {
        let cfg = net.dir.join("trunkline.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let log = net.dir.join("trunkline.log");
        let logf = std::fs::File::create(&log).expect("create log");
        let child = Command::new(trunkline_bin())
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("clone log fd"))
            .stderr(logf)
            .spawn()
            .expect("spawn trunkline");
        let mut t = Trunkline { child, log, addr };
        t.wait_ready(Duration::from_secs(15));
        t
    }

    fn wait_ready(&mut self, limit: Duration) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        sock.connect(self.addr).expect("connect probe");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let deadline = Instant::now() + limit;
        let mut quiet = 0;
        let mut n = 0u32;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "trunkline exited during start-up ({st}); log:\n{}",
                    self.log_tail(60)
                );
            }
            n += 1;
            let probe = options_request(sock.local_addr().expect("local"), self.addr, n);
            let _ = sock.send(probe.as_bytes());
            match sock.recv(&mut buf) {
                Ok(_) => return,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => quiet = 0,
                Err(_) => {
                    // Bound (no ICMP port unreachable) but silent: count it as up after a few.
                    quiet += 1;
                    if quiet >= 5 {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "trunkline did not listen on {} within {limit:?}; log:\n{}",
            self.addr,
            self.log_tail(60)
        );
    }

    /// The last `n` lines of trunkline's log.
    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Fails the test if trunkline has exited (crashed) meanwhile.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!(
                "trunkline died during the test ({st}); log:\n{}",
                self.log_tail(80)
            );
        }
    }

    /// SIGTERM and wait (up to 5 s); returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Trunkline {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// SIPp

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
            .spawn()
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
    child: Option<Child>,
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
        let deadline = Instant::now() + limit;
        let mut timed_out = false;
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break Some(st);
            }
            if Instant::now() >= deadline {
                timed_out = true;
                // SIGUSR1 makes SIPp dump its statistics and quit; give it a moment.
                // SAFETY: signalling our own child by its pid.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGUSR1);
                }
                let soft = Instant::now() + Duration::from_secs(3);
                let mut st = None;
                while Instant::now() < soft {
                    if let Ok(Some(s)) = child.try_wait() {
                        st = Some(s);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if st.is_none() {
                    let _ = child.kill();
                    st = child.wait().ok();
                }
                break st;
            }
            std::thread::sleep(Duration::from_millis(10));
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

fn read_lossy(p: &Path) -> String {
    let mut v = Vec::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_end(&mut v);
    }
    String::from_utf8_lossy(&v).into_owned()
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

// ---------------------------------------------------------------------------------------------
// raw SIP helpers

/// An OPTIONS request from `from` to `to` (RFC 3261 §11.1).
pub fn options_request(from: SocketAddr, to: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-probe-{n}-{pid};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{from}>;tag=probe{n}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: probe-{n}-{pid}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        pid = std::process::id()
    )
}

/// The status code of a SIP response (`SIP/2.0 NNN ...`), if `data` is one.
pub fn status_code(data: &[u8]) -> Option<u16> {
    let rest = data.strip_prefix(b"SIP/2.0 ")?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    code.parse().ok()
}

/// The value of the first header named `name` (or its compact form `short`), case-insensitive.
pub fn header<'a>(msg: &'a str, name: &str, short: Option<&str>) -> Option<&'a str> {
    for line in msg.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if k.eq_ignore_ascii_case(name) || short.is_some_and(|s| k.eq_ignore_ascii_case(s)) {
            return Some(v.trim());
        }
    }
    None
}

/// Sends OPTIONS to trunkline from a fresh socket and returns the status of the answer.
pub fn options_status(to: SocketAddr, wait: Duration) -> Option<u16> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let me = sock.local_addr().ok()?;
    let deadline = Instant::now() + wait;
    let mut n = 1000;
    let mut buf = [0u8; 65535];
    while Instant::now() < deadline {
        n += 1;
        sock.send_to(options_request(me, to, n).as_bytes(), to)
            .ok()?;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                if let Some(code) = status_code(&buf[..len]) {
                    if code >= 200 {
                        return Some(code);
                    }
                }
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// operations helpers (tests/ops_*.rs): the admin HTTP endpoint, signals, config rewrites

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

impl Trunkline {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to trunkline.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child by its pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    /// Waits up to `limit` for trunkline to exit by itself; None if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }
}

/// Sends one INVITE (with an SDP offer) for `user` to `to` from a fresh UDP socket and waits
/// up to `wait` for a final response; a non-2xx final response is ACKed (RFC 3261 §17.1.1.3).
/// Returns the final response's text.
pub fn invite_once(to: SocketAddr, user: &str, wait: Duration) -> Option<String> {
    invite_once_from("127.0.0.1:0", to, user, wait)
}

/// [`invite_once`] from a socket bound to `from` (e.g. a trunk's address).
pub fn invite_once_from(from: &str, to: SocketAddr, user: &str, wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind(from).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let me = sock.local_addr().ok()?;
    let pid = std::process::id();
    let branch = format!("z9hG4bK-ops-{user}-{pid}");
    let call_id = format!("ops-{user}-{pid}@127.0.0.1");
    let sdp = format!(
        "v=0\r\no=ops 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        me.port() + 2
    );
    let invite = format!(
        "INVITE sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ops@{me}>;tag=ops-{pid}\r\n\
         To: <sip:{user}@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:ops@{me}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let deadline = Instant::now() + wait;
    let mut next_send = Instant::now();
    let mut buf = [0u8; 65535];
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            sock.send_to(invite.as_bytes(), to).ok()?;
            next_send = Instant::now() + Duration::from_millis(500);
        }
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some(code) = status_code(&buf[..len]) else {
            continue;
        };
        if code < 200 {
            next_send = deadline; // provisional: stop retransmitting (RFC 3261 §17.1.1.2)
            continue;
        }
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if code >= 300 {
            let to_hdr = header(&text, "To", Some("t")).unwrap_or("");
            let ack = format!(
                "ACK sip:{user}@{to} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:ops@{me}>;tag=ops-{pid}\r\n\
                 To: {to_hdr}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(ack.as_bytes(), to);
        }
        return Some(text);
    }
    None
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

// ------------------------------------------------------------------------- packet captures

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

/// Starts a capture of all UDP on `lo` into `file`; returns once tshark is capturing. The
/// caller owns the child and reaps it in [`stop_capture`] (clippy cannot see that).
#[allow(clippy::zombie_processes)]
/// Capture UDP on `lo` into `file` (tshark's log in `log`), once capturing has begun.
pub fn capture(file: &Path, log: &Path) -> Child {
    capture_filtered(file, log, "udp")
}

/// [`capture`] with a capture filter.
// The child is returned to the caller, who ends it with `stop_capture`; the early exit kills
// and waits for it.
#[allow(clippy::zombie_processes)]
pub fn capture_filtered(file: &Path, log: &Path, filter: &str) -> Child {
    let mut child = Command::new("tshark")
        .args(["-i", "lo", "-f", filter, "-q", "-w"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("capture log"))
        .spawn()
        .expect("spawn tshark");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Capturing on") {
            // dumpcap has opened the interface; give it a moment to start reading.
            std::thread::sleep(Duration::from_millis(300));
            return child;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tshark did not start capturing:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stop a capture, letting it flush its file.
pub fn stop_capture(mut child: Child) {
    // SIGINT lets dumpcap flush and close the file.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
