//! `cluster:`: answered calls replicated through Redis, and a standby's takeover (issue 16,
//! part 3).
//!
//! * Every node writes a record of each answered call when it changes (the core's
//!   [`B2bua::take_call_changes`]: the answer, in-dialog requests and their answers), one key
//!   per call, `tl:call:<node>:<call>`, and deletes it when the call ends; each write or
//!   delete is published on `tl:call` as `<key>\n<record>` (an empty record: deleted). Both
//!   go in the writer's pipeline with the location records: one round trip per batch.
//! * Every node follows the channel and keeps the other nodes' records in memory (the warm
//!   cache; read whole with `SCAN` at start and after an outage).
//! * A standby watches for `cluster.shared_address` on its interfaces. When it arrives (the
//!   active died, keepalived moved the address), the standby adopts every record it holds
//!   ([`B2bua::adopt_call`]: both dialogs, the same relay ports), deletes them from Redis
//!   (its own records of the same calls follow under its name) and becomes an active node.
//! * A node's own records found at start are from its previous run (a crash and a restart):
//!   it adopts them too, so a quick restart on the same address keeps the calls.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signaling::b2bua::{B2bua, CallChange, CallReplica, Policy};
use tokio::sync::mpsc;

use super::{Cluster, ClusterStats};
use crate::transport::Input;

/// The channel of call record changes.
pub(super) const CALLS: &str = "tl:call";
/// A call record outlives its last change by this much at most (a safety net: records of a
/// node that died with no standby to take its calls go away).
pub(super) const CALL_TTL_S: u64 = 24 * 3600;
/// How often a standby looks for the shared address.
const WATCH: Duration = Duration::from_millis(20);

pub(super) fn call_key(node: &str, call: u64) -> String {
    format!("tl:call:{node}:{call}")
}

/// The node a call record's key names.
pub(super) fn node_of(key: &str) -> Option<&str> {
    key.strip_prefix("tl:call:")?
        .rsplit_once(':')
        .map(|(n, _)| n)
}

/// The other nodes' call records this node holds (key -> record), ready to be adopted.
#[derive(Default)]
pub struct Warm {
    records: Mutex<HashMap<String, Vec<u8>>>,
}

impl Warm {
    pub(super) fn set(&self, key: &str, record: &[u8]) {
        if let Ok(mut m) = self.records.lock() {
            if record.is_empty() {
                m.remove(key);
            } else {
                m.insert(key.to_string(), record.to_vec());
            }
        }
    }

    /// Every record held, taken out.
    pub(super) fn take(&self) -> Vec<(String, Vec<u8>)> {
        self.records
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.records.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A call record change for the writer: the key and the record (`None`: deleted).
pub(super) type CallJob = (String, Option<Vec<u8>>);

impl Cluster {
    /// Hand the core's call changes to the writer (records of this node).
    pub fn publish_calls(&self, changes: Vec<CallChange>) {
        if changes.is_empty() {
            return;
        }
        let node = &self.stats.node;
        let jobs = changes
            .into_iter()
            .map(|c| match c {
                CallChange::Write { call, replica } => {
                    (call_key(node, call), Some(replica.encode()))
                }
                CallChange::Remove { call } => (call_key(node, call), None),
            })
            .collect();
        self.send(super::Job::Calls(jobs));
    }

    /// Delete records (of calls this node took over) from Redis.
    fn remove_records(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        self.send(super::Job::Calls(
            keys.into_iter().map(|k| (k, None)).collect(),
        ));
    }

    /// The takeover, on the core task: every record in `records` becomes a call here; the
    /// records go from Redis (the adopted calls' own follow under this node).
    pub fn adopt(
        &self,
        core: &mut B2bua,
        policy: &mut dyn Policy,
        mut records: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) {
        let t0 = Instant::now();
        records.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        let (mut ok, mut failed) = (0u64, 0u64);
        let mut keys = Vec::with_capacity(records.len());
        for (key, data) in records {
            let result = CallReplica::decode(&data)
                .map_err(|e| e.to_string())
                .and_then(|r| core.adopt_call(r, now, policy).map_err(|e| e.to_string()));
            match result {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    tracing::warn!(%key, error = %e, "cluster: a call was not taken over");
                }
            }
            keys.push(key);
        }
        self.stats.adopted.fetch_add(ok, Ordering::Relaxed);
        self.stats.adopt_failed.fetch_add(failed, Ordering::Relaxed);
        self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
        self.remove_records(keys);
        tracing::info!(
            adopted = ok,
            failed,
            took_us = t0.elapsed().as_micros() as u64,
            "cluster: calls taken over"
        );
    }
}

/// Whether `ip` is an address of this host now (a socket binds to it without `IP_FREEBIND`).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// A standby's watch for the shared address: when it is here, the held records go to the core
/// to be adopted and the node is active from then on.
pub(super) fn watch(
    ip: IpAddr,
    warm: Arc<Warm>,
    stats: Arc<ClusterStats>,
    input: mpsc::Sender<Input>,
) {
    while !is_local(ip) {
        std::thread::sleep(WATCH);
    }
    stats.active.store(true, Ordering::Relaxed);
    tracing::info!(%ip, "cluster: the shared address is here; taking over");
    let _ = input.blocking_send(Input::ClusterTakeover(warm.take()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_node() {
        let k = call_key("node-a.1", 42);
        assert_eq!(k, "tl:call:node-a.1:42");
        assert_eq!(node_of(&k), Some("node-a.1"));
        assert_eq!(node_of("tl:loc:a:x"), None);
    }

    #[test]
    fn the_warm_cache_follows_writes_and_deletes() {
        let w = Warm::default();
        w.set("tl:call:a:1", b"r1");
        w.set("tl:call:a:2", b"r2");
        w.set("tl:call:a:1", b"");
        assert_eq!(w.len(), 1);
        assert_eq!(w.take(), vec![("tl:call:a:2".to_string(), b"r2".to_vec())]);
        assert!(w.is_empty());
    }

    #[test]
    fn an_address_of_this_host_is_local_and_another_is_not() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        // TEST-NET-3 (RFC 5737) is nobody's address here.
        assert!(!is_local("203.0.113.77".parse().unwrap()));
    }
}
