//! Thin I/O shells for SIP transports (RFC 3261 §18): UDP datagrams and TCP streams framed by
//! Content-Length. They only move bytes between sockets and the core's input channel; every
//! protocol decision is the core's.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use signaling::{Peer, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::metrics::Metrics;
use crate::tls;

/// What the shells hand to the core.
pub enum Input {
    /// One SIP message's bytes (a UDP datagram, or one frame of a stream).
    Message(Vec<u8>, Peer),
    /// Sending to this peer failed (ICMP port unreachable, TCP connect refused or reset).
    TransportError(Peer),
}

/// Bind a UDP socket with IP_RECVERR so ICMP errors can be attributed to the destination that
/// caused them (Linux `ip(7)`): the core then fails over at once instead of waiting for Timer B.
/// An IPv6 socket is IPv6 only (`IPV6_V6ONLY`), so `[::]:5060` and `0.0.0.0:5060` are two
/// listeners side by side and every peer is seen with the address of its own family.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid fd and a c_int option value of the right size.
    unsafe {
        let (level, opt) = if addr.is_ipv4() {
            (libc::SOL_IP, libc::IP_RECVERR)
        } else {
            (libc::SOL_IPV6, libc::IPV6_RECVERR)
        };
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// Bind a TCP (or TLS) listener; an IPv6 one is IPv6 only, as [`bind_udp`]'s.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// Read one queued ICMP error and return the destination it was about (the `msg_name` of the
/// error queue message is the original destination; `ip(7)` IP_RECVERR).
fn read_errqueue(sock: &UdpSocket) -> Option<SocketAddr> {
    let fd = sock.as_raw_fd();
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut buf = [0u8; 512];
    let mut ctrl = [0u8; 512];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = ctrl.len();
    // SAFETY: all pointers reference live stack buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    sockaddr_to_std(&name)
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says this is a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this is a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// Receive loop of one UDP listener.
pub async fn udp_reader(sock: Arc<UdpSocket>, tx: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                // RFC 5626 keep-alives (CRLF) and stray empties are not messages.
                if buf[..n].iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                    continue;
                }
                let peer = Peer {
                    transport: Transport::Udp,
                    addr: from,
                };
                if tx
                    .send(Input::Message(buf[..n].to_vec(), peer))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                // ECONNREFUSED & co: an ICMP error is queued; find out for whom.
                while let Some(dest) = read_errqueue(&sock) {
                    let peer = Peer {
                        transport: Transport::Udp,
                        addr: dest,
                    };
                    tracing::debug!(%dest, "ICMP error for destination");
                    if tx.send(Input::TransportError(peer)).await.is_err() {
                        return;
                    }
                }
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
                ) {
                    tracing::warn!("udp receive error: {e}");
                }
            }
        }
    }
}

/// Why a stream connection was refused at accept or closed (the `reason` label of
/// `trunkline_stream_connections_{refused,closed}_total`).
pub mod reason {
    pub const GLOBAL_LIMIT: &str = "global_limit";
    pub const SOURCE_LIMIT: &str = "source_limit";
    /// Closed unfinished to make room for a newer handshake (the oldest of too many).
    pub const HANDSHAKES: &str = "handshakes_pending";
    pub const IDLE: &str = "idle";
    pub const PARTIAL: &str = "partial_message";
    pub const HANDSHAKE_TIMEOUT: &str = "handshake_timeout";
    pub const HANDSHAKE_FAILED: &str = "handshake_failed";
    pub const UNFRAMEABLE: &str = "unframeable";
    pub const TOO_LARGE: &str = "too_large";
    pub const PEER: &str = "peer";
    pub const WRITE_BACKLOG: &str = "write_backlog";
    /// Closed, never having carried a message, to make room under the global cap.
    pub const EVICTED: &str = "evicted";
    pub const ALL: [&str; 9] = [
        EVICTED,
        WRITE_BACKLOG,
        IDLE,
        PARTIAL,
        HANDSHAKE_TIMEOUT,
        HANDSHAKE_FAILED,
        UNFRAMEABLE,
        TOO_LARGE,
        PEER,
    ];
}

/// Rate limit for log lines about malformed input: at most one line per source address per
/// [`LogLimiter::EVERY`]; the rest are counted (`trunkline_log_lines_suppressed_total`) and
/// summed up in one periodic line ([`LogLimiter::summary`]).
pub struct LogLimiter {
    last: Mutex<HashMap<std::net::IpAddr, Instant>>,
    suppressed: AtomicU64,
    metric: prometheus::IntCounter,
}

impl LogLimiter {
    pub const EVERY: Duration = Duration::from_secs(60);
    /// Sources remembered at most (an attacker with many addresses cannot grow the table).
    const MAX_SOURCES: usize = 4096;

