//! `cluster:`: the location service shared through Redis (issue 16, part 2), and the answered
//! calls replicated for a standby (part 3, `calls.rs`).
//!
//! * Every node writes the bindings of its AoRs as they change (the core's
//!   `take_location_changes`, the same batches the location store gets): one key per node and
//!   AoR, `tl:loc:<node>:<aor>`, the record of `location::encode`, with a TTL of the latest
//!   expiry plus a grace; an AoR with no binding left is deleted. Then it publishes
//!   `<node> <aor>` on the channel `tl:loc`.
//! * Every node follows the channel: a change of another node's record is read (GET) and
//!   handed to the core (`set_remote_bindings`), the bindings reached through that node's
//!   address from `cluster.peers`. At start (and after Redis comes back) all records are read:
//!   the node's own come back as its bindings (a restarted node keeps answering calls to them),
//!   the others' as remote ones.
//! * Redis never blocks the core: the writer and the follower are threads of their own with a
//!   bounded queue; Redis down → the node serves with what it has, `trunkline_cluster_up` is 0,
//!   errors are counted per operation, logged once per outage, and the follower resynchronises
//!   when Redis is back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use signaling::registrar::Binding;
use signaling::{Peer, Transport};
use tokio::sync::mpsc;

use crate::location::{decode, encode, StoredBinding};
use crate::transport::Input;

mod calls;
pub use calls::Warm;

/// The pub/sub channel of binding changes.
const CHANNEL: &str = "tl:loc";
/// Keys outlive their last binding by this much.
const GRACE_MS: u64 = 10_000;
/// Batches the writer may be behind by; beyond, changes are dropped (counted).
const MAX_QUEUED: usize = 10_000;
/// Pause between attempts to reach Redis.
const RETRY: Duration = Duration::from_secs(1);

