//! trunkline as a client of its carriers, beside the calls: registration with a trunk
//! ([`register`]) and OPTIONS health probes ([`probe`]). Each is a sans-IO state machine per
//! trunk; the B2BUA owns them, sends what they build through its transaction layer and feeds
//! them the responses and failures.

pub mod probe;
pub mod register;

pub use probe::{options_request, Probe, ProbeSettings};
pub use register::{Local, RegEvent, RegisterSettings, Registration, Step};

#[cfg(test)]
mod tests;
