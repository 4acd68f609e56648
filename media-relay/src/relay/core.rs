//! The per-worker forwarding core: the session table of one worker thread and the per-packet
//! decision (accept? where to?). Sans-IO: the back ends hand it received bytes and the time, and
//! it answers with the socket and address to send them to.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::kernel::{FlowEntry, FlowKey};
use super::rtcp;
use super::session::{DropReason, Evidence, Kind, LegState};
use super::ClosedPairStats;
use crate::dataplane::{LegPair, LegStats, RelayEvent};

mod offload;
mod processing;

/// Control -> worker messages.
pub(crate) enum Cmd {
    /// A new pair. For each side (a, b): the RTP and RTCP sockets freshly bound by the control
    /// side, or `None` when the port is one this worker kept open from a closed pair (see
    /// `Close::keep`). `at`: when the control side opened it.
    Open {
        pair: LegPair,
        socks: Box<[Option<[UdpSocket; 2]>; 2]>,
        at: Instant,
    },
    SetRemote {
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        /// The IP the leg's endpoint signals from (a NATed endpoint's media may come from it).
        signalling: Option<IpAddr>,
    },
    SetClockRates {
        port: u16,
        rates: Vec<(u8, u32)>,
    },
    /// SRTP keys of the leg owning `port` (both `None`: plain).
    SetSrtp {
        port: u16,
        rx: Option<media_core::srtp::MasterKey>,
        tx: Option<media_core::srtp::MasterKey>,
    },
    /// Transcoding of what the endpoint of the leg owning `port` sends (`None`: forwarded).
    SetTranscode {
        port: u16,
        spec: Option<media_core::transcode::Spec>,
    },
    /// A digit from SIP INFO for the transcoder of the leg owning `port` to send on.
    InjectDtmf {
        port: u16,
        digit: media_core::transcode::Dtmf,
    },
    /// Detach the pair's legs. With `keep`, the four sockets stay open, registered and
    /// receiving (datagrams reaching them are dropped) for a later `Open` of the same ports:
    /// no socket()/bind()/close() and no back-end registration per call.
    Close {
        pair: LegPair,
        keep: bool,
        at: Instant,
    },
    Stats {
        port: u16,
        reply: Sender<Option<LegStats>>,
    },
    /// The stats of every port of `ports` this worker holds, in one round trip.
    StatsMany {
        ports: Vec<u16>,
        reply: Sender<Vec<(u16, LegStats)>>,
    },
    /// Close the kept (idle) sockets of `port`: the control side needs the port number for the
    /// other family; it goes back to the pool once closed.
    Drop {
        port: u16,
    },
    Shutdown,
}

/// What the back end must do after a command.
pub(crate) enum Effect {
    None,
    /// Start receiving on these socket slots ([`NO_SLOT`] entries are to be skipped).
    Added([u32; 4]),
    /// Stop receiving on these socket slots, then call [`Core::free_socket`] for each.
    Removed([u32; 4]),
    Shutdown,
}

