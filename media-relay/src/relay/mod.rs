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
//!   errors and exhaustion are reported synchronously; the worker then owns them. Ports are
//!   chosen at random (a CSPRNG seeded by the shell, [`RelayTuning::port_seed`]): free ports
//!   uniformly, kept ports among the oldest few.
//! * Socket reuse: a closed pair's sockets stay open, registered and receiving on their worker
//!   (datagrams reaching them are dropped); `open_pair` prefers such *kept* ports of one worker
//!   once they have been idle for [`REUSE_AFTER`], so a call in steady state costs no
//!   socket()/bind()/close() and no io_uring/epoll registration. Kept ports are reused oldest
//!   first (at random among the oldest [`KEPT_CHOICE`]); cold ports are bound while kept ones
//!   are younger than [`REUSE_AFTER`] (stray media of the old call does not reach the new
//!   one), and kept ones are taken anyway when the range runs out. At most a quarter of `RLIMIT_NOFILE` sockets are kept; beyond, closing closes.
//! * Wake-ups: only commands that need the worker now (new sockets to register, a stats query,
//!   shutdown) wake it; the others wait in its queue until a datagram or its idle tick
//!   ([`core::CMD_POLL`]) wakes it, and are applied before the datagrams of that wake-up.
//! * Forwarding: RTP arriving on `a` (RTCP on `a + 1`) leaves from `b` (`b + 1`) to `b`'s
//!   remote, unchanged (no SSRC/sequence/timestamp rewrite), and the other way round. RTCP
//!   multiplexed on the RTP port (RFC 5761) is forwarded on the RTP port.
//! * Latching (symmetric RTP for NAT), safe by default against RTP Bleed: a leg learns its
//!   media source only from the signalled address, or from its signalling source's IP after
//!   sequence probation; see [`session::Latch`].
//! * Quality: RTP loss and jitter from the RTP itself (RFC 3550 A.1/A.3/A.8), RTCP SR/RR/XR
//!   read in passing (RTT from LSR/DLSR), MOS from a simplified E-model ([`quality`]).
//! * Time: the worker loops read the clock and pass `Instant`s into the core; session logic never
//!   reads it.
//! * Dual stack ([`RelayTuning::address_v6`]): each port of a pair is bound in the family of the
//!   peer it faces (`open_pair_for`), on `address` or on `address_v6`, so an IPv6 caller and an
//!   IPv4 callee are joined by one pair of an IPv6 and an IPv4 port. A port number is bound in
//!   one family at a time (one pool); a kept port is reused only for its own family. The kernel
//!   fast path forwards IPv4 flows only: a pair with an IPv6 leg stays in user space.

mod core;
mod dataplane;
pub use dataplane::NoLiveStats;
mod epoll;
pub(crate) mod kernel;
mod pool;
// The pure session logic (latching, RTP/RTCP quality) is `media_core`'s; the worker core here
// drives it on sockets.
use media_core::session;
pub use media_core::{quality, rtcp};
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
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use self::core::{ctr, Cmd, Core, WorkerShared};
use self::pool::PortPool;
use crate::dataplane::{DataPlane, Family, LegPair, LegStats, RelayError, RelayEvent};

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
    /// Worker threads; 0 = automatic: one per core but one (left to signaling), at least one.
    /// (On 2 cores one worker costs less CPU per packet than two: no cross-core traffic.)
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

