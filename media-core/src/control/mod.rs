//! Call-level media control: SDP offer/answer (RFC 3264) joined to relay port pairs.
//!
//! [`MediaCalls`] keeps, per call (keyed by Call-ID and the caller's From tag), one relay
//! [`LegPair`] per m-line. The caller is side [`Side::A`], the callee side [`Side::B`]. Following
//! the [`DataPlane`] contract, port `pair.a` faces A (A sends to it; its remote is A) and port
//! `pair.b` faces B.
//!
//! * An SDP **from** side S (offer or answer) is headed to the other side S'. For every m-line the
//!   leg facing S learns S's address (`set_remote`), and the SDP is rewritten with the ports facing
//!   S' and the relay address (see [`crate::sdp`]).
//! * RFC 3264 §8: m-lines are never removed by a re-offer, only rejected with port 0, so m-line
//!   `i` of every later offer/answer maps to stream `i`. A stream at port 0 holds no pair (an open
//!   pair is closed when its stream is rejected; re-enabling it opens a new pair).
//! * RFC 3264 §6: "The answer MUST contain exactly the same number of "m=" lines as the offer".
//! * Hold (RFC 3264 §8.4): direction attributes pass through; with an RFC 2543 `c=0.0.0.0` hold the
//!   leg keeps its previous remote (no `set_remote` towards 0.0.0.0) and the SDP to the other side
//!   says `sendonly`/`inactive` (see [`crate::sdp`] for why).
//! * The `o=` line sent to each side has its own session id and a version that increments only
//!   when the SDP sent to that side changes ([`OriginState`], RFC 3264 §8).
//!
//! Who re-offers is explicit: [`MediaCalls::offer_from`] / [`MediaCalls::answer_from`] take the
//! [`Side`] the SDP comes from. [`MediaCalls::offer`] / [`MediaCalls::answer`] are the common case
//! (A offers, B answers). A re-INVITE from B (e.g. B puts A on hold) is
//! `offer_from(Side::B, call_id, a_from_tag, sdp)` then `answer_from(Side::A, ...)` with A's answer.
//!
//! * Dual stack (RFC 6157 §4): each side has an IP family, and the relay ports facing it are of
//!   that family ([`DataPlane::open_pair_for`]); the SDP sent to a side names the relay address
//!   of its family ([`DataPlane::local_ip_for`], `c=IN IP6` for an IPv6 side). A side's family
//!   is that of the addresses in its own SDP, else of the IP it signals from, else (the other
//!   side, before it has sent SDP) of the peer the caller names ([`Peers::to`]), else the relay's
//!   primary family. A re-offer that changes a side's family moves the stream to a new pair.
//!   One side's media is of one family (an SDP mixing IPv4 and IPv6 m-lines, RFC 5118 §4.8, is
//!   relayed on the family of its first address).
//!
//! The core is sans-IO: it calls the [`DataPlane`] handle and nothing else. It is not internally
//! locked: wrap it in a `Mutex` to share it (the ng server does).

use crate::dataplane::{DataPlane, Family, LegPair, LegStats};
use crate::sdp::{Address, OriginState, Sdp, StreamOut};
use crate::srtp::negotiate::{self, SrtpMode, StreamKeys};
use crate::srtp::{MasterKey, Suite};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Most m-lines one call may have (each opens a pair: 4 UDP ports).
pub const MAX_MEDIA_PER_CALL: usize = 16;

/// Which party of the call an SDP comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller: the owner of the From tag that keys the call.
    A,
    /// The callee (To tag, learned with the first answer).
    B,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// The port of `pair` that faces this side.
    pub fn port(self, pair: LegPair) -> u16 {
        match self {
            Side::A => pair.a,
            Side::B => pair.b,
        }
    }
}

pub use codecs::{CodecError, CodecName};
pub use error::MediaError;
pub use replica::{MediaReplica, StreamReplica};
pub use streams::TcpStreams;

/// The signalling IPs around one SDP: of the side it comes from and of the side it goes to
/// (for the family of the ports facing each; see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    pub from: Option<IpAddr>,
    pub to: Option<IpAddr>,
}

