//! Wiring: binds the listeners, starts the media relay, and runs the single task that owns the
//! B2BUA core, feeding it inputs and time and sending what it emits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{Config, TransportKind};
use signaling::b2bua::{B2bua, CoreConfig, Hangup};
use tokio::sync::mpsc;

use crate::metrics::{refresh_gauges, AdminRequest, Metrics};
use crate::policy::{LivePolicy, Media};
use crate::transport::{self, Input, Sender, TcpConns};

mod reload;
use reload::Reloader;

pub fn run(cfg: Config, path: Option<PathBuf>) -> Result<(), String> {
    // One thread for all signaling I/O and the core: socket readers and the core task hand
    // messages over without cross-thread wake-ups (measured: a multi-thread runtime spent a third
    // of its CPU in futex wake/sleep at 1000 calls/s). The relay has its own threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(serve(cfg, path))
}

/// 32 bytes from the OS CSPRNG (getrandom(2)): the core's identifiers and nonce key come from
/// a ChaCha12 stream with this seed. Without it trunkline does not start: a guessable seed
/// would make Call-IDs and tags guessable.
fn seed() -> Result<[u8; 32], String> {
    let mut b = [0u8; 32];
    // SAFETY: getrandom into a stack buffer of the stated length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, b.len(), 0) };
    if n == 32 {
        Ok(b)
    } else {
        Err(format!("getrandom: {}", std::io::Error::last_os_error()))
    }
}

/// `sip:`'s session timer settings for the core.
fn core_session_timer(sip: &config::Sip) -> Option<signaling::b2bua::SessionTimer> {
    sip.session_timer.map(|t| signaling::b2bua::SessionTimer {
        expires: t.expires,
        min_se: t.min_se,
    })
}

/// The SIP core's caps from `limits:`.
fn core_caps(l: &config::Limits) -> signaling::b2bua::Caps {
    signaling::b2bua::Caps {
        early_calls_per_source: l.core.early_calls_per_source,
        subscriptions_per_source: l.core.subscriptions_per_source,
        subscriptions_per_target: l.core.subscriptions_per_target,
        retry_after: l.retry_after,
    }
}

/// The address a listener is known by in Via and Contact: its own, or for a wildcard
/// (`0.0.0.0:5060`, `[::]:5060`) the relay's address of that family with the listener's port
/// (the host's address peers reach; the wildcard itself means nothing to them).
fn advertised(listen: SocketAddr, media: &config::Media) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    match media.address_of_family(listen.is_ipv6()) {
        Some(ip) => SocketAddr::new(ip, listen.port()),
        None => listen,
    }
}