    pub fn new(metrics: &Metrics) -> LogLimiter {
        LogLimiter {
            last: Mutex::default(),
            suppressed: AtomicU64::new(0),
            metric: metrics.log_lines_suppressed.clone(),
        }
    }

    /// Whether a line about `ip` may be logged now (else it is counted as suppressed). An IPv6
    /// source is its /64 ([`signaling::source_key`]).
    pub fn allow(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        let ip = signaling::source_key(ip);
        let ok = match self.last.lock() {
            Ok(mut m) => {
                if m.len() >= Self::MAX_SOURCES {
                    m.retain(|_, t| now.saturating_duration_since(*t) < Self::EVERY);
                }
                match m.get(&ip) {
                    Some(t) if now.saturating_duration_since(*t) < Self::EVERY => false,
                    _ if m.len() >= Self::MAX_SOURCES => false,
                    _ => {
                        m.insert(ip, now);
                        true
                    }
                }
            }
            Err(_) => false,
        };
        if !ok {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            self.metric.inc();
        }
        ok
    }

    /// Lines suppressed since the last summary (and resets the count).
    pub fn summary(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }
}

/// Logs the suppressed-lines summary once per [`LogLimiter::EVERY`] when there is one.
pub async fn log_summaries(log: Arc<LogLimiter>) {
    let mut tick = tokio::time::interval(LogLimiter::EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    loop {
        tick.tick().await;
        let n = log.summary();
        if n > 0 {
            tracing::warn!(
                suppressed = n,
                "malformed input: {n} log lines suppressed in the last minute (at most one per \
                 source per minute; see trunkline_stream_connections_closed_total and \
                 trunkline_sip_messages_rejected_total)"
            );
        }
    }
}

/// Back-off of an accept loop on errors: a listener out of file descriptors (EMFILE, ENFILE)
/// or kernel memory would otherwise return the same error at once, forever, at 100 % CPU.
/// Sleeps 10 ms, doubling to 1 s while the errors last; counted in
/// `trunkline_accept_errors_total{listener,reason}`.
pub struct AcceptBackoff {
    delay: Duration,
    listener: &'static str,
    metrics: Arc<Metrics>,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    pub fn new(listener: &'static str, metrics: Arc<Metrics>) -> AcceptBackoff {
        AcceptBackoff {
            delay: Self::FIRST,
            listener,
            metrics,
            last_log: None,
        }
    }

    pub fn ok(&mut self) {
        self.delay = Self::FIRST;
    }

    /// Handles a failed accept: waits as long as the error calls for.
    pub async fn failed(&mut self, e: &io::Error) {
        let resources = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        let why = if resources { "resources" } else { "other" };
        self.metrics
            .accept_errors
            .with_label_values(&[self.listener, why])
            .inc();
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= LogLimiter::EVERY)
        {
            self.last_log = Some(now);
            tracing::warn!(
                listener = self.listener,
                "accept: {e} (backing off; counted in trunkline_accept_errors_total)"
            );
        }
        if resources {
            tokio::time::sleep(self.delay).await;
            self.delay = (self.delay * 2).min(Self::MAX);
        } else {
            // ECONNABORTED and the like concern one connection: go on, but never spin.
            tokio::time::sleep(Self::FIRST).await;
        }
    }
}

/// Admission of inbound stream connections (TCP and TLS listeners share one): a global cap and
/// a per-source-IP cap (trunk addresses exempt), the timeouts of `limits.tcp`, and the
/// counters of refused and closed connections. At the global cap a new connection closes the
/// oldest one that has not carried a message yet (idle sockets from many sources cannot keep
/// real clients out); only when there is none is it refused.
pub struct StreamGuard {
    pub limits: config::TcpLimits,
    state: Mutex<GuardState>,
    /// Inbound connections (not trunks') that have not carried a complete message yet, oldest
    /// first: under the global cap the oldest of them makes room for a new connection.
    unproven: Mutex<(u64, std::collections::BTreeMap<u64, Arc<ConnState>>)>,
    exempt: RwLock<(Option<Arc<config::Config>>, u64, HashSet<std::net::IpAddr>)>,
    metrics: Arc<Metrics>,
    pub log: Arc<LogLimiter>,
}

#[derive(Default)]
struct GuardState {
    total: u32,
    per_source: HashMap<std::net::IpAddr, u32>,
    /// Connections gone since memory was last handed back to the OS.
    gone: u32,
}

/// Connections that must have gone before [`StreamGuard::return_memory`] asks the allocator
/// to give freed pages back.
const RETURN_MEMORY_AFTER: u32 = 256;

extern "C" {
    /// mimalloc (the binary's allocator, linked statically by the `mimalloc` crate): free
    /// retained pages; `force` also returns them to the OS at once.
    fn mi_collect(force: bool);
}

