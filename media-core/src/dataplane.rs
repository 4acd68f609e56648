//! The contract between media control (SDP rewrite, ng protocol, B2BUA) and the data plane that
//! moves packets.
//!
//! A *leg pair* joins two relay ports: media that arrives on port `a` (RTP, and RTCP on `a + 1`)
//! is sent out of port `b` to the remote of `b`, and the other way round. For one m-line of a call
//! between caller X and callee Y: the SDP sent to X carries port `a` (X sends to `a`, and `a`'s
//! remote is X); the SDP sent to Y carries port `b`. RTP from X arrives on `a` and leaves from `b`
//! towards Y.

use std::net::{IpAddr, SocketAddr};

/// The IP family of a relay port: the family of the peer it faces (RFC 6157 §4: a B2BUA
/// between an IPv6 and an IPv4 endpoint gives each its own family's address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Family {
    #[default]
    V4,
    V6,
}

impl Family {
    /// The family of `ip` (an IPv4-mapped IPv6 address is IPv4).
    pub fn of(ip: IpAddr) -> Family {
        if ip.to_canonical().is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }
}

/// Two joined RTP ports (even numbers; RTCP uses port + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LegPair {
    pub a: u16,
    pub b: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayError {
    /// No free port pair in the configured range.
    PortsExhausted,
    /// The port is not part of an open pair.
    UnknownPort(u16),
    /// The data plane is not running (worker gone).
    Stopped,
    Io(String),
    /// A port asked for by number ([`DataPlane::open_pair_at`]) is in use, outside the range,
    /// or cannot be bound.
    PortUnavailable(u16),
    /// The data plane cannot do this (e.g. open a pair on given ports).
    Unsupported,
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::PortsExhausted => f.write_str("relay port range exhausted"),
            RelayError::UnknownPort(p) => write!(f, "port {p} is not an open relay leg"),
            RelayError::Stopped => f.write_str("relay data plane stopped"),
            RelayError::Io(e) => write!(f, "relay I/O error: {e}"),
            RelayError::PortUnavailable(p) => write!(f, "relay port {p} is not available"),
            RelayError::Unsupported => f.write_str("not supported by this data plane"),
        }
    }
}
impl std::error::Error for RelayError {}

/// Counters and quality of what one leg *received* from its peer (and what was sent to it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegStats {
    pub rtp_packets_in: u64,
    pub rtp_bytes_in: u64,
    pub rtp_packets_out: u64,
    pub rtp_bytes_out: u64,
    pub rtcp_packets_in: u64,
    pub rtcp_packets_out: u64,
    /// Packets lost on the way to the relay (from RTP sequence gaps, or RTCP RR when present).
    pub packets_lost: i64,
    /// Fraction lost, 0.0..=1.0.
    pub fraction_lost: f64,
    /// Interarrival jitter in milliseconds (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time from RTCP LSR/DLSR, when known.
    pub rtt_ms: Option<f64>,
    /// MOS (1.0..=4.5) from a simplified E-model; None before any media.
    pub mos: Option<f64>,
    /// The address media actually comes from (latched), if any packet arrived.
    pub latched: Option<SocketAddr>,
    /// Packets received on this leg and dropped (not yet signalled, foreign source after the
    /// latch (RTP-bleed guard), or nowhere to send).
    pub packets_dropped: u64,
    /// What the leg's endpoint reports in RTCP RR/SR about the media it receives from the relay:
    /// fraction lost (0.0..=1.0), cumulative lost, interarrival jitter in ms.
    pub remote_fraction_lost: Option<f64>,
    pub remote_packets_lost: Option<i64>,
    pub remote_jitter_ms: Option<f64>,
    /// MOS-LQ the endpoint reported in an RTCP XR VoIP metrics block (RFC 3611 section 4.7).
    pub remote_mos: Option<f64>,
}

/// Things the data plane reports to the control side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayEvent {
    /// No RTP arrived on either side of the pair for the configured media timeout.
    MediaTimeout(LegPair),
    /// The endpoint of the leg owning `port` sent a DTMF digit as telephone-events that its
    /// peer gets as SIP INFO ([`crate::transcode::Inband::Report`]).
    Dtmf {
        pair: LegPair,
        port: u16,
        digit: crate::transcode::Dtmf,
    },
}