/// Counter indices of [`WorkerShared::counters`].
pub(crate) mod ctr {
    pub const PACKETS_IN: usize = 0;
    pub const BYTES_IN: usize = 1;
    pub const PACKETS_OUT: usize = 2;
    pub const BYTES_OUT: usize = 3;
    pub const RTCP_IN: usize = 4;
    pub const DROP_NOT_READY: usize = 5;
    pub const DROP_FOREIGN: usize = 6;
    pub const DROP_NO_DEST: usize = 7;
    pub const DROP_TRUNCATED: usize = 8;
    pub const SEND_ERRORS: usize = 9;
    pub const MEDIA_TIMEOUTS: usize = 10;
    pub const SESSIONS: usize = 11;
    pub const WAKEUPS: usize = 12;
    /// RTP packets the kernel fast path forwarded (also counted in PACKETS_IN/OUT).
    pub const KERNEL_PACKETS: usize = 13;
    /// Flows (one direction of a pair) installed in the kernel fast path now.
    pub const KERNEL_FLOWS: usize = 14;
    /// Dropped: from the leg's signalling IP, in sequence probation (not learned yet).
    pub const DROP_PROBATION: usize = 15;
    /// Dropped: an SRTP/SRTCP packet whose authentication tag does not verify.
    pub const DROP_SRTP_AUTH: usize = 16;
    /// Dropped: an SRTP/SRTCP packet seen before (or older than the replay window).
    pub const DROP_SRTP_REPLAY: usize = 17;
    /// Packets decrypted or encrypted (a pair with SRTP on at least one leg).
    pub const SRTP_PACKETS: usize = 18;
    /// Packets a transcoder did not send on: malformed, late, comfort noise, a payload type
    /// the other side does not get (what it buffers towards a longer frame is not counted).
    pub const DROP_TRANSCODE: usize = 19;
    /// Pairs processed in user space now: with SRTP on a leg, and with transcoding.
    pub const PAIRS_SRTP: usize = 20;
    pub const PAIRS_TRANSCODE: usize = 21;
    /// Frames encoded by transcoders, per (from, to) codec: `TRANSCODE_FRAMES + from × CODECS + to`
    /// in the order of [`media_core::transcode::Codec::ALL`].
    pub const TRANSCODE_FRAMES: usize = 22;
    /// Codecs the transcoders know (a square of counters).
    pub const CODECS: usize = media_core::transcode::Codec::ALL.len();
    pub const N: usize = TRANSCODE_FRAMES + CODECS * CODECS;
}

/// The kernel fast path as the core sees it: a table of settled flows (see `kernel.rs`). The
/// worker shell hands the core an implementation; the core decides what goes in and out.
pub(crate) trait FastPath: Send + Sync {
    fn install(&self, key: &FlowKey, entry: &FlowEntry) -> bool;
    fn read(&self, key: &FlowKey) -> Option<FlowEntry>;
    fn remove(&self, key: &FlowKey);
}

/// One direction of a pair in the fast path: packets arriving at this leg from its latched
/// source, and the entry's counters as last folded into the leg's stats.
#[derive(Clone, Copy, Debug)]
struct KFlow {
    key: FlowKey,
    packets: u64,
    bytes: u64,
    /// The SSRC the kernel entry carries; RTP with another one comes to user space.
    ssrc: u32,
}

/// Counters one worker publishes for `Relay::totals()` (single writer).
pub(crate) struct WorkerShared {
    pub counters: [AtomicU64; ctr::N],
}

impl Default for WorkerShared {
    fn default() -> Self {
        WorkerShared {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Minimal slab: stable `u32` indices, free list reuse.
pub(crate) struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn insert(&mut self, t: T) -> u32 {
        if let Some(i) = self.free.pop() {
            self.items[i as usize] = Some(t);
            i
        } else {
            self.items.push(Some(t));
            (self.items.len() - 1) as u32
        }
    }
    fn remove(&mut self, i: u32) -> Option<T> {
        let t = self.items.get_mut(i as usize)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }
    pub fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)?.as_ref()
    }
    fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)?.as_mut()
    }
    fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i as u32, t)))
    }
}

const NO_LEG: u32 = u32::MAX;
/// An empty entry of [`Effect::Added`].
pub(crate) const NO_SLOT: u32 = u32::MAX;

pub(crate) struct SockEntry {
    pub fd: RawFd,
    _sock: UdpSocket,
    leg: u32,
    kind: Kind,
    /// The RTP (even) port of the leg this socket belongs to.
    port: u16,
}

struct LegEntry {
    pair: LegPair,
    peer: u32,
    socks: [u32; 2],
    is_a: bool,
    opened: Instant,
    last_rtp: Instant,
    timed_out: bool,
    st: LegState,
    /// Installed in the kernel fast path (packets arriving at this leg).
    kflow: Option<KFlow>,
    /// Installing failed: not retried until the next `set_remote`.
    kfail: bool,
    /// SRTP on this leg: what its endpoint sends is unprotected with `rx`, what is sent to it
    /// protected with `tx` (RFC 3711). Such a pair never goes to the kernel fast path.
    srtp: Option<Box<LegSrtp>>,
    /// What this leg's endpoint sends is transcoded before it goes to the peer.
    tc: Option<Box<media_core::transcode::Transcoder>>,
}