/// One admitted inbound connection; gives its place back when dropped.
pub struct Slot {
    guard: Arc<StreamGuard>,
    /// The source key it counts under (an IPv6 source's /64).
    ip: std::net::IpAddr,
    transport: Transport,
    /// A trunk's connection: never refused, never closed for idleness.
    pub trunk: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut st) = self.guard.state.lock() {
            st.total = st.total.saturating_sub(1);
            st.gone = st.gone.saturating_add(1);
            if let Some(n) = st.per_source.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.per_source.remove(&self.ip);
                }
            }
        }
        self.guard
            .metrics
            .stream_connections
            .with_label_values(&[self.transport.via_token()])
            .dec();
    }
}

impl StreamGuard {
    pub fn new(cfg: &Arc<config::Config>, metrics: Arc<Metrics>) -> Arc<StreamGuard> {
        for t in [Transport::Tcp, Transport::Tls] {
            for r in [
                reason::GLOBAL_LIMIT,
                reason::SOURCE_LIMIT,
                reason::HANDSHAKES,
            ] {
                metrics
                    .stream_refused
                    .with_label_values(&[t.via_token(), r])
                    .inc_by(0);
            }
            for r in reason::ALL {
                metrics
                    .stream_closed
                    .with_label_values(&[t.via_token(), r])
                    .inc_by(0);
            }
        }
        let g = Arc::new(StreamGuard {
            limits: cfg.limits.tcp.clone(),
            state: Mutex::default(),
            unproven: Mutex::default(),
            exempt: RwLock::new((None, u64::MAX, HashSet::new())),
            log: Arc::new(LogLimiter::new(&metrics)),
            metrics,
        });
        g.update(cfg, &crate::dns::DnsTable::default());
        g
    }

    /// After a wave of closed connections (a flood that went away), has the allocator return
    /// the freed memory to the OS instead of keeping it cached: called once a second by the
    /// core loop, on the thread the connections' tasks ran on.
    pub fn return_memory(&self) {
        let due = match self.state.lock() {
            Ok(mut st) if st.gone >= RETURN_MEMORY_AFTER => {
                st.gone = 0;
                true
            }
            _ => false,
        };
        if due {
            // SAFETY: mi_collect takes no pointers and may be called from any thread at any
            // time (mimalloc's documented API).
            unsafe { mi_collect(true) };
        }
    }

    /// Takes the trunk addresses of `cfg` (and those its named trunks resolve to) if they are
    /// not the ones already in use.
    pub fn update(&self, cfg: &Arc<config::Config>, dns: &crate::dns::DnsTable) {
        let generation = dns.generation();
        if let Ok(st) = self.exempt.read() {
            if st.1 == generation && st.0.as_ref().is_some_and(|c| Arc::ptr_eq(c, cfg)) {
                return;
            }
        }
        let ips = crate::policy::static_trunk_ips(cfg)
            .chain(dns.ips())
            .map(config::canonical_ip)
            .collect();
        if let Ok(mut st) = self.exempt.write() {
            *st = (Some(cfg.clone()), generation, ips);
        }
    }

    fn is_trunk(&self, ip: std::net::IpAddr) -> bool {
        self.exempt
            .read()
            .map(|st| st.2.contains(&config::canonical_ip(ip)))
            .unwrap_or(false)
    }

    /// Admits a connection from `ip`, or says why not (and counts it).
    pub fn admit(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        transport: Transport,
    ) -> Result<Slot, &'static str> {
        let trunk = self.is_trunk(config::canonical_ip(ip));
        // Connections count per source: an IPv4 address, an IPv6 /64 (one end site holds it all).
        let ip = signaling::source_key(ip);
        let refused = match self.state.lock() {
            Ok(mut st) => {
                let here = st.per_source.get(&ip).copied().unwrap_or(0);
                if !trunk && here >= self.limits.max_per_source {
                    Some(reason::SOURCE_LIMIT)
                } else if !trunk && st.total >= self.limits.max_connections && !self.evict_one() {
                    Some(reason::GLOBAL_LIMIT)
                } else {
                    st.total += 1;
                    st.per_source.insert(ip, here + 1);
                    None
                }
            }
            Err(_) => Some(reason::GLOBAL_LIMIT),
        };
        if let Some(r) = refused {
            self.refused(transport, r);
            return Err(r);
        }
        self.metrics
            .stream_connections
            .with_label_values(&[transport.via_token()])
            .inc();
        Ok(Slot {
            guard: self.clone(),
            ip,
            transport,
            trunk,
        })
    }

    /// Closes the oldest connection that has not carried a message yet (its slot comes back
    /// when its task ends); false when there is none.
    fn evict_one(&self) -> bool {
        let victim = self
            .unproven
            .lock()
            .ok()
            .and_then(|mut u| u.1.pop_first().map(|(_, st)| st));
        match victim {
            Some(st) => {
                st.close_for(reason::EVICTED);
                true
            }
            None => false,
        }
    }

    /// Tracks a new inbound connection as unproven; returns its key for [`Self::proven`].
    fn track_unproven(&self, st: &Arc<ConnState>) -> Option<u64> {
        let mut u = self.unproven.lock().ok()?;
        let id = u.0;
        u.0 += 1;
        u.1.insert(id, st.clone());
        Some(id)
    }

    /// The connection carried a message (or ended): no longer a candidate for eviction.
    fn proven(&self, id: &mut Option<u64>) {
        if let Some(k) = id.take() {
            if let Ok(mut u) = self.unproven.lock() {
                u.1.remove(&k);
            }
        }
    }

    pub fn refused(&self, transport: Transport, why: &'static str) {
        self.metrics
            .stream_refused
            .with_label_values(&[transport.via_token(), why])
            .inc();
    }

    pub fn closed(&self, transport: Transport, why: &'static str) {
        self.metrics
            .stream_closed
            .with_label_values(&[transport.via_token(), why])
            .inc();
    }
}

