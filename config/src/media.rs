//! `media:`: the relay's address and ports, its workers and back end, SRTP and codecs for
//! callers that are no trunk, TCP streams, and the ng control port.

use super::*;

/// Media relay settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// Address written into rewritten SDP (`c=` lines), and the relay's bind address for its
    /// family.
    pub address: IpAddr,
    /// The relay's IPv6 address when `address` is IPv4 (`address_v6`, dual stack): a leg whose
    /// peer is on IPv6 gets it in its SDP (`c=IN IP6`), and the relay's ports for that leg are
    /// opened on it (RFC 6157 §4). `None`: every leg gets `address`.
    pub address_v6: Option<std::net::Ipv6Addr>,
    /// First relay port (even: RTP on even ports, RTCP on the next odd one, RFC 3550 §11).
    pub port_min: u16,
    /// Last relay port (odd), inclusive.
    pub port_max: u16,
    pub backend: Backend,
    /// rtpengine-compatible ng control listener, if any. A non-loopback address needs
    /// `ng_allow`.
    pub ng_listen: Option<SocketAddr>,
    /// Who may send ng commands besides loopback (`ng_allow: [CIDR, ...]`, `(network,
    /// prefix length)`); datagrams from elsewhere are dropped. Default: loopback only.
    pub ng_allow: Vec<(IpAddr, u8)>,
    /// Most relay port pairs (one per m= line) the ng calls hold at once; beyond, an ng offer
    /// gets an error. Default: half the pairs of `ports`, so ng clients cannot take the ports
    /// SIP calls need.
    pub ng_max_streams: usize,
    /// Media inactivity timeout (default 60 s).
    pub timeout: Duration,
    /// Relay worker threads; 0 (the default) = automatic: one per core but one, at least one.
    pub workers: usize,
    /// io_uring back end: how long (microseconds) a worker under load waits for more
    /// completions after the first one; bounds the latency added per packet. 0 = no batching;
    /// `None` = the relay's default (0, or the `TRUNKLINE_RELAY_BATCH_US` environment variable).
    pub io_uring_batch_us: Option<u32>,
    /// Accept media only from the address and port each side's SDP names (no latching): the
    /// strictest RTP Bleed protection, for peers known not to be behind NAT. Default false:
    /// a leg learns its media source from the SDP's address, or (NAT) from the IP its SIP
    /// comes from after sequence probation; a source on any other IP is never learned.
    pub strict_source: bool,
    /// Forward RTP flows whose sources have settled with an eBPF program in the kernel (default
    /// auto); signaling, latching, RTCP and stats stay in user space.
    pub kernel_forwarding: KernelForwarding,
    /// SRTP for callers that are no trunk (`media.srtp`, default optional; see [`SrtpPolicy`]).
    pub srtp: SrtpPolicy,
    /// Codecs that may be offered to callers that are no trunk (`media.codecs`; see
    /// [`Codecs`]); absent: no codec policy.
    pub codecs: Option<Codecs>,
    /// What becomes of an m-line carried over TCP (MSRP, BFCP), which no UDP relay port can
    /// carry, in SIP calls and through the ng port (`media.tcp_streams`).
    pub tcp_streams: TcpStreams,
}

/// `media.tcp_streams`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpStreams {
    /// Rejected with port 0, the call's other streams relayed (default: no address crosses).
    #[default]
    Reject,
    /// Passed untouched: the peers connect directly; that stream's addresses cross.
    Pass,
}

impl Media {
    /// The relay address for a leg whose peer is `peer`: the one of the peer's family
    /// (an IPv4-mapped peer counts as IPv4), else `address`.
    pub fn address_for(&self, peer: IpAddr) -> IpAddr {
        match (canonical_ip(peer), self.address_v6) {
            (IpAddr::V6(_), Some(v6)) => IpAddr::V6(v6),
            _ => self.address,
        }
    }