struct LegSrtp {
    rx: Option<media_core::srtp::Context>,
    tx: Option<media_core::srtp::Context>,
}

impl LegEntry {
    fn rtp_port(&self) -> u16 {
        if self.is_a {
            self.pair.a
        } else {
            self.pair.b
        }
    }
}

/// A packet to send: out of socket `fd` to `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Forward {
    pub fd: RawFd,
    /// Socket slot of `fd` in this worker.
    pub slot: u32,
    pub dst: SocketAddr,
    /// Bytes to send from the start of the buffer (changed by SRTP processing).
    pub len: usize,
}

pub(crate) struct Core {
    socks: Slab<SockEntry>,
    legs: Slab<LegEntry>,
    by_port: HashMap<u16, u32>,
    strict: bool,
    timeout: Duration,
    local: [u64; ctr::N],
    shared: Arc<WorkerShared>,
    events: Sender<RelayEvent>,
    closed: Arc<Mutex<VecDeque<ClosedPairStats>>>,
    /// Sockets still open per closing port pair.
    closing: HashMap<u16, u8>,
    /// Sockets kept open after their pair closed (`Close::keep`): RTP port -> [RTP, RTCP] slots.
    idle: HashMap<u16, [u32; 2]>,
    /// Ports whose sockets are closed: the control side returns them to the pool.
    released: Arc<Mutex<Vec<u16>>>,
    /// Kernel fast path and the relay's IPv4 address (the table's keys need it).
    fast: Option<(Arc<dyn FastPath>, Ipv4Addr)>,
    /// Packets to send besides [`Core::on_packet`]'s answer (a transcoder that made more
    /// than one frame from one packet): the back end sends them with [`Core::drain_extra`].
    extra: Vec<Extra>,
}

/// What a transcoder made of one packet.
enum Transcoded {
    Nothing,
    /// One packet of this length, in the receive buffer.
    One(usize),
    Many(Vec<Vec<u8>>),
}

/// A packet of [`Core::drain_extra`].
struct Extra {
    fd: RawFd,
    dst: SocketAddr,
    data: Vec<u8>,
}

/// Longest a worker sleeps when idle. Commands that need no immediate action (set_remote, close,
/// reopening kept sockets) are sent without waking the worker: a datagram wakes it anyway, and
/// it applies pending commands before handling datagrams; otherwise it picks them up within this
/// time (closed pairs' final stats, timeouts baseline).
pub(crate) const CMD_POLL: Duration = Duration::from_millis(20);

/// How many closed pairs' final stats are kept for `Relay::drain_closed_stats`.
pub(crate) const CLOSED_KEEP: usize = 4096;

impl Core {
    pub fn new(
        strict: bool,
        timeout: Duration,
        shared: Arc<WorkerShared>,
        events: Sender<RelayEvent>,
        closed: Arc<Mutex<VecDeque<ClosedPairStats>>>,
        released: Arc<Mutex<Vec<u16>>>,
    ) -> Core {
        Core {
            socks: Slab::new(),
            legs: Slab::new(),
            by_port: HashMap::new(),
            strict,
            timeout,
            local: [0; ctr::N],
            shared,
            events,
            closed,
            closing: HashMap::new(),
            idle: HashMap::new(),
            released,
            fast: None,
            extra: Vec::new(),
        }
    }

    /// Use a kernel fast path for settled RTP flows of a relay bound to `ip`.
    pub fn with_fast_path(mut self, fast: Arc<dyn FastPath>, ip: Ipv4Addr) -> Core {
        self.fast = Some((fast, ip));
        self
    }

    pub fn sock(&self, slot: u32) -> Option<&SockEntry> {
        self.socks.get(slot)
    }