/// Milliseconds since the first call: the connections' activity clock (an atomic per
/// connection instead of a lock).
fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What the reader, the writer and the core loop share about one connection.
#[derive(Default)]
struct ConnState {
    /// When a complete message last went either way ([`clock_ms`]).
    last_active: AtomicU64,
    /// It carries a call's dialog or a registration (set by the core loop once a second).
    in_use: AtomicBool,
    /// Close now (with `close_reason`).
    close: tokio::sync::Notify,
    close_reason: Mutex<Option<&'static str>>,
}

impl ConnState {
    fn close_for(&self, why: &'static str) {
        if let Ok(mut r) = self.close_reason.lock() {
            r.get_or_insert(why);
        }
        self.close.notify_one();
    }

    fn closed_why(&self) -> &'static str {
        self.close_reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or(reason::WRITE_BACKLOG)
    }
}

/// Messages queued for one connection's writer at most: a peer that sends requests but never
/// reads the answers is closed rather than buffered without bound.
const WRITE_QUEUE: usize = 1024;

impl ConnState {
    fn touch(&self) {
        self.last_active.store(clock_ms(), Ordering::Relaxed);
    }
}

struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
    state: Arc<ConnState>,
}

/// Open stream connections of one transport (TCP, or TLS over TCP) by remote address; each has
/// a writer task fed by a channel. TLS connections carry the same framing as TCP once the
/// handshake is done (RFC 3261 §18.3), so both share the reading loop.
#[derive(Clone)]
pub struct TcpConns {
    inner: Arc<Mutex<HashMap<SocketAddr, Conn>>>,
    /// Peers with a registration over this transport (seen in the 2xx answers to their
    /// REGISTER that go out on the connection), until the binding's expiry.
    registered: Arc<Mutex<HashMap<SocketAddr, Instant>>>,
    transport: Transport,
    /// Outbound TLS settings by destination (TLS connections only).
    tls: Option<Arc<tls::Clients>>,
    guard: Arc<StreamGuard>,
}

impl TcpConns {
    /// The TCP connection table.
    pub fn tcp(guard: Arc<StreamGuard>) -> TcpConns {
        TcpConns {
            inner: Arc::default(),
            registered: Arc::default(),
            transport: Transport::Tcp,
            tls: None,
            guard,
        }
    }

    /// The TLS connection table; outbound connections use `clients` for trust and names.
    pub fn tls(clients: Arc<tls::Clients>, guard: Arc<StreamGuard>) -> TcpConns {
        TcpConns {
            inner: Arc::default(),
            registered: Arc::default(),
            transport: Transport::Tls,
            tls: Some(clients),
            guard,
        }
    }

    /// The outbound TLS settings, if this is the TLS table.
    pub fn tls_clients(&self) -> Option<&Arc<tls::Clients>> {
        self.tls.as_ref()
    }

    fn peer(&self, addr: SocketAddr) -> Peer {
        Peer {
            transport: self.transport,
            addr,
        }
    }

    /// Marks which connections carry a call or a registration (kept however idle): the
    /// core's stream peers in use, plus the peers registered through this table. Once a
    /// second from the core loop.
    pub fn mark_in_use(&self, calls: &HashSet<Peer>, now: Instant) {
        let mut keep: HashSet<SocketAddr> = calls
            .iter()
            .filter(|p| p.transport == self.transport)
            .map(|p| p.addr)
            .collect();
        if let Ok(mut r) = self.registered.lock() {
            r.retain(|_, until| *until > now);
            keep.extend(r.keys().copied());
        }
        if let Ok(m) = self.inner.lock() {
            for (addr, c) in m.iter() {
                c.state.in_use.store(keep.contains(addr), Ordering::Relaxed);
            }
        }
    }