async fn serve(cfg: Config, path: Option<PathBuf>) -> Result<(), String> {
    crate::tls::check(&cfg, path.as_deref())?;
    crate::cdr::check(&cfg, path.as_deref()).map_err(|e| e.to_string())?;
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::new());
    let (in_tx, mut in_rx) = mpsc::channel::<Input>(65536);
    let mut udp: Vec<(SocketAddr, Arc<tokio::net::UdpSocket>)> = Vec::new();
    // TCP and TLS share one set of connection caps (limits.tcp).
    let guard = transport::StreamGuard::new(&cfg, metrics.clone());
    tokio::spawn(transport::log_summaries(guard.log.clone()));
    let tcp = TcpConns::tcp(guard.clone());
    let tls = TcpConns::tls(crate::tls::Clients::new(path.clone()), guard.clone());
    let mut cert_stores = Vec::new();
    let mut core_cfg = CoreConfig {
        seed: seed()?,
        no_answer_failover: cfg.sip.no_answer_timeout,
        ringing_timeout: cfg.sip.ringing_timeout,
        caps: core_caps(&cfg.limits),
        session_timer: core_session_timer(&cfg.sip),
        ..CoreConfig::default()
    };
    // A standby's listeners name the shared address before it is here (`IP_FREEBIND`).
    let standby = cfg
        .cluster
        .as_ref()
        .is_some_and(|c| c.role == config::Role::Standby);
    transport::set_freebind(standby);
    for l in &cfg.listen {
        match l.transport {
            TransportKind::Udp => {
                let s = transport::bind_udp(l.address)
                    .map_err(|e| format!("bind udp {}: {e}", l.address))?;
                let s = Arc::new(s);
                tokio::spawn(transport::udp_reader(s.clone(), in_tx.clone()));
                let local = advertised(l.address, &cfg.media);
                if local.is_ipv6() {
                    core_cfg.local_udp_v6.get_or_insert(local);
                } else {
                    core_cfg.local_udp.get_or_insert(local);
                }
                udp.push((l.address, s));
                tracing::info!(address = %l.address, "listening on udp");
            }
            TransportKind::Tcp => {
                let lst = transport::bind_tcp(l.address)
                    .map_err(|e| format!("bind tcp {}: {e}", l.address))?;
                tokio::spawn(transport::tcp_acceptor(
                    lst,
                    tcp.clone(),
                    in_tx.clone(),
                    metrics.clone(),
                ));
                let local = advertised(l.address, &cfg.media);
                if local.is_ipv6() {
                    core_cfg.local_tcp_v6.get_or_insert(local);
                } else {
                    core_cfg.local_tcp.get_or_insert(local);
                }
                tracing::info!(address = %l.address, "listening on tcp");
            }
            TransportKind::Tls => {
                let (Some(cert), Some(key)) = (&l.cert, &l.key) else {
                    return Err(format!("tls listener {}: needs cert and key", l.address));
                };
                let store = crate::tls::CertStore::load(
                    crate::tls::resolve_path(path.as_deref(), cert),
                    crate::tls::resolve_path(path.as_deref(), key),
                )
                .map_err(|e| format!("tls listener {}: {e}", l.address))?;
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(crate::tls::server_config(store.clone())?);
                cert_stores.push(store);
                let lst = transport::bind_tcp(l.address)
                    .map_err(|e| format!("bind tls {}: {e}", l.address))?;
                tokio::spawn(transport::tls_acceptor(
                    lst,
                    acceptor,
                    tls.clone(),
                    in_tx.clone(),
                    metrics.clone(),
                ));
                let local = advertised(l.address, &cfg.media);
                if local.is_ipv6() {
                    core_cfg.local_tls_v6.get_or_insert(local);
                } else {
                    core_cfg.local_tls.get_or_insert(local);
                }
                tracing::info!(address = %l.address, "listening on tls");
            }
        }
    }
    // Certificates are reloaded when their files change (polled every second).
    tokio::spawn(crate::tls::watch(cert_stores));
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminRequest>(16);
    let admin_token: crate::metrics::AdminToken =
        Arc::new(std::sync::RwLock::new(admin_token_of(&cfg)?));
    if let Some(m) = &cfg.metrics {
        let lst = crate::metrics::bind(m.listen)
            .await
            .map_err(|e| format!("bind metrics {}: {e}", m.listen))?;
        tokio::spawn(crate::metrics::serve_http(
            lst,
            metrics.clone(),
            admin_tx.clone(),
            m.clone(),
            admin_token.clone(),
        ));
        tracing::info!(address = %m.listen, "metrics on http://{}/metrics", m.listen);
    }
    let hep = start_hep(&cfg, &metrics)?;
    let media = start_media(&cfg, &metrics)?;
    let bridge = start_mgcp_bridge(&cfg, metrics.clone()).await?;
    // Trunks named by DNS are resolved on their own thread from now on.
    let resolver = crate::dns::Resolver::start(
        &cfg,
        crate::dns::DnsMetrics {
            failures: metrics.trunk_dns_failures.clone(),
            addresses: metrics.trunk_dns_addresses.clone(),
        },
    )
    .map_err(|e| format!("dns resolver thread: {e}"))?;
    let cdr = match &cfg.cdr {
        Some(c) => {
            Some(crate::cdr::Cdrs::start(c, path.as_deref(), &metrics).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let mut policy = LivePolicy::new(cfg, media, metrics.clone());
    policy.cdr = cdr;
    policy.quality = quality_reports(&policy);
    policy.mgcp_bridge = Arc::new(bridge);
    policy.dns = resolver.table.clone();
    let mut dns_seen = policy.dns.generation();
    let sender = Sender {
        udp,
        tcp,
        tls,
        input: in_tx.clone(),
    };
    if let Some(c) = sender.tls.tls_clients() {
        c.set_dns(policy.dns.clone());
    }
    let mut core = B2bua::new(core_cfg);
    set_wall_clock(&mut core);
    // Bindings kept by the last run come back before the first packet is read.
    let store = crate::location::start(&policy.config, path.as_deref(), &mut core, Instant::now())?;
    // The location service shared with the other cluster nodes (`cluster:`).
    let cluster = match &policy.config.cluster {
        Some(c) => {
            core.persist_locations(Instant::now());
            core.replicate_calls();
            Some(crate::cluster::Cluster::start(c, in_tx.clone())?)
        }
        None => None,
    };
    policy.cluster = cluster.as_ref().map(|c| c.stats.clone());
    // Registrations with carriers and trunk probes start now.
    core.sync_carriers(Instant::now(), &mut policy);
    let counters = MessageCounters::new(&metrics);
    let (mut reloader, mut loaded_rx) = Reloader::new(path);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "trunkline running");

    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| signal(k).map_err(|e| format!("signal: {e}"));
    let mut sigterm = sig(SignalKind::terminate())?;
    let mut sigint = sig(SignalKind::interrupt())?;
    let mut sighup = sig(SignalKind::hangup())?;
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let far = Duration::from_secs(3600);
    // Graceful shutdown: after SIGTERM, new calls get 503 and the loop ends once calls are gone
    // or the drain time has passed (then the rest are sent BYE).
    let mut drain_until: Option<Instant> = None;
    let mut stopping_since: Option<Instant> = None;
    loop {
        let mut deadline = core.poll_timeout().unwrap_or_else(|| Instant::now() + far);
        if let Some(d) = drain_until {
            deadline = deadline.min(d);
        }
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            biased;
            _ = sigterm.recv() => {
                let drain = shutdown_drain(&policy.config);
                tracing::info!(?drain, active = core.active_calls(), "SIGTERM: draining");
                core.set_draining(true);
                core.unregister_carriers(Instant::now(), &mut policy);
                stopping_since = Some(Instant::now());
                drain_until = Some(Instant::now() + drain);
            }
            _ = sigint.recv() => {
                tracing::info!(active = core.active_calls(), "SIGINT: stopping");
                core.set_draining(true);
                core.unregister_carriers(Instant::now(), &mut policy);
                stopping_since = Some(Instant::now());
                drain_until = Some(Instant::now());
            }
            _ = sighup.recv() => reloader.start("SIGHUP", None),
            _ = watch.tick() => {
                // The wall clock may be stepped (NTP): the `Date` of held messages follows it.
                set_wall_clock(&mut core);
                policy.reconcile(|id| core.has_call(id));
                policy.drain_media(Instant::now());
                // Stream connections carrying a call or a registration outlive the idle
                // timeout (one batch a second, not per message).
                let in_use: std::collections::HashSet<signaling::Peer> =
                    core.stream_peers_in_use().into_iter().collect();
                let now = Instant::now();
                sender.tcp.mark_in_use(&in_use, now);
                sender.tls.mark_in_use(&in_use, now);
                guard.update(&policy.config, &policy.dns);
                guard.return_memory();
                // A named trunk resolved anew: registrations and probes follow its address.
                let g = policy.dns.generation();
                if g != dns_seen {
                    dns_seen = g;
                    core.sync_carriers(now, &mut policy);
                }
                if reloader.changed() {
                    reloader.start("file change", None);
                }
            }
            Some(l) = loaded_rx.recv() => {
                if let Some(old) = reloader.apply(l, &mut policy, &metrics) {
                    let sip = &policy.config.sip;
                    core.set_call_timers(sip.no_answer_timeout, sip.ringing_timeout);
                    core.set_caps(core_caps(&policy.config.limits));
                    core.set_session_timer(core_session_timer(sip));
                    resolver.update(&policy.config);
                    core.sync_carriers(Instant::now(), &mut policy);
                    match admin_token_of(&policy.config) {
                        Ok(t) => {
                            if let Ok(mut w) = admin_token.write() {
                                *w = t;
                            }
                        }
                        Err(e) => tracing::warn!("reload: {e}; the admin token is unchanged"),
                    }
                    // Outbound TLS lets go of the old configuration first, then it is freed on
                    // a blocking thread.
                    if let Some(c) = sender.tls.tls_clients() {
                        c.update(&policy.config);
                    }
                    tokio::task::spawn_blocking(move || drop(old));
                }
            }
            Some(req) = admin_rx.recv() => match req {
                AdminRequest::Refresh(done) => {
                    policy.drain_media(Instant::now());
                    refresh_gauges(&core, &policy, &metrics);
                    let _ = done.send(());
                }
                AdminRequest::Reload(done) => reloader.start("POST /reload", Some(done)),
                AdminRequest::Query(q, done) => {
                    let _ = done.send(crate::admin::answer(q, &mut core, &mut policy, Instant::now()));
                }
            },
            inp = in_rx.recv() => {
                let Some(inp) = inp else { break };
                let now = Instant::now();
                // Overload is judged by what is still waiting behind this batch.
                policy.set_queue_depth(in_rx.len());
                let shells = Shells { hep: hep.as_ref(), cluster: cluster.as_ref() };
                handle_input(&mut core, inp, now, &mut policy, &counters, shells);
                // Take what else is queued before flushing.
                for _ in 0..256 {
                    match in_rx.try_recv() {
                        Ok(inp) => {
                            handle_input(&mut core, inp, now, &mut policy, &counters, Shells { hep: hep.as_ref(), cluster: cluster.as_ref() })
                        }
                        Err(_) => break,
                    }
                }
                policy.set_queue_depth(in_rx.len());
            }
            _ = sleep => {
                core.handle_timeout(Instant::now(), &mut policy);
            }
        }
        if let Some(media) = &mut policy.media {
            for n in media.take_events() {
                use crate::policy::MediaNotice;
                match n {
                    MediaNotice::Timeout { call_id, from_tag } => {
                        if let Some(id) = core.find_call(&call_id, &from_tag) {
                            tracing::info!(call_id = %call_id, "media timeout: ending call");
                            metrics.media_timeouts.inc();
                            let now = Instant::now();
                            core.terminate_call_for(id, Hangup::MediaTimeout, now, &mut policy);
                        }
                    }
                    MediaNotice::Dtmf {
                        call_id,
                        from_tag,
                        from,
                        digit,
                    } => {
                        if let Some(id) = core.find_call(&call_id, &from_tag) {
                            let (code, ms) = (digit.code, digit.duration_ms);
                            core.send_dtmf_info(id, from.other(), code, ms, Instant::now());
                        }
                    }
                }
            }
        }
        // Records of calls that just ended take their media stats as soon as the relay has
        // them (a lock and a swap when there are none).
        policy.drain_media_soon(Instant::now());
        if let Some(h) = &hep {
            crate::hep::quality::periodic(h, &core, &mut policy, Instant::now());
            for r in policy
                .quality
                .as_mut()
                .map(|q| q.take())
                .unwrap_or_default()
            {
                h.quality(&r);
            }
        }
        // Outbound TLS follows the trunks of the configuration in use (a pointer check).
        if let Some(c) = sender.tls.tls_clients() {
            c.update(&policy.config);
        }
        while let Some(t) = core.poll_transmit() {
            counters.sent[t.to.transport as usize].inc();
            if let Some(h) = &hep {
                h.sent(&core, &t.data, t.to);
            }
            sender.send(t.to, t.data);
        }
        if let Some(h) = &hep {
            h.sender.flush();
        }
        save_locations(&mut core, store.as_ref(), cluster.as_ref());
        if let Some(c) = &cluster {
            c.publish_calls(core.take_call_changes(Instant::now(), &mut policy));
        }
        if let Some(d) = drain_until {
            let now = Instant::now();
            // Un-REGISTERs get a moment for their answer (and a challenge's round trip).
            let unregistering = core.carriers_unregistering()
                && now < stopping_since.unwrap_or(now) + Duration::from_secs(2);
            if core.active_calls() == 0 && !unregistering {
                break;
            }
            if now >= d {
                // Answered calls get BYE on both legs; ringing ones 503 to the caller and
                // CANCEL to the callee.
                for id in core.live_calls() {
                    core.terminate_call_for(id, Hangup::Shutdown, now, &mut policy);
                }
                while let Some(t) = core.poll_transmit() {
                    if let Some(h) = &hep {
                        h.sent(&core, &t.data, t.to);
                    }
                    sender.send(t.to, t.data);
                }
                if let Some(h) = &hep {
                    h.sender.flush();
                }
                // Give the BYEs a moment on the wire, then go.
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        }
    }
    save_locations(&mut core, store.as_ref(), cluster.as_ref());
    if let Some(s) = store {
        s.close();
    }
    // The last records: what the relay has by now, the rest without media stats.
    let until = Instant::now() + Duration::from_millis(500);
    while policy.cdr_waiting() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
        policy.drain_media(Instant::now());
    }
    policy.drain_media(Instant::now() + crate::cdr::STATS_WAIT);
    if let Some(c) = policy.cdr.take() {
        // Queued records reach their sinks before the process exits.
        tokio::task::spawn_blocking(move || c.shutdown(Duration::from_secs(5)))
            .await
            .ok();
    }
    tracing::info!("trunkline stopped");
    Ok(())
}

