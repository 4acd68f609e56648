//! trunkline's media relay.
//!
//! * [`dataplane`]: the interface between the control side (SDP offer/answer, the ng protocol, the
//!   B2BUA) and the packet-forwarding data plane.

pub mod control;
pub mod dataplane;
#[doc(hidden)]
pub mod fuzzing;
pub mod ng;
pub mod relay;
pub mod sdp;

pub use dataplane::{DataPlane, LegPair, LegStats, RelayError, RelayEvent};
pub use relay::{Backend, ClosedPairStats, Relay, RelayConfig, RelayTotals};