    /// Send bytes to `addr`, reusing an open connection or connecting (RFC 3261 §18.1.1).
    pub fn send(&self, addr: SocketAddr, data: Vec<u8>, tx: &mpsc::Sender<Input>) {
        if data.starts_with(b"SIP/2.0 2") {
            if let Some(until) = register_expiry(&data) {
                if let Ok(mut r) = self.registered.lock() {
                    match until {
                        Some(secs) if secs > 0 => {
                            r.insert(addr, Instant::now() + Duration::from_secs(secs));
                        }
                        _ => {
                            r.remove(&addr);
                        }
                    }
                }
            }
        }
        let existing = self
            .inner
            .lock()
            .ok()
            .and_then(|m| m.get(&addr).map(|c| (c.tx.clone(), c.state.clone())));
        if let Some((w, st)) = existing {
            st.touch();
            return match w.try_send(data) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    st.close_for(reason::WRITE_BACKLOG);
                    self.forget(addr, &st);
                }
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    self.connect(addr, Some(d), tx.clone())
                }
            };
        }
        self.connect(addr, Some(data), tx.clone());
    }

    fn insert(&self, addr: SocketAddr) -> (mpsc::Receiver<Vec<u8>>, Arc<ConnState>) {
        let (wtx, wrx) = mpsc::channel(WRITE_QUEUE);
        let state = Arc::new(ConnState::default());
        state.touch();
        if let Ok(mut m) = self.inner.lock() {
            m.insert(
                addr,
                Conn {
                    tx: wtx,
                    state: state.clone(),
                },
            );
        }
        (wrx, state)
    }

    fn connect(&self, addr: SocketAddr, first: Option<Vec<u8>>, tx: mpsc::Sender<Input>) {
        let (wrx, state) = self.insert(addr);
        if let Some(d) = first {
            if let Ok(m) = self.inner.lock() {
                if let Some(c) = m.get(&addr) {
                    let _ = c.tx.try_send(d);
                }
            }
        }
        let conns = self.clone();
        tokio::spawn(async move {
            let s = match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%addr, "tcp connect failed: {e}");
                    conns.forget(addr, &state);
                    let _ = tx.send(Input::TransportError(conns.peer(addr))).await;
                    return;
                }
            };
            let _ = s.set_nodelay(true);
            let Some(clients) = &conns.tls else {
                return conns.run(s.into_split(), addr, wrx, state, None, tx).await;
            };
            // RFC 3261 §26.3.1: the UAC side of TLS checks the server's certificate.
            let r = match clients.target(addr) {
                Ok(t) => {
                    let connector = TlsConnector::from(t.config.clone());
                    tokio::time::timeout(
                        conns.guard.limits.handshake_timeout,
                        connector.connect(t.name.clone(), s),
                    )
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("handshake timed out")))
                }
                Err(e) => Err(io::Error::other(e)),
            };
            match r {
                Ok(ts) => {
                    conns
                        .run(tokio::io::split(ts), addr, wrx, state, None, tx)
                        .await
                }
                Err(e) => {
                    tracing::warn!(%addr, "tls connect failed: {e}");
                    conns.forget(addr, &state);
                    let _ = tx.send(Input::TransportError(conns.peer(addr))).await;
                }
            }
        });
    }

    /// Removes `addr`'s entry if it is still this connection's (a newer one may have
    /// replaced it).
    fn forget(&self, addr: SocketAddr, state: &Arc<ConnState>) {
        if let Ok(mut m) = self.inner.lock() {
            if m.get(&addr).is_some_and(|c| Arc::ptr_eq(&c.state, state)) {
                m.remove(&addr);
            }
        }
    }

    /// Logs a line about malformed input from `addr`, at most once a minute per source.
    fn log_bad(&self, addr: SocketAddr, what: std::fmt::Arguments<'_>) {
        if self.guard.log.allow(addr.ip(), Instant::now()) {
            tracing::warn!(%addr, "{}: {what}, closing (further lines from this source for a minute: suppressed)", self.transport.via_token());
        }
    }

    /// Serve an established connection: frames in, queued bytes out. `slot` is the admission
    /// of an inbound connection (None: one trunkline opened); it is given back when this ends.
    async fn run<R, W>(
        &self,
        (mut rd, mut wr): (R, W),
        addr: SocketAddr,
        mut wrx: mpsc::Receiver<Vec<u8>>,
        state: Arc<ConnState>,
        slot: Option<Slot>,
        tx: mpsc::Sender<Input>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let writer = tokio::spawn(async move {
            while let Some(d) = wrx.recv().await {
                if wr.write_all(&d).await.is_err() {
                    break;
                }
                // TLS buffers records: push each message out now.
                if wr.flush().await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let peer = self.peer(addr);
        let limits = &self.guard.limits;
        let trunk = slot.as_ref().is_some_and(|s| s.trunk);
        // An inbound connection that has said nothing yet may be closed to make room.
        let mut unproven = match &slot {
            Some(s) if !s.trunk => self.guard.track_unproven(&state),
            _ => None,
        };
        // Grown only as a message needs; an idle connection holds this small buffer only.
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        // When the bytes of an unfinished message started to wait in `buf`.
        let mut partial_since: Option<Instant> = None;
        let why = 'conn: loop {
            let now = Instant::now();
            let idle_at = {
                let last = state.last_active.load(Ordering::Relaxed);
                let since = Duration::from_millis(clock_ms().saturating_sub(last));
                now + limits.idle_timeout.saturating_sub(since)
            };
            let deadline = match partial_since {
                Some(t) => idle_at.min(t + limits.partial_message_timeout),
                None => idle_at,
            };
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline.into(), rd.read(&mut chunk)) => r,
                _ = state.close.notified() => break state.closed_why(),
            };
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) => break reason::PEER,
                Ok(Ok(n)) => n,
                Err(_) => {
                    let now = Instant::now();
                    if partial_since.is_some_and(|t| now >= t + limits.partial_message_timeout) {
                        break reason::PARTIAL;
                    }
                    if now >= idle_at {
                        if trunk || state.in_use.load(Ordering::Relaxed) {
                            state.touch();
                            continue;
                        }
                        break reason::IDLE;
                    }
                    continue;
                }
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match signaling::parse::frame_len(&buf) {
                    Ok(Some(frame)) => {
                        let msg: Vec<u8> = buf.drain(..frame.len).collect();
                        if frame.keepalive {
                            // RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong. A ping
                            // alone does not keep an unused connection open.
                            if let Ok(m) = self.inner.lock() {
                                if let Some(c) = m.get(&addr) {
                                    let _ = c.tx.try_send(b"\r\n".to_vec());
                                }
                            }
                            continue;
                        }
                        state.touch();
                        self.guard.proven(&mut unproven);
                        if tx.send(Input::Message(msg, peer)).await.is_err() {
                            break 'conn reason::PEER;
                        }
                    }
                    Ok(None) => {
                        if buf.len() > 256 * 1024 {
                            self.log_bad(addr, format_args!("message too large"));
                            break 'conn reason::TOO_LARGE;
                        }
                        break;
                    }
                    Err(e) => {
                        self.log_bad(addr, format_args!("unframeable input ({e})"));
                        break 'conn reason::UNFRAMEABLE;
                    }
                }
            }
            // Only bytes that are not a whole message yet start (or keep) the clock; stray
            // CRLFs between messages do not count.
            if buf.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                partial_since = None;
                if buf.capacity() > 16 * 1024 {
                    buf = Vec::new();
                }
            } else if partial_since.is_none() {
                partial_since = Some(Instant::now());
            }
        };
        self.guard.proven(&mut unproven);
        if slot.is_some() || why != reason::PEER {
            self.guard.closed(self.transport, why);
        }
        if why != reason::PEER {
            tracing::debug!(%addr, reason = why, "{}: connection closed", self.transport.via_token());
        }
        self.forget(addr, &state);
        writer.abort();
        drop(slot);
    }
}