/// Per-transport message counters, looked up once: `with_label_values` hashes the label and takes
/// a lock on every call, which showed in the per-message profile.
struct MessageCounters {
    received: [prometheus::IntCounter; 3],
    sent: [prometheus::IntCounter; 3],
}

impl MessageCounters {
    fn new(metrics: &Metrics) -> MessageCounters {
        use signaling::Transport::{Tcp, Tls, Udp};
        // Indexed by `Transport as usize`.
        let ts = [Udp, Tcp, Tls];
        MessageCounters {
            received: ts.map(|t| {
                metrics
                    .messages_received
                    .with_label_values(&[t.via_token()])
            }),
            sent: ts.map(|t| metrics.messages_sent.with_label_values(&[t.via_token()])),
        }
    }
}

/// The shells an input may concern besides the core: HEP capture, the cluster link.
#[derive(Clone, Copy)]
struct Shells<'a> {
    hep: Option<&'a crate::hep::Hep>,
    cluster: Option<&'a crate::cluster::Cluster>,
}

fn handle_input(
    core: &mut B2bua,
    inp: Input,
    now: Instant,
    policy: &mut LivePolicy,
    counters: &MessageCounters,
    shells: Shells<'_>,
) {
    let hep = shells.hep;
    match inp {
        Input::Message(data, from) => {
            counters.received[from.transport as usize].inc();
            // Rate limits and block lists, on the raw bytes before any parsing.
            if !policy.screen(&data, from, now) {
                return;
            }
            if let Some(h) = hep {
                h.received(core, &data, from);
            }
            core.handle_bytes(&data, from, now, policy)
        }
        Input::TransportError(peer) => core.transport_error(peer, now, policy),
        Input::ClusterResync => core.republish_locations(),
        Input::ClusterTakeover(records) => {
            if let Some(c) = shells.cluster {
                c.adopt(core, policy, records, now);
            }
        }
        Input::Cluster(r) => {
            let r = *r;
            if r.own {
                // This node's own bindings from before a restart; never over newer ones.
                core.restore_location_if_absent(r.aor, r.bindings, now);
            } else {
                core.set_remote_bindings(&r.node, r.via, r.aor, r.bindings, now);
            }
        }
    }
}

