//! Trunks named by DNS (RFC 3263): a resolver on its own thread looks every named trunk up
//! (NAPTR, SRV, A/AAAA), keeps the answer for its TTL and looks again before it expires; the
//! core task only reads the result ([`DnsTable`]), so no lookup ever waits on the signaling
//! thread. A trunk whose name does not resolve is unavailable: routes skip it (next trunk,
//! or 503 when none is left), a metric and a log line say why.

pub mod rfc3263;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use config::{Config, TransportKind, TrunkAddress};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use prometheus::{IntCounterVec, IntGaugeVec};

use rfc3263::{Naptr, Srv};

/// The most addresses kept for one trunk (a hostile or broken zone may list hundreds).
pub const MAX_ADDRESSES: usize = 16;
/// The most SRV targets looked up for one trunk.
const MAX_SRV_TARGETS: usize = 16;
/// Answers are looked up again no sooner and no later than this.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// After a failed lookup, the next one after this (doubling to `RETRY_MAX`).
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A resolver that times out does not discard a good answer at once: it is used this long past
/// its expiry (RFC 8767's serve-stale), then the trunk is unavailable.
const STALE_FOR: Duration = Duration::from_secs(300);

/// What is known of one named trunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Not looked up yet (just configured).
    Pending,
    /// The addresses to try, in order (SRV priority and weight applied).
    Ready(Arc<[SocketAddr]>),
    /// The name does not resolve; the reason is logged and counted.
    Failed,
}

#[derive(Default)]
struct State {
    trunks: HashMap<String, Resolved>,
    /// Which trunk an address belongs to (inbound recognition).
    owners: HashMap<SocketAddr, String>,
    ips: HashSet<IpAddr>,
}

/// The resolved addresses of every named trunk, shared by the resolver thread (writer) and
/// the core task, transports and TLS (readers).
#[derive(Default)]
pub struct DnsTable {
    state: RwLock<State>,
    generation: AtomicU64,
}

impl DnsTable {
    /// Changes on every change of any trunk's addresses (readers rebuild what they derive).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A named trunk's state (`None`: not a named trunk).
    pub fn get(&self, trunk: &str) -> Option<Resolved> {
        self.state.read().ok()?.trunks.get(trunk).cloned()
    }

    /// The named trunk that resolves to `addr`, if any (its TCP fallback addresses included).
    pub fn owner(&self, addr: SocketAddr) -> Option<String> {
        let st = self.state.read().ok()?;
        let name = st.owners.get(&addr)?;
        Some(name.strip_suffix(TCP_FALLBACK).unwrap_or(name).to_string())
    }

    /// A `tcp_fallback` trunk's TCP addresses (RFC 3263 for `_sip._tcp`), when its address is
    /// a name resolved through SRV; `None` when it is not one.
    pub fn tcp_fallback(&self, trunk: &str) -> Option<Resolved> {
        self.get(&cat_fallback(trunk))
    }

    /// Every IP address a named trunk resolves to.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.state
            .read()
            .map(|s| s.ips.iter().copied().collect())
            .unwrap_or_default()
    }

    fn set(&self, trunk: &str, r: Resolved) -> bool {
        let Ok(mut st) = self.state.write() else {
            return false;
        };
        if st.trunks.get(trunk) == Some(&r) {
            return false;
        }
        st.trunks.insert(trunk.to_string(), r);
        st.reindex();
        drop(st);
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    fn retain(&self, keep: &HashSet<String>) {
        let Ok(mut st) = self.state.write() else {
            return;
        };
        let before = st.trunks.len();
        st.trunks.retain(|k, _| keep.contains(k));
        if st.trunks.len() != before {
            st.reindex();
            drop(st);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl State {
    fn reindex(&mut self) {
        self.owners.clear();
        self.ips.clear();
        for (name, r) in &self.trunks {
            if let Resolved::Ready(addrs) = r {
                for a in addrs.iter() {
                    self.owners.entry(*a).or_insert_with(|| name.clone());
                    self.ips.insert(config::canonical_ip(a.ip()));
                }
            }
        }
    }
}

/// What is resolved for one trunk: its name, how, and which address families can be used.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Job {
    trunk: String,
    address: TrunkAddress,
    transport: TransportKind,
    v4: bool,
    v6: bool,
}

/// Why a lookup failed.
#[derive(Debug)]
enum LookupError {
    /// The name has no usable record (NXDOMAIN, no data, only "." SRV targets).
    NoRecords,
    /// The resolver did not answer in time, or answered with an error.
    Resolver(String),
}

impl LookupError {
    fn label(&self) -> &'static str {
        match self {
            LookupError::NoRecords => "no_records",
            LookupError::Resolver(_) => "resolver",
        }
    }
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NoRecords => f.write_str("no usable records"),
            LookupError::Resolver(e) => write!(f, "resolver error: {e}"),
        }
    }
}

/// The metrics the resolver keeps.
#[derive(Clone)]
pub struct DnsMetrics {
    /// `trunkline_trunk_dns_failures_total{trunk,reason}`.
    pub failures: IntCounterVec,
    /// `trunkline_trunk_dns_addresses{trunk}`: how many addresses the trunk resolves to now.
    pub addresses: IntGaugeVec,
}