#[derive(Clone, Debug)]
struct Stream {
    kind: String,
    proto: String,
    pair: Option<LegPair>,
    /// The families of the pair's ports (`a`, `b`), when it has one.
    families: [Family; 2],
    remote_a: Option<SocketAddr>,
    remote_b: Option<SocketAddr>,
    /// SDES keys of both legs (only with an SRTP policy).
    keys: StreamKeys,
    /// The last offer under a codec policy, and who made it.
    offered: Option<(Side, codecs::Offered)>,
    /// The transcoding of the leg facing A and of the leg facing B, as the data plane has it.
    transcode: [Option<crate::transcode::Spec>; 2],
}

impl Stream {
    fn remote_mut(&mut self, side: Side) -> &mut Option<SocketAddr> {
        match side {
            Side::A => &mut self.remote_a,
            Side::B => &mut self.remote_b,
        }
    }
}

#[derive(Clone, Debug)]
struct Call {
    from_tag: String,
    to_tag: Option<String>,
    streams: Vec<Stream>,
    /// The family of side A and of side B, once known.
    family: [Option<Family>; 2],
    /// Origin of the SDP sent to A (rewritten SDP from B), and to B.
    to_a: OriginState,
    to_b: OriginState,
    /// The SRTP policy of leg A and leg B; `None`: SDP crosses as it is (the ng port, where
    /// the controlling proxy decides).
    srtp: Option<[SrtpMode; 2]>,
    /// The codec policy of leg A and leg B (see [`CodecName`]).
    codecs: [Option<Vec<CodecName>>; 2],
}

/// What the B2BUA decides per leg (`[A, B]`) for a call's media: SRTP (see
/// [`crate::srtp::negotiate`]) and the codecs that may be offered to each leg (see the
/// `codecs` module: transcoding when the answer leaves the legs without a common codec).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaPolicy {
    pub srtp: Option<[SrtpMode; 2]>,
    pub codecs: [Option<Vec<CodecName>>; 2],
}

impl Call {
    fn origin_to(&mut self, side: Side) -> &mut OriginState {
        match side {
            Side::A => &mut self.to_a,
            Side::B => &mut self.to_b,
        }
    }
}

/// One relay leg of a stream, as [`MediaCalls::query`] reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct LegInfo {
    pub side: Side,
    /// The tag of the party this leg faces (B's is `None` before the answer).
    pub tag: Option<String>,
    /// The relay port facing that party.
    pub port: u16,
    /// Where that party said it wants media (its SDP), if known.
    pub remote: Option<SocketAddr>,
    pub stats: LegStats,
}

/// One m-line of a call.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    pub index: usize,
    pub kind: String,
    pub proto: String,
    /// `None` when the stream is rejected (port 0).
    pub pair: Option<LegPair>,
    /// Leg facing A then leg facing B; empty when there is no pair.
    pub legs: Vec<LegInfo>,
    /// The relay transcodes this stream (the legs use different codecs, or DTMF is
    /// interworked).
    pub transcoded: bool,
}

/// A call as [`MediaCalls::query`] and [`MediaCalls::delete`] report it.
#[derive(Clone, Debug, PartialEq)]
pub struct CallInfo {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub streams: Vec<StreamInfo>,
}

/// Media state of all calls. See the module documentation.
pub struct MediaCalls {
    dp: Arc<dyn DataPlane>,
    /// Call-ID -> the calls under it, one per From tag (usually exactly one).
    calls: HashMap<String, Vec<Call>>,
    /// `pair.a` of every open pair -> (Call-ID, From tag), for [`MediaCalls::call_for_pair`].
    by_pair: HashMap<u16, (String, String)>,
    /// Most pairs open at once (`None`: the data plane's range is the limit).
    max_pairs: Option<usize>,
    /// Fills a buffer with CSPRNG bytes, for SRTP keys.
    key_source: Option<KeySource>,
    tcp_streams: TcpStreams,
}

/// A CSPRNG the shell hands in (media-core reads no entropy itself).
pub type KeySource = Box<dyn FnMut(&mut [u8]) + Send>;

/// What applying one SDP did: the SDP to forward, pairs opened and pairs closed.
struct Applied {
    sdp: Vec<u8>,
    opened: Vec<LegPair>,
    closed: Vec<LegPair>,
}

/// A fresh master key of `suite` from the key source.
fn new_key(src: &mut Option<KeySource>, suite: Suite) -> Option<MasterKey> {
    let f = src.as_mut()?;
    let mut m = vec![0u8; suite.key_len() + suite.salt_len()];
    f(&mut m);
    MasterKey::new(suite, &m).ok()
}