/// The admin token: `admin.token_file`'s content, else `metrics.reload_token`.
fn admin_token_of(cfg: &Config) -> Result<Option<String>, String> {
    match &cfg.admin {
        Some(a) => {
            let text = std::fs::read_to_string(&a.token_file)
                .map_err(|e| format!("admin.token_file {}: {e}", a.token_file.display()))?;
            config::parse_token(&text)
                .map(Some)
                .map_err(|e| format!("admin.token_file {}: {e}", a.token_file.display()))
        }
        None => Ok(cfg.metrics.as_ref().and_then(|m| m.reload_token.clone())),
    }
}

/// HEP capture (`capture:`), when configured.
/// Quality reports for the capture stream, when there is one and a relay to measure.
fn quality_reports(policy: &LivePolicy) -> Option<crate::hep::quality::QualityReports> {
    use media_relay::DataPlane;
    let c = policy.config.capture.as_ref()?;
    let m = policy.media.as_ref()?;
    Some(crate::hep::quality::QualityReports::new(
        c.quality_interval,
        m.relay.local_ip(),
    ))
}

fn start_hep(cfg: &Config, metrics: &Metrics) -> Result<Option<crate::hep::Hep>, String> {
    let Some(c) = &cfg.capture else {
        return Ok(None);
    };
    let sender = crate::hep::HepSender::new(
        c,
        metrics.hep_packets.with_label_values(&["sent"]),
        metrics.hep_packets.with_label_values(&["dropped"]),
    )
    .map_err(|e| format!("capture socket: {e}"))?;
    let mut locals = [[None; 3]; 2];
    for l in &cfg.listen {
        let i = crate::policy::transport_of(l.transport) as usize;
        let f = usize::from(l.address.is_ipv6());
        locals[f][i] = locals[f][i].or(Some(advertised(l.address, &cfg.media)));
    }
    tracing::info!(collector = %c.hep, id = c.id, "HEP capture on");
    Ok(Some(crate::hep::Hep { sender, locals }))
}

