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
//!   shared_address: 192.0.2.10          # standby: the service address it takes over
//! ```
//!
//! The peers are trusted like trunks (a call from one is not challenged). Every node writes a
//! record of each answered call; a standby keeps the others' records and, when the shared
//! address arrives on one of its interfaces (keepalived/VRRP moved it), takes their calls
//! over: the same relay ports, both legs' dialogs. A standby binds its listeners with
//! `IP_FREEBIND` (they name the shared address before it is there) and needs
//! `shared_address`. Without `cluster:` nothing changes. Not reloadable.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

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
    /// The service address a standby takes over (required for `role: standby`).
    pub shared_address: Option<IpAddr>,
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
    #[serde(default)]
    shared_address: Option<String>,
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
    let role = r.role.unwrap_or_default();
    let shared_address = match r.shared_address.as_deref().map(str::trim) {
        None => None,
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
            sem(
                p("shared_address"),
                format!("cluster.shared_address: `{s}` is no IP address"),
            )
        })?),
    };
    if role == Role::Standby && shared_address.is_none() {
        return Err(sem(
            p("role"),
            "cluster.role: standby takes over the calls of the address it is given: set cluster.shared_address",
        ));
    }
    Ok(Cluster {
        redis: url.to_string(),
        node: r.node,
        role,
        peers,
        shared_address,
    })
}
