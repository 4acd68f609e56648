//! Processes a test starts: the `trunkline` binary under test ([`Trunkline`]) and every peer
//! ([`ProcGuard`]: its own process group, killed whole when the guard drops, passed or failed).
// Not every test binary uses every helper here: tests that only read trunkline's log, or only signal it, leave the rest unused.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, UdpSocket};
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::netns::Net;
use super::sip::options_request;

/// A child process that is the leader of its own process group; dropping the guard kills the
/// whole group (SIGKILL) and reaps the leader, so nothing a test started (Kamailio's workers,
/// tshark's dumpcap, ...) outlives it, whether the test passed or panicked. Derefs to the
/// [`Child`].
pub struct ProcGuard {
    child: Option<Child>,
    pgid: libc::pid_t,
}

/// `Command::spawn_group()`: spawn as the leader of a new process group, guarded.
pub trait SpawnGroup {
    fn spawn_group(&mut self) -> std::io::Result<ProcGuard>;
}

impl SpawnGroup for Command {
    fn spawn_group(&mut self) -> std::io::Result<ProcGuard> {
        let child = self.process_group(0).spawn()?;
        let pgid = child.id() as libc::pid_t;
        Ok(ProcGuard {
            child: Some(child),
            pgid,
        })
    }
}

impl ProcGuard {
    /// Sends `sig` to every process of the group.
    pub fn signal_group(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's process group (negative pid).
        unsafe {
            libc::kill(-self.pgid, sig);
        }
    }

    /// Waits up to `limit` for the leader to exit; None if it still runs.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let mut st = None;
        wait_until(Instant::now() + limit, || {
            st = child.try_wait().ok().flatten();
            st.is_some()
        });
        st
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to the group.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(st) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            self.kill_group();
            return Some(st);
        }
        self.signal_group(libc::SIGTERM);
        let st = self.wait_timeout(grace);
        self.kill_group();
        st
    }

    /// Like [`Child::wait_with_output`]; what is left of the group is killed afterwards.
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        let child = self.child.take().expect("child not yet reaped");
        child.wait_with_output()
    }

    /// SIGKILL to the group and reap the leader.
    pub fn kill_group(&mut self) {
        self.signal_group(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Deref for ProcGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child.as_ref().expect("child not yet reaped")
    }
}

impl DerefMut for ProcGuard {
    fn deref_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child not yet reaped")
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Polls `cond` (every 10 ms) until it holds or `deadline` passes; returns whether it held.
/// For waiting on a condition instead of sleeping a guessed time.
pub fn wait_until(deadline: Instant, cond: impl FnMut() -> bool) -> bool {
    poll_until(deadline, Duration::from_millis(10), cond)
}

/// [`wait_until`] polling every `every` (for conditions that cost something to check, such as a
/// `/metrics` scrape). `cond` runs at least once, and once more at or after the deadline.
pub fn poll_until(deadline: Instant, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
// ---------------------------------------------------------------------------------------------
// trunkline

/// The path of the binary under test.
pub fn trunkline_bin() -> &'static str {
    env!("CARGO_BIN_EXE_trunkline")
}

/// A running trunkline; SIGTERM (then SIGKILL) on drop, so no test leaves one behind.
pub struct Trunkline {
    child: ProcGuard,
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
        Trunkline::start_with(net, yaml, addr, &[])
    }

    /// Like [`Trunkline::start_at`] with extra arguments to `trunkline run`.
    pub fn start_with(net: &Net, yaml: &str, addr: SocketAddr, args: &[&str]) -> Trunkline {
        Trunkline::start_named(net, "trunkline", yaml, addr, args)
    }

    /// One of several trunklines of a test (cluster nodes): its files are `<name>.yaml` and
    /// `<name>.log`.
    pub fn start_named(
        net: &Net,
        name: &str,
        yaml: &str,
        addr: SocketAddr,
        args: &[&str],
    ) -> Trunkline {
        let mut t = Trunkline::spawn(net, name, yaml, addr, args, Command::new(trunkline_bin()));
        t.wait_ready(Duration::from_secs(15));
        t
    }

    /// A cluster node started inside the network namespace `netns` (`ip netns exec`, which
    /// execs trunkline itself: the pid is trunkline's). Not waited for: the test waits on what
    /// the node serves.
    pub fn start_in_netns(net: &Net, name: &str, yaml: &str, netns: &str) -> Trunkline {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, trunkline_bin()]);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Trunkline::spawn(net, name, yaml, unspecified, &[], cmd)
    }

    fn spawn(
        net: &Net,
        name: &str,
        yaml: &str,
        addr: SocketAddr,
        args: &[&str],
        mut cmd: Command,
    ) -> Trunkline {
        let cfg = net.dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, yaml).expect("write config");
        let log = net.dir.join(format!("{name}.log"));
        let logf = std::fs::File::create(&log).expect("create log");
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("clone log fd"))
            .stderr(logf)
            .spawn_group()
            .expect("spawn trunkline");
        Trunkline { child, log, addr }
    }

    fn wait_ready(&mut self, limit: Duration) {
        let local = if self.addr.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(local).expect("bind probe");
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
        if let Some(st) = self.child.wait_timeout(Duration::from_secs(5)) {
            return Some(st);
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
        self.child.wait_timeout(limit)
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }
}

pub(crate) fn read_lossy(p: &Path) -> String {
    let mut v = Vec::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_end(&mut v);
    }
    String::from_utf8_lossy(&v).into_owned()
}
