//! `codecs:` on a trunk and in `media:`: the codecs that may be offered to that leg, in order
//! of preference. When the two legs of a call are left without a common codec, the relay
//! transcodes between them.
//!
//! ```yaml
//! media: { address: 192.0.2.1, codecs: [G722, PCMU, PCMA, telephone-event] }  # phones
//! trunks:
//!   carrier: { address: 198.51.100.7:5060, codecs: [PCMA, telephone-event] }
//! ```
//!
//! Names are case-insensitive: `PCMU`, `PCMA`, `G722`, `opus` (the codecs trunkline transcodes;
//! Opus in a build with the `opus` feature, libopus: without it `opus` is offered only when the
//! other leg offered it, and never transcoded) and `telephone-event` (RFC 4733 DTMF, relayed
//! when both legs have it). Absent: a leg is offered what the other leg offered, as it is, and
//! nothing is transcoded.

use serde::{Deserialize, Deserializer};

/// A codec of a `codecs:` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    Opus,
    TelephoneEvent,
}

impl Codec {
    /// The SDP name (`a=rtpmap` encoding name).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
            Codec::TelephoneEvent => "telephone-event",
        }
    }

    fn parse(s: &str) -> Option<Codec> {
        [
            Codec::Pcmu,
            Codec::Pcma,
            Codec::G722,
            Codec::Opus,
            Codec::TelephoneEvent,
        ]
        .into_iter()
        .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// A validated `codecs:` list: not empty, no name twice, at least one audio codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codecs(Vec<Codec>);

impl Codecs {
    pub fn list(&self) -> &[Codec] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Codecs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Codecs, D::Error> {
        use serde::de::Error;
        let names = Vec::<String>::deserialize(d)?;
        let mut out: Vec<Codec> = Vec::with_capacity(names.len());
        for n in &names {
            let c = Codec::parse(n).ok_or_else(|| {
                D::Error::custom(format!(
                    "unknown codec `{n}`: trunkline offers and transcodes PCMU, PCMA, G722 and \
                     opus, and relays telephone-event"
                ))
            })?;
            if out.contains(&c) {
                return Err(D::Error::custom(format!(
                    "codec `{}` listed twice",
                    c.name()
                )));
            }
            out.push(c);
        }
        if !out.iter().any(|c| *c != Codec::TelephoneEvent) {
            return Err(D::Error::custom(
                "codecs: at least one audio codec (PCMU, PCMA, G722 or opus)",
            ));
        }
        Ok(Codecs(out))
    }
}
