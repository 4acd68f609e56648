//! trunkline's SIP core. Everything in this crate is sans-IO: no sockets, no sleeping, no clock
//! reads. Time is passed in as `std::time::Instant` arguments; bytes come in and go out as values.

#![forbid(unsafe_code)]

pub mod b2bua;
pub mod carrier;
pub mod check;
pub mod digest;
pub mod digest_client;
pub mod headers;
pub mod message;
pub mod parse;
pub mod registrar;
pub mod status;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transaction;
pub mod uri;

use std::net::SocketAddr;

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

/// The far end of a hop: which transport and which address. For TCP/TLS the I/O shell maps this to
/// a connection (reusing an open one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}
