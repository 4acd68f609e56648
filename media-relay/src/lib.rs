//! trunkline's media relay: the data plane (port pool, worker threads, epoll and io_uring back
//! ends, the eBPF kernel fast path) and the ng protocol's UDP server.
//!
//! The sans-IO media logic (SDP, offer/answer control, latching, RTP/RTCP quality, the ng
//! protocol, the [`dataplane`] contract) is the `media-core` crate; it is re-exported here under
//! its old paths so users of the relay need one dependency.

#[doc(hidden)]
pub use media_core::fuzzing;
pub use media_core::{control, dataplane, sdp, srtp, transcode};
pub mod ng;
pub mod relay;

pub use dataplane::{DataPlane, Family, LegPair, LegStats, RelayError, RelayEvent};
pub use relay::{Backend, ClosedPairStats, Relay, RelayConfig, RelayTotals};