/// For a 2xx answer to a REGISTER: `Some(Some(seconds))` the longest binding it confirms,
/// `Some(None)` none (a query or an unregistration); `None` when it answers something else.
fn register_expiry(data: &[u8]) -> Option<Option<u64>> {
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = std::str::from_utf8(data.get(..head_end)?).ok()?;
    let mut is_register = false;
    let mut header_expires = None;
    let mut contact_expires: Option<u64> = None;
    let mut contacts = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("cseq") {
            is_register = value.trim().ends_with("REGISTER");
        } else if name.eq_ignore_ascii_case("expires") {
            header_expires = value.trim().parse::<u64>().ok();
        } else if name.eq_ignore_ascii_case("contact") || name.eq_ignore_ascii_case("m") {
            contacts = true;
            let lower = value.to_ascii_lowercase();
            for part in lower.split(';').skip(1) {
                if let Some(v) = part.trim().strip_prefix("expires=") {
                    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if let Ok(n) = digits.parse::<u64>() {
                        contact_expires = Some(contact_expires.map_or(n, |m| m.max(n)));
                    }
                }
            }
        }
    }
    if !is_register {
        return None;
    }
    if !contacts {
        return Some(None);
    }
    Some(Some(contact_expires.or(header_expires).unwrap_or(3600)))
}

