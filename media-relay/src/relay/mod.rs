//! The RTP/RTCP relay data plane.
//!
//! ```text
//!  control (SDP/ng/B2BUA)            worker threads (N, each owns whole pairs)
//!  ───────────────────────           ─────────────────────────────────────────
//!  Relay::open_pair ── binds 4 UDP ──▶ Cmd::Open ──▶ Core (session table, latching, stats)
//!  Relay::set_remote ───────────────▶ Cmd::SetRemote        ▲ on_packet(slot, src, bytes, now)
//!  Relay::stats ◀── reply channel ──  Cmd::Stats            │ -> Forward { fd, dst }
//!  Relay::events() ◀── MediaTimeout ─ scan_timeouts(now)     │
//!                                     back end: io_uring (multishot recvmsg + provided buffer
//!                                     ring, batched sends) or epoll (mio, recvmmsg/sendmmsg)
//! ```
//!
//! * Ports: a pair `a`/`b` is two even ports from the range, each with RTCP on `port + 1`
//!   (RFC 3550 section 11). Sockets are bound by the control thread at `open_pair`, so bind
//!   errors and exhaustion are reported synchronously; the worker then owns them.
//! * Forwarding: RTP arriving on `a` (RTCP on `a + 1`) leaves from `b` (`b + 1`) to `b`'s
//!   remote, unchanged (no SSRC/sequence/timestamp rewrite), and the other way round. RTCP
//!   multiplexed on the RTP port (RFC 5761) is forwarded on the RTP port.
//! * Latching (symmetric RTP for NAT) with an RTP-bleed guard: see [`session::Latch`].
//! * Quality: RTP loss and jitter from the RTP itself (RFC 3550 A.1/A.3/A.8), RTCP SR/RR/XR
//!   read in passing (RTT from LSR/DLSR), MOS from a simplified E-model ([`quality`]).
//! * Time: the worker loops read the clock and pass `Instant`s into the core; session logic never
//!   reads it.

mod core;
mod epoll;
mod pool;
pub mod quality;
pub mod rtcp;
mod session;
mod sys;
#[cfg(target_os = "linux")]
mod uring;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use self::core::{ctr, Cmd, Core, WorkerShared};
use self::pool::PortPool;
use crate::dataplane::{DataPlane, LegPair, LegStats, RelayError, RelayEvent};

/// Which packet I/O back end runs the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    IoUring,
    Epoll,
}

/// Relay configuration.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Address the relay sockets bind to (and that goes into SDP).
    pub address: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    pub backend: Backend,
    /// Worker threads; 0 = available cores.
    pub workers: usize,
    /// Media timeout: no RTP on either leg of a pair for this long raises
    /// [`RelayEvent::MediaTimeout`].
    pub timeout: Duration,
    /// Only accept media from the address signalled in SDP (no latching).
    pub strict_source: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port_min: 20000,
            port_max: 29999,
            backend: Backend::Auto,
            workers: 0,
            timeout: Duration::from_secs(60),
            strict_source: false,
        }
    }
}

/// Relay-wide counters (sum over workers), for Prometheus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Datagrams received on relay sockets (RTP and RTCP).
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Datagrams forwarded.
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtcp_packets_in: u64,
    /// Dropped: leg not yet signalled (no `set_remote`).
    pub dropped_not_ready: u64,
    /// Dropped: source is not the latched/signalled one (RTP-bleed guard, strict source).
    pub dropped_foreign_source: u64,
    /// Dropped: the other leg has no address to send to.
    pub dropped_no_destination: u64,
    /// Dropped: larger than the receive buffer.
    pub dropped_truncated: u64,
    pub send_errors: u64,
    pub media_timeouts: u64,
    /// Open pairs.
    pub active_pairs: u64,
    /// Port pairs (RTP+RTCP) still free in the range.
    pub ports_free: u64,
    /// Port pairs in the range.
    pub ports_total: u64,
}

/// Final stats of a closed pair (see [`Relay::drain_closed_stats`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ClosedPairStats {
    pub pair: LegPair,
    pub duration: Duration,
    pub a: LegStats,
    pub b: LegStats,
}

enum Wake {
    Mio(Arc<mio::Waker>),
    EventFd(Arc<OwnedFd>),
}

impl Wake {
    fn wake(&self) {
        match self {
            Wake::Mio(w) => {
                let _ = w.wake();
            }
            Wake::EventFd(fd) => {
                let one: u64 = 1;
                // SAFETY: writing 8 bytes from a valid u64 to an eventfd.
                unsafe {
                    libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8);
                }
            }
        }
    }
}

struct Worker {
    tx: Sender<Cmd>,
    wake: Wake,
    shared: Arc<WorkerShared>,
}

struct Ctl {
    pool: PortPool,
    /// RTP port -> (pair, worker index)
    legs: HashMap<u16, (LegPair, usize)>,
    next_worker: usize,
}

