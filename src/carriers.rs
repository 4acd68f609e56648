//! The shell's side of trunkline's requests to its trunks: which trunks register and are probed
//! (built from the configuration for the core, [`TrunkHealth::carriers`]), and what the answers
//! mean for routing (a probed trunk that is down is skipped) and for the metrics.

use std::collections::HashSet;
use std::sync::Arc;

use config::Config;
use signaling::b2bua::{CallEvent, CarrierTrunk};
use signaling::carrier::{ProbeSettings, RegEvent, RegisterSettings};
use signaling::digest_client::Credentials;
use signaling::Peer;

use crate::dns::DnsTable;
use crate::metrics::Metrics;
use crate::policy::transport_of;

/// Registration and probe state of the trunks, as far as routing and metrics need it.
#[derive(Default)]
pub struct TrunkHealth {
    /// The configuration (by address) and DNS generation `set` was built from.
    built_for: (usize, u64),
    set: Option<Arc<Vec<CarrierTrunk>>>,
    /// Probed trunks that are down now.
    down: HashSet<String>,
}

/// A trunk's `auth:` as the core's Digest client takes it.
pub fn credentials(t: &config::Trunk) -> Option<Credentials> {
    t.auth.as_ref().map(|a| Credentials {
        username: a.username.clone(),
        password: a.password.clone(),
        realm: a.realm.clone(),
    })
}

/// A trunk that registers or is probed, at `addr` (for a named trunk: one it resolves to).
fn carrier_trunk(t: &config::Trunk, addr: std::net::SocketAddr) -> Option<CarrierTrunk> {
    if t.register.is_none() && t.probe.is_none() {
        return None;
    }
    let register = t.register.as_ref().map(|r| RegisterSettings {
        user: r.user.clone(),
        domain: r.domain.clone(),
        expires: r.expires,
        contact_user: r.contact_user.clone(),
        auth: credentials(t),
    });
    let probe = t.probe.map(|p| ProbeSettings {
        interval: p.interval,
        down_after: p.down_after,
        up_after: p.up_after,
    });
    Some(CarrierTrunk {
        name: t.name.clone(),
        peer: Peer {
            transport: transport_of(t.transport),
            addr,
        },
        host: t.address.uri_host(),
        register,
        probe,
    })
}

impl TrunkHealth {
    /// The trunks that register or are probed under `cfg` (the same `Arc` until `cfg` changes).
    ///
    /// A trunk named by DNS is registered with and probed at the first address it resolves to
    /// (kept while it still resolves to it, so a new answer in another order moves nothing);
    /// it is left out while its name does not resolve.
    pub fn carriers(
        &mut self,
        cfg: &Config,
        dns: &DnsTable,
        metrics: &Metrics,
    ) -> Option<Arc<Vec<CarrierTrunk>>> {
        let key = (cfg as *const Config as usize, dns.generation());
        if self.built_for != key {
            self.built_for = key;
            let old = self.set.take();
            let list: Vec<CarrierTrunk> = cfg
                .trunks
                .values()
                .filter(|t| t.mgcp.is_none())
                .filter_map(|t| {
                    let addrs = crate::policy::trunk_addresses(dns, t);
                    let kept = old
                        .iter()
                        .flat_map(|o| o.iter())
                        .find(|o| o.name == t.name && addrs.contains(&o.peer.addr))
                        .map(|o| o.peer.addr);
                    carrier_trunk(t, kept.or_else(|| addrs.first().copied())?)
                })
                .collect();
            // A trunk no longer probed is not down; a new probed one starts up.
            self.down
                .retain(|n| list.iter().any(|t| t.name == *n && t.probe.is_some()));
            for t in &list {
                if t.probe.is_some() && !self.down.contains(&t.name) {
                    metrics.trunk_up.with_label_values(&[&t.name]).set(1);
                }
                if t.register.is_some() {
                    metrics
                        .trunk_registered
                        .with_label_values(&[&t.name])
                        .add(0);
                }
            }
            self.set = (!list.is_empty()).then(|| Arc::new(list));
        }
        self.set.clone()
    }

    /// A probed trunk that is down now (routes skip it).
    pub fn is_down(&self, trunk: &str) -> bool {
        !self.down.is_empty() && self.down.contains(trunk)
    }

    /// Follow a trunk event (others are ignored).
    pub fn on_event(&mut self, ev: &CallEvent, metrics: &Metrics) {
        match ev {
            CallEvent::TrunkProbe { trunk, up } => {
                metrics
                    .trunk_up
                    .with_label_values(&[trunk])
                    .set(i64::from(*up));
                if *up {
                    self.down.remove(trunk);
                    tracing::info!(trunk = %trunk, "trunk up: it answers its OPTIONS probes again");
                } else {
                    self.down.insert(trunk.clone());
                    tracing::warn!(trunk = %trunk, "trunk down: its OPTIONS probes go unanswered; routes skip it");
                }
            }
            CallEvent::TrunkRegistration { trunk, event } => {
                let (result, registered) = match event {
                    RegEvent::Registered(d) => {
                        tracing::info!(trunk = %trunk, expires = d.as_secs(), "registered with the trunk");
                        ("ok".to_string(), 1)
                    }
                    RegEvent::Failed(Some(code)) => {
                        tracing::warn!(trunk = %trunk, code, "registration with the trunk failed; retrying after a back-off");
                        (code.to_string(), 0)
                    }
                    RegEvent::Failed(None) => {
                        tracing::warn!(trunk = %trunk, "registration with the trunk got no answer; retrying after a back-off");
                        ("timeout".to_string(), 0)
                    }
                    RegEvent::Unregistered => {
                        tracing::info!(trunk = %trunk, "unregistered from the trunk");
                        ("unregistered".to_string(), 0)
                    }
                };
                metrics
                    .trunk_registrations
                    .with_label_values(&[trunk, &result])
                    .inc();
                metrics
                    .trunk_registered
                    .with_label_values(&[trunk])
                    .set(registered);
            }
            _ => {}
        }
    }
}
