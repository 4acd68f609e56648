//! Why an offer or answer could not be applied.

use std::fmt;

use super::MAX_MEDIA_PER_CALL;
use crate::dataplane::RelayError;
use crate::sdp::SdpError;
use crate::srtp::negotiate::NegotiateError;

#[derive(Debug, Clone, PartialEq)]
pub enum MediaError {
    /// The SDP could not be parsed or rewritten.
    Sdp(SdpError),
    /// The data plane refused (ports exhausted, stopped, ...).
    Relay(RelayError),
    /// No such call (Call-ID / tag) for an answer, a re-offer from B, or a delete.
    UnknownCall,
    /// More m-lines than [`MAX_MEDIA_PER_CALL`].
    TooManyStreams(usize),
    /// An answer whose m-line count differs from the offer's, or a re-offer with fewer m-lines.
    StreamCountMismatch { expected: usize, got: usize },
    /// m-line `index` has a host name as address: the relay has no resolver.
    UnresolvedAddress(usize),
    /// This controller already holds its most pairs ([`MediaCalls::with_max_pairs`]).
    PairLimit(usize),
    /// SRTP policy and the SDP's crypto do not agree (RFC 4568): 488 for the offerer.
    Srtp(NegotiateError),
    /// SRTP is wanted but this controller has no key source ([`MediaCalls::with_key_source`]).
    NoKeySource,
    /// The codec policies leave nothing to offer (488 for the offerer).
    Codec(super::CodecError),
    /// The call's media cannot be handed to another node (`export`): it holds what a replica
    /// does not carry (SRTP keys, a transcoder).
    NotReplicable(&'static str),
    /// A replica names a call this controller holds already.
    CallExists,
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaError::Sdp(e) => write!(f, "{e}"),
            MediaError::Relay(e) => write!(f, "{e}"),
            MediaError::UnknownCall => f.write_str("Unknown call-id"),
            MediaError::TooManyStreams(n) => {
                write!(f, "too many media streams ({n} > {MAX_MEDIA_PER_CALL})")
            }
            MediaError::StreamCountMismatch { expected, got } => {
                write!(f, "SDP has {got} m-lines, the call has {expected}")
            }
            MediaError::PairLimit(n) => {
                write!(f, "Too many sessions: {n} media streams open (the limit)")
            }
            MediaError::Srtp(e) => write!(f, "{e}"),
            MediaError::NoKeySource => f.write_str("SRTP needs a key source; none configured"),
            MediaError::Codec(e) => write!(f, "{e}"),
            MediaError::NotReplicable(why) => write!(f, "media not replicable: {why}"),
            MediaError::CallExists => f.write_str("the call exists already"),
            MediaError::UnresolvedAddress(i) => {
                write!(
                    f,
                    "m-line {i} has a host name address; only IP addresses are supported"
                )
            }
        }
    }
}
impl std::error::Error for MediaError {}

impl From<SdpError> for MediaError {
    fn from(e: SdpError) -> Self {
        MediaError::Sdp(e)
    }
}
impl From<RelayError> for MediaError {
    fn from(e: RelayError) -> Self {
        MediaError::Relay(e)
    }
}
