//! `cluster:`: nodes that share state through Redis (issue 16). The location service is
//! shared: every node writes its bindings to Redis and learns the others', so a call reaching
//! any node finds a user registered at any other (it goes through that node). Call limits
//! (a trunk's `max_calls`/`max_cps`, `limits.max_calls`) count across the active nodes: each
//! takes its share while its heartbeat is live.
//!
//! ```yaml
//! cluster:
//!   redis: redis://127.0.0.1:6379/0     # redis://[user:password@]host[:port][/db]
//!   node: a                             # this node's name (letters, digits, - _ .)
//!   role: active                        # active (default) | standby
//!   peers: { b: 10.0.0.2:5060 }         # the other nodes: where calls for their users go
//! ```
//!
//! The peers are trusted like trunks (a call from one is not challenged). Without `cluster:`
//! nothing changes. Not reloadable.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::locate::key;
use crate::{parse_socket, sem, valid_name, Sem};

/// A node's part in the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Active,
    Standby,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The Redis server's URL.
    pub redis: String,
    pub node: String,
    pub role: Role,
    /// The other nodes by name: their SIP address.
    pub peers: BTreeMap<String, SocketAddr>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    redis: String,
    node: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default, deserialize_with = "crate::unique_keys")]
    peers: Vec<(String, String)>,
}

pub(crate) fn build_cluster(r: RawCluster) -> Result<Cluster, Sem> {
    let p = |k: &str| vec![key("cluster"), key(k)];
    let url = r.redis.trim();
    let ok = url
        .strip_prefix("redis://")
        .is_some_and(|rest| !rest.is_empty() && !rest.chars().any(|c| c.is_whitespace()));
    if !ok {
        return Err(sem(
            p("redis"),
            "cluster.redis: a redis:// URL (redis://host:port/db)",
        ));
    }
    if !valid_name(&r.node) {
        return Err(sem(
            p("node"),
            "cluster.node: letters, digits, '-', '_' and '.'",
        ));
    }
    let mut peers = BTreeMap::new();
    for (name, addr) in r.peers {
        let at = |_: ()| vec![key("cluster"), key("peers"), key(&name)];
        if !valid_name(&name) || name == r.node {
            return Err(sem(
                at(()),
                format!("cluster.peers: `{name}` is no other node's name"),
            ));
        }
        let a =
            parse_socket(&addr).map_err(|e| sem(at(()), format!("cluster.peers.{name}: {e}")))?;
        peers.insert(name, a);
    }
    Ok(Cluster {
        redis: url.to_string(),
        node: r.node,
        role: r.role.unwrap_or_default(),
        peers,
    })
}