    /// Apply a control command at time `now`.
    pub fn apply(&mut self, cmd: Cmd, now: Instant) -> Effect {
        match cmd {
            Cmd::Open { pair, socks, at } => self.open(pair, *socks, at.min(now)),
            Cmd::SetRemote {
                port,
                rtp,
                rtcp,
                signalling,
            } => {
                // A new offer may move the latch: back to user space until it settles again.
                if let Some(&i) = self.by_port.get(&port) {
                    self.unoffload_pair(i, now);
                    if let Some(l) = self.legs.get_mut(i) {
                        l.kfail = false;
                    }
                }
                if let Some(l) = self.leg_by_port(port) {
                    let rtcp = rtcp.unwrap_or_else(|| {
                        let mut r = rtp;
                        r.set_port(rtp.port().wrapping_add(1));
                        r
                    });
                    l.st.latch[Kind::Rtp as usize].set_expected(rtp, signalling);
                    l.st.latch[Kind::Rtcp as usize].set_expected(rtcp, signalling);
                }
                Effect::None
            }
            Cmd::SetClockRates { port, rates } => {
                if let Some(l) = self.leg_by_port(port) {
                    l.st.set_clock_rates(&rates);
                }
                Effect::None
            }
            Cmd::SetSrtp { port, rx, tx } => {
                let Some(&i) = self.by_port.get(&port) else {
                    return Effect::None;
                };
                let srtp = (rx.is_some() || tx.is_some()).then(|| {
                    Box::new(LegSrtp {
                        rx: rx.as_ref().map(media_core::srtp::Context::new),
                        tx: tx.as_ref().map(media_core::srtp::Context::new),
                    })
                });
                // a processed pair is carried in user space only
                if srtp.is_some() {
                    self.unoffload_pair(i, now);
                }
                let before = self.processed(i);
                if let Some(l) = self.legs.get_mut(i) {
                    l.srtp = srtp;
                }
                self.count_processed(before, self.processed(i));
                Effect::None
            }
            Cmd::InjectDtmf { port, digit } => {
                let leg = self.by_port.get(&port).and_then(|&i| self.legs.get_mut(i));
                if let Some(tc) = leg.and_then(|l| l.tc.as_deref_mut()) {
                    tc.inject(digit);
                }
                Effect::None
            }
            Cmd::SetTranscode { port, spec } => {
                let Some(&i) = self.by_port.get(&port) else {
                    return Effect::None;
                };
                if spec.is_some() {
                    self.unoffload_pair(i, now);
                }
                let before = self.processed(i);
                if let Some(l) = self.legs.get_mut(i) {
                    // the same spec again (a re-offer that changes nothing) keeps the state
                    if l.tc.as_ref().map(|t| *t.spec()) != spec {
                        l.tc = spec.map(|s| Box::new(media_core::transcode::Transcoder::new(s)));
                    }
                }
                self.count_processed(before, self.processed(i));
                Effect::None
            }
            Cmd::Close { pair, keep, at } => self.close(pair, keep, at.min(now)),
            Cmd::Stats { port, reply } => {
                if let Some(&i) = self.by_port.get(&port) {
                    self.sync_pair(i, now);
                }
                let s = self
                    .by_port
                    .get(&port)
                    .and_then(|&i| self.legs.get(i))
                    .map(|l| l.st.snapshot());
                let _ = reply.try_send(s);
                Effect::None
            }
            Cmd::StatsMany { ports, reply } => {
                let mut out = Vec::with_capacity(ports.len());
                for port in ports {
                    let Some(&i) = self.by_port.get(&port) else {
                        continue;
                    };
                    self.sync_pair(i, now);
                    if let Some(l) = self.legs.get(i) {
                        out.push((port, l.st.snapshot()));
                    }
                }
                let _ = reply.try_send(out);
                Effect::None
            }
            Cmd::Drop { port } => match self.idle.remove(&port) {
                Some([rtp, rtcp]) => Effect::Removed([rtp, rtcp, NO_SLOT, NO_SLOT]),
                None => Effect::None,
            },
            Cmd::Shutdown => Effect::Shutdown,
        }
    }

    fn leg_by_port(&mut self, port: u16) -> Option<&mut LegEntry> {
        let i = *self.by_port.get(&port)?;
        self.legs.get_mut(i)
    }