/// Settings beyond [`RelayConfig`] (kept apart so that code building a `RelayConfig` literal
/// keeps compiling); see [`Relay::start_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayTuning {
    /// io_uring completion batching: under load (>= 10k completions/s per worker) a worker
    /// waits up to this many microseconds after the first completion for more (Linux 6.12
    /// `min_wait`; older kernels ignore it). Bounds the latency added to a packet; 0 = off.
    /// `None`: the `TRUNKLINE_RELAY_BATCH_US` environment variable, else 0 (off: at 100k
    /// packets/s with the relay on its own core, p99 added latency 0.25-0.63 ms off against
    /// 1.3-1.6 ms at 200 us, for ~15 % more CPU per packet; see BENCHMARKS.md).
    pub io_uring_batch_us: Option<u32>,
    /// Forward settled RTP flows in the kernel (eBPF on the media interfaces; see
    /// `relay/kernel.rs`). Default `Off` for the library; trunkline's config defaults to `Auto`.
    pub kernel_forwarding: KernelForwarding,
    /// Seed of the CSPRNG (ChaCha12) that picks relay ports at random from the range; the shell
    /// passes one from the OS (e.g. `rand::random()`). `None`: seeded from the standard
    /// library's per-process random hash keys.
    pub port_seed: Option<[u8; 32]>,
    /// The relay's IPv6 address beside an IPv4 [`RelayConfig::address`] (dual stack): ports
    /// facing IPv6 peers are bound on it and it is their SDP address. `None`: one family.
    pub address_v6: Option<std::net::Ipv6Addr>,
}

/// A seed from the standard library's randomly keyed hasher (OS randomness, per process).
fn fallback_seed() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut seed = [0u8; 32];
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    seed
}

/// Whether settled RTP flows are forwarded by an eBPF program in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelForwarding {
    /// User space only.
    #[default]
    Off,
    /// The kernel path when it loads (root, Linux 6.6+, IPv4 media address), else user space.
    Auto,
    /// The kernel path, or the relay does not start.
    On,
}

impl RelayTuning {
    fn batch_us(&self) -> u32 {
        self.io_uring_batch_us.unwrap_or_else(|| {
            std::env::var("TRUNKLINE_RELAY_BATCH_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_BATCH_US)
        })
    }
}

/// Latency first: batching is an operator's choice (`media.io_uring_batch_us`, e.g. 200).
const DEFAULT_BATCH_US: u32 = 0;

/// The worker count for `RelayConfig::workers == 0` on a machine with `cores` cores.
pub fn auto_workers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
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
    /// Dropped: from a leg's signalling IP but not yet through sequence probation.
    pub dropped_probation: u64,
    /// SRTP/SRTCP packets dropped: authentication failed, or a replay.
    pub srtp_auth_failures: u64,
    pub srtp_replays: u64,
    /// Packets decrypted or encrypted by the relay.
    pub srtp_packets: u64,
    /// Packets a transcoder did not send on (malformed, late, comfort noise, a payload type
    /// the other side does not get).
    pub transcode_drops: u64,
    /// Frames encoded by transcoders per (from, to), indexed `from × 3 + to` in the order of
    /// `media_core::transcode::Codec::ALL`.
    pub transcode_frames: [u64; ctr::CODECS * ctr::CODECS],
    /// Pairs processed in user space now: SRTP on a leg, and transcoding.
    pub pairs_srtp: u64,
    pub pairs_transcode: u64,
    /// Dropped: the other leg has no address to send to.
    pub dropped_no_destination: u64,
    /// Dropped: larger than the receive buffer.
    pub dropped_truncated: u64,
    pub send_errors: u64,
    pub media_timeouts: u64,
    /// RTP packets forwarded by the kernel fast path (included in `packets_in`/`packets_out`).
    pub kernel_packets: u64,
    /// Flows (one direction of a pair each) in the kernel fast path now.
    pub kernel_flows: u64,
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

/// How long a kept port rests after its pair closed before `open_pair` prefers it to binding a
/// cold one.
pub const REUSE_AFTER: Duration = Duration::from_secs(1);

struct Ctl {
    /// Ports with no socket.
    pool: PortPool,
    /// Per worker: ports whose sockets that worker kept open, with when their pair closed
    /// and their family (oldest first).
    kept: Vec<VecDeque<(u16, Instant, Family)>>,
    kept_count: usize,
    kept_max: usize,
    /// RTP port -> (pair, worker index, the port's family)
    legs: HashMap<u16, (LegPair, usize, Family)>,
    next_worker: usize,
}

/// The running relay: a thread-safe handle to the worker threads.
pub struct Relay {
    address: IpAddr,
    address_v6: Option<std::net::Ipv6Addr>,
    backend: &'static str,
    ctl: Mutex<Ctl>,
    workers: Vec<Worker>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    events: Receiver<RelayEvent>,
    closed: Arc<Mutex<VecDeque<ClosedPairStats>>>,
    /// Ports whose sockets the workers have closed, to go back to the pool.
    released: Arc<Mutex<Vec<u16>>>,
    kernel: Option<Arc<kernel::KernelPath>>,
}

impl Relay {
    /// Start the worker threads. With `Backend::Auto`, io_uring is tried first and epoll is used
    /// when the kernel refuses it (seccomp, `kernel.io_uring_disabled`, too old).
    pub fn start(cfg: RelayConfig) -> io::Result<Relay> {
        Self::start_with(cfg, &RelayTuning::default())
    }

