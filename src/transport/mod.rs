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

mod conns;
mod guard;
pub use conns::*;
pub use guard::*;

/// What the shells hand to the core.
pub enum Input {
    /// One SIP message's bytes (a UDP datagram, or one frame of a stream).
    Message(Vec<u8>, Peer),
    /// Sending to this peer failed (ICMP port unreachable, TCP connect refused or reset).
    TransportError(Peer),
    /// A location record another cluster node wrote (or this node's own, read back at start).
    Cluster(Box<crate::cluster::RemoteBindings>),
    /// The cluster's Redis was (re)reached: this node's bindings are written to it again.
    ClusterResync,
    /// Call records (key, record) to adopt: a standby's takeover, or this node's own records
    /// from before a restart.
    ClusterTakeover(Vec<(String, Vec<u8>)>),
}

/// Listeners bind with `IP_FREEBIND` (a cluster standby's: the shared address arrives later).
static FREEBIND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the listeners bound from now on may name an address this host does not have yet.
pub fn set_freebind(on: bool) {
    FREEBIND.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// `IP_FREEBIND` (`IPV6_FREEBIND`) on `sock` when [`set_freebind`] asked for it.
fn freebind(sock: &socket2::Socket, v6: bool) -> io::Result<()> {
    if !FREEBIND.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let one: libc::c_int = 1;
    let (level, opt) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_FREEBIND)
    } else {
        (libc::SOL_IP, libc::IP_FREEBIND)
    };
    // SAFETY: setsockopt with a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
    freebind(&sock, addr.is_ipv6())?;
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
    freebind(&sock, addr.is_ipv6())?;
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