    /// The relay's address of a family (`v6`), if it has one.
    pub fn address_of_family(&self, v6: bool) -> Option<IpAddr> {
        if self.address.is_ipv6() == v6 {
            Some(self.address)
        } else if v6 {
            self.address_v6.map(IpAddr::V6)
        } else {
            None
        }
    }
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMedia {
    address: String,
    #[serde(default)]
    address_v6: Option<String>,
    ports: String,
    #[serde(default)]
    backend: Backend,
    #[serde(default)]
    ng_listen: Option<String>,
    #[serde(default)]
    ng_allow: Option<Vec<String>>,
    #[serde(default)]
    ng_max_streams: Option<u64>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    workers: Option<u64>,
    #[serde(default)]
    io_uring_batch_us: Option<u64>,
    #[serde(default)]
    strict_source: bool,
    #[serde(default)]
    kernel_forwarding: KernelForwarding,
    #[serde(default)]
    srtp: SrtpPolicy,
    #[serde(default)]
    codecs: Option<Codecs>,
    #[serde(default)]
    tcp_streams: TcpStreams,
}

pub(crate) fn build_media(m: RawMedia) -> Result<Media, Sem> {
    let p = |k: &str| vec![key("media"), key(k)];
    let address: IpAddr = m.address.trim().parse().map_err(|_| {
        sem(
            p("address"),
            format!("`{}` is not an IP address", m.address),
        )
    })?;
    if address.is_unspecified() {
        return Err(sem(
            p("address"),
            "media.address is written into SDP: it must be a concrete address, not 0.0.0.0/::",
        ));
    }
    let address_v6 = match &m.address_v6 {
        None => None,
        Some(s) => {
            let v6: std::net::Ipv6Addr = s.trim().parse().map_err(|_| {
                sem(
                    p("address_v6"),
                    format!("`{s}` is not an IPv6 address (media.address_v6 is for IPv6 legs)"),
                )
            })?;
            if v6.is_unspecified() || v6.to_ipv4_mapped().is_some() {
                return Err(sem(
                    p("address_v6"),
                    "media.address_v6 is written into SDP: a concrete IPv6 address, not :: or \
                     an IPv4-mapped one",
                ));
            }
            if address.is_ipv6() {
                return Err(sem(
                    p("address_v6"),
                    "media.address is IPv6 already: give the IPv4 address as media.address and \
                     the IPv6 one as media.address_v6 (dual stack), or only media.address",
                ));
            }
            Some(v6)
        }
    };
    let (lo, hi) = m.ports.split_once('-').ok_or_else(|| {
        sem(
            p("ports"),
            format!(
                "`{}`: expected a range FIRST-LAST, e.g. 20000-29999",
                m.ports
            ),
        )
    })?;
    let port = |s: &str| -> Result<u16, Sem> {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                sem(
                    p("ports"),
                    format!("`{}` is not a port number (1-65535)", s.trim()),
                )
            })
    };
    let (port_min, port_max) = (port(lo)?, port(hi)?);
    if port_min >= port_max {
        return Err(sem(
            p("ports"),
            format!("port range {port_min}-{port_max} is empty or reversed"),
        ));
    }
    if port_min % 2 != 0 {
        return Err(sem(
            p("ports"),
            format!(
                "first port {port_min} must be even (RTP on even ports, RTCP on the next odd one)"
            ),
        ));
    }
    if port_max % 2 != 1 {
        return Err(sem(
            p("ports"),
            format!("last port {port_max} must be odd (the RTCP port of the last pair)"),
        ));
    }
    let ng_listen = match &m.ng_listen {
        None => None,
        Some(s) => Some(parse_socket(s).map_err(|e| sem(p("ng_listen"), e))?),
    };
    let mut ng_allow = Vec::new();
    for (i, c) in m.ng_allow.iter().flatten().enumerate() {
        let at = || vec![key("media"), key("ng_allow"), Seg::Index(i)];
        // validated (and its messages) as `match.source_ip`
        c.parse::<Cidr>().map_err(|e| sem(at(), e))?;
        let (a, l) = c.trim().split_once('/').unwrap_or((c.trim(), ""));
        let ip: IpAddr = a.parse().map_err(|_| sem(at(), "not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        ng_allow.push((ip, l.parse().unwrap_or(max)));
    }
    if let Some(a) = ng_listen {
        if !a.ip().is_loopback() && ng_allow.is_empty() {
            return Err(sem(
                p("ng_listen"),
                format!(
                    "ng_listen {a} is not a loopback address: whoever reaches the ng port \
                     controls the relay (opens ports, redirects media); list the SIP proxies \
                     that may use it in media.ng_allow: [CIDR, ...]"
                ),
            ));
        }
    }
    let pairs = (usize::from(port_max) - usize::from(port_min) + 1) / 4;
    let ng_max_streams = match m.ng_max_streams {
        None => (pairs / 2).max(1),
        Some(n) if n >= 1 && n as usize <= pairs => n as usize,
        Some(n) => {
            return Err(sem(
                p("ng_max_streams"),
                format!("{n}: between 1 and the {pairs} port pairs of media.ports"),
            ))
        }
    };
    let timeout = match m.timeout {
        None => Duration::from_secs(60),
        Some(0) => return Err(sem(p("timeout"), "media timeout must be > 0 seconds")),
        Some(s) => Duration::from_secs(s),
    };
    let workers = match m.workers {
        None => 0,
        Some(n) if n <= MAX_RELAY_WORKERS => n as usize,
        Some(n) => {
            return Err(sem(
                p("workers"),
                format!("{n} relay workers: at most {MAX_RELAY_WORKERS} (0 = automatic)"),
            ))
        }
    };
    let io_uring_batch_us = match m.io_uring_batch_us {
        None => None,
        Some(us) if us <= MAX_BATCH_US => Some(us as u32),
        Some(us) => {
            return Err(sem(
                p("io_uring_batch_us"),
                format!(
                    "{us} us: at most {MAX_BATCH_US} (the delay is added to packets under load)"
                ),
            ))
        }
    };
    Ok(Media {
        address,
        address_v6,
        port_min,
        port_max,
        backend: m.backend,
        ng_listen,
        ng_allow,
        ng_max_streams,
        timeout,
        workers,
        io_uring_batch_us,
        strict_source: m.strict_source,
        kernel_forwarding: m.kernel_forwarding,
        srtp: m.srtp,
        codecs: m.codecs,
        tcp_streams: m.tcp_streams,
    })
}

/// Most relay worker threads `media.workers` accepts.
pub(crate) const MAX_RELAY_WORKERS: u64 = 256;

/// Longest io_uring batching delay `media.io_uring_batch_us` accepts (10 ms: beyond, the delay
/// is audible jitter).
pub(crate) const MAX_BATCH_US: u64 = 10_000;
