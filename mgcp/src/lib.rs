//! MGCP (RFC 3435) for trunkline's call-agent role: trunkline commands media gateways
//! (CRCX/MDCX/DLCX/AUEP/RQNT) and answers their NTFY/RSIP.
//!
//! * [`msg`]: commands and responses, parsed from and written to datagrams (piggybacking,
//!   SDP bodies, connection parameters); never panics on input.
//! * [`agent`]: the call agent's transaction layer: transaction ids, retransmission with
//!   back-off, provisional responses, duplicates. Sans-IO: time is an argument.
//! * [`endpoint`]: the endpoint model (names and wildcards, hook, call and connection ids,
//!   request identifier, notified entity) and observed-event lists.
//! * [`digitmap`]: digit maps (section 2.1.5), parsed once and matched per digit.
//!
//! Checked against a real gateway (osmo-mgw) in `tests/mgcp_osmo.rs` at the repository root.

#![forbid(unsafe_code)]

pub mod agent;
pub mod digitmap;
pub mod endpoint;
pub mod msg;

pub use agent::{Agent, Event, Timers, Transmit};
pub use digitmap::{DigitMap, DigitMapError, Match};
pub use endpoint::{Endpoint, Endpoints, EventName, Hook};
pub use msg::{parse, Command, ConnectionParams, Message, Param, ParseError, Response, Verb};