/// The MGCP bridge for the trunks with an `mgcp:` section (none: no bridge): one loopback
/// SIP socket per gateway (where the core sends its calls and its lines' calls come from),
/// and the call agent's MGCP socket. Returns each gateway's SIP address.
async fn start_mgcp_bridge(
    cfg: &Config,
    metrics: Arc<Metrics>,
) -> Result<std::collections::HashMap<String, std::net::SocketAddr>, String> {
    use crate::mgcp_bridge::Gateway;
    let err = |e: std::io::Error| format!("mgcp bridge: {e}");
    let mut gateways = std::collections::HashMap::new();
    let mut sockets = Vec::new();
    for t in cfg.trunks.values() {
        // a gateway's address is IP:port (the configuration refuses names for it)
        let (Some(m), Some(address)) = (t.mgcp.as_ref(), t.address.socket()) else {
            continue;
        };
        let sip = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(err)?;
        let local = sip.local_addr().map_err(err)?;
        let digit_map = mgcp::DigitMap::parse(&m.digit_map)
            .map_err(|e| format!("mgcp bridge: gateway {}: {e}", t.name))?;
        gateways.insert(
            t.name.clone(),
            Gateway {
                address,
                sip: local,
                endpoint: m.endpoint.clone(),
                endpoints: m.endpoints.clone(),
                lines: m
                    .lines
                    .iter()
                    .map(|l| (l.number.clone(), l.endpoint.clone()))
                    .collect(),
                digit_map,
                ring_time: m.ring_time,
                audit_every: m.audit_interval,
            },
        );
        sockets.push((t.name.clone(), sip));
    }
    if gateways.is_empty() {
        return Ok(Default::default());
    }
    let listen = cfg
        .mgcp_listen
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let mgcp = tokio::net::UdpSocket::bind(listen).await.map_err(err)?;
    let agent = mgcp.local_addr().map_err(err)?;
    // the lines' calls enter the core at its first IPv4 UDP listener (on loopback when it
    // listens on every address)
    let core = cfg
        .listen
        .iter()
        .find(|l| l.transport == TransportKind::Udp && l.address.is_ipv4())
        .map(|l| {
            let mut a = l.address;
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            a
        });
    let addrs: std::collections::HashMap<String, std::net::SocketAddr> =
        gateways.iter().map(|(n, g)| (n.clone(), g.sip)).collect();
    let bridge = crate::mgcp_bridge::Bridge::new(gateways, core, rand::random::<[u8; 32]>());
    tokio::spawn(crate::mgcp_bridge::run(bridge, sockets, mgcp, metrics));
    tracing::info!(gateways = ?addrs, agent = %agent, "MGCP call agent running");
    Ok(addrs)
}

