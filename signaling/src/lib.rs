//! trunkline's SIP core. Everything in this crate is sans-IO: no sockets, no sleeping, no clock
//! reads. Time is passed in as `std::time::Instant` arguments; bytes come in and go out as values.

#![forbid(unsafe_code)]

pub mod b2bua;
pub mod carrier;
pub mod check;
pub mod digest;
pub mod digest_client;
pub mod esc;
pub mod headers;
pub mod mailbox;
pub mod message;
pub mod parse;
pub mod pidf;
pub mod record;
pub mod registrar;
pub mod status;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transaction;
pub mod uri;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

pub use message::{Header, Headers, Method, Request, Response, SipMessage};

/// The transport a message travels over (RFC 3261 §18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Reliable transports carry no retransmissions (RFC 3261 §17.1.1.2, §17.1.2.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// The key a source's counts are kept under (rate buckets, caps, failure bans, connection
/// limits): an IPv4 address as it is (an IPv4-mapped IPv6 address is the IPv4 one), an IPv6
/// address as its /64 network. One end site holds a whole /64 (RFC 7421: the subnet prefix;
/// SLAAC and privacy addresses, RFC 8981, give it as many addresses as it likes), so counting
/// IPv6 per address would give an attacker 2^64 fresh budgets.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(net))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys_are_ipv4_addresses_and_ipv6_slash_64s() {
        let k = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::1"), "::");
    }
}

/// The far end of a hop: which transport and which address. For TCP/TLS the I/O shell maps this to
/// a connection (reusing an open one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}
