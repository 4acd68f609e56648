//! What a call's legs may do with their media, from the configuration: the SRTP policy and
//! the codec policy of leg A and of leg B (`MediaPolicy` for the relay's control side).

use media_relay::srtp::negotiate::SrtpMode;
use signaling::b2bua::Leg;
use signaling::{Peer, Transport};

use super::LivePolicy;

fn mode_of(p: config::SrtpPolicy) -> SrtpMode {
    match p {
        config::SrtpPolicy::Off => SrtpMode::Off,
        config::SrtpPolicy::Optional => SrtpMode::Optional,
        config::SrtpPolicy::Mandatory => SrtpMode::Mandatory,
    }
}

impl LivePolicy {
    /// The SRTP policy of leg A (its source trunk's, else `media.srtp`) and of leg B (its
    /// trunk's; towards a registered phone or other non-trunk: plain unless `media.srtp` is
    /// `mandatory`). A trunk without `srtp:` accepts what it offers and is offered plain
    /// RTP, SRTP (best effort, `optional`) when it is reached over TLS.
    pub(super) fn srtp_modes(&self, call: &signaling::b2bua::CallRef<'_>) -> [SrtpMode; 2] {
        let media = mode_of(self.config.media.srtp);
        let a = match self.trunk_of(Peer {
            transport: Transport::Udp,
            addr: call.peer(Leg::A),
        }) {
            Some(t) => self.config.trunks.get(t).and_then(|t| t.srtp),
            None => None,
        }
        .map_or(media, mode_of);
        let b = match call.b_trunk.and_then(|t| self.config.trunks.get(t)) {
            Some(t) => match (t.srtp, t.transport) {
                (Some(p), _) => mode_of(p),
                (None, config::TransportKind::Tls) => SrtpMode::Optional,
                (None, _) => SrtpMode::Off,
            },
            None if media == SrtpMode::Mandatory => media,
            None => SrtpMode::Off,
        };
        [a, b]
    }

    /// The codecs that may be offered to leg A and to leg B: a trunk's `codecs:`, and for
    /// callers and callees that are no trunk `media.codecs` (absent: no policy).
    pub(super) fn codec_policies(
        &self,
        call: &signaling::b2bua::CallRef<'_>,
    ) -> [Option<Vec<media_relay::control::CodecName>>; 2] {
        use media_relay::control::CodecName;
        // A `dtmf: info` trunk is offered no telephone-event; its policy says it does INFO.
        let list = |c: Option<&config::Codecs>, info: bool| {
            c.map(|c| {
                let mut v: Vec<CodecName> = c
                    .list()
                    .iter()
                    .filter_map(|n| CodecName::parse(n.name()))
                    .filter(|n| !(info && *n == CodecName::TelephoneEvent))
                    .collect();
                if info {
                    v.push(CodecName::DtmfInfo);
                }
                v
            })
        };
        let media = self.config.media.codecs.as_ref();
        let policy_of = |t: Option<&config::Trunk>| match t {
            Some(t) => list(t.codecs.as_ref(), t.dtmf == config::Dtmf::Info),
            None => list(media, false),
        };
        let a = self
            .trunk_of(Peer {
                transport: Transport::Udp,
                addr: call.peer(Leg::A),
            })
            .and_then(|t| self.config.trunks.get(t));
        let b = call.b_trunk.and_then(|t| self.config.trunks.get(t));
        [policy_of(a), policy_of(b)]
    }
}
