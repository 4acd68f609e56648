//! Trunk addresses that are names (RFC 3263), and the resolver settings (`dns:`).
//!
//! ```yaml
//! dns:
//!   servers: [127.0.0.1:53]   # default: the system resolver configuration (/etc/resolv.conf)
//!   timeout_ms: 2000          # per query (default 2000)
//! trunks:
//!   carrier: { address: sip.carrier.example, transport: udp }       # NAPTR -> SRV -> A/AAAA
//!   backup:  { address: sip2.carrier.example:5060, transport: tcp } # A/AAAA only (RFC 3263 §4.2)
//!   pbx:     { address: 192.0.2.10:5060 }                           # as it is
//! ```
//!
//! `trunkline check` accepts names without resolving them; the running process resolves them
//! in the background and treats a name that does not resolve as an unavailable trunk.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::{key, parse_socket, sem, Sem};

/// Where a trunk is: an address, or a name to resolve at run time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TrunkAddress {
    /// `ip:port` (IPv6 as `[2001:db8::1]:5060`): used as it is.
    Socket(SocketAddr),
    /// `host:port`: A/AAAA records of `host`, that port (RFC 3263 §4.2: "If the TARGET was
    /// not a numeric IP address, but a port is present in the URI, the client performs an
    /// A or AAAA record lookup of the domain name").
    HostPort(String, u16),
    /// `host`: NAPTR, then SRV for the trunk's transport, then A/AAAA on the transport's
    /// default port (RFC 3263 §4.1, §4.2).
    Host(String),
}

impl TrunkAddress {
    /// The address when it needs no resolving.
    pub fn socket(&self) -> Option<SocketAddr> {
        match self {
            TrunkAddress::Socket(a) => Some(*a),
            _ => None,
        }
    }

    /// The host name, when it is one (lower case).
    pub fn name(&self) -> Option<&str> {
        match self {
            TrunkAddress::Socket(_) => None,
            TrunkAddress::HostPort(h, _) | TrunkAddress::Host(h) => Some(h),
        }
    }

    /// The `host[:port]` written in Request-URIs and To headers towards the trunk: the name
    /// itself for a name (RFC 3263 resolves the URI, so the URI keeps the name), the address
    /// for an address (IPv6 bracketed, RFC 5118).
    pub fn uri_host(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TrunkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrunkAddress::Socket(a) => write!(f, "{a}"),
            TrunkAddress::HostPort(h, p) => write!(f, "{h}:{p}"),
            TrunkAddress::Host(h) => f.write_str(h),
        }
    }
}

/// A trunk address that does not parse; the text says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadTrunkAddress(pub String);

impl fmt::Display for BadTrunkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadTrunkAddress {}

impl std::str::FromStr for TrunkAddress {
    type Err = BadTrunkAddress;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        trunk_address(s).map_err(BadTrunkAddress)
    }
}

/// A host name as RFC 1035 §2.3.1 / RFC 1123 §2.1 allow it: labels of letters, digits and
/// `-` (and `_`, which SRV owner names use), 1-63 characters each, 253 in all.
fn valid_host(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // all-numeric dotted text is an IPv4 address that failed to parse, not a name
        && !h.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a trunk's `address:`.
pub(crate) fn trunk_address(s: &str) -> Result<TrunkAddress, String> {
    let t = s.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        // An IPv4-mapped IPv6 address is the IPv4 peer it names (its packets arrive as IPv4).
        return Ok(TrunkAddress::Socket(SocketAddr::new(
            crate::canonical_ip(a.ip()),
            a.port(),
        )));
    }
    if t.parse::<std::net::IpAddr>().is_ok() || (t.starts_with('[') && t.ends_with(']')) {
        return Err(format!(
            "`{s}`: an IP address needs a port (IP:port, IPv6 as [2001:db8::1]:5060)"
        ));
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h, Some(p)),
            _ => return Err(format!("`{s}`: the port must be 1-65535")),
        },
        None => (t, None),
    };
    if !valid_host(host) {
        return Err(format!(
            "`{s}` is neither IP:port nor a host name (letters, digits, `-`, dots)"
        ));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    Ok(match port {
        Some(p) => TrunkAddress::HostPort(host, p),
        None => TrunkAddress::Host(host),
    })
}

/// `dns:`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dns {
    /// Name servers to ask; empty: the system configuration (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// How long one query may take.
    pub timeout: Duration,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            servers: Vec::new(),
            timeout: Duration::from_millis(2000),
        }
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    #[serde(default)]
    servers: Vec<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

pub(crate) fn build_dns(raw: RawDns) -> Result<Dns, Sem> {
    let mut servers = Vec::with_capacity(raw.servers.len());
    for (i, s) in raw.servers.iter().enumerate() {
        let a = parse_socket(s).map_err(|m| {
            sem(
                vec![key("dns"), key("servers"), crate::Seg::Index(i)],
                format!("{m} (a name server as IP:port)"),
            )
        })?;
        servers.push(a);
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(2000);
    if !(10..=60_000).contains(&timeout_ms) {
        return Err(sem(
            vec![key("dns"), key("timeout_ms")],
            "timeout_ms must be 10-60000",
        ));
    }
    Ok(Dns {
        servers,
        timeout: Duration::from_millis(timeout_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            trunk_address("127.0.0.1:5060"),
            Ok(TrunkAddress::Socket("127.0.0.1:5060".parse().unwrap()))
        );
        assert_eq!(
            trunk_address("[::1]:5060"),
            Ok(TrunkAddress::Socket("[::1]:5060".parse().unwrap()))
        );
        assert_eq!(
            trunk_address("Sip.Carrier.Example"),
            Ok(TrunkAddress::Host("sip.carrier.example".into()))
        );
        assert_eq!(
            trunk_address("sip.carrier.example.:5070"),
            Ok(TrunkAddress::HostPort("sip.carrier.example".into(), 5070))
        );
        for bad in [
            "127.0.0.1",
            "::1",
            "[::1]",
            "host:0",
            "host:99999",
            "bad host",
            "-x.example",
            "a..b",
            "300.1.1.1",
            "",
            "h\u{7}",
        ] {
            assert!(trunk_address(bad).is_err(), "{bad} accepted");
        }
    }
}
