//! Thin I/O shells for SIP transports (RFC 3261 §18): UDP datagrams and TCP streams framed by
//! Content-Length. They only move bytes between sockets and the core's input channel; every
//! protocol decision is the core's.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use signaling::{Peer, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

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
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
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

/// Open stream connections of one transport (TCP, or TLS over TCP) by remote address; each has
/// a writer task fed by a channel. TLS connections carry the same framing as TCP once the
/// handshake is done (RFC 3261 §18.3), so both share the reading loop.
#[derive(Clone)]
pub struct TcpConns {
    inner: Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>>,
    transport: Transport,
    /// Outbound TLS settings by destination (TLS connections only).
    tls: Option<Arc<tls::Clients>>,
}

impl Default for TcpConns {
    fn default() -> Self {
        TcpConns {
            inner: Arc::default(),
            transport: Transport::Tcp,
            tls: None,
        }
    }
}

impl TcpConns {
    /// The TLS connection table; outbound connections use `clients` for trust and names.
    pub fn tls(clients: Arc<tls::Clients>) -> TcpConns {
        TcpConns {
            inner: Arc::default(),
            transport: Transport::Tls,
            tls: Some(clients),
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

    /// Send bytes to `addr`, reusing an open connection or connecting (RFC 3261 §18.1.1).
    pub fn send(&self, addr: SocketAddr, data: Vec<u8>, tx: &mpsc::Sender<Input>) {
        let existing = self.inner.lock().ok().and_then(|m| m.get(&addr).cloned());
        if let Some(w) = existing {
            if w.send(data).is_ok() {
                return;
            }
            return self.connect(addr, None, tx.clone());
        }
        self.connect(addr, Some(data), tx.clone());
    }

    fn connect(&self, addr: SocketAddr, first: Option<Vec<u8>>, tx: mpsc::Sender<Input>) {
        let (wtx, wrx) = mpsc::unbounded_channel();
        if let Some(d) = first {
            let _ = wtx.send(d);
        }
        if let Ok(mut m) = self.inner.lock() {
            m.insert(addr, wtx);
        }
        let conns = self.clone();
        tokio::spawn(async move {
            let s = match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%addr, "tcp connect failed: {e}");
                    conns.forget(addr);
                    let _ = tx.send(Input::TransportError(conns.peer(addr))).await;
                    return;
                }
            };
            let _ = s.set_nodelay(true);
            let Some(clients) = &conns.tls else {
                return conns.run(s.into_split(), addr, wrx, tx).await;
            };
            // RFC 3261 §26.3.1: the UAC side of TLS checks the server's certificate.
            let r = match clients.target(addr) {
                Ok(t) => {
                    let connector = TlsConnector::from(t.config.clone());
                    tokio::time::timeout(
                        tls::HANDSHAKE_TIMEOUT,
                        connector.connect(t.name.clone(), s),
                    )
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("handshake timed out")))
                }
                Err(e) => Err(io::Error::other(e)),
            };
            match r {
                Ok(ts) => conns.run(tokio::io::split(ts), addr, wrx, tx).await,
                Err(e) => {
                    tracing::warn!(%addr, "tls connect failed: {e}");
                    conns.forget(addr);
                    let _ = tx.send(Input::TransportError(conns.peer(addr))).await;
                }
            }
        });
    }

    fn forget(&self, addr: SocketAddr) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(&addr);
        }
    }

    /// Serve an established connection: frames in, queued bytes out.
    async fn run<R, W>(
        &self,
        (mut rd, mut wr): (R, W),
        addr: SocketAddr,
        mut wrx: mpsc::UnboundedReceiver<Vec<u8>>,
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
        let proto = self.transport.via_token();
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 16384];
        'conn: loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match signaling::parse::frame_len(&buf) {
                    Ok(Some(frame)) => {
                        let msg: Vec<u8> = buf.drain(..frame.len).collect();
                        if frame.keepalive {
                            // RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong.
                            if let Ok(m) = self.inner.lock() {
                                if let Some(w) = m.get(&addr) {
                                    let _ = w.send(b"\r\n".to_vec());
                                }
                            }
                            continue;
                        }
                        if tx.send(Input::Message(msg, peer)).await.is_err() {
                            break 'conn;
                        }
                    }
                    Ok(None) => {
                        if buf.len() > 256 * 1024 {
                            tracing::warn!(%addr, "{proto}: message too large, closing");
                            break 'conn;
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(%addr, "{proto}: unframeable input ({e}), closing");
                        break 'conn;
                    }
                }
            }
        }
        self.forget(addr);
        writer.abort();
    }
}

/// Accept loop of one TCP listener.
pub async fn tcp_acceptor(listener: TcpListener, conns: TcpConns, tx: mpsc::Sender<Input>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("tcp accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (wtx, wrx) = mpsc::unbounded_channel();
        if let Ok(mut m) = conns.inner.lock() {
            m.insert(addr, wtx);
        }
        let conns2 = conns.clone();
        let tx2 = tx.clone();
        tokio::spawn(async move { conns2.run(stream.into_split(), addr, wrx, tx2).await });
    }
}

/// Accept loop of one TLS listener: each connection is served once its handshake is done
/// (bounded by [`tls::HANDSHAKE_TIMEOUT`]), then exactly like TCP.
pub async fn tls_acceptor(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    conns: TcpConns,
    tx: mpsc::Sender<Input>,
) {
    let pending = Arc::new(tokio::sync::Semaphore::new(tls::MAX_PENDING_HANDSHAKES));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("tls accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "tls: too many handshakes in progress, closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let conns = conns.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let ts =
                match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(ts)) => ts,
                    Ok(Err(e)) => {
                        tracing::debug!(%addr, "tls handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%addr, "tls handshake timed out");
                        return;
                    }
                };
            drop(permit);
            let (wtx, wrx) = mpsc::unbounded_channel();
            if let Ok(mut m) = conns.inner.lock() {
                m.insert(addr, wtx);
            }
            conns.run(tokio::io::split(ts), addr, wrx, tx).await
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
