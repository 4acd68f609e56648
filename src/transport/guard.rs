//! Limits on stream connections: accept back-off, and the per-source and total caps with
//! their idle and handshake timeouts (`limits.tcp`).

use super::*;

/// Back-off of an accept loop on errors: a listener out of file descriptors (EMFILE, ENFILE)
/// or kernel memory would otherwise return the same error at once, forever, at 100 % CPU.
/// Sleeps 10 ms, doubling to 1 s while the errors last; counted in
/// `trunkline_accept_errors_total{listener,reason}`.
pub struct AcceptBackoff {
    pub(super) delay: Duration,
    pub(super) listener: &'static str,
    pub(super) metrics: Arc<Metrics>,
    pub(super) last_log: Option<Instant>,
}

impl AcceptBackoff {
    pub(super) const FIRST: Duration = Duration::from_millis(10);
    pub(super) const MAX: Duration = Duration::from_secs(1);

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
    pub(super) state: Mutex<GuardState>,
    /// Inbound connections (not trunks') that have not carried a complete message yet, oldest
    /// first: under the global cap the oldest of them makes room for a new connection.
    pub(super) unproven: Mutex<(u64, std::collections::BTreeMap<u64, Arc<ConnState>>)>,
    pub(super) exempt: RwLock<(Option<Arc<config::Config>>, u64, HashSet<std::net::IpAddr>)>,
    pub(super) metrics: Arc<Metrics>,
    pub log: Arc<LogLimiter>,
}

#[derive(Default)]
pub(super) struct GuardState {
    pub(super) total: u32,
    pub(super) per_source: HashMap<std::net::IpAddr, u32>,
    /// Connections gone since memory was last handed back to the OS.
    pub(super) gone: u32,
}

/// Connections that must have gone before [`StreamGuard::return_memory`] asks the allocator
/// to give freed pages back.
pub(super) const RETURN_MEMORY_AFTER: u32 = 256;

extern "C" {
    /// mimalloc (the binary's allocator, linked statically by the `mimalloc` crate): free
    /// retained pages; `force` also returns them to the OS at once.
    pub(super) fn mi_collect(force: bool);
}

/// One admitted inbound connection; gives its place back when dropped.
pub struct Slot {
    pub(super) guard: Arc<StreamGuard>,
    /// The source key it counts under (an IPv6 source's /64).
    pub(super) ip: std::net::IpAddr,
    pub(super) transport: Transport,
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

    pub(super) fn is_trunk(&self, ip: std::net::IpAddr) -> bool {
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
    pub(super) fn evict_one(&self) -> bool {
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
    pub(super) fn track_unproven(&self, st: &Arc<ConnState>) -> Option<u64> {
        let mut u = self.unproven.lock().ok()?;
        let id = u.0;
        u.0 += 1;
        u.1.insert(id, st.clone());
        Some(id)
    }

    /// The connection carried a message (or ended): no longer a candidate for eviction.
    pub(super) fn proven(&self, id: &mut Option<u64>) {
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
