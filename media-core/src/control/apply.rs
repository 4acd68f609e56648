//! Applying one SDP to a call: per m-line the relay pair (opened, moved to another family,
//! closed), the remote the leg facing the sender learns, SRTP keys and the codec policy, then
//! the rewritten SDP; on error nothing the call holds changes.

use super::codecs;
use super::streams::Limits;
use super::*;

impl MediaCalls {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        body: &[u8],
        is_answer: bool,
        peers: Peers,
        policy: Option<&MediaPolicy>,
    ) -> Result<Vec<u8>, MediaError> {
        let sdp = Sdp::parse(body)?;
        let media = sdp.media();
        if media.len() > MAX_MEDIA_PER_CALL {
            return Err(MediaError::TooManyStreams(media.len()));
        }
        for (i, m) in media.iter().enumerate() {
            if !m.is_rejected() && matches!(m.connection, Some(Address::Name(_))) {
                return Err(MediaError::UnresolvedAddress(i));
            }
        }

        let exists = self.find(call_id, from_tag).is_some();
        if !exists {
            // An offer from B with no call yet is a delayed offer (RFC 3261 §13.2.1: INVITE
            // without SDP, the offer comes in B's 2xx); it creates the call like A's would.
            if is_answer {
                return Err(MediaError::UnknownCall);
            }
            let call = Call {
                from_tag: from_tag.to_string(),
                to_tag: None,
                streams: Vec::new(),
                family: [None; 2],
                to_a: OriginState::new(sess_id(call_id, from_tag, Side::A), 1),
                to_b: OriginState::new(sess_id(call_id, from_tag, Side::B), 1),
                srtp: policy.and_then(|p| p.srtp),
                codecs: policy.map(|p| p.codecs.clone()).unwrap_or_default(),
            };
            self.calls
                .entry(call_id.to_string())
                .or_default()
                .push(call);
        }
        let dp = Arc::clone(&self.dp);
        let room = self
            .max_pairs
            .map(|m| (m, m.saturating_sub(self.by_pair.len())));
        let keys = &mut self.key_source;
        let tcp = self.tcp_streams;
        let result = match self
            .calls
            .get_mut(call_id)
            .and_then(|l| l.iter_mut().find(|c| c.from_tag == from_tag))
        {
            Some(call) => {
                let mut gen = |suite: Suite| new_key(keys, suite);
                let g: &mut dyn FnMut(Suite) -> Option<MasterKey> = &mut gen;
                let limits = Limits { room, tcp };
                Self::apply_to_call(&*dp, call, side, &sdp, is_answer, peers, limits, g)
            }
            None => Err(MediaError::UnknownCall),
        };
        match result {
            Ok(applied) => {
                if let (Some(t), Some(call)) = (to_tag, self.find_mut(call_id, from_tag)) {
                    call.to_tag = Some(t.to_string());
                }
                for p in applied.closed {
                    self.by_pair.remove(&p.a);
                }
                for p in applied.opened {
                    self.by_pair
                        .insert(p.a, (call_id.to_string(), from_tag.to_string()));
                }
                Ok(applied.sdp)
            }
            Err(e) => {
                if !exists {
                    self.remove(call_id, from_tag);
                }
                Err(e)
            }
        }
    }

    /// Apply one SDP from `side` to `call`; on error the call's streams are as before (pairs opened
    /// here are closed again; remotes already set on existing pairs stay set).
    #[allow(clippy::too_many_arguments)]
    fn apply_to_call(
        dp: &dyn DataPlane,
        call: &mut Call,
        side: Side,
        sdp: &Sdp,
        is_answer: bool,
        peers: Peers,
        limits: Limits,
        gen: &mut dyn FnMut(Suite) -> Option<MasterKey>,
    ) -> Result<Applied, MediaError> {
        let room = limits.room;
        let peer = peers.from;
        let media = sdp.media();
        let have = call.streams.len();
        if is_answer && media.len() != have {
            return Err(MediaError::StreamCountMismatch {
                expected: have,
                got: media.len(),
            });
        }
        if !is_answer && media.len() < have {
            return Err(MediaError::StreamCountMismatch {
                expected: have,
                got: media.len(),
            });
        }

        let mut streams = call.streams.clone();
        let mut opened: Vec<LegPair> = Vec::new();
        let mut to_close: Vec<LegPair> = Vec::new();
        let mut ports = Vec::with_capacity(media.len());
        let mut outs: Vec<StreamOut> = vec![StreamOut::default(); media.len()];
        let mut keyed: Vec<usize> = Vec::new();
        let mut coded: Vec<usize> = Vec::new();
        let toward = side.other();
        let primary = Family::of(dp.local_ip());
        let mut family = call.family;
        family[side_index(side)] = sdp_family(sdp)
            .or(peers.from.map(Family::of))
            .or(family[side_index(side)]);
        if let Some(to) = peers.to {
            family[side_index(toward)] = Some(Family::of(to));
        }
        // A family the data plane has no address of is served by its primary one.
        let fam = |s: Side| Family::of(dp.local_ip_for(family[side_index(s)].unwrap_or(primary)));
        // The ports facing A and B that a new pair gets.
        let want = [fam(Side::A), fam(Side::B)];

        let outcome = (|| -> Result<(), MediaError> {
            for (i, m) in media.iter().enumerate() {
                if i >= streams.len() {
                    streams.push(Stream {
                        kind: m.kind.clone(),
                        proto: m.proto.clone(),
                        pair: None,
                        families: want,
                        remote_a: None,
                        remote_b: None,
                        keys: StreamKeys::default(),
                        offered: None,
                        transcode: [None, None],
                    });
                }
                let Some(st) = streams.get_mut(i) else {
                    return Err(MediaError::StreamCountMismatch {
                        expected: have,
                        got: media.len(),
                    });
                };
                st.kind.clone_from(&m.kind);
                st.proto.clone_from(&m.proto);
                if m.is_tcp() && !m.is_rejected() {
                    // Never through a UDP port: rejected or passed as it is.
                    if let Some(p) = st.pair.take() {
                        to_close.push(p);
                    }
                    st.remote_a = None;
                    st.remote_b = None;
                    match limits.tcp {
                        TcpStreams::Reject => ports.push(0),
                        TcpStreams::Pass => {
                            outs[i].keep = true;
                            ports.push(m.port);
                        }
                    }
                    continue;
                }
                if m.is_rejected() {
                    if let Some(p) = st.pair.take() {
                        to_close.push(p);
                    }
                    st.remote_a = None;
                    st.remote_b = None;
                    ports.push(0);
                    continue;
                }
                // A re-offer that changes a side's family moves the stream to a new pair of
                // the right families (the answer brings the new ports to the offerer).
                if !is_answer && st.families != want {
                    if let Some(p) = st.pair.take() {
                        to_close.push(p);
                    }
                }
                let pair = match st.pair {
                    Some(p) => p,
                    None if is_answer => {
                        // RFC 3264 §6: an answer cannot accept a stream the offer rejected.
                        ports.push(0);
                        continue;
                    }
                    None => {
                        if let Some((max, left)) = room {
                            if opened.len() >= left {
                                return Err(MediaError::PairLimit(max));
                            }
                        }
                        let p = dp.open_pair_for(want)?;
                        opened.push(p);
                        st.pair = Some(p);
                        st.families = want;
                        p
                    }
                };
                // An IPv4-mapped address (RFC 5118 §4.9) is the IPv4 peer: its packets come
                // from, and go to, the IPv4 address.
                let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
                if let Some(rtp) = m.rtp_addr().map(canon) {
                    dp.set_remote_from(side.port(pair), rtp, m.rtcp_addr().map(canon), peer)?;
                    *st.remote_mut(side) = Some(rtp);
                }
                // The leg facing `side` receives what `side` sends, described by its rtpmaps.
                // Only used for jitter, so a refusal does not fail the offer/answer.
                let rates = m.clock_rates();
                if !rates.is_empty() {
                    let _ = dp.set_clock_rates(side.port(pair), &rates);
                }
                if let Some(modes) = call.srtp.filter(|_| negotiate::is_rtp(m)) {
                    outs[i] = Self::negotiate_srtp(st, side, m, is_answer, modes, gen)?;
                    keyed.push(i);
                }
                if codecs::applies(m) && call.codecs.iter().any(Option::is_some) {
                    Self::negotiate_codecs(call, st, side, m, is_answer, &mut outs[i])?;
                    coded.push(i);
                }
                ports.push(toward.port(pair));
            }
            Ok(())
        })();

        // The SDP names the relay address of the family of the ports facing `toward` (an
        // answer goes to the offerer, whose ports were opened with its offer).
        let toward_family = streams
            .iter()
            .find(|s| s.pair.is_some())
            .map_or(fam(toward), |s| s.families[side_index(toward)]);
        let rewritten = outcome.and_then(|()| {
            let mut origin = call.origin_to(toward).clone();
            let out = sdp.rewrite_with(
                dp.local_ip_for(toward_family),
                &ports,
                Some(&mut origin),
                &outs,
            )?;
            Self::hand_to_data_plane(dp, &call.streams, &streams, &keyed, &coded)?;
            Ok((out, origin))
        });
        match rewritten {
            Ok((out, origin)) => {
                for p in &to_close {
                    dp.close_pair(*p);
                }
                call.streams = streams;
                call.family = family;
                *call.origin_to(toward) = origin;
                Ok(Applied {
                    sdp: out,
                    opened,
                    closed: to_close,
                })
            }
            Err(e) => {
                for p in opened {
                    dp.close_pair(p);
                }
                Err(e)
            }
        }
    }

    /// The SRTP policy `modes` on m-line `m` from `side` (see [`negotiate`]): the leg's keys
    /// recorded in `st`, and how the m-line leaves (transport, `a=crypto`).
    fn negotiate_srtp(
        st: &mut Stream,
        side: Side,
        m: &crate::sdp::Media,
        is_answer: bool,
        modes: [SrtpMode; 2],
        gen: &mut dyn FnMut(Suite) -> Option<MasterKey>,
    ) -> Result<StreamOut, MediaError> {
        let s = side as usize;
        let mut missing = false;
        let mut g = |suite: Suite| {
            gen(suite).unwrap_or_else(|| {
                missing = true;
                // never used: the call fails below
                MasterKey::new(suite, &vec![0; suite.key_len() + suite.salt_len()])
                    .expect("lengths of the suite")
            })
        };
        let out = if is_answer {
            negotiate::on_answer(&mut st.keys, s, m, modes)
        } else {
            negotiate::on_offer(&mut st.keys, s, m, modes, &mut g)
        }
        .map_err(MediaError::Srtp)?;
        if missing {
            return Err(MediaError::NoKeySource);
        }
        Ok(out)
    }

    /// Before the SDP leaves: each leg's SRTP keys (streams `keyed`) and the transcoders
    /// (streams `coded`; a forwarded stream clears them) go to the relay legs of `streams`,
    /// the call's new streams (`before`: as they were).
    fn hand_to_data_plane(
        dp: &dyn DataPlane,
        before: &[Stream],
        streams: &[Stream],
        keyed: &[usize],
        coded: &[usize],
    ) -> Result<(), MediaError> {
        for &i in keyed {
            if let Some((Some(pair), st)) = streams.get(i).map(|s| (s.pair, s)) {
                for (n, leg) in [Side::A, Side::B].into_iter().enumerate() {
                    let (rx, tx) = st.keys.legs[n].relay_keys();
                    dp.set_srtp(leg.port(pair), rx, tx)?;
                }
            }
        }
        for &i in coded {
            if let Some((Some(pair), st)) = streams.get(i).map(|s| (s.pair, s)) {
                // a new pair starts forwarding: only transcoding needs setting on it
                let changed = match before.get(i) {
                    Some(o) if o.pair == Some(pair) => o.transcode != st.transcode,
                    _ => st.transcode.iter().any(Option::is_some),
                };
                if changed {
                    for (n, leg) in [Side::A, Side::B].into_iter().enumerate() {
                        dp.set_transcode(leg.port(pair), st.transcode[n])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The codec policy on m-line `m` from `side` (see the `codecs` module): the formats it
    /// leaves with, and on an answer the stream's transcoding.
    fn negotiate_codecs(
        call: &Call,
        st: &mut Stream,
        side: Side,
        m: &crate::sdp::Media,
        is_answer: bool,
        out: &mut StreamOut,
    ) -> Result<(), MediaError> {
        let policy = |s: Side| call.codecs[side_index(s)].as_deref();
        if !is_answer {
            st.offered = codecs::offer(m, policy(side), policy(side.other()))
                .map_err(MediaError::Codec)?
                .map(|(formats, off)| {
                    out.formats = Some(formats);
                    (side, off)
                });
            return Ok(());
        }
        let Some((offerer, off)) = st.offered.as_ref().filter(|(o, _)| *o != side) else {
            return Ok(());
        };
        let a = codecs::answer(m, off);
        out.formats = a.formats;
        st.transcode[side_index(*offerer)] = a.offerer;
        st.transcode[side_index(side)] = a.answerer;
        Ok(())
    }
}

/// The family of the first concrete IP address an SDP's accepted streams are at (session or
/// media `c=`), if any (`0.0.0.0`/`::` holds name none).
fn sdp_family(sdp: &Sdp) -> Option<Family> {
    sdp.media()
        .iter()
        .filter(|m| !m.is_rejected())
        .filter_map(|m| m.connection.as_ref()?.ip())
        .chain(sdp.session_connection().and_then(Address::ip))
        .find(|ip| !ip.is_unspecified())
        .map(Family::of)
}