fn sess_id(call_id: &str, from_tag: &str, toward: Side) -> u64 {
    // DefaultHasher::new() has fixed keys: deterministic, no clock, no randomness.
    let mut h = DefaultHasher::new();
    (call_id, from_tag, toward).hash(&mut h);
    // Keep it within 63 bits so it is a positive 64-bit integer everywhere.
    h.finish() >> 1
}

impl MediaCalls {
    pub fn new(dp: Arc<dyn DataPlane>) -> MediaCalls {
        MediaCalls {
            dp,
            calls: HashMap::new(),
            by_pair: HashMap::new(),
            max_pairs: None,
            key_source: None,
            tcp_streams: TcpStreams::default(),
        }
    }

    /// What becomes of TCP streams ([`TcpStreams`]).
    pub fn with_tcp_streams(mut self, t: TcpStreams) -> MediaCalls {
        self.tcp_streams = t;
        self
    }

    /// Where SRTP keys come from (a CSPRNG); without one, calls with an SRTP policy fail.
    pub fn with_key_source(mut self, k: KeySource) -> MediaCalls {
        self.key_source = Some(k);
        self
    }

    /// [`MediaCalls::offer_between`] under an SRTP policy per leg (`[A, B]`): each leg's
    /// `a=crypto` is negotiated on its own (see [`crate::srtp::negotiate`]); the policy is
    /// kept for the call's later offers and answers.
    pub fn offer_srtp(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        sdp: &[u8],
        peers: Peers,
        modes: [SrtpMode; 2],
    ) -> Result<Vec<u8>, MediaError> {
        let policy = MediaPolicy {
            srtp: Some(modes),
            codecs: [None, None],
        };
        self.offer_with(side, call_id, from_tag, sdp, peers, &policy)
    }

    /// [`MediaCalls::offer_between`] under a [`MediaPolicy`]; the policy is kept for the
    /// call's later offers and answers.
    pub fn offer_with(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        sdp: &[u8],
        peers: Peers,
        policy: &MediaPolicy,
    ) -> Result<Vec<u8>, MediaError> {
        if policy.srtp.is_some() && self.key_source.is_none() {
            return Err(MediaError::NoKeySource);
        }
        if let Some(c) = self.find_mut(call_id, from_tag) {
            c.srtp = policy.srtp;
            c.codecs.clone_from(&policy.codecs);
        }
        self.apply(
            side,
            call_id,
            from_tag,
            None,
            sdp,
            false,
            peers,
            Some(policy),
        )
    }

    /// Hold at most `n` pairs (one per accepted m-line) at once: an offer that would open more
    /// fails with [`MediaError::PairLimit`] and changes nothing. For a controller that shares
    /// the relay with others (the ng port beside the B2BUA), so it cannot take all the ports.
    pub fn with_max_pairs(mut self, n: usize) -> MediaCalls {
        self.max_pairs = Some(n);
        self
    }

    /// The data plane this controller drives.
    pub fn data_plane(&self) -> &Arc<dyn DataPlane> {
        &self.dp
    }