/// Accept loop of one TCP listener.
pub async fn tcp_acceptor(
    listener: TcpListener,
    conns: TcpConns,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = AcceptBackoff::new("tcp", metrics);
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.ok();
        let Ok(slot) = conns.guard.admit(addr.ip(), Transport::Tcp) else {
            // Closed at once (RST on close of an unread socket is fine: nothing was said).
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (wrx, state) = conns.insert(addr);
        let conns2 = conns.clone();
        let tx2 = tx.clone();
        tokio::spawn(async move {
            conns2
                .run(stream.into_split(), addr, wrx, state, Some(slot), tx2)
                .await
        });
    }
}

/// Handshakes in progress on one TLS listener, oldest first, each with its eviction signal.
#[derive(Default)]
struct Handshakes {
    next: u64,
    pending: std::collections::BTreeMap<u64, tokio::sync::oneshot::Sender<()>>,
}

/// Accept loop of one TLS listener: each connection is served once its handshake is done
/// (bounded by `limits.tcp.handshake_timeout`), then exactly like TCP. A connection counts
/// against the caps from accept on, so silent sockets of one source cannot hold more than
/// `max_per_source` handshakes; with [`tls::MAX_PENDING_HANDSHAKES`] in progress, a new one
/// closes the oldest (a real client finishes in milliseconds, a silent socket never does, so
/// silent sockets from many sources cannot lock real clients out either).
pub async fn tls_acceptor(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    conns: TcpConns,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    let handshakes = Arc::new(Mutex::new(Handshakes::default()));
    let mut backoff = AcceptBackoff::new("tls", metrics);
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.ok();
        let Ok(slot) = conns.guard.admit(addr.ip(), Transport::Tls) else {
            continue;
        };
        let (evict_tx, mut evict_rx) = tokio::sync::oneshot::channel();
        let id = {
            let Ok(mut h) = handshakes.lock() else {
                continue;
            };
            if h.pending.len() >= tls::MAX_PENDING_HANDSHAKES {
                if let Some((_, oldest)) = h.pending.pop_first() {
                    let _ = oldest.send(());
                }
            }
            let id = h.next;
            h.next += 1;
            h.pending.insert(id, evict_tx);
            id
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let conns = conns.clone();
        let tx = tx.clone();
        let handshakes = handshakes.clone();
        tokio::spawn(async move {
            let limit = conns.guard.limits.handshake_timeout;
            let r = tokio::select! {
                r = tokio::time::timeout(limit, acceptor.accept(stream)) => Some(r),
                _ = &mut evict_rx => None,
            };
            if let Ok(mut h) = handshakes.lock() {
                h.pending.remove(&id);
            }
            let ts = match r {
                Some(Ok(Ok(ts))) => ts,
                Some(Ok(Err(e))) => {
                    conns.guard.closed(Transport::Tls, reason::HANDSHAKE_FAILED);
                    if conns.guard.log.allow(addr.ip(), Instant::now()) {
                        tracing::info!(%addr, "tls handshake failed: {e} (further lines from this source for a minute: suppressed)");
                    }
                    return;
                }
                Some(Err(_)) => {
                    conns
                        .guard
                        .closed(Transport::Tls, reason::HANDSHAKE_TIMEOUT);
                    tracing::debug!(%addr, "tls handshake timed out");
                    return;
                }
                None => {
                    conns.guard.refused(Transport::Tls, reason::HANDSHAKES);
                    tracing::debug!(%addr, "tls: too many handshakes in progress, oldest closed");
                    return;
                }
            };
            let (wrx, state) = conns.insert(addr);
            conns
                .run(tokio::io::split(ts), addr, wrx, state, Some(slot), tx)
                .await
        });
    }
}

/// Outgoing side: routes each transmit to the right socket.
pub struct Sender {
    pub udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    pub tcp: TcpConns,
    /// TLS connections (see [`TcpConns::tls`]).
    pub tls: TcpConns,
    pub input: mpsc::Sender<Input>,
}

