//! `srtp:` on a trunk and in `media:` (SRTP with SDES keys, RFC 3711 / RFC 4568).
//!
//! ```yaml
//! media: { address: 192.0.2.1, ports: 20000-29999, srtp: optional }  # callers that are no trunk
//! trunks:
//!   teams:   { address: sip.pstnhub.microsoft.com, transport: tls, srtp: mandatory }
//!   carrier: { address: 198.51.100.7:5060, srtp: off }
//! ```
//!
//! * `off`: plain RTP on that leg; an SRTP-only offer (`RTP/SAVP`) from it gets 488.
//! * `optional`: SRTP when the endpoint offers or accepts it; offers to it carry `a=crypto` on
//!   `RTP/AVP` (best effort).
//! * `mandatory`: SRTP or nothing (`RTP/SAVP` offers; no usable crypto: 488).
//!
//! Defaults: `media.srtp` is `optional` (offers to registered phones and other non-trunks
//! are plain RTP unless it is `mandatory`). A trunk without `srtp:` accepts what it offers
//! (`optional` for its calls to trunkline) and is offered plain RTP, except a `transport: tls`
//! trunk, which is offered SRTP best effort (`optional`: `a=crypto` on `RTP/AVP`; say
//! `mandatory` for a peer that requires it, such as Microsoft Teams). Each leg has its own
//! keys; no key and no
//! `a=crypto` line ever crosses from one leg to the other.

use serde::Deserialize;

/// A leg's SRTP policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    Off,
    #[default]
    Optional,
    Mandatory,
}