    /// Whether the pair of leg `i` is processed: `[SRTP on a leg, transcoding on a leg]`.
    fn processed(&self, i: u32) -> [bool; 2] {
        let Some(l) = self.legs.get(i) else {
            return [false; 2];
        };
        let p = self.legs.get(l.peer);
        let srtp = l.srtp.is_some() || p.is_some_and(|p| p.srtp.is_some());
        let tc = l.tc.is_some() || p.is_some_and(|p| p.tc.is_some());
        [srtp, tc]
    }

    fn count_processed(&mut self, before: [bool; 2], after: [bool; 2]) {
        for (k, c) in [(0, ctr::PAIRS_SRTP), (1, ctr::PAIRS_TRANSCODE)] {
            match (before[k], after[k]) {
                (false, true) => self.local[c] += 1,
                (true, false) => self.local[c] = self.local[c].saturating_sub(1),
                _ => {}
            }
        }
    }

    fn open(&mut self, pair: LegPair, socks: [Option<[UdpSocket; 2]>; 2], now: Instant) -> Effect {
        let mut added = [NO_SLOT; 4];
        let mut s = [NO_SLOT; 4];
        for (side, (port, fresh)) in [pair.a, pair.b].into_iter().zip(socks).enumerate() {
            let slots = match fresh {
                Some([rtp, rtcp]) => {
                    let mut slot = |sock: UdpSocket, kind: Kind| {
                        self.socks.insert(SockEntry {
                            fd: sock.as_raw_fd(),
                            _sock: sock,
                            leg: NO_LEG,
                            kind,
                            port,
                        })
                    };
                    let v = [slot(rtp, Kind::Rtp), slot(rtcp, Kind::Rtcp)];
                    added[2 * side] = v[0];
                    added[2 * side + 1] = v[1];
                    v
                }
                // Kept open from an earlier pair: already receiving.
                None => self.idle.remove(&port).unwrap_or_else(|| {
                    tracing::error!(port, "relay: reused port has no open sockets");
                    [NO_SLOT; 2]
                }),
            };
            s[2 * side] = slots[0];
            s[2 * side + 1] = slots[1];
        }
        let mk = |is_a: bool, socks: [u32; 2]| LegEntry {
            pair,
            peer: NO_LEG,
            socks,
            is_a,
            opened: now,
            last_rtp: now,
            timed_out: false,
            st: LegState::default(),
            kflow: None,
            kfail: false,
            srtp: None,
            tc: None,
        };
        let la = self.legs.insert(mk(true, [s[0], s[1]]));
        let lb = self.legs.insert(mk(false, [s[2], s[3]]));
        if let Some(l) = self.legs.get_mut(la) {
            l.peer = lb;
        }
        if let Some(l) = self.legs.get_mut(lb) {
            l.peer = la;
        }
        for (i, leg) in [(0, la), (1, la), (2, lb), (3, lb)] {
            if let Some(e) = self.socks.get_mut(s[i]) {
                e.leg = leg;
            }
        }
        self.by_port.insert(pair.a, la);
        self.by_port.insert(pair.b, lb);
        self.local[ctr::SESSIONS] += 1;
        Effect::Added(added)
    }

    fn close(&mut self, pair: LegPair, keep: bool, now: Instant) -> Effect {
        let (Some(&la), Some(&lb)) = (self.by_port.get(&pair.a), self.by_port.get(&pair.b)) else {
            return Effect::None;
        };
        self.unoffload_pair(la, now);
        let before = self.processed(la);
        self.count_processed(before, [false; 2]);
        self.by_port.remove(&pair.a);
        self.by_port.remove(&pair.b);
        let (Some(a), Some(b)) = (self.legs.remove(la), self.legs.remove(lb)) else {
            return Effect::None;
        };
        let socks = [a.socks[0], a.socks[1], b.socks[0], b.socks[1]];
        for s in socks {
            if let Some(e) = self.socks.get_mut(s) {
                e.leg = NO_LEG;
            }
        }
        self.local[ctr::SESSIONS] = self.local[ctr::SESSIONS].saturating_sub(1);
        let rec = ClosedPairStats {
            pair,
            duration: now.saturating_duration_since(a.opened),
            a: a.st.snapshot(),
            b: b.st.snapshot(),
        };
        if let Ok(mut q) = self.closed.lock() {
            if q.len() >= CLOSED_KEEP {
                q.pop_front();
            }
            q.push_back(rec);
        }
        if keep {
            self.idle.insert(pair.a, [socks[0], socks[1]]);
            self.idle.insert(pair.b, [socks[2], socks[3]]);
            return Effect::None;
        }
        Effect::Removed(socks)
    }

