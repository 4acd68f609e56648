//! `metrics:`: the Prometheus/admin HTTP listener, who may reach it, and the reload token.

use super::*;

/// Prometheus/admin HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    pub listen: SocketAddr,
    /// Source addresses allowed to connect (`metrics.allow`); others are closed unanswered.
    /// Required for a non-loopback `listen`; loopback sources are always allowed when `listen`
    /// is a loopback address.
    pub allow: Vec<IpNet>,
    /// `POST /reload` needs `Authorization: Bearer <reload_token>` when `listen` is not a
    /// loopback address; without a token, reload is then disabled (403).
    pub reload_token: Option<String>,
}

impl Metrics {
    /// Whether a connection from `ip` may talk to the admin endpoint.
    pub fn allows(&self, ip: IpAddr) -> bool {
        (self.listen.ip().is_loopback() && canonical_ip(ip).is_loopback())
            || self.allow.iter().any(|n| n.contains(ip))
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    listen: String,
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    reload_token: Option<String>,
}

pub(crate) fn build_metrics(m: RawMetrics) -> Result<Metrics, Sem> {
    let p = |k: &str| vec![key("metrics"), key(k)];
    let listen = parse_socket(&m.listen).map_err(|e| sem(p("listen"), e))?;
    let mut allow = Vec::new();
    for (i, a) in m.allow.iter().flatten().enumerate() {
        let n: IpNet = a
            .parse()
            .map_err(|e: String| sem(vec![key("metrics"), key("allow"), Seg::Index(i)], e))?;
        allow.push(n);
    }
    if !listen.ip().is_loopback() && m.allow.is_none() {
        return Err(sem(
            p("listen"),
            format!(
                "metrics.listen {listen} is not a loopback address: the admin endpoint \
                 (/metrics, POST /reload) would be open to anyone who reaches it; give \
                 `metrics.allow: [CIDR, ...]` (the scrapers' addresses) or listen on 127.0.0.1"
            ),
        ));
    }
    if let Some(t) = &m.reload_token {
        if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(sem(
                p("reload_token"),
                "reload_token: at least 16 printable characters, no spaces",
            ));
        }
    }
    Ok(Metrics {
        listen,
        allow,
        reload_token: m.reload_token,
    })
}