/// The running relay: a thread-safe handle to the worker threads.
pub struct Relay {
    address: IpAddr,
    backend: &'static str,
    ctl: Mutex<Ctl>,
    workers: Vec<Worker>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    events: Receiver<RelayEvent>,
    closed: Arc<Mutex<VecDeque<ClosedPairStats>>>,
    /// Ports whose sockets the workers have closed, to go back to the pool.
    released: Arc<Mutex<Vec<u16>>>,
}

impl Relay {
    /// Start the worker threads. With `Backend::Auto`, io_uring is tried first and epoll is used
    /// when the kernel refuses it (seccomp, `kernel.io_uring_disabled`, too old).
    pub fn start(cfg: RelayConfig) -> io::Result<Relay> {
        if cfg.port_min > cfg.port_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "port_min > port_max",
            ));
        }
        let n = if cfg.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.workers
        };
        let use_uring = match cfg.backend {
            Backend::Epoll => false,
            Backend::IoUring => {
                uring_probe()?;
                true
            }
            Backend::Auto => match uring_probe() {
                Ok(()) => {
                    match Self::start_workers(&cfg, n, true) {
                        Ok(r) => return Ok(r),
                        Err(e) => {
                            // e.g. RLIMIT_MEMLOCK too small for the rings on older kernels
                            tracing::info!("relay: io_uring workers failed ({e}); using epoll");
                            false
                        }
                    }
                }
                Err(e) => {
                    tracing::info!("relay: io_uring unavailable ({e}); using epoll");
                    false
                }
            },
        };
        Self::start_workers(&cfg, n, use_uring)
    }

    fn start_workers(cfg: &RelayConfig, n: usize, use_uring: bool) -> io::Result<Relay> {
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let closed = Arc::new(Mutex::new(VecDeque::new()));
        let released = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = crossbeam_channel::unbounded::<Cmd>();
            let shared = Arc::new(WorkerShared::default());
            let core = Core::new(
                cfg.strict_source,
                cfg.timeout,
                shared.clone(),
                ev_tx.clone(),
                closed.clone(),
                released.clone(),
            );
            let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<Wake>>(1);
            let t = std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || worker_main(use_uring, core, rx, ready_tx))?;
            let wake = match ready_rx.recv() {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => {
                    let _ = t.join();
                    stop_all(&workers, threads);
                    return Err(e);
                }
                Err(_) => {
                    let _ = t.join();
                    stop_all(&workers, threads);
                    return Err(io::Error::other("relay worker died at start"));
                }
            };
            threads.push(t);
            workers.push(Worker { tx, wake, shared });
        }
        Ok(Relay {
            address: cfg.address,
            backend: if use_uring { "io_uring" } else { "epoll" },
            ctl: Mutex::new(Ctl {
                pool: PortPool::new(cfg.port_min, cfg.port_max),
                legs: HashMap::new(),
                next_worker: 0,
            }),
            workers,
            threads: Mutex::new(threads),
            events: ev_rx,
            closed,
            released,
        })
    }

    /// "io_uring" or "epoll".
    pub fn backend_name(&self) -> &'static str {
        self.backend
    }

    /// Events from the data plane (media timeouts).
    pub fn events(&self) -> Receiver<RelayEvent> {
        self.events.clone()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Counters summed over the workers (a snapshot; workers publish after each batch).
    pub fn totals(&self) -> RelayTotals {
        let mut c = [0u64; ctr::N];
        for w in &self.workers {
            for (acc, a) in c.iter_mut().zip(w.shared.counters.iter()) {
                *acc += a.load(Ordering::Relaxed);
            }
        }
        let (active, free, total) = match self.ctl.lock() {
            Ok(mut g) => {
                self.reclaim(&mut g);
                (
                    (g.legs.len() / 2) as u64,
                    g.pool.available() as u64,
                    g.pool.capacity() as u64,
                )
            }
            Err(_) => (c[ctr::SESSIONS], 0, 0),
        };
        RelayTotals {
            packets_in: c[ctr::PACKETS_IN],
            bytes_in: c[ctr::BYTES_IN],
            packets_out: c[ctr::PACKETS_OUT],
            bytes_out: c[ctr::BYTES_OUT],
            rtcp_packets_in: c[ctr::RTCP_IN],
            dropped_not_ready: c[ctr::DROP_NOT_READY],
            dropped_foreign_source: c[ctr::DROP_FOREIGN],
            dropped_no_destination: c[ctr::DROP_NO_DEST],
            dropped_truncated: c[ctr::DROP_TRUNCATED],
            send_errors: c[ctr::SEND_ERRORS],
            media_timeouts: c[ctr::MEDIA_TIMEOUTS],
            active_pairs: active,
            ports_free: free,
            ports_total: total,
        }
    }

    /// Final stats of pairs closed since the last call (the last 4096 are kept).
    pub fn drain_closed_stats(&self) -> Vec<ClosedPairStats> {
        match self.closed.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Stop the workers and wait for them; closes every socket.
    pub fn shutdown(self) {
        self.stop();
    }

    fn stop(&self) {
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        stop_all(&self.workers, threads);
    }

    fn send(&self, worker: usize, cmd: Cmd) -> Result<(), RelayError> {
        let w = self.workers.get(worker).ok_or(RelayError::Stopped)?;
        w.tx.send(cmd).map_err(|_| RelayError::Stopped)?;
        w.wake.wake();
        Ok(())
    }

    /// Return ports whose sockets the workers closed to the pool.
    fn reclaim(&self, g: &mut Ctl) {
        if let Ok(mut r) = self.released.lock() {
            for p in r.drain(..) {
                g.pool.put(p);
            }
        }
    }

    fn worker_of(&self, port: u16) -> Option<(LegPair, usize)> {
        let g = self.ctl.lock().ok()?;
        g.legs.get(&port).copied()
    }
}

fn stop_all(workers: &[Worker], threads: Vec<JoinHandle<()>>) {
    for w in workers {
        let _ = w.tx.send(Cmd::Shutdown);
        w.wake.wake();
    }
    for t in threads {
        let _ = t.join();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker_main(use_uring: bool, core: Core, rx: Receiver<Cmd>, ready: Sender<io::Result<Wake>>) {
    #[cfg(target_os = "linux")]
    if use_uring {
        match uring::UringIo::new() {
            Ok((io, efd)) => {
                let _ = ready.send(Ok(Wake::EventFd(efd)));
                io.run(core, rx);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
        return;
    }
    let _ = use_uring;
    match epoll::EpollIo::new() {
        Ok((io, waker)) => {
            let _ = ready.send(Ok(Wake::Mio(waker)));
            io.run(core, rx);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// Runs the io_uring probe on a short-lived thread: a ring's teardown can post task work to the
/// thread that created it, which interrupts that thread's blocking socket calls with EINTR; the
/// caller's thread (the application's) should not see that.
#[cfg(target_os = "linux")]
fn uring_probe() -> io::Result<()> {
    std::thread::Builder::new()
        .name("relay-probe".into())
        .spawn(uring::probe)?
        .join()
        .map_err(|_| io::Error::other("io_uring probe panicked"))?
}

#[cfg(not(target_os = "linux"))]
fn uring_probe() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring is Linux-only",
    ))
}

/// Bind RTP on `port` and RTCP on `port + 1`.
fn bind_pair(ip: IpAddr, port: u16) -> Option<[UdpSocket; 2]> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port.checked_add(1)?)).ok()?;
    rtp.set_nonblocking(true).ok()?;
    rtcp.set_nonblocking(true).ok()?;
    Some([rtp, rtcp])
}

impl DataPlane for Relay {
    fn local_ip(&self) -> IpAddr {
        self.address
    }

    fn open_pair(&self) -> Result<LegPair, RelayError> {
        let ip = self.address;
        let (pair, worker, socks) = {
            let mut g = self.ctl.lock().map_err(|_| RelayError::Stopped)?;
            self.reclaim(&mut g);
            let Some((a, [ar, ac])) = g.pool.take(|p| bind_pair(ip, p)) else {
                return Err(RelayError::PortsExhausted);
            };
            let Some((b, [br, bc])) = g.pool.take(|p| bind_pair(ip, p)) else {
                g.pool.put(a);
                return Err(RelayError::PortsExhausted);
            };
            let pair = LegPair { a, b };
            let worker = g.next_worker % self.workers.len().max(1);
            g.next_worker = g.next_worker.wrapping_add(1);
            g.legs.insert(a, (pair, worker));
            g.legs.insert(b, (pair, worker));
            (pair, worker, Box::new([ar, ac, br, bc]))
        };
        if let Err(e) = self.send(worker, Cmd::Open { pair, socks }) {
            if let Ok(mut g) = self.ctl.lock() {
                g.legs.remove(&pair.a);
                g.legs.remove(&pair.b);
                g.pool.put(pair.a);
                g.pool.put(pair.b);
            }
            return Err(e);
        }
        Ok(pair)
    }

    fn set_remote(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        let (_, w) = self.worker_of(port).ok_or(RelayError::UnknownPort(port))?;
        self.send(w, Cmd::SetRemote { port, rtp, rtcp })
    }

    fn close_pair(&self, pair: LegPair) {
        let w = {
            let Ok(mut g) = self.ctl.lock() else { return };
            match g.legs.get(&pair.a).copied() {
                Some((p, w)) if p == pair => {
                    // The ports return to the pool when the worker has closed the sockets.
                    g.legs.remove(&pair.a);
                    g.legs.remove(&pair.b);
                    w
                }
                _ => return,
            }
        };
        let _ = self.send(w, Cmd::Close { pair });
    }

    fn stats(&self, port: u16) -> Option<LegStats> {
        let (_, w) = self.worker_of(port)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(w, Cmd::Stats { port, reply: tx }).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok().flatten()
    }

    fn set_clock_rates(&self, port: u16, rates: &[(u8, u32)]) -> Result<(), RelayError> {
        let (_, w) = self.worker_of(port).ok_or(RelayError::UnknownPort(port))?;
        self.send(
            w,
            Cmd::SetClockRates {
                port,
                rates: rates.to_vec(),
            },
        )
    }
}