    /// Drop a socket whose receive side the back end has stopped (closes the fd). When both
    /// sockets of a port pair are closed, the port goes back to the control side's pool.
    pub fn free_socket(&mut self, slot: u32) {
        let Some(e) = self.socks.remove(slot) else {
            return;
        };
        let port = e.port;
        drop(e);
        let left = self.closing.entry(port).or_insert(2);
        *left -= 1;
        if *left == 0 {
            self.closing.remove(&port);
            if let Ok(mut r) = self.released.lock() {
                r.push(port);
            }
        }
    }

    /// The forwarding decision for one datagram received on socket `slot` from `src` at `now`.
    /// Updates counters, latching and quality; returns where to send the unchanged bytes.
    #[inline]
    ///
    /// `buf[..len]` is the datagram; the rest of `buf` is room an SRTP tag may grow into
    /// ([`Forward::len`] says how much to send).
    pub fn on_packet(
        &mut self,
        slot: u32,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
        now: Instant,
    ) -> Option<Forward> {
        let (leg_i, kind) = match self.socks.get(slot) {
            Some(e) if e.leg != NO_LEG => (e.leg, e.kind),
            _ => return None,
        };
        self.local[ctr::PACKETS_IN] += 1;
        self.local[ctr::BYTES_IN] += len as u64;
        let strict = self.strict;
        let leg = self.legs.get_mut(leg_i)?;
        // RTCP on its own port, or multiplexed on the RTP port (RFC 5761 section 4); the
        // header says so before any decryption (SRTCP keeps it in the clear).
        let is_rtcp = kind == Kind::Rtcp || rtcp::is_rtcp(buf.get(..len)?);
        let mut len = len;
        if let Some(rx) = leg.srtp.as_mut().and_then(|s| s.rx.as_mut()) {
            // Authenticate before anything learns from the packet (latching included): a
            // forged or replayed packet moves nothing and goes nowhere.
            let r = if is_rtcp {
                rx.unprotect_rtcp(buf, len)
            } else {
                rx.unprotect_rtp(buf, len)
            };
            match r {
                Ok(n) => {
                    len = n;
                    self.local[ctr::SRTP_PACKETS] += 1;
                }
                Err(e) => {
                    leg.st.dropped += 1;
                    self.local[match e {
                        media_core::srtp::SrtpError::Replay => ctr::DROP_SRTP_REPLAY,
                        _ => ctr::DROP_SRTP_AUTH,
                    }] += 1;
                    return None;
                }
            }
        }
        let data = buf.get(..len)?;
        let ev = match kind {
            Kind::Rtp => Evidence::Rtp(data),
            Kind::Rtcp => Evidence::Rtcp(
                leg.st.latch[Kind::Rtp as usize]
                    .settled(strict)
                    .map(|s| s.ip()),
            ),
        };
        if let Err(r) = leg.st.latch[kind as usize].accept(src, ev, strict) {
            leg.st.dropped += 1;
            self.local[match r {
                DropReason::NotReady => ctr::DROP_NOT_READY,
                DropReason::ForeignSource => ctr::DROP_FOREIGN,
                DropReason::Probation => ctr::DROP_PROBATION,
            }] += 1;
            return None;
        }
        let mut sr_mid = None;
        if is_rtcp {
            self.local[ctr::RTCP_IN] += 1;
            sr_mid = leg.st.on_rtcp_in(data, now);
        } else {
            leg.st.on_rtp_in(data, now);
            leg.last_rtp = now;
        }
        let peer_i = leg.peer;
        // Transcoding (RTP only: RTCP keeps the SSRC and clock, which the transcoder keeps).
        let mut many = None;
        if !is_rtcp && leg.tc.is_some() {
            match self.transcode(leg_i, buf, len) {
                Transcoded::One(n) => len = n,
                Transcoded::Many(v) => many = Some(v),
                Transcoded::Nothing => return None,
            }
        }
        let peer = self.legs.get_mut(peer_i)?;
        let Some(dst) = peer.st.latch[kind as usize].destination() else {
            if let Some(leg) = self.legs.get_mut(leg_i) {
                leg.st.dropped += 1;
            }
            self.local[ctr::DROP_NO_DEST] += 1;
            return None;
        };
        if is_rtcp {
            peer.st.rtcp_out += 1;
            if let Some(mid) = sr_mid {
                peer.st.on_sr_out(mid, now);
            }
        } else {
            peer.st.rtp_out += 1;
            peer.st.rtp_bytes_out += len as u64;
            peer.last_rtp = now;
        }
        let out = peer.socks[kind as usize];
        if let Some(frames) = many {
            self.queue_extra(peer_i, out, dst, frames);
            return None;
        }
        if let Some(tx) = peer.srtp.as_mut().and_then(|s| s.tx.as_mut()) {
            let r = if is_rtcp {
                tx.protect_rtcp(buf, len)
            } else {
                tx.protect_rtp(buf, len)
            };
            match r {
                Ok(n) => {
                    len = n;
                    self.local[ctr::SRTP_PACKETS] += 1;
                }
                Err(_) => {
                    self.local[ctr::DROP_TRUNCATED] += 1;
                    return None;
                }
            }
        }
        let fd = self.socks.get(out)?.fd;
        let slot = out;
        self.local[ctr::PACKETS_OUT] += 1;
        self.local[ctr::BYTES_OUT] += len as u64;
        if !is_rtcp && kind == Kind::Rtp && self.fast.is_some() {
            // RTP in user space on a flow the kernel carries: a new SSRC (the kernel hands
            // those up). Take the pair back; it returns once the new source is validated.
            let moved = self.legs.get(leg_i).and_then(|l| l.kflow).is_some_and(|k| {
                buf.get(8..12)
                    .is_some_and(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) != k.ssrc)
            });
            if moved {
                self.unoffload_pair(leg_i, now);
            }
            self.maybe_offload(leg_i);
        }
        Some(Forward { fd, slot, dst, len })
    }

    /// A datagram was received truncated (larger than the buffer): dropped.
    pub fn count_truncated(&mut self) {
        self.local[ctr::DROP_TRUNCATED] += 1;
    }

    pub fn count_send_error(&mut self) {
        self.local[ctr::SEND_ERRORS] += 1;
    }

    pub fn count_wakeup(&mut self) {
        self.local[ctr::WAKEUPS] += 1;
    }

    /// Media timeout scan: a pair with no RTP on either leg for `timeout` gets one
    /// `RelayEvent::MediaTimeout`; it is re-armed when media flows again.
    pub fn scan_timeouts(&mut self, now: Instant) {
        if self.fast.is_some() {
            let in_kernel: Vec<u32> = self
                .legs
                .iter()
                .filter(|(_, l)| l.kflow.is_some())
                .map(|(i, _)| i)
                .collect();
            for i in in_kernel {
                self.sync_leg(i, now);
            }
        }
        let mut fired: Vec<u32> = Vec::new();
        for (i, l) in self.legs.iter() {
            if !l.is_a {
                continue;
            }
            let peer_last = self.legs.get(l.peer).map_or(l.last_rtp, |p| p.last_rtp);
            let last = l.last_rtp.max(peer_last);
            let idle = now.saturating_duration_since(last) >= self.timeout;
            if idle != l.timed_out {
                fired.push(i);
            }
        }
        for i in fired {
            if let Some(l) = self.legs.get_mut(i) {
                l.timed_out = !l.timed_out;
                if l.timed_out {
                    self.local[ctr::MEDIA_TIMEOUTS] += 1;
                    let _ = self.events.send(RelayEvent::MediaTimeout(l.pair));
                }
            }
        }
    }

    /// How often to scan for media timeouts.
    pub fn scan_interval(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Publish counters for `Relay::totals()`.
    pub fn publish(&self) {
        for (a, v) in self.shared.counters.iter().zip(self.local.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }
}