/// The data plane as the control side sees it. Implementations are thread-safe handles; calls are
/// cheap messages to the worker threads.
pub trait DataPlane: Send + Sync {
    /// The address written into SDP (media.address).
    fn local_ip(&self) -> IpAddr;
    /// The address of the ports facing peers of `family` (written into the SDP sent to them).
    /// Default: [`DataPlane::local_ip`] (a single-family data plane).
    fn local_ip_for(&self, family: Family) -> IpAddr {
        let _ = family;
        self.local_ip()
    }
    /// Open two joined port pairs.
    fn open_pair(&self) -> Result<LegPair, RelayError>;
    /// Open two joined port pairs whose port `a` faces a peer of `families[0]` and port `b` one
    /// of `families[1]` (each bound on [`DataPlane::local_ip_for`] its family). Default:
    /// [`DataPlane::open_pair`].
    fn open_pair_for(&self, families: [Family; 2]) -> Result<LegPair, RelayError> {
        let _ = families;
        self.open_pair()
    }
    /// Open the pair `pair` on exactly its ports (a call taken over from another node keeps
    /// the ports its peers send to), port `a` facing a peer of `families[0]`, `b` one of
    /// `families[1]`. Default: [`RelayError::Unsupported`].
    fn open_pair_at(&self, pair: LegPair, families: [Family; 2]) -> Result<LegPair, RelayError> {
        let _ = (pair, families);
        Err(RelayError::Unsupported)
    }
    /// Where the peer of the leg owning `port` wants media (its SDP c=/m=, and a=rtcp or port+1).
    /// Called again on a re-offer; the leg may learn its source again after it. Only the
    /// signalled address can be learned (see [`DataPlane::set_remote_from`]).
    fn set_remote(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError>;
    /// [`DataPlane::set_remote`], with the IP address the leg's endpoint *signals* from (the
    /// source of its SIP or ng request). Besides the signalled address, the leg may then learn a
    /// media source on that IP (an endpoint behind NAT) once it passes sequence probation;
    /// without it (`None`, and in [`DataPlane::set_remote`]) only the signalled address is
    /// learned. Default: ignores `signalling`.
    fn set_remote_from(
        &self,
        port: u16,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        signalling: Option<IpAddr>,
    ) -> Result<(), RelayError> {
        let _ = signalling;
        self.set_remote(port, rtp, rtcp)
    }
    /// SRTP on the leg owning `port` (RFC 3711): `rx` unprotects what its endpoint sends,
    /// `tx` protects what the relay sends to it; both `None`: plain RTP. Packets of a leg with
    /// keys are processed in user space (never the kernel fast path). Default: refused.
    fn set_srtp(
        &self,
        port: u16,
        rx: Option<crate::srtp::MasterKey>,
        tx: Option<crate::srtp::MasterKey>,
    ) -> Result<(), RelayError> {
        let _ = port;
        if rx.is_none() && tx.is_none() {
            return Ok(());
        }
        Err(RelayError::Io("this data plane does no SRTP".into()))
    }
    /// Transcoding of what the endpoint of the leg owning `port` sends, before it goes to the
    /// other leg (see [`crate::transcode`]); `None`: forwarded as it is. Such a pair is
    /// processed in user space (never the kernel fast path). Default: refused.
    fn set_transcode(
        &self,
        port: u16,
        spec: Option<crate::transcode::Spec>,
    ) -> Result<(), RelayError> {
        let _ = port;
        match spec {
            None => Ok(()),
            Some(_) => Err(RelayError::Io("this data plane does no transcoding".into())),
        }
    }
    /// Send `digit` as telephone-events from the leg owning `port` to its peer (a transcoded
    /// leg in [`crate::transcode::Inband::Inject`] mode; the digit came in SIP INFO). Default:
    /// refused.
    fn inject_dtmf(&self, port: u16, digit: crate::transcode::Dtmf) -> Result<(), RelayError> {
        let _ = (port, digit);
        Err(RelayError::Io("this data plane injects no DTMF".into()))
    }
    /// Close both legs of the pair and return the ports to the pool.
    fn close_pair(&self, pair: LegPair);
    /// Stats of the leg owning `port`.
    fn stats(&self, port: u16) -> Option<LegStats>;
    /// RTP clock rates of dynamic payload types received on the leg owning `port` (from the
    /// SDP a=rtpmap of its endpoint), for jitter computation. Static types are known (RFC 3551);
    /// unknown dynamic ones default to 8000 Hz. Default: ignored.
    fn set_clock_rates(&self, port: u16, rates: &[(u8, u32)]) -> Result<(), RelayError> {
        let _ = (port, rates);
        Ok(())
    }
}
