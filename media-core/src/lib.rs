//! trunkline's sans-IO media logic: what the relay decides, without the sockets that carry it.
//!
//! * [`sdp`]: SDP parse and rewrite (c=, o=, m= ports, a=rtcp, ICE stripping).
//! * [`control`]: call-level media state: offer/answer per side → relay port pairs, through the
//!   [`DataPlane`] trait.
//! * [`dataplane`]: the contract between media control and the packet data plane
//!   (`media_relay::Relay` implements it on sockets; [`control::fake::FakeDataPlane`] in memory).
//! * [`ng`]: the rtpengine-compatible ng protocol (bencode codec and command handling).
//! * [`session`]: per-leg latching (symmetric RTP, safe against RTP Bleed) and counters;
//!   [`quality`] and [`rtcp`]: loss, jitter, RTT and MOS from RTP and RTCP.
//! * [`srtp`]: SRTP/SRTCP and SDES; [`transcode`]: one direction of a transcoded stream
//!   (G.711 mu/A-law, G.722; ptime changes; events relayed, comfort noise dropped).
//!
//! No sockets, threads, `libc` or `unsafe`; time is an argument (only the [`fuzzing`] harness
//! reads the clock, for its base instant). The data plane
//! (workers, epoll, io_uring, eBPF, the ng UDP server) is the `media-relay` crate.

#![forbid(unsafe_code)]

pub mod control;
pub mod dataplane;
#[doc(hidden)]
pub mod fuzzing;
pub mod ng;
pub mod quality;
pub mod rtcp;
pub mod sdp;
pub mod session;
pub mod srtp;
pub mod transcode;

pub use dataplane::{DataPlane, Family, LegPair, LegStats, RelayError, RelayEvent};
