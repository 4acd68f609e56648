//! A call's media handed from one node to another (issue 16: a standby takes over the calls
//! of a node that died). [`MediaCalls::export`] describes a call by what its peers rely on:
//! the relay ports they send to, where each of them wants media, and the `o=` state of what
//! each was told (so the next SDP it gets continues the same session, RFC 3264 §8).
//! [`MediaCalls::adopt`] opens the same ports ([`DataPlane::open_pair_at`]) and sets the same
//! remotes, and the call goes on as if it had been set up here.
//!
//! Not carried: SRTP keys (a replica would put them in the shared store: such a call is not
//! exported) and transcoders (their codec state is per packet: neither). The clock rates of
//! dynamic payload types default to 8000 Hz on the adopting node until the next SDP.

use super::*;

/// One m-line of a [`MediaReplica`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamReplica {
    pub kind: String,
    pub proto: String,
    /// `None`: a rejected stream (port 0).
    pub pair: Option<LegPair>,
    /// The family of port `a` and port `b`.
    pub families: [Family; 2],
    /// Where side A and side B want media (their SDP).
    pub remotes: [Option<SocketAddr>; 2],
}

/// A call's media as [`MediaCalls::export`] describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaReplica {
    pub from_tag: String,
    pub to_tag: Option<String>,
    /// The family of side A and of side B, once known.
    pub family: [Option<Family>; 2],
    /// The `o=` state towards A and towards B: session id, version, last SDP.
    pub origins: [(u64, u64, Option<Vec<u8>>); 2],
    pub streams: Vec<StreamReplica>,
}

fn origin_of(o: &OriginState) -> (u64, u64, Option<Vec<u8>>) {
    (o.sess_id(), o.version(), o.last().map(<[u8]>::to_vec))
}

impl MediaCalls {
    /// The media of the call `call_id`/`from_tag`, for another node to adopt.
    pub fn export(&self, call_id: &str, from_tag: &str) -> Result<MediaReplica, MediaError> {
        let call = self
            .find(call_id, from_tag)
            .ok_or(MediaError::UnknownCall)?;
        let mut streams = Vec::with_capacity(call.streams.len());
        for st in &call.streams {
            if st
                .keys
                .legs
                .iter()
                .any(|k| k.rx.is_some() || k.tx.is_some())
            {
                return Err(MediaError::NotReplicable("SRTP keys"));
            }
            if st.transcode.iter().any(Option::is_some) {
                return Err(MediaError::NotReplicable("transcoded"));
            }
            streams.push(StreamReplica {
                kind: st.kind.clone(),
                proto: st.proto.clone(),
                pair: st.pair,
                families: st.families,
                remotes: [st.remote_a, st.remote_b],
            });
        }
        Ok(MediaReplica {
            from_tag: call.from_tag.clone(),
            to_tag: call.to_tag.clone(),
            family: call.family,
            origins: [origin_of(&call.to_a), origin_of(&call.to_b)],
            streams,
        })
    }

    /// Take over the call `call_id` that another node exported as `r`: its pairs opened on
    /// the same ports, the remotes set (media from side A or B may come from `signalling[0]`
    /// or `[1]`, as on the node that set it up). On error nothing stays open.
    pub fn adopt(
        &mut self,
        call_id: &str,
        r: &MediaReplica,
        signalling: [Option<IpAddr>; 2],
    ) -> Result<(), MediaError> {
        if self.find(call_id, &r.from_tag).is_some() {
            return Err(MediaError::CallExists);
        }
        if r.streams.len() > MAX_MEDIA_PER_CALL {
            return Err(MediaError::TooManyStreams(r.streams.len()));
        }
        let mut opened: Vec<LegPair> = Vec::new();
        let result = self.open_replica(r, signalling, &mut opened);
        if let Err(e) = result {
            for p in opened {
                self.dp.close_pair(p);
            }
            return Err(e);
        }
        let streams = r
            .streams
            .iter()
            .map(|s| Stream {
                kind: s.kind.clone(),
                proto: s.proto.clone(),
                pair: s.pair,
                families: s.families,
                remote_a: s.remotes[0],
                remote_b: s.remotes[1],
                keys: StreamKeys::default(),
                offered: None,
                transcode: [None, None],
            })
            .collect();
        let [(sa, va, la), (sb, vb, lb)] = r.origins.clone();
        let call = Call {
            from_tag: r.from_tag.clone(),
            to_tag: r.to_tag.clone(),
            streams,
            family: r.family,
            to_a: OriginState::restore(sa, va, la),
            to_b: OriginState::restore(sb, vb, lb),
            srtp: None,
            codecs: [None, None],
        };
        for p in &opened {
            self.by_pair
                .insert(p.a, (call_id.to_string(), r.from_tag.clone()));
        }
        self.calls
            .entry(call_id.to_string())
            .or_default()
            .push(call);
        Ok(())
    }