/// The resolver thread's handle: tell it about a new configuration.
pub struct Resolver {
    jobs: tokio::sync::watch::Sender<Vec<Job>>,
    pub table: Arc<DnsTable>,
}

impl Resolver {
    /// Starts the resolver thread for `cfg.dns` (restart needed to change it) with `cfg`'s
    /// named trunks.
    pub fn start(cfg: &Config, metrics: DnsMetrics) -> std::io::Result<Resolver> {
        let table = Arc::new(DnsTable::default());
        let (tx, rx) = tokio::sync::watch::channel(jobs_of(cfg));
        for j in tx.borrow().iter() {
            table.set(&j.trunk, Resolved::Pending);
        }
        let settings = cfg.dns.clone();
        let t = table.clone();
        std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("dns: cannot start the resolver runtime: {e}");
                        return;
                    }
                };
                rt.block_on(run(settings, rx, t, metrics));
            })?;
        Ok(Resolver { jobs: tx, table })
    }

    /// The configuration changed: resolve its named trunks (unchanged ones keep their answer).
    pub fn update(&self, cfg: &Config) {
        let jobs = jobs_of(cfg);
        self.jobs.send_if_modified(|cur| {
            if *cur == jobs {
                return false;
            }
            for j in &jobs {
                if !cur.contains(j) {
                    self.table.set(&j.trunk, Resolved::Pending);
                }
            }
            *cur = jobs;
            true
        });
    }
}

/// The table key of a trunk's TCP fallback addresses.
const TCP_FALLBACK: &str = "#tcp";

fn cat_fallback(trunk: &str) -> String {
    format!("{trunk}{TCP_FALLBACK}")
}

fn jobs_of(cfg: &Config) -> Vec<Job> {
    let family = |t: TransportKind, v6: bool| {
        cfg.listen
            .iter()
            .any(|l| l.transport == t && l.address.is_ipv6() == v6)
    };
    let job = |trunk: String, t: &config::Trunk, transport: TransportKind| Job {
        trunk,
        address: t.address.clone(),
        transport,
        v4: family(transport, false),
        v6: family(transport, true),
    };
    let named = cfg.trunks.values().filter(|t| t.address.socket().is_none());
    let mut jobs: Vec<Job> = named
        .clone()
        .map(|t| job(t.name.clone(), t, t.transport))
        .collect();
    // A UDP trunk named by SRV that takes TCP for large requests: its `_sip._tcp` records
    // may name other hosts and ports (RFC 3263 §4.1: SRV per transport).
    jobs.extend(
        named
            .filter(|t| t.tcp_fallback && matches!(t.address, TrunkAddress::Host(_)))
            .map(|t| job(cat_fallback(&t.name), t, TransportKind::Tcp)),
    );
    jobs
}

fn build_resolver(s: &config::Dns) -> Result<TokioResolver, String> {
    let mut b = if s.servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("system resolver configuration: {e}"))?
    } else {
        let servers = s
            .servers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let o = b.options_mut();
    o.timeout = s.timeout;
    o.attempts = 1;
    // names are fully qualified: no search list, no hosts-file surprises
    o.ndots = 0;
    b.build().map_err(|e| format!("resolver: {e}"))
}