fn key(node: &str, aor: &str) -> String {
    format!("tl:loc:{node}:{aor}")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Another node's record, for the core: that node, where to reach it, the AoR, the bindings
/// (empty: none left).
pub struct RemoteBindings {
    pub node: String,
    pub via: Peer,
    pub aor: String,
    pub bindings: Vec<Binding>,
    /// The node's own record (read back at start): its bindings, not a remote node's.
    pub own: bool,
}

/// Counters of the cluster link, for metrics.
#[derive(Default)]
pub struct ClusterStats {
    pub up: AtomicBool,
    pub writes: AtomicU64,
    pub reads: AtomicU64,
    pub errors_write: AtomicU64,
    pub errors_read: AtomicU64,
    pub dropped: AtomicU64,
    /// Batches of binding changes waiting for the writer (the replication lag, in batches).
    pub queued: AtomicU64,
    /// The active nodes whose heartbeat is live, sorted (this one included once Redis was
    /// reached; kept as last seen while Redis is down).
    pub live: std::sync::Mutex<Vec<String>>,
    /// This node's name.
    pub node: String,
    /// This node counts as an active one (its heartbeat is written): `role: active`, or a
    /// standby that took over.
    pub active: AtomicBool,
    /// Call records written and deleted by this node.
    pub call_writes: AtomicU64,
    /// Takeovers, calls adopted by them (and at start), and records that could not be.
    pub takeovers: AtomicU64,
    pub adopted: AtomicU64,
    pub adopt_failed: AtomicU64,
    /// The other nodes' call records held for a takeover.
    pub warm: Arc<Warm>,
}

impl ClusterStats {
    /// This node's share of a cluster-wide limit `max` (issue 16: limits count across nodes):
    /// each of the `n` live nodes takes `max / n` and the first `max % n` of them (by name)
    /// one more, so together they never exceed `max`, and no call waits for Redis. A node that
    /// dies stops its heartbeat and the others' shares grow within seconds.
    pub fn share(&self, max: u32) -> u32 {
        let live = self.live.lock().map(|l| l.clone()).unwrap_or_default();
        let n = live.len().max(1) as u32;
        let idx = live.iter().position(|x| *x == self.node).unwrap_or(0) as u32;
        max / n + u32::from(idx < max % n)
    }

    /// Live active nodes.
    pub fn nodes(&self) -> usize {
        self.live.lock().map_or(0, |l| l.len())
    }
}

/// The sorted set of live active nodes (score: when a node's heartbeat lapses, Unix ms).
const NODES: &str = "tl:nodes";
/// Heartbeat period and lifetime: a node whose beat is this old is counted out.
const BEAT: Duration = Duration::from_secs(1);
const BEAT_TTL_MS: u64 = 3000;

type Batch = Vec<(String, Vec<StoredBinding>)>;

/// What the writer is handed: location records, or call records (`calls.rs`).
enum Job {
    Locations(Batch),
    Calls(Vec<calls::CallJob>),
}

/// The running link: the writer's queue.
pub struct Cluster {
    tx: crossbeam_channel::Sender<Job>,
    pub stats: Arc<ClusterStats>,
}

impl Cluster {
    /// Start the writer and the follower for `cfg`; the follower hands records to the core
    /// task through `input`.
    pub fn start(cfg: &config::Cluster, input: mpsc::Sender<Input>) -> Result<Cluster, String> {
        let client = redis::Client::open(cfg.redis.as_str())
            .map_err(|e| format!("cluster.redis {}: {e}", cfg.redis))?;
        let stats = Arc::new(ClusterStats {
            node: cfg.node.clone(),
            live: std::sync::Mutex::new(vec![cfg.node.clone()]),
            active: AtomicBool::new(cfg.role == config::Role::Active),
            ..ClusterStats::default()
        });
        if let (config::Role::Standby, Some(ip)) = (cfg.role, cfg.shared_address) {
            let (w, s, i) = (stats.warm.clone(), stats.clone(), input.clone());
            std::thread::Builder::new()
                .name("cluster-watch".into())
                .spawn(move || calls::watch(ip, w, s, i))
                .map_err(|e| format!("cluster watch thread: {e}"))?;
        }
        let (tx, rx) = crossbeam_channel::bounded(MAX_QUEUED);
        let (c, s, node) = (client.clone(), stats.clone(), cfg.node.clone());
        std::thread::Builder::new()
            .name("cluster-writer".into())
            .spawn(move || writer(c, node, rx, s))
            .map_err(|e| format!("cluster writer thread: {e}"))?;
        let (c, s, beat_cfg) = (client.clone(), stats.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("cluster-heartbeat".into())
            .spawn(move || heartbeat(c, beat_cfg, s))
            .map_err(|e| format!("cluster heartbeat thread: {e}"))?;
        let (s, cfg) = (stats.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("cluster-follower".into())
            .spawn(move || follower(client, cfg, input, s))
            .map_err(|e| format!("cluster follower thread: {e}"))?;
        Ok(Cluster { tx, stats })
    }

    /// Hand the core's binding changes to the writer (nothing is sent on this thread).
    pub fn publish(&self, changes: &[(String, Vec<Binding>)], now: Instant) {
        if changes.is_empty() {
            return;
        }
        let wall = unix_ms();
        let batch = changes
            .iter()
            .map(|(aor, list)| {
                let stored = list
                    .iter()
                    .map(|b| StoredBinding::of(b, now, wall))
                    .collect();
                (aor.clone(), stored)
            })
            .collect();
        self.send(Job::Locations(batch));
    }

    fn send(&self, job: Job) {
        if self.tx.try_send(job).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
            .queued
            .store(self.tx.len() as u64, Ordering::Relaxed);
    }
}

/// Log a failure once per outage; `up` goes false.
fn failed(stats: &ClusterStats, what: &str, e: &redis::RedisError) {
    if stats.up.swap(false, Ordering::Relaxed) {
        tracing::warn!(error = %e, "cluster: Redis {what} failed; serving with local state");
    }
}

fn writer(
    client: redis::Client,
    node: String,
    rx: crossbeam_channel::Receiver<Job>,
    stats: Arc<ClusterStats>,
) {
    let mut con: Option<redis::Connection> = None;
    while let Ok(first) = rx.recv() {
        // Everything queued meanwhile goes in the same pipeline; the latest change of a key
        // wins.
        let mut latest: std::collections::HashMap<String, Vec<StoredBinding>> =
            std::collections::HashMap::new();
        let mut calls: std::collections::HashMap<String, Option<Vec<u8>>> =
            std::collections::HashMap::new();
        let mut job = Some(first);
        while let Some(j) = job.take().or_else(|| rx.try_recv().ok()) {
            match j {
                Job::Locations(b) => latest.extend(b),
                Job::Calls(c) => calls.extend(c),
            }
        }
        loop {
            if con.is_none() {
                match client.get_connection() {
                    Ok(c) => con = Some(c),
                    Err(e) => {
                        stats.errors_write.fetch_add(1, Ordering::Relaxed);
                        failed(&stats, "connect", &e);
                        std::thread::sleep(RETRY);
                        continue;
                    }
                }
            }
            let Some(c) = con.as_mut() else { continue };
            match write_batch(c, &node, &latest, &calls) {
                Ok(()) => {
                    stats
                        .writes
                        .fetch_add(latest.len() as u64, Ordering::Relaxed);
                    stats
                        .call_writes
                        .fetch_add(calls.len() as u64, Ordering::Relaxed);
                    stats.queued.store(rx.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    stats.errors_write.fetch_add(1, Ordering::Relaxed);
                    failed(&stats, "write", &e);
                    con = None;
                    std::thread::sleep(RETRY);
                }
            }
        }
    }
}

/// One pipeline: each AoR's record set (with its TTL) or deleted, and the change announced.
fn write_batch(
    con: &mut redis::Connection,
    node: &str,
    records: &std::collections::HashMap<String, Vec<StoredBinding>>,
    call_records: &std::collections::HashMap<String, Option<Vec<u8>>>,
) -> redis::RedisResult<()> {
    let wall = unix_ms();
    let mut pipe = redis::pipe();
    for (k, record) in call_records {
        match record {
            Some(r) => pipe
                .cmd("SET")
                .arg(k)
                .arg(r)
                .arg("EX")
                .arg(calls::CALL_TTL_S)
                .ignore(),
            None => pipe.cmd("DEL").arg(k).ignore(),
        };
        let mut msg = Vec::with_capacity(k.len() + 1 + record.as_ref().map_or(0, Vec::len));
        msg.extend_from_slice(k.as_bytes());
        msg.push(b'\n');
        msg.extend_from_slice(record.as_deref().unwrap_or_default());
        pipe.cmd("PUBLISH").arg(calls::CALLS).arg(msg).ignore();
    }
    for (aor, list) in records {
        let k = key(node, aor);
        let last = list.iter().map(|b| b.expires_ms).max().unwrap_or(0);
        if list.is_empty() || last <= wall {
            pipe.cmd("DEL").arg(&k).ignore();
        } else {
            let ttl = last - wall + GRACE_MS;
            pipe.cmd("SET")
                .arg(&k)
                .arg(encode(list))
                .arg("PX")
                .arg(ttl)
                .ignore();
        }
        pipe.cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(format!("{node} {aor}"))
            .ignore();
    }
    pipe.query::<()>(con)
}

/// Read every record (`SCAN` over `tl:loc:*`) and hand it to the core; then follow the
/// channel. On any error: wait, reconnect, read everything again.
fn follower(
    client: redis::Client,
    cfg: config::Cluster,
    input: mpsc::Sender<Input>,
    stats: Arc<ClusterStats>,
) {
    loop {
        match follow(&client, &cfg, &input, &stats) {
            Ok(()) => return, // the core is gone
            Err(e) => {
                stats.errors_read.fetch_add(1, Ordering::Relaxed);
                failed(&stats, "read", &e);
                std::thread::sleep(RETRY);
            }
        }
    }
}

fn follow(
    client: &redis::Client,
    cfg: &config::Cluster,
    input: &mpsc::Sender<Input>,
    stats: &ClusterStats,
) -> redis::RedisResult<()> {
    let mut con = client.get_connection()?;
    let mut sub = client.get_connection()?;
    let mut ps = sub.as_pubsub();
    ps.subscribe(CHANNEL)?;
    ps.subscribe(calls::CALLS)?;
    // Everything there is now (changes from here on arrive on the channels too).
    if !read_calls(&mut con, cfg, input, stats)? {
        return Ok(());
    }
    for k in scan(&mut con, "tl:loc:*")? {
        let Some((node, aor)) = k.strip_prefix("tl:loc:").and_then(|r| r.split_once(':')) else {
            continue;
        };
        if !hand_over(&mut con, cfg, node, aor, input, stats)? {
            return Ok(());
        }
    }
    // Redis may have restarted empty: this node's bindings go to it again.
    if input.blocking_send(Input::ClusterResync).is_err() {
        return Ok(());
    }
    if !stats.up.swap(true, Ordering::Relaxed) {
        tracing::info!(node = %cfg.node, "cluster: Redis reached, location records read");
    }
    loop {
        let msg = ps.get_message()?;
        if msg.get_channel_name() == calls::CALLS {
            let payload = msg.get_payload_bytes();
            let (k, record) = match payload.iter().position(|&b| b == b'\n') {
                Some(i) => (&payload[..i], &payload[i + 1..]),
                None => (payload, &[][..]),
            };
            let Ok(k) = std::str::from_utf8(k) else {
                continue;
            };
            if calls::node_of(k).is_some_and(|n| n != cfg.node) {
                stats.warm.set(k, record);
            }
            continue;
        }
        let payload: String = msg.get_payload()?;
        let Some((node, aor)) = payload.split_once(' ') else {
            continue;
        };
        if node == cfg.node {
            continue;
        }
        if !hand_over(&mut con, cfg, node, aor, input, stats)? {
            return Ok(());
        }
    }
}

/// Every key matching `pattern`, read in steps (SCAN: Redis keeps serving the other nodes
/// meanwhile), sorted.
fn scan(con: &mut redis::Connection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The call records there are: the other nodes' into the warm cache; this node's own (from
/// its previous run) to the core to be adopted. False when the core is gone.
fn read_calls(
    con: &mut redis::Connection,
    cfg: &config::Cluster,
    input: &mpsc::Sender<Input>,
    stats: &ClusterStats,
) -> redis::RedisResult<bool> {
    let mut own = Vec::new();
    for k in scan(con, "tl:call:*")? {
        let Some(node) = calls::node_of(&k) else {
            continue;
        };
        let record: Option<Vec<u8>> = redis::cmd("GET").arg(&k).query(con)?;
        stats.reads.fetch_add(1, Ordering::Relaxed);
        let Some(record) = record else { continue };
        if node == cfg.node {
            own.push((k, record));
        } else {
            stats.warm.set(&k, &record);
        }
    }
    if own.is_empty() {
        return Ok(true);
    }
    Ok(input.blocking_send(Input::ClusterTakeover(own)).is_ok())
}

/// Read `node`'s record of `aor` and give it to the core; false when the core is gone.
fn hand_over(
    con: &mut redis::Connection,
    cfg: &config::Cluster,
    node: &str,
    aor: &str,
    input: &mpsc::Sender<Input>,
    stats: &ClusterStats,
) -> redis::RedisResult<bool> {
    let own = node == cfg.node;
    let via = match cfg.peers.get(node) {
        Some(a) => *a,
        None if own => SocketAddr::from(([0, 0, 0, 0], 0)),
        None => return Ok(true), // a node this one does not know: its users are not ours
    };
    let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(key(node, aor)).query(con)?;
    stats.reads.fetch_add(1, Ordering::Relaxed);
    let stored = bytes.as_deref().and_then(decode).unwrap_or_default();
    let (now, wall) = (Instant::now(), unix_ms());
    let bindings = stored.iter().map(|b| b.binding(now, wall)).collect();
    let r = RemoteBindings {
        node: node.to_string(),
        via: Peer {
            transport: Transport::Udp,
            addr: via,
        },
        aor: aor.to_string(),
        bindings,
        own,
    };
    Ok(input.blocking_send(Input::Cluster(Box::new(r))).is_ok())
}

/// Every [`BEAT`]: this node's heartbeat (active nodes only), and the list of live ones.
fn heartbeat(client: redis::Client, cfg: config::Cluster, stats: Arc<ClusterStats>) {
    let mut con: Option<redis::Connection> = None;
    loop {
        if con.is_none() {
            con = client.get_connection().ok();
        }
        if let Some(c) = con.as_mut() {
            match beat(c, &cfg, stats.active.load(Ordering::Relaxed)) {
                Ok(mut live) => {
                    live.sort();
                    if let Ok(mut l) = stats.live.lock() {
                        *l = live;
                    }
                }
                Err(_) => con = None,
            }
        }
        std::thread::sleep(BEAT);
    }
}

/// The heartbeats: one sorted set `tl:nodes`, each active node scored with the time its beat
/// lapses (O(log n) per beat; a scan of the key space every second would slow Redis down
/// with the location records in it).
fn beat(
    con: &mut redis::Connection,
    cfg: &config::Cluster,
    active: bool,
) -> redis::RedisResult<Vec<String>> {
    let now = unix_ms();
    let mut pipe = redis::pipe();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(NODES)
        .arg("-inf")
        .arg(now)
        .ignore();
    if active {
        pipe.cmd("ZADD")
            .arg(NODES)
            .arg(now + BEAT_TTL_MS)
            .arg(&cfg.node)
            .ignore();
    }
    pipe.cmd("ZRANGE").arg(NODES).arg(0).arg(-1);
    let (live,): (Vec<String>,) = pipe.query(con)?;
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(node: &str, live: &[&str]) -> ClusterStats {
        ClusterStats {
            node: node.into(),
            live: std::sync::Mutex::new(live.iter().map(|s| s.to_string()).collect()),
            ..ClusterStats::default()
        }
    }

    #[test]
    fn shares_add_up_to_the_limit() {
        for max in [0u32, 1, 2, 5, 10, 11, 100] {
            for n in 1..=4usize {
                let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
                let live: Vec<&str> = names.iter().map(String::as_str).collect();
                let total: u32 = names.iter().map(|me| stats(me, &live).share(max)).sum();
                assert_eq!(total, max, "max {max} over {n} nodes");
            }
        }
        assert_eq!(stats("a", &["a"]).share(10), 10, "alone: all of it");
        assert_eq!(stats("b", &["a", "b"]).share(10), 5);
        assert_eq!(stats("a", &["a", "b", "c"]).share(10), 4);
        assert_eq!(stats("c", &["a", "b", "c"]).share(10), 3);
    }
}