fn start_media(cfg: &Config, metrics: &Metrics) -> Result<Option<Media>, String> {
    let m = &cfg.media;
    let rcfg = media_relay::RelayConfig {
        address: m.address,
        port_min: m.port_min,
        port_max: m.port_max,
        backend: match m.backend {
            config::Backend::Auto => media_relay::Backend::Auto,
            config::Backend::IoUring => media_relay::Backend::IoUring,
            config::Backend::Epoll => media_relay::Backend::Epoll,
        },
        workers: m.workers,
        timeout: m.timeout,
        strict_source: m.strict_source,
    };
    let tuning = media_relay::relay::RelayTuning {
        io_uring_batch_us: m.io_uring_batch_us,
        kernel_forwarding: match m.kernel_forwarding {
            config::KernelForwarding::Auto => media_relay::relay::KernelForwarding::Auto,
            config::KernelForwarding::On => media_relay::relay::KernelForwarding::On,
            config::KernelForwarding::Off => media_relay::relay::KernelForwarding::Off,
        },
        // Relay ports are picked by a CSPRNG: seeded here, from the OS.
        port_seed: Some(rand::random()),
        address_v6: m.address_v6,
    };
    let relay =
        media_relay::Relay::start_with(rcfg, &tuning).map_err(|e| format!("media relay: {e}"))?;
    let backend = relay.backend_name();
    let kernel = relay
        .kernel_interfaces()
        .map_or_else(|| "off".to_string(), |i| format!("ebpf on {}", i.join(",")));
    tracing::info!(
        backend,
        kernel_forwarding = %kernel,
        workers = relay.workers(),
        ports = %format!("{}-{}", m.port_min, m.port_max),
        "media relay running"
    );
    metrics.relay_backend.with_label_values(&[backend]).set(1);
    let relay = Arc::new(relay);
    let events = relay.events();
    // The B2BUA never reads live per-leg stats (final stats reach the metrics through
    // `drain_closed_stats`): its handle skips the stats round trip to the relay workers that
    // `MediaCalls::delete` would make at every call end.
    // SRTP master keys (one per leg and offer) from their own ChaCha20 stream, seeded from
    // the OS CSPRNG like the core's identifiers.
    let mut keys = {
        use rand_core::SeedableRng;
        rand_chacha::ChaCha20Rng::from_seed(seed()?)
    };
    let calls = media_relay::control::MediaCalls::new(Arc::new(media_relay::relay::NoLiveStats(
        relay.clone(),
    )))
    .with_key_source(Box::new(move |b: &mut [u8]| {
        rand_core::RngCore::fill_bytes(&mut keys, b)
    }))
    .with_tcp_streams(tcp_streams(m.tcp_streams));
    // The rtpengine-compatible control port: its calls live in their own table over the same
    // data plane (Kamailio's rtpengine module can drive trunkline's relay unchanged).
    let ng = match m.ng_listen {
        None => None,
        Some(addr) => {
            let sock =
                std::net::UdpSocket::bind(addr).map_err(|e| format!("bind ng {addr}: {e}"))?;
            // At most `ng_max_streams` of the relay's pairs: the rest stay for SIP calls.
            let ng_calls = Arc::new(std::sync::Mutex::new(
                media_relay::control::MediaCalls::new(relay.clone())
                    .with_max_pairs(m.ng_max_streams)
                    .with_tcp_streams(tcp_streams(m.tcp_streams))
                    // SRTP bridging asked through ng (`transport-protocol`): keys of its own
                    .with_key_source({
                        use rand_core::SeedableRng;
                        let mut ng_keys = rand_chacha::ChaCha20Rng::from_seed(seed()?);
                        Box::new(move |b: &mut [u8]| {
                            rand_core::RngCore::fill_bytes(&mut ng_keys, b)
                        })
                    }),
            ));
            let handler = media_relay::ng::NgHandler::new(ng_calls.clone());
            // Loopback and `media.ng_allow` only (a non-loopback bind needs the list).
            let allow = media_relay::ng::AllowList::new(m.ng_allow.clone());
            let server = media_relay::ng::serve_allowed(sock, handler, allow)
                .map_err(|e| format!("ng: {e}"))?;
            tracing::info!(address = %addr, "ng control protocol listening");
            Some((server, ng_calls))
        }
    };
    Ok(Some(Media {
        calls,
        relay,
        events,
        ng,
    }))
}