/// The resolver loop: one task per named trunk, restarted when its job changes.
async fn run(
    settings: config::Dns,
    mut rx: tokio::sync::watch::Receiver<Vec<Job>>,
    table: Arc<DnsTable>,
    metrics: DnsMetrics,
) {
    let resolver = match build_resolver(&settings) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::error!("dns: {e}; trunks named by DNS are unavailable");
            return;
        }
    };
    let mut tasks: HashMap<Job, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let jobs: Vec<Job> = rx.borrow_and_update().clone();
        tasks.retain(|j, h| {
            let keep = jobs.contains(j);
            if !keep {
                h.abort();
            }
            keep
        });
        table.retain(&jobs.iter().map(|j| j.trunk.clone()).collect());
        for j in jobs {
            if let std::collections::hash_map::Entry::Vacant(e) = tasks.entry(j.clone()) {
                e.insert(tokio::spawn(follow(
                    j,
                    resolver.clone(),
                    table.clone(),
                    metrics.clone(),
                )));
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps one trunk resolved: look up, publish, sleep until the answer expires, again.
async fn follow(job: Job, r: Arc<TokioResolver>, table: Arc<DnsTable>, m: DnsMetrics) {
    let mut retry = RETRY_MIN;
    let mut good: Option<(Arc<[SocketAddr]>, Instant)> = None;
    loop {
        let next = match resolve(&r, &job).await {
            Ok((addrs, until)) => {
                retry = RETRY_MIN;
                let addrs: Arc<[SocketAddr]> = addrs.into();
                if table.set(&job.trunk, Resolved::Ready(addrs.clone())) {
                    tracing::info!(trunk = %job.trunk, name = %job.address,
                        addresses = ?addrs, "dns: trunk resolved");
                }
                m.addresses
                    .with_label_values(&[&job.trunk])
                    .set(addrs.len() as i64);
                good = Some((addrs, until));
                until
                    .saturating_duration_since(Instant::now())
                    .clamp(MIN_TTL, MAX_TTL)
            }
            Err(e) => {
                m.failures.with_label_values(&[&job.trunk, e.label()]).inc();
                let stale_ok = matches!(e, LookupError::Resolver(_))
                    && good
                        .as_ref()
                        .is_some_and(|(_, until)| Instant::now() < *until + STALE_FOR);
                if !stale_ok {
                    good = None;
                    m.addresses.with_label_values(&[&job.trunk]).set(0);
                    if table.set(&job.trunk, Resolved::Failed) {
                        tracing::warn!(trunk = %job.trunk, name = %job.address,
                            "dns: {e}; trunk unavailable until it resolves");
                    }
                } else {
                    tracing::warn!(trunk = %job.trunk, name = %job.address,
                        "dns: {e}; keeping the expired answer for now");
                }
                let d = retry;
                retry = (retry * 2).min(RETRY_MAX);
                d
            }
        };
        tokio::time::sleep(next).await;
    }
}

/// RFC 3263 §4 for one trunk: the addresses in the order to try, and when they expire.
async fn resolve(r: &TokioResolver, job: &Job) -> Result<(Vec<SocketAddr>, Instant), LookupError> {
    let mut until = Instant::now() + MAX_TTL;
    let targets: Vec<(String, u16)> = match &job.address {
        TrunkAddress::Socket(a) => return Ok((vec![*a], until)),
        TrunkAddress::HostPort(h, p) => vec![(h.clone(), *p)],
        TrunkAddress::Host(h) => {
            let srv = srv_targets(r, h, job.transport, &mut until).await?;
            if srv.is_empty() {
                // RFC 3263 §4.2: "If no SRV records were found, the client performs an A or
                // AAAA record lookup of the domain name" on the transport's default port.
                vec![(h.clone(), rfc3263::default_port(job.transport))]
            } else {
                srv.into_iter().map(|s| (s.target, s.port)).collect()
            }
        }
    };
    let mut out = Vec::new();
    let mut last_err = None;
    for (host, port) in targets.into_iter().take(MAX_SRV_TARGETS) {
        match r.lookup_ip(fqdn(&host)).await {
            Ok(ips) => {
                until = until.min(ips.valid_until());
                for ip in ips.iter() {
                    let usable = (ip.is_ipv4() && job.v4) || (ip.is_ipv6() && job.v6);
                    let a = SocketAddr::new(ip, port);
                    if usable && !out.contains(&a) && out.len() < MAX_ADDRESSES {
                        out.push(a);
                    }
                }
            }
            Err(e) => last_err = Some(classify(e)),
        }
    }
    if out.is_empty() {
        return Err(last_err.unwrap_or(LookupError::NoRecords));
    }
    Ok((out, until))
}

/// NAPTR, then SRV (RFC 3263 §4.1): the SRV records to use, ordered; empty when there are
/// none (then A/AAAA of the name itself).
async fn srv_targets(
    r: &TokioResolver,
    host: &str,
    t: TransportKind,
    until: &mut Instant,
) -> Result<Vec<Srv>, LookupError> {
    let naptr = match r.lookup(fqdn(host), RecordType::NAPTR).await {
        Ok(l) => {
            *until = (*until).min(l.valid_until());
            let recs = l
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        services: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: n.replacement.to_ascii(),
                    }),
                    _ => None,
                })
                .collect();
            rfc3263::srv_names_from_naptr(recs, t)
        }
        Err(e) => match classify(e) {
            LookupError::NoRecords => Vec::new(),
            other => return Err(other),
        },
    };
    // RFC 3263 §4.1: with NAPTR records for other transports only, the trunk's transport
    // is still tried by its SRV name.
    let names = if naptr.is_empty() {
        vec![rfc3263::srv_name(host, t)]
    } else {
        naptr
    };
    let mut srv = Vec::new();
    for name in names.iter().take(4) {
        match r.lookup(fqdn(name), RecordType::SRV).await {
            Ok(l) => {
                *until = (*until).min(l.valid_until());
                srv.extend(l.answers().iter().filter_map(|rec| match &rec.data {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_ascii().trim_end_matches('.').to_string(),
                    }),
                    _ => None,
                }));
                if !srv.is_empty() {
                    break;
                }
            }
            Err(e) => match classify(e) {
                LookupError::NoRecords => {}
                other => return Err(other),
            },
        }
    }
    let mut rng = rand::thread_rng();
    Ok(rfc3263::order_srv(srv, |n| {
        rand::Rng::gen_range(&mut rng, 0..=n)
    }))
}

fn classify(e: hickory_resolver::net::NetError) -> LookupError {
    if e.is_no_records_found() || e.is_nx_domain() {
        LookupError::NoRecords
    } else {
        LookupError::Resolver(e.to_string())
    }
}

/// Names from the configuration are absolute (a trailing dot: no search domains).
fn fqdn(h: &str) -> String {
    if h.ends_with('.') {
        h.to_string()
    } else {
        format!("{h}.")
    }
}