impl Sender {
    pub fn send(&self, to: Peer, data: Vec<u8>) {
        match to.transport {
            Transport::Udp => {
                let sock = self
                    .udp
                    .iter()
                    .find(|(a, _)| a.is_ipv4() == to.addr.is_ipv4())
                    .or(self.udp.first());
                if let Some((_, s)) = sock {
                    if let Err(e) = s.try_send_to(&data, to.addr) {
                        if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                            let _ = self.input.try_send(Input::TransportError(to));
                        } else {
                            tracing::debug!(addr = %to.addr, "udp send: {e}");
                        }
                    }
                }
            }
            Transport::Tcp => self.tcp.send(to.addr, data, &self.input),
            Transport::Tls => self.tls.send(to.addr, data, &self.input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_answers_are_recognised_with_their_expiry() {
        let ok = |extra: &str| {
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKx\r\nCSeq: 2 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
            )
        };
        let exp = |s: String| register_expiry(s.as_bytes());
        assert_eq!(
            exp(ok(
                "Contact: <sip:a@10.0.0.1;transport=tcp>;expires=600\r\n"
            )),
            Some(Some(600))
        );
        assert_eq!(
            exp(ok("m: <sip:a@1>;Expires=30, <sip:a@2>;expires=90\r\n")),
            Some(Some(90))
        );
        assert_eq!(
            exp(ok("Expires: 120\r\nContact: <sip:a@1>\r\n")),
            Some(Some(120))
        );
        assert_eq!(exp(ok("")), Some(None), "no contact: nothing registered");
        assert_eq!(exp(ok("Contact: <sip:a@1>;expires=0\r\n")), Some(Some(0)));
        let invite = "SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nContact: <sip:b@1>\r\n\r\n";
        assert_eq!(register_expiry(invite.as_bytes()), None);
        assert_eq!(register_expiry(b"SIP/2.0 200 \xff\xfe"), None);
    }

    #[test]
    fn log_lines_one_per_source_per_minute() {
        let m = Metrics::new();
        let l = LogLimiter::new(&m);
        let t0 = Instant::now();
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(a, t0));
        assert!(!l.allow(a, t0 + Duration::from_secs(1)));
        assert!(!l.allow(a, t0 + Duration::from_secs(59)));
        assert!(l.allow(b, t0));
        assert!(l.allow(a, t0 + Duration::from_secs(60)));
        assert_eq!(l.summary(), 2);
        assert_eq!(l.summary(), 0);
        assert_eq!(m.log_lines_suppressed.get(), 2);
        // A flood of sources cannot grow the table past its bound.
        for i in 0..10_000u32 {
            l.allow(std::net::IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.last.lock().unwrap().len() <= LogLimiter::MAX_SOURCES);
    }

    #[test]
    fn caps_per_source_and_global_trunks_exempt() {
        let y = "listen:\n  - { transport: tcp, address: 127.0.0.1:5060 }\nmedia:\n  address: 127.0.0.1\n  ports: 20000-20099\nlimits:\n  tcp: { max_connections: 5, max_per_source: 2 }\ntrunks:\n  t: { address: 192.0.2.9:5060, transport: tcp }\n";
        let cfg = Arc::new(config::from_yaml(y, "t.yaml").unwrap());
        let m = Arc::new(Metrics::new());
        let g = StreamGuard::new(&cfg, m.clone());
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let a1 = g.admit(ip("192.0.2.1"), Transport::Tcp).unwrap();
        let _a2 = g.admit(ip("192.0.2.1"), Transport::Tcp).unwrap();
        assert_eq!(
            g.admit(ip("::ffff:192.0.2.1"), Transport::Tcp).err(),
            Some(reason::SOURCE_LIMIT)
        );
        let _b1 = g.admit(ip("192.0.2.2"), Transport::Tls).unwrap();
        let _b2 = g.admit(ip("192.0.2.2"), Transport::Tls).unwrap();
        let _c1 = g.admit(ip("192.0.2.3"), Transport::Tcp).unwrap();
        assert_eq!(
            g.admit(ip("192.0.2.4"), Transport::Tcp).err(),
            Some(reason::GLOBAL_LIMIT)
        );
        let trunk: Vec<Slot> = (0..4)
            .map(|_| g.admit(ip("192.0.2.9"), Transport::Tcp).unwrap())
            .collect();
        assert!(trunk.iter().all(|s| s.trunk));
        drop(trunk);
        drop(a1);
        assert!(g.admit(ip("192.0.2.1"), Transport::Tcp).is_ok());
        let refused = |t: &str, r: &str| m.stream_refused.with_label_values(&[t, r]).get();
        assert_eq!(refused("TCP", reason::SOURCE_LIMIT), 1);
        assert_eq!(refused("TCP", reason::GLOBAL_LIMIT), 1);
        assert_eq!(m.stream_connections.with_label_values(&["TCP"]).get(), 2);
        // IPv6: the per-source cap is per /64 (one end site holds it all).
        drop(_c1);
        let _d1 = g.admit(ip("2001:db8:0:1::1"), Transport::Tcp).unwrap();
        let _d2 = g.admit(ip("2001:db8:0:1:aaaa::2"), Transport::Tcp).unwrap();
        assert_eq!(
            g.admit(ip("2001:db8:0:1:ffff::3"), Transport::Tcp).err(),
            Some(reason::SOURCE_LIMIT)
        );
        assert_eq!(refused("TCP", reason::SOURCE_LIMIT), 2);
    }
}