/// How long a SIGTERM waits for calls to end before sending BYE to the rest (`shutdown.drain`
/// of the configuration in use, default 30 s).
fn shutdown_drain(cfg: &Config) -> Duration {
    cfg.shutdown.drain
}

/// `media.tcp_streams` in the media core's terms.
fn tcp_streams(t: config::TcpStreams) -> media_relay::control::TcpStreams {
    match t {
        config::TcpStreams::Reject => media_relay::control::TcpStreams::Reject,
        config::TcpStreams::Pass => media_relay::control::TcpStreams::Pass,
    }
}

/// Tell the core the wall-clock time (the `Date` of messages kept for offline users).
fn set_wall_clock(core: &mut B2bua) {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    core.set_wall_clock(Instant::now(), unix);
}

/// Hand the core's binding changes (and held messages') to the location store and to the
/// cluster, one take for both.
fn save_locations(
    core: &mut B2bua,
    store: Option<&crate::location::LocationStore>,
    cluster: Option<&crate::cluster::Cluster>,
) {
    if store.is_none() && cluster.is_none() {
        return;
    }
    let now = Instant::now();
    let changes = core.take_location_changes();
    if let Some(c) = cluster {
        c.publish(&changes, now);
    }
    if let Some(s) = store {
        s.save(changes, core.take_mail_changes(), now);
    }
}