    /// [`Relay::start`] with extra settings.
    pub fn start_with(cfg: RelayConfig, tuning: &RelayTuning) -> io::Result<Relay> {
        if cfg.port_min > cfg.port_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "port_min > port_max",
            ));
        }
        let n = if cfg.workers == 0 {
            auto_workers(std::thread::available_parallelism().map_or(1, |n| n.get()))
        } else {
            cfg.workers
        };
        let batch_us = tuning.batch_us();
        let seed = tuning.port_seed.unwrap_or_else(fallback_seed);
        let kernel = Self::kernel_path(&cfg, tuning.kernel_forwarding)?;
        let use_uring = match cfg.backend {
            Backend::Epoll => false,
            Backend::IoUring => {
                uring_probe()?;
                true
            }
            Backend::Auto => match uring_probe() {
                Ok(()) => {
                    match Self::start_workers(&cfg, n, true, batch_us, kernel.clone(), seed) {
                        Ok(r) => return Ok(r.with_v6(tuning.address_v6)),
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
        Self::start_workers(&cfg, n, use_uring, batch_us, kernel, seed)
            .map(|r| r.with_v6(tuning.address_v6))
    }

    /// Dual stack: ports facing IPv6 peers on `v6` (ignored when the primary address is IPv6).
    fn with_v6(mut self, v6: Option<std::net::Ipv6Addr>) -> Relay {
        if self.address.is_ipv4() {
            self.address_v6 = v6;
        }
        self
    }

    /// The address ports facing peers of `family` are bound on.
    fn ip_for(&self, family: Family) -> IpAddr {
        match (family, self.address_v6) {
            (Family::V6, Some(v6)) => IpAddr::V6(v6),
            _ => self.address,
        }
    }

    fn kernel_path(
        cfg: &RelayConfig,
        mode: KernelForwarding,
    ) -> io::Result<Option<Arc<kernel::KernelPath>>> {
        if mode == KernelForwarding::Off {
            return Ok(None);
        }
        // one flow per RTP port of the range at most (its latched source)
        let flows = (u32::from(cfg.port_max) - u32::from(cfg.port_min)) / 2 + 64;
        match kernel::KernelPath::attach(cfg.address, flows) {
            Ok(k) => Ok(Some(Arc::new(k))),
            Err(e) if mode == KernelForwarding::On => Err(io::Error::new(
                e.kind(),
                format!("media.kernel_forwarding: on, but the kernel path failed: {e}"),
            )),
            Err(e) => {
                tracing::info!("relay: kernel forwarding unavailable ({e}); user space only");
                Ok(None)
            }
        }
    }

    fn start_workers(
        cfg: &RelayConfig,
        n: usize,
        use_uring: bool,
        batch_us: u32,
        kernel: Option<Arc<kernel::KernelPath>>,
        seed: [u8; 32],
    ) -> io::Result<Relay> {
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
            let core = match (&kernel, cfg.address) {
                (Some(k), IpAddr::V4(ip)) => {
                    core.with_fast_path(k.clone() as Arc<dyn core::FastPath>, ip)
                }
                _ => core,
            };
            let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<Wake>>(1);
            let t = std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || worker_main(use_uring, batch_us, core, rx, ready_tx))?;
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
            address_v6: None,
            backend: if use_uring { "io_uring" } else { "epoll" },
            ctl: Mutex::new(Ctl {
                pool: PortPool::new(cfg.port_min, cfg.port_max, seed),
                kept: (0..n).map(|_| VecDeque::new()).collect(),
                kept_count: 0,
                kept_max: kept_max(),
                legs: HashMap::new(),
                next_worker: 0,
            }),
            workers,
            threads: Mutex::new(threads),
            events: ev_rx,
            closed,
            released,
            kernel,
        })
    }

    /// The interfaces the kernel fast path is attached to, when it runs.
    pub fn kernel_interfaces(&self) -> Option<&[String]> {
        self.kernel.as_ref().map(|k| &k.interfaces[..])
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
                    (g.pool.available() + g.kept_count) as u64,
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
            dropped_probation: c[ctr::DROP_PROBATION],
            srtp_auth_failures: c[ctr::DROP_SRTP_AUTH],
            srtp_replays: c[ctr::DROP_SRTP_REPLAY],
            srtp_packets: c[ctr::SRTP_PACKETS],
            transcode_drops: c[ctr::DROP_TRANSCODE],
            transcode_frames: std::array::from_fn(|i| c[ctr::TRANSCODE_FRAMES + i]),
            pairs_srtp: c[ctr::PAIRS_SRTP],
            pairs_transcode: c[ctr::PAIRS_TRANSCODE],
            dropped_no_destination: c[ctr::DROP_NO_DEST],
            dropped_truncated: c[ctr::DROP_TRUNCATED],
            send_errors: c[ctr::SEND_ERRORS],
            media_timeouts: c[ctr::MEDIA_TIMEOUTS],
            kernel_packets: c[ctr::KERNEL_PACKETS],
            kernel_flows: c[ctr::KERNEL_FLOWS],
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

    /// Queue `cmd` for `worker`; `wake` when it must act now (see the module documentation).
    fn send(&self, worker: usize, cmd: Cmd, wake: bool) -> Result<(), RelayError> {
        let w = self.workers.get(worker).ok_or(RelayError::Stopped)?;
        w.tx.send(cmd).map_err(|_| RelayError::Stopped)?;
        if wake {
            w.wake.wake();
        }
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

    /// Live stats of many legs (by relay port) in one round trip per worker, waiting at most
    /// `limit` in all: for an operator's listing of every call, without a round trip per leg.
    /// Ports not held (any more) are absent; a worker that does not answer in time is skipped.
    pub fn stats_many(&self, ports: &[u16], limit: Duration) -> HashMap<u16, LegStats> {
        let mut per_worker: HashMap<usize, Vec<u16>> = HashMap::new();
        if let Ok(g) = self.ctl.lock() {
            for p in ports {
                if let Some(&(_, w, _)) = g.legs.get(p) {
                    per_worker.entry(w).or_default().push(*p);
                }
            }
        }
        let mut waiting = Vec::new();
        for (w, ports) in per_worker {
            let (tx, rx) = crossbeam_channel::bounded(1);
            if self
                .send(w, Cmd::StatsMany { ports, reply: tx }, true)
                .is_ok()
            {
                waiting.push(rx);
            }
        }
        let deadline = Instant::now() + limit;
        let mut out = HashMap::new();
        for rx in waiting {
            if let Ok(v) = rx.recv_deadline(deadline) {
                out.extend(v);
            }
        }
        out
    }

    fn worker_of(&self, port: u16) -> Option<(LegPair, usize)> {
        let g = self.ctl.lock().ok()?;
        g.legs.get(&port).map(|&(p, w, _)| (p, w))
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

fn worker_main(
    use_uring: bool,
    batch_us: u32,
    core: Core,
    rx: Receiver<Cmd>,
    ready: Sender<io::Result<Wake>>,
) {
    #[cfg(target_os = "linux")]
    if use_uring {
        match uring::UringIo::new(batch_us) {
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
    let _ = (use_uring, batch_us);
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

/// Most ports (2 sockets each) kept open for reuse: a quarter of `RLIMIT_NOFILE`.
fn kept_max() -> usize {
    // SAFETY: getrlimit fills the struct it is given.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 0;
    }
    (rl.rlim_cur.min(1 << 24) / 8) as usize
}

mod ports;
use ports::{take_exact_two, take_two};

#[cfg(test)]
mod tests;
