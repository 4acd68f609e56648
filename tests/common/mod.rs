//! Shared harness for the end-to-end tests: private network namespaces, the `trunkline`
//! process (killed on drop), SIPp runs with their statistics, and small SIP helpers.
//!
//! Isolation: every test re-executes itself inside a fresh network namespace
//! (`unshare -rn`, a user + network namespace, only `lo` inside). There, ports are fixed and
//! cannot collide with other tests, with other engineers' processes, or with anything on the
//! host; and whatever trunkline might send elsewhere than loopback (a torture message's Via
//! naming 192.0.2.1, a mutated datagram naming 10.x) fails with "network unreachable" instead of
//! leaving the machine. Where `unshare` is refused, tests that only exchange well-formed
//! loopback traffic fall back to host ports picked free at run time; tests that feed trunkline
//! hostile input refuse to run outside a namespace (they fail, they do not skip).
//!
//! One module per responsibility, all re-exported here so a test says `use common::*`:
//! [`netns`] (namespaces, ports), [`audio`] (tones, Goertzel, RTP out of captures), [`baresip`] (real phones), [`process`] (trunkline and peer process guards, waiting for a
//! condition), [`sipp`], [`sip`] (message helpers), [`capture`] (tshark), [`ops`] (configs,
//! metrics, HTTP), [`postgres`] (a private PostgreSQL cluster), [`sec`] (attacker sockets,
//! resource limits), [`rawsip`] (a minimal UAC and UAS over raw sockets), [`ng`] (an ng control client), [`mgcpsim`] (the scripted MGCP gateway) and [`dnsmasq`] (a
//! name server with the test's records).

pub mod audio;
pub mod baresip;
pub mod capture;
pub mod dnsmasq;
pub mod kamailio;
pub mod mgcpsim;
pub mod netns;
pub mod ng;
pub mod ops;
pub mod osmo;
pub mod postgres;
pub mod process;
pub mod rawsip;
pub mod sec;
pub mod sip;
pub mod sipp;

// A test binary that uses nothing of a module would warn that its re-export is unused.
#[allow(unused_imports)]
pub use audio::*;
#[allow(unused_imports)]
pub use baresip::*;
#[allow(unused_imports)]
pub use capture::*;
#[allow(unused_imports)]
pub use dnsmasq::*;
#[allow(unused_imports)]
pub use kamailio::*;
#[allow(unused_imports)]
pub use mgcpsim::*;
#[allow(unused_imports)]
pub use netns::*;
#[allow(unused_imports)]
pub use ng::*;
#[allow(unused_imports)]
pub use ops::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use sip::*;
#[allow(unused_imports)]
pub use sipp::*;
