//! The open TCP/TLS connections: one reader and one writer task each, the core's sends
//! routed to them by peer, registrations kept open while bound.

use super::*;

/// Milliseconds since the first call: the connections' activity clock (an atomic per
/// connection instead of a lock).
pub(super) fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What the reader, the writer and the core loop share about one connection.
#[derive(Default)]
pub(super) struct ConnState {
    /// When a complete message last went either way ([`clock_ms`]).
    pub(super) last_active: AtomicU64,
    /// It carries a call's dialog or a registration (set by the core loop once a second).
    pub(super) in_use: AtomicBool,
    /// Close now (with `close_reason`).
    pub(super) close: tokio::sync::Notify,
    pub(super) close_reason: Mutex<Option<&'static str>>,
}

impl ConnState {
    pub(super) fn close_for(&self, why: &'static str) {
        if let Ok(mut r) = self.close_reason.lock() {
            r.get_or_insert(why);
        }
        self.close.notify_one();
    }

    pub(super) fn closed_why(&self) -> &'static str {
        self.close_reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or(reason::WRITE_BACKLOG)
    }
}

/// Messages queued for one connection's writer at most: a peer that sends requests but never
/// reads the answers is closed rather than buffered without bound.
pub(super) const WRITE_QUEUE: usize = 1024;

impl ConnState {
    pub(super) fn touch(&self) {
        self.last_active.store(clock_ms(), Ordering::Relaxed);
    }
}

pub(super) struct Conn {
    pub(super) tx: mpsc::Sender<Vec<u8>>,
    pub(super) state: Arc<ConnState>,
}

/// Open stream connections of one transport (TCP, or TLS over TCP) by remote address; each has
/// a writer task fed by a channel. TLS connections carry the same framing as TCP once the
/// handshake is done (RFC 3261 §18.3), so both share the reading loop.
#[derive(Clone)]
pub struct TcpConns {
    pub(super) inner: Arc<Mutex<HashMap<SocketAddr, Conn>>>,
    /// Peers with a registration over this transport (seen in the 2xx answers to their
    /// REGISTER that go out on the connection), until the binding's expiry.
    pub(super) registered: Arc<Mutex<HashMap<SocketAddr, Instant>>>,
    pub(super) transport: Transport,
    /// Outbound TLS settings by destination (TLS connections only).
    pub(super) tls: Option<Arc<tls::Clients>>,
    pub(super) guard: Arc<StreamGuard>,
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

    pub(super) fn peer(&self, addr: SocketAddr) -> Peer {
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

    pub(super) fn insert(&self, addr: SocketAddr) -> (mpsc::Receiver<Vec<u8>>, Arc<ConnState>) {
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

    pub(super) fn connect(
        &self,
        addr: SocketAddr,
        first: Option<Vec<u8>>,
        tx: mpsc::Sender<Input>,
    ) {
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
    pub(super) fn forget(&self, addr: SocketAddr, state: &Arc<ConnState>) {
        if let Ok(mut m) = self.inner.lock() {
            if m.get(&addr).is_some_and(|c| Arc::ptr_eq(&c.state, state)) {
                m.remove(&addr);
            }
        }
    }

    /// Logs a line about malformed input from `addr`, at most once a minute per source.
    pub(super) fn log_bad(&self, addr: SocketAddr, what: std::fmt::Arguments<'_>) {
        if self.guard.log.allow(addr.ip(), Instant::now()) {
            tracing::warn!(%addr, "{}: {what}, closing (further lines from this source for a minute: suppressed)", self.transport.via_token());
        }
    }

    /// Serve an established connection: frames in, queued bytes out. `slot` is the admission
    /// of an inbound connection (None: one trunkline opened); it is given back when this ends.
    pub(super) async fn run<R, W>(
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
pub(super) fn register_expiry(data: &[u8]) -> Option<Option<u64>> {
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