    fn open_replica(
        &self,
        r: &MediaReplica,
        signalling: [Option<IpAddr>; 2],
        opened: &mut Vec<LegPair>,
    ) -> Result<(), MediaError> {
        for s in &r.streams {
            let Some(pair) = s.pair else { continue };
            if let Some(max) = self.max_pairs {
                if self.by_pair.len() + opened.len() >= max {
                    return Err(MediaError::PairLimit(max));
                }
            }
            let p = self.dp.open_pair_at(pair, s.families)?;
            opened.push(p);
            for (side, remote) in [Side::A, Side::B].into_iter().zip(s.remotes) {
                if let Some(rtp) = remote {
                    let sig = signalling[side_index(side)];
                    self.dp.set_remote_from(side.port(p), rtp, None, sig)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fake::FakeDataPlane;
    use crate::RelayError;

    const OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    const ANSWER: &[u8] = b"v=0\r\no=- 7 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

    fn calls(first: u16) -> (Arc<FakeDataPlane>, MediaCalls) {
        let dp = Arc::new(FakeDataPlane::new("203.0.113.1".parse().unwrap(), first, 8));
        let mc = MediaCalls::new(dp.clone());
        (dp, mc)
    }

    #[test]
    fn adopted_call_has_the_same_ports_remotes_and_origin() {
        let (_, mut a) = calls(30000);
        let to_b = a.offer("c1", "ft", OFFER).unwrap();
        a.answer("c1", "ft", "tt", ANSWER).unwrap();
        let r = a.export("c1", "ft").unwrap();
        let pair = r.streams[0].pair.unwrap();
        assert_eq!(r.to_tag.as_deref(), Some("tt"));
        assert_eq!(
            r.streams[0].remotes,
            [
                Some("192.0.2.10:4000".parse().unwrap()),
                Some("198.51.100.7:5000".parse().unwrap())
            ]
        );

        // Node B has its own first pair in use: the replica's ports are still the ones taken.
        let (dp, mut b) = calls(30000);
        b.adopt("c1", &r, [None, None]).unwrap();
        assert_eq!(dp.open_pairs(), 1);
        assert_eq!(dp.remote(pair.a).map(|r| r.0), r.streams[0].remotes[0]);
        assert_eq!(dp.remote(pair.b).map(|r| r.0), r.streams[0].remotes[1]);
        assert_eq!(b.export("c1", "ft").unwrap(), r);
        assert_eq!(b.call_for_pair(pair), Some(("c1".into(), "ft".into())));
        // The same re-offer from A on both nodes gives B the same SDP (same o= version).
        let re = OFFER.to_vec();
        assert_eq!(
            a.offer("c1", "ft", &re).unwrap(),
            b.offer("c1", "ft", &re).unwrap()
        );
        assert!(!to_b.is_empty());
        // Adopting twice is refused; deleting closes the adopted pairs.
        assert_eq!(b.adopt("c1", &r, [None, None]), Err(MediaError::CallExists));
        b.delete("c1", None).unwrap();
        assert_eq!(dp.open_pairs(), 0);
    }

    #[test]
    fn a_port_in_use_fails_the_adoption_and_leaves_nothing_open() {
        let (_, mut a) = calls(30000);
        a.offer("c1", "ft", OFFER).unwrap();
        let r = a.export("c1", "ft").unwrap();
        let (dp, mut b) = calls(30000);
        b.offer("other", "x", OFFER).unwrap();
        let err = b.adopt("c1", &r, [None, None]).unwrap_err();
        assert!(matches!(
            err,
            MediaError::Relay(RelayError::PortUnavailable(_))
        ));
        assert_eq!(dp.open_pairs(), 1);
        assert!(b.find("c1", "ft").is_none());
    }
}