    /// SDP offer from the caller A (new call or re-offer), headed to B. Returns the SDP to send to
    /// B. Same as `offer_from(Side::A, ..)`.
    pub fn offer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        sdp: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        self.offer_from(Side::A, call_id, from_tag, sdp)
    }

    /// SDP answer from the callee B, headed to A. Returns the SDP to send to A. Same as
    /// `answer_from(Side::B, .., Some(to_tag), ..)`.
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        self.answer_from(Side::B, call_id, from_tag, Some(to_tag), sdp)
    }

    /// SDP offer from `side`. The call is always identified by A's From tag (`from_tag`), also
    /// when B re-offers. An offer creates the call if it does not exist (from B: a delayed offer,
    /// the INVITE had no SDP and B's 2xx carries the offer).
    pub fn offer_from(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        sdp: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        self.apply(
            side,
            call_id,
            from_tag,
            None,
            sdp,
            false,
            Peers::default(),
            None,
        )
    }

    /// [`MediaCalls::offer_from`] with the IP address `side` signals from (the source of its
    /// SIP/ng request). The relay leg facing `side` may then learn a media source on that IP
    /// (an endpoint behind NAT, after sequence probation) besides the SDP's own address; see
    /// [`DataPlane::set_remote_from`]. Without it only the SDP's address is learned.
    pub fn offer_from_peer(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        sdp: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Vec<u8>, MediaError> {
        let peers = Peers {
            from: peer,
            to: None,
        };
        self.apply(side, call_id, from_tag, None, sdp, false, peers, None)
    }

    /// [`MediaCalls::offer_from_peer`] knowing also where the SDP goes ([`Peers::to`]): the
    /// ports facing the other side are of that peer's family until its own SDP says otherwise.
    pub fn offer_between(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        sdp: &[u8],
        peers: Peers,
    ) -> Result<Vec<u8>, MediaError> {
        self.apply(side, call_id, from_tag, None, sdp, false, peers, None)
    }

    /// [`MediaCalls::answer_from_peer`] with both peers (see [`MediaCalls::offer_between`]).
    pub fn answer_between(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        sdp: &[u8],
        peers: Peers,
    ) -> Result<Vec<u8>, MediaError> {
        self.apply(side, call_id, from_tag, to_tag, sdp, true, peers, None)
    }

    /// [`MediaCalls::answer_from`] with the IP address `side` signals from (see
    /// [`MediaCalls::offer_from_peer`]).
    pub fn answer_from_peer(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        sdp: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Vec<u8>, MediaError> {
        let peers = Peers {
            from: peer,
            to: None,
        };
        self.apply(side, call_id, from_tag, to_tag, sdp, true, peers, None)
    }

    /// SDP answer from `side` to the last offer of the other side. `to_tag`, when given, is
    /// recorded as B's tag (a later answer with another To tag replaces it: the last answer wins,
    /// which is what a B2BUA leg sees).
    pub fn answer_from(
        &mut self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        sdp: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        self.apply(
            side,
            call_id,
            from_tag,
            to_tag,
            sdp,
            true,
            Peers::default(),
            None,
        )
    }

    /// The families of the ports of call `(call_id, from_tag)`'s first stream with a pair:
    /// `[facing A, facing B]`.
    pub fn families(&self, call_id: &str, from_tag: &str) -> Option<[Family; 2]> {
        self.find(call_id, from_tag)?
            .streams
            .iter()
            .find(|s| s.pair.is_some())
            .map(|s| s.families)
    }

    fn find(&self, call_id: &str, from_tag: &str) -> Option<&Call> {
        self.calls
            .get(call_id)?
            .iter()
            .find(|c| c.from_tag == from_tag)
    }

    fn find_mut(&mut self, call_id: &str, from_tag: &str) -> Option<&mut Call> {
        self.calls
            .get_mut(call_id)?
            .iter_mut()
            .find(|c| c.from_tag == from_tag)
    }

    fn remove(&mut self, call_id: &str, from_tag: &str) -> Option<Call> {
        let list = self.calls.get_mut(call_id)?;
        let idx = list.iter().position(|c| c.from_tag == from_tag)?;
        let call = list.remove(idx);
        if list.is_empty() {
            self.calls.remove(call_id);
        }
        Some(call)
    }

    /// Which call and side a tag belongs to under `call_id`: `(a_from_tag, Side::A)` when a call is
    /// keyed by `tag`, `(a_from_tag, Side::B)` when `tag` is the learned To tag of a call. For
    /// protocols (like ng) that name the sender of a re-INVITE by its own From tag.
    pub fn find_side(&self, call_id: &str, tag: &str) -> Option<(String, Side)> {
        let list = self.calls.get(call_id)?;
        if let Some(c) = list.iter().find(|c| c.from_tag == tag) {
            return Some((c.from_tag.clone(), Side::A));
        }
        list.iter()
            .find(|c| c.to_tag.as_deref() == Some(tag))
            .map(|c| (c.from_tag.clone(), Side::B))
    }

    /// The To tag learned for a call, if any.
    pub fn to_tag(&self, call_id: &str, from_tag: &str) -> Option<&str> {
        self.find(call_id, from_tag)?.to_tag.as_deref()
    }

    fn info(&self, call_id: &str, call: &Call) -> CallInfo {
        let streams = call
            .streams
            .iter()
            .enumerate()
            .map(|(index, st)| {
                let legs = st
                    .pair
                    .map(|p| {
                        [
                            (Side::A, Some(call.from_tag.clone()), st.remote_a),
                            (Side::B, call.to_tag.clone(), st.remote_b),
                        ]
                        .into_iter()
                        .map(|(side, tag, remote)| LegInfo {
                            side,
                            tag,
                            port: side.port(p),
                            remote,
                            stats: self.dp.stats(side.port(p)).unwrap_or_default(),
                        })
                        .collect()
                    })
                    .unwrap_or_default();
                StreamInfo {
                    index,
                    kind: st.kind.clone(),
                    proto: st.proto.clone(),
                    pair: st.pair,
                    legs,
                    transcoded: st.transcode.iter().any(Option::is_some),
                }
            })
            .collect();
        CallInfo {
            call_id: call_id.to_string(),
            from_tag: call.from_tag.clone(),
            to_tag: call.to_tag.clone(),
            streams,
        }
    }

    /// Close every pair of the call(s) under `call_id` (only the one keyed by `from_tag` when
    /// given; a `from_tag` equal to the learned To tag also matches, as in a BYE from B). Returns
    /// the calls as they were just before, with their final stats.
    pub fn delete(
        &mut self,
        call_id: &str,
        from_tag: Option<&str>,
    ) -> Result<Vec<CallInfo>, MediaError> {
        let keys: Vec<String> = match from_tag {
            None => self
                .calls
                .get(call_id)
                .map(|l| l.iter().map(|c| c.from_tag.clone()).collect())
                .unwrap_or_default(),
            Some(t) => self
                .find_side(call_id, t)
                .map(|(k, _)| vec![k])
                .unwrap_or_default(),
        };
        if keys.is_empty() {
            return Err(MediaError::UnknownCall);
        }
        let mut out = Vec::new();
        for k in keys {
            if let Some(call) = self.find(call_id, &k) {
                out.push(self.info(call_id, call));
            }
            if let Some(call) = self.remove(call_id, &k) {
                for p in call.streams.iter().filter_map(|s| s.pair) {
                    self.by_pair.remove(&p.a);
                    self.dp.close_pair(p);
                }
            }
        }
        Ok(out)
    }

    /// The call(s) under `call_id` with per-leg stats from the data plane.
    pub fn query(&self, call_id: &str) -> Result<Vec<CallInfo>, MediaError> {
        let list = self.calls.get(call_id).ok_or(MediaError::UnknownCall)?;
        Ok(list.iter().map(|c| self.info(call_id, c)).collect())
    }

    /// Call-IDs of all calls, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.calls.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Number of calls (Call-ID, From tag).
    pub fn len(&self) -> usize {
        self.calls.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The call owning `pair` (e.g. for [`crate::RelayEvent::MediaTimeout`]): (Call-ID, From tag).
    pub fn call_for_pair(&self, pair: LegPair) -> Option<(String, String)> {
        self.by_pair.get(&pair.a).cloned()
    }

    /// The call and the side the relay port `port` of `pair` faces (for
    /// [`crate::RelayEvent::Dtmf`]: the side whose endpoint sent the digit).
    pub fn side_of_port(&self, pair: LegPair, port: u16) -> Option<(String, String, Side)> {
        let (cid, tag) = self.call_for_pair(pair)?;
        let side = if port == pair.a { Side::A } else { Side::B };
        Some((cid, tag, side))
    }

    /// A digit side `from` of the call signalled in SIP INFO: sent to the other side as
    /// telephone-events by the transcoder of the leg facing `from` (the first audio stream
    /// set up for it, [`crate::transcode::Inband::Inject`]). `Ok(false)`: no stream injects
    /// (the digit is for the signalling to pass on as it is).
    pub fn inject_dtmf(
        &mut self,
        call_id: &str,
        from_tag: &str,
        from: Side,
        digit: crate::transcode::Dtmf,
    ) -> Result<bool, MediaError> {
        let call = self
            .calls
            .get(call_id)
            .and_then(|v| v.iter().find(|c| c.from_tag == from_tag))
            .ok_or(MediaError::UnknownCall)?;
        let i = side_index(from);
        let Some((pair, _)) = call.streams.iter().find_map(|s| {
            let spec = s.transcode[i]?;
            matches!(spec.inband, crate::transcode::Inband::Inject(_))
                .then_some(())
                .and(s.pair.map(|p| (p, spec)))
        }) else {
            return Ok(false);
        };
        self.dp
            .inject_dtmf(from.port(pair), digit)
            .map_err(MediaError::Relay)?;
        Ok(true)
    }

    /// Number of open pairs held by all calls.
    pub fn open_pairs(&self) -> usize {
        self.by_pair.len()
    }
}

/// An in-memory [`DataPlane`] for tests (also usable by other crates' tests): hands out port
/// pairs from a range, records every call, moves no packets.
mod apply;
mod codecs;
mod error;
pub mod fake;
mod replica;
mod streams;

#[cfg(test)]
mod tests;
