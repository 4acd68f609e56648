//! The `trunkline` binary's library: the shells around the sans-IO cores (`signaling`,
//! `media-core`, `mgcp`, `mgcp-bridge`, `config`). `main.rs` is only the command line.
//!
//! * [`server`]: wiring, the core task, reload and shutdown.
//! * [`transport`]: UDP/TCP/TLS transports (bytes in and out only); [`tls`]: certificates,
//!   per-trunk trust.
//! * [`policy`]: the `Policy` that binds configuration, media and limits to the core.
//! * [`limits`]: overload and abuse protection (token buckets, User-Agent block list,
//!   per-trunk limits, queue-depth overload).
//! * [`cdr`]: call detail records (file sink with rotation), written off the core task.
//! * [`metrics`]: Prometheus metrics and the admin HTTP endpoint.
//! * [`dns`]: trunks named by DNS (RFC 3263), resolved on their own thread.
//! * [`mgcp_bridge`]: the MGCP bridge's I/O shell (the `Bridge` is crate `mgcp-bridge`).

pub mod admin;
pub mod carriers;
pub mod cdr;
pub mod cluster;
pub mod ctl;
pub mod dns;
pub mod hep;
pub mod limits;
pub mod location;
pub mod metrics;
pub mod mgcp_bridge;
pub mod policy;
pub mod server;
pub mod tls;
pub mod transport;
