//! The rtpengine-compatible "ng" control protocol, so Kamailio/OpenSIPS (`rtpengine` module) or
//! any ng client can drive trunkline's relay.
//!
//! Wire format (rtpengine's ng protocol): every request is one UDP datagram holding a unique
//! *cookie*, one space, and a bencoded dictionary ([`bencode`]); the reply is the same cookie, a
//! space and a bencoded dictionary. The request's `command` key selects the operation:
//!
//! | command  | keys read                                   | reply                                   |
//! |----------|---------------------------------------------|-----------------------------------------|
//! | `ping`   | –                                           | `result: pong`                          |
//! | `offer`  | `call-id`, `from-tag`, `sdp` (`to-tag`)     | `result: ok`, `sdp`                     |
//! | `answer` | `call-id`, `from-tag`, `to-tag`, `sdp`      | `result: ok`, `sdp`                     |
//! | `delete` | `call-id` (`from-tag`)                      | `result: ok` + the call's final stats   |
//! | `query`  | `call-id`                                   | `result: ok`, `tags`, `totals`          |
//! | `list`   | (`limit`, default 32)                       | `result: ok`, `calls`                   |
//!
//! Errors are `result: error` with `error-reason` (rtpengine's wording where one exists, e.g.
//! "No call-id in message", "Unknown call-id"). `received-from` (`[family, address]`, the
//! SIP source of the message) lets the relay learn a NATed endpoint's media source on that IP
//! after sequence probation; without it, only the SDP's own address is learned. Other keys
//! An offer's `codec` dictionary (`transcode`, `mask`, `strip`) asks for transcoding as
//! rtpengine does (see the `codec` module), and `transport-protocol` (`RTP/AVP`, `RTP/SAVP`)
//! the SRTP of the side the offer goes to: SRTP ↔ RTP bridging, each leg its own SDES keys
//! (the handler's [`MediaCalls`] needs a key source). Other keys
//! (`replace`, `flags`, `ICE`, `direction`, ...) are accepted and
//! ignored: the relay always replaces origin and connection addresses and always removes ICE
//! attributes.
//!
//! Direction of a re-INVITE: ng names the sender by its From tag. An offer whose `from-tag` is
//! the learned To tag of a call is a re-offer from the callee ([`Side::B`]); an answer whose
//! `from-tag` is such a To tag is the caller's answer to it. This is resolved with
//! [`MediaCalls::find_side`].
//!
//! Retransmissions: ng runs over UDP and clients resend with the same cookie. A request whose
//! cookie and body were seen within [`NgHandler::with_cache_ttl`] (30 s by default) gets the
//! stored reply again without executing a second time. The cache is bounded in entries
//! ([`MAX_CACHE_ENTRIES`]) and in bytes ([`MAX_CACHE_BYTES`], oldest out first).
//!
//! Bounds: an offer may open at most as many relay pairs as the [`MediaCalls`] it drives
//! allows ([`MediaCalls::with_max_pairs`]; trunkline: `media.ng_max_streams`), beyond which it
//! gets `Too many sessions`; `media_relay::ng::serve_allowed` drops datagrams from sources outside an
//! allow-list (loopback always allowed).
//!
//! The core ([`NgHandler::handle`]) is sans-IO and lives here; `media_relay::ng::serve` runs it on a
//! UDP socket in a thread.

pub mod bencode;
mod codec;

pub use bencode::Value;

use crate::control::{CallInfo, MediaCalls, MediaError, Side};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default retransmission-cache lifetime.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most replies kept in the retransmission cache.
pub const MAX_CACHE_ENTRIES: usize = 65_536;
/// Most bytes (replies and cookies) kept in the retransmission cache: replies to big SDPs
/// under fresh cookies cannot grow it past this.
pub const MAX_CACHE_BYTES: usize = 64 << 20;
/// Longest cookie accepted.
pub const MAX_COOKIE_LEN: usize = 256;

/// What one cache entry costs: its reply, its cookie twice (map key and age queue) and the
/// bookkeeping around them.
fn entry_cost(cookie: usize, reply: usize) -> usize {
    reply + 2 * cookie + 96
}

struct Cached {
    body_hash: u64,
    reply: Vec<u8>,
    at: Instant,
}

/// Sans-IO ng protocol handler over a shared [`MediaCalls`].
pub struct NgHandler {
    calls: Arc<Mutex<MediaCalls>>,
    ttl: Duration,
    cache: HashMap<Vec<u8>, Cached>,
    order: VecDeque<(Instant, Vec<u8>)>,
    /// Sum of [`entry_cost`] over `cache`.
    cache_bytes: usize,
    max_cache_bytes: usize,
}

fn ok() -> BTreeMap<Vec<u8>, Value> {
    let mut d = BTreeMap::new();
    d.insert(b"result".to_vec(), Value::str("ok"));
    d
}

fn error(reason: &str) -> Value {
    Value::dict([
        ("result", Value::str("error")),
        ("error-reason", Value::str(reason)),
    ])
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn endpoint(addr: SocketAddr) -> Value {
    Value::dict([
        (
            "family",
            Value::str(if addr.is_ipv4() { "IPv4" } else { "IPv6" }),
        ),
        ("address", Value::str(&addr.ip().to_string())),
        ("port", Value::Int(i64::from(addr.port()))),
    ])
}

/// rtpengine's query shape: `tags` -> per tag (`tag`, `in dialogue with`, `medias` -> `streams`
/// with `local port`, `endpoint`, `stats`), plus `totals` (`RTP`/`RTCP` packets, bytes, errors).
/// Trunkline adds to each stream's `stats`: `packets lost`, `jitter` (ms, rounded) and `MOS`
/// (×10, rtpengine's integer convention) when known, and `latched` (where media came from).
fn call_report(calls: &[CallInfo]) -> BTreeMap<Vec<u8>, Value> {
    let mut tags: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
    let (mut rtp_p, mut rtp_b, mut rtp_e, mut rtcp_p) = (0u64, 0u64, 0u64, 0u64);
    for call in calls {
        let b_tag = call.to_tag.clone().unwrap_or_default();
        for (side, tag, other) in [
            (Side::A, call.from_tag.clone(), b_tag.clone()),
            (Side::B, b_tag.clone(), call.from_tag.clone()),
        ] {
            let mut medias = Vec::new();
            for st in &call.streams {
                let mut streams = Vec::new();
                for leg in st.legs.iter().filter(|l| l.side == side) {
                    let s = &leg.stats;
                    rtp_p += s.rtp_packets_in;
                    rtp_b += s.rtp_bytes_in;
                    rtp_e += s.packets_dropped;
                    rtcp_p += s.rtcp_packets_in;
                    let mut stats = vec![
                        ("packets", int(s.rtp_packets_in)),
                        ("bytes", int(s.rtp_bytes_in)),
                        ("errors", int(s.packets_dropped)),
                        ("packets out", int(s.rtp_packets_out)),
                        ("bytes out", int(s.rtp_bytes_out)),
                        ("packets lost", Value::Int(s.packets_lost)),
                        ("jitter", Value::Int(s.jitter_ms.round() as i64)),
                    ];
                    if let Some(m) = s.mos {
                        stats.push(("MOS", Value::Int((m * 10.0).round() as i64)));
                    }
                    let mut entry = vec![
                        ("local port", Value::Int(i64::from(leg.port))),
                        ("stats", Value::dict(stats)),
                        (
                            "rtcp stats",
                            Value::dict([
                                ("packets", int(s.rtcp_packets_in)),
                                ("packets out", int(s.rtcp_packets_out)),
                            ]),
                        ),
                    ];
                    if let Some(r) = leg.remote {
                        entry.push(("advertised endpoint", endpoint(r)));
                    }
                    if let Some(r) = s.latched.or(leg.remote) {
                        entry.push(("endpoint", endpoint(r)));
                    }
                    streams.push(Value::dict(entry));
                }
                medias.push(Value::dict([
                    ("index", Value::Int(st.index as i64 + 1)),
                    ("type", Value::str(&st.kind)),
                    ("protocol", Value::str(&st.proto)),
                    ("streams", Value::List(streams)),
                ]));
            }
            tags.insert(
                tag.as_bytes().to_vec(),
                Value::dict([
                    ("tag", Value::str(&tag)),
                    ("in dialogue with", Value::str(&other)),
                    ("medias", Value::List(medias)),
                ]),
            );
        }
    }
    let mut d = ok();
    d.insert(b"tags".to_vec(), Value::Dict(tags));
    d.insert(
        b"totals".to_vec(),
        Value::dict([
            (
                "RTP",
                Value::dict([
                    ("packets", int(rtp_p)),
                    ("bytes", int(rtp_b)),
                    ("errors", int(rtp_e)),
                ]),
            ),
            (
                "RTCP",
                Value::dict([
                    ("packets", int(rtcp_p)),
                    ("bytes", Value::Int(0)),
                    ("errors", Value::Int(0)),
                ]),
            ),
        ]),
    );
    d
}

/// The SIP source address of the message an offer/answer came in (`received-from`:
/// `[family, address]`, as Kamailio's rtpengine module sends it): a media source on that IP may
/// be learned after sequence probation (NAT), besides the SDP's own address.
fn received_from(req: &Value) -> Option<IpAddr> {
    let l = req.get("received-from")?.as_list()?;
    l.get(1)?.as_str()?.trim().parse().ok()
}

impl NgHandler {
    pub fn new(calls: Arc<Mutex<MediaCalls>>) -> NgHandler {
        NgHandler {
            calls,
            ttl: DEFAULT_CACHE_TTL,
            cache: HashMap::new(),
            order: VecDeque::new(),
            cache_bytes: 0,
            max_cache_bytes: MAX_CACHE_BYTES,
        }
    }

    /// Keep at most `bytes` of replies in the retransmission cache (default
    /// [`MAX_CACHE_BYTES`]); the oldest go first.
    pub fn with_cache_bytes(mut self, bytes: usize) -> NgHandler {
        self.max_cache_bytes = bytes;
        self
    }

    /// Bytes the retransmission cache holds now (see [`NgHandler::with_cache_bytes`]).
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Replies in the retransmission cache now.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Drop the oldest entry of the age queue (and its reply, unless a newer request under the
    /// same cookie replaced it). `false` when the queue is empty.
    fn evict_oldest(&mut self) -> bool {
        let Some((t, cookie)) = self.order.pop_front() else {
            return false;
        };
        if self.cache.get(&cookie).is_some_and(|c| c.at == t) {
            if let Some(c) = self.cache.remove(&cookie) {
                self.cache_bytes = self
                    .cache_bytes
                    .saturating_sub(entry_cost(cookie.len(), c.reply.len()));
            }
        }
        true
    }

    /// Change how long replies are kept for retransmitted requests.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> NgHandler {
        self.ttl = ttl;
        self
    }

    /// The shared call state.
    pub fn calls(&self) -> &Arc<Mutex<MediaCalls>> {
        &self.calls
    }

    /// Handle one datagram received at `now`; the reply datagram, or `None` when the datagram has
    /// no cookie to answer to (no space, empty or over-long cookie).
    pub fn handle(&mut self, datagram: &[u8], now: Instant) -> Option<Vec<u8>> {
        let sp = datagram.iter().position(|&b| b == b' ')?;
        let (cookie, body) = (datagram.get(..sp)?, datagram.get(sp + 1..)?);
        if cookie.is_empty() || cookie.len() > MAX_COOKIE_LEN {
            return None;
        }
        self.expire(now);
        let mut h = DefaultHasher::new();
        body.hash(&mut h);
        let body_hash = h.finish();
        if let Some(c) = self.cache.get(cookie) {
            if c.body_hash == body_hash {
                return Some(c.reply.clone());
            }
        }

        let reply_value = match bencode::decode(body) {
            Ok(v @ Value::Dict(_)) => self.command(&v),
            _ => error("Could not decode dictionary"),
        };
        let mut reply = Vec::with_capacity(cookie.len() + 64);
        reply.extend_from_slice(cookie);
        reply.push(b' ');
        reply_value.encode_into(&mut reply);

        let cost = entry_cost(cookie.len(), reply.len());
        if cost > self.max_cache_bytes {
            // Not cached at all; a retransmission executes again (offers are idempotent).
            if let Some(old) = self.cache.remove(cookie) {
                self.cache_bytes = self
                    .cache_bytes
                    .saturating_sub(entry_cost(cookie.len(), old.reply.len()));
            }
            return Some(reply);
        }
        while (self.order.len() >= MAX_CACHE_ENTRIES
            || self.cache_bytes + cost > self.max_cache_bytes)
            && self.evict_oldest()
        {}
        let old = self.cache.insert(
            cookie.to_vec(),
            Cached {
                body_hash,
                reply: reply.clone(),
                at: now,
            },
        );
        if let Some(old) = old {
            self.cache_bytes = self
                .cache_bytes
                .saturating_sub(entry_cost(cookie.len(), old.reply.len()));
        }
        self.cache_bytes += cost;
        self.order.push_back((now, cookie.to_vec()));
        Some(reply)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < self.ttl {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Execute one decoded request dictionary (no cookie, no cache) and return the reply.
    pub fn command(&mut self, req: &Value) -> Value {
        let text = |k: &str| req.get(k).and_then(Value::as_str);
        let Some(cmd) = text("command") else {
            return error("Unrecognized command");
        };
        let mut calls = match self.calls.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let result: Result<Value, String> = match cmd {
            "ping" => Ok(Value::dict([("result", Value::str("pong"))])),
            "offer" | "answer" => (|| {
                let call_id = text("call-id").ok_or("No call-id in message")?;
                let from_tag = text("from-tag").ok_or("No from-tag in message")?;
                let sdp = req
                    .get("sdp")
                    .and_then(Value::as_bytes)
                    .ok_or("No SDP body in message")?;
                let peer = received_from(req);
                let out = if cmd == "offer" {
                    let (key, side) = calls
                        .find_side(call_id, from_tag)
                        .unwrap_or_else(|| (from_tag.to_string(), Side::A));
                    let srtp = codec::srtp_modes(req);
                    match (codec::offer_policy(req, sdp)?, srtp) {
                        (None, None) => calls.offer_from_peer(side, call_id, &key, sdp, peer),
                        (to, srtp) => {
                            let mut policy = crate::control::MediaPolicy::default();
                            policy.codecs[side.other() as usize] = to;
                            policy.srtp = srtp.map(|[mine, other]| match side {
                                Side::A => [mine, other],
                                Side::B => [other, mine],
                            });
                            let peers = crate::control::Peers {
                                from: peer,
                                to: None,
                            };
                            calls.offer_with(side, call_id, &key, sdp, peers, &policy)
                        }
                    }
                } else {
                    let to_tag = text("to-tag").ok_or("No to-tag in message")?;
                    match calls.find_side(call_id, from_tag) {
                        Some((key, Side::A)) => {
                            calls.answer_from_peer(Side::B, call_id, &key, Some(to_tag), sdp, peer)
                        }
                        Some((key, Side::B)) => {
                            calls.answer_from_peer(Side::A, call_id, &key, None, sdp, peer)
                        }
                        None => Err(MediaError::UnknownCall),
                    }
                };
                let out = out.map_err(|e| e.to_string())?;
                let mut d = ok();
                d.insert(b"sdp".to_vec(), Value::Bytes(out));
                Ok(Value::Dict(d))
            })(),
            "delete" => (|| {
                let call_id = text("call-id").ok_or("No call-id in message")?;
                let gone = calls
                    .delete(call_id, text("from-tag"))
                    .map_err(|e| e.to_string())?;
                Ok(Value::Dict(call_report(&gone)))
            })(),
            "query" => (|| {
                let call_id = text("call-id").ok_or("No call-id in message")?;
                let info = calls.query(call_id).map_err(|e| e.to_string())?;
                Ok(Value::Dict(call_report(&info)))
            })(),
            "list" => {
                let limit = req
                    .get("limit")
                    .and_then(|v| v.as_int().or_else(|| v.as_str()?.parse().ok()))
                    .unwrap_or(32);
                let limit = usize::try_from(limit).unwrap_or(0);
                let ids = calls
                    .list()
                    .into_iter()
                    .take(limit)
                    .map(|id| Value::Bytes(id.into_bytes()))
                    .collect();
                let mut d = ok();
                d.insert(b"calls".to_vec(), Value::List(ids));
                Ok(Value::Dict(d))
            }
            _ => Err("Unrecognized command".to_string()),
        };
        result.unwrap_or_else(|reason| error(&reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fake::FakeDataPlane;
    use crate::dataplane::LegStats;
    use crate::sdp::Sdp;
    use std::net::{IpAddr, Ipv4Addr};

    const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

    fn handler() -> (Arc<FakeDataPlane>, NgHandler) {
        let dp = Arc::new(FakeDataPlane::new(RELAY, 30000, 50));
        let calls = Arc::new(Mutex::new(MediaCalls::new(dp.clone())));
        (dp, NgHandler::new(calls))
    }

    fn sdp(port: u16, extra: &str) -> Value {
        Value::str(&format!(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n{extra}"
        ))
    }

    fn req(h: &mut NgHandler, cookie: &str, v: Value, now: Instant) -> Value {
        let mut d = format!("{cookie} ").into_bytes();
        v.encode_into(&mut d);
        let r = h.handle(&d, now).expect("a reply");
        let body = r
            .strip_prefix(format!("{cookie} ").as_bytes())
            .expect("same cookie");
        bencode::decode(body).expect("reply decodes")
    }

    fn port_of(reply: &Value) -> u16 {
        let s = Sdp::parse(reply.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
        s.media()[0].port
    }

    /// rtpengine's SRTP bridging: an SRTP offer with `transport-protocol: RTP/AVP` reaches
    /// the callee as plain RTP; the caller's answer carries the relay's own key.
    #[test]
    fn transport_protocol_bridges_srtp_to_rtp() {
        let dp = Arc::new(FakeDataPlane::new(RELAY, 30000, 50));
        let mut n = 0u8;
        let calls = MediaCalls::new(dp.clone()).with_key_source(Box::new(move |b: &mut [u8]| {
            for x in b.iter_mut() {
                n = n.wrapping_add(7);
                *x = n;
            }
        }));
        let mut h = NgHandler::new(Arc::new(Mutex::new(calls)));
        let now = Instant::now();
        let key = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\r\n"
        );
        let offer = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("s1")),
            ("from-tag", Value::str("A")),
            ("sdp", Value::str(&body)),
            ("transport-protocol", Value::str("RTP/AVP")),
        ]);
        let r = req(&mut h, "s1", offer, now);
        let to_b =
            String::from_utf8_lossy(r.get("sdp").and_then(Value::as_bytes).unwrap()).into_owned();
        assert!(to_b.contains("m=audio 30002 RTP/AVP 0"), "{to_b}");
        assert!(!to_b.contains("a=crypto"), "{to_b}");
        let answer = Value::dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str("s1")),
            ("from-tag", Value::str("A")),
            ("to-tag", Value::str("B")),
            ("sdp", sdp(5000, "")),
        ]);
        let r = req(&mut h, "s2", answer, now);
        let to_a =
            String::from_utf8_lossy(r.get("sdp").and_then(Value::as_bytes).unwrap()).into_owned();
        assert!(to_a.contains("RTP/SAVP"), "{to_a}");
        assert_eq!(to_a.matches("a=crypto:").count(), 1, "{to_a}");
        assert!(!to_a.contains(key), "the caller's own key came back");
        let keyed: Vec<_> = dp
            .ops()
            .into_iter()
            .filter(|o| {
                matches!(
                    o,
                    crate::control::fake::Op::SetSrtp {
                        rx: true,
                        tx: true,
                        ..
                    }
                )
            })
            .collect();
        assert!(!keyed.is_empty(), "the leg facing A has keys both ways");
    }

    /// rtpengine's transcoding flags: the callee is offered PCMA only, answers it, the caller
    /// keeps PCMU and the relay transcodes both ways.
    #[test]
    fn codec_mask_and_transcode_flags() {
        let (dp, mut h) = handler();
        let now = Instant::now();
        let codec = Value::dict([
            ("mask", Value::List(vec![Value::str("PCMU")])),
            ("transcode", Value::List(vec![Value::str("PCMA")])),
        ]);
        let offer = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("tc")),
            ("from-tag", Value::str("A")),
            ("sdp", sdp(4000, "")),
            ("codec", codec),
        ]);
        let r = req(&mut h, "t1", offer, now);
        let out = Sdp::parse(r.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
        assert_eq!(out.media()[0].formats, ["8"]);
        let answer = Value::dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str("tc")),
            ("from-tag", Value::str("A")),
            ("to-tag", Value::str("B")),
            (
                "sdp",
                Value::str(
                    "v=0\r\no=- 1 1 IN IP4 10.1.1.2\r\ns=-\r\nc=IN IP4 10.1.1.2\r\nt=0 0\r\n\
                     m=audio 5000 RTP/AVP 8\r\n",
                ),
            ),
        ]);
        let r = req(&mut h, "t2", answer, now);
        let out = Sdp::parse(r.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
        assert_eq!(out.media()[0].formats, ["0"]);
        let set: Vec<_> = dp
            .ops()
            .into_iter()
            .filter_map(|o| match o {
                crate::control::fake::Op::SetTranscode { spec, .. } => spec,
                _ => None,
            })
            .map(|s| (s.from, s.to))
            .collect();
        use crate::transcode::Codec::{Pcma, Pcmu};
        assert_eq!(set, [(Pcmu, Pcma), (Pcma, Pcmu)]);
        // an unknown codec to transcode to is an error, not a crash
        let bad = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("tc2")),
            ("from-tag", Value::str("A")),
            ("sdp", sdp(4000, "")),
            (
                "codec",
                Value::dict([("transcode", Value::List(vec![Value::str("G729")]))]),
            ),
        ]);
        let r = req(&mut h, "t3", bad, now);
        assert_eq!(
            r.get("error-reason"),
            Some(&Value::str("Unsupported codec 'G729'"))
        );
    }

    #[test]
    fn ping_and_errors() {
        let (_, mut h) = handler();
        let now = Instant::now();
        let r = req(
            &mut h,
            "c1",
            Value::dict([("command", Value::str("ping"))]),
            now,
        );
        assert_eq!(r.get("result"), Some(&Value::str("pong")));
        let r = req(
            &mut h,
            "c2",
            Value::dict([("command", Value::str("dance"))]),
            now,
        );
        assert_eq!(r.get("result"), Some(&Value::str("error")));
        assert_eq!(
            r.get("error-reason"),
            Some(&Value::str("Unrecognized command"))
        );
        let r = req(
            &mut h,
            "c3",
            Value::dict([
                ("command", Value::str("offer")),
                ("from-tag", Value::str("x")),
            ]),
            now,
        );
        assert_eq!(
            r.get("error-reason"),
            Some(&Value::str("No call-id in message"))
        );
        let r = req(
            &mut h,
            "c4",
            Value::dict([
                ("command", Value::str("answer")),
                ("call-id", Value::str("x")),
                ("from-tag", Value::str("x")),
                ("sdp", sdp(4000, "")),
            ]),
            now,
        );
        assert_eq!(
            r.get("error-reason"),
            Some(&Value::str("No to-tag in message"))
        );
        // Bad bencode: an error reply; no cookie: no reply at all.
        let r = h.handle(b"c5 d3:foo", now).unwrap();
        assert!(r.starts_with(b"c5 d"));
        assert!(String::from_utf8_lossy(&r).contains("Could not decode dictionary"));
        assert_eq!(h.handle(b"nocookie", now), None);
        assert_eq!(h.handle(b" d4:pingi1ee", now), None);
    }

    #[test]
    fn offer_answer_query_delete_and_callee_reoffer() {
        let (dp, mut h) = handler();
        let now = Instant::now();
        let offer = |ft: &str, tt: Option<&str>, port: u16, extra: &str| {
            let mut items = vec![
                ("command", Value::str("offer")),
                ("call-id", Value::str("call1")),
                ("from-tag", Value::str(ft)),
                ("sdp", sdp(port, extra)),
                (
                    "replace",
                    Value::List(vec![Value::str("origin"), Value::str("session-connection")]),
                ),
                ("flags", Value::List(vec![Value::str("trust-address")])),
            ];
            if let Some(t) = tt {
                items.push(("to-tag", Value::str(t)));
            }
            Value::dict(items)
        };
        let answer = |ft: &str, tt: &str, port: u16, extra: &str| {
            Value::dict([
                ("command", Value::str("answer")),
                ("call-id", Value::str("call1")),
                ("from-tag", Value::str(ft)),
                ("to-tag", Value::str(tt)),
                ("sdp", sdp(port, extra)),
            ])
        };
        let r = req(&mut h, "k1", offer("A", None, 4000, ""), now);
        assert_eq!(r.get("result"), Some(&Value::str("ok")));
        assert_eq!(port_of(&r), 30002);
        let r = req(&mut h, "k2", answer("A", "B", 5000, ""), now);
        assert_eq!(port_of(&r), 30000);

        // Callee re-INVITE (hold): from-tag is B's tag now.
        let r = req(
            &mut h,
            "k3",
            offer("B", Some("A"), 5000, "a=sendonly\r\n"),
            now,
        );
        assert_eq!(port_of(&r), 30000, "goes to A with the A-facing port");
        let r = req(&mut h, "k4", answer("B", "A", 4000, "a=recvonly\r\n"), now);
        assert_eq!(port_of(&r), 30002, "A's answer goes to B");
        assert_eq!(dp.open_pairs(), 1);

        dp.set_stats(
            30000,
            LegStats {
                rtp_packets_in: 10,
                rtp_bytes_in: 1720,
                mos: Some(4.3),
                ..LegStats::default()
            },
        );
        let q = req(
            &mut h,
            "k5",
            Value::dict([
                ("command", Value::str("query")),
                ("call-id", Value::str("call1")),
            ]),
            now,
        );
        assert_eq!(q.get("result"), Some(&Value::str("ok")));
        let rtp = q.get("totals").and_then(|t| t.get("RTP")).unwrap();
        assert_eq!(rtp.get("packets"), Some(&Value::Int(10)));
        assert_eq!(rtp.get("bytes"), Some(&Value::Int(1720)));
        let tag_a = q.get("tags").and_then(|t| t.get("A")).unwrap();
        assert_eq!(tag_a.get("in dialogue with"), Some(&Value::str("B")));
        let stream = &tag_a.get("medias").unwrap().as_list().unwrap()[0]
            .get("streams")
            .unwrap()
            .as_list()
            .unwrap()[0];
        assert_eq!(stream.get("local port"), Some(&Value::Int(30000)));
        assert_eq!(
            stream.get("stats").unwrap().get("MOS"),
            Some(&Value::Int(43))
        );
        assert_eq!(
            stream.get("endpoint").unwrap().get("port"),
            Some(&Value::Int(4000))
        );

        let l = req(
            &mut h,
            "k6",
            Value::dict([("command", Value::str("list"))]),
            now,
        );
        assert_eq!(
            l.get("calls"),
            Some(&Value::List(vec![Value::str("call1")]))
        );

        let d = req(
            &mut h,
            "k7",
            Value::dict([
                ("command", Value::str("delete")),
                ("call-id", Value::str("call1")),
                ("from-tag", Value::str("A")),
            ]),
            now,
        );
        assert_eq!(d.get("result"), Some(&Value::str("ok")));
        assert_eq!(dp.open_pairs(), 0);
        let d = req(
            &mut h,
            "k8",
            Value::dict([
                ("command", Value::str("delete")),
                ("call-id", Value::str("call1")),
            ]),
            now,
        );
        assert_eq!(d.get("error-reason"), Some(&Value::str("Unknown call-id")));
    }

    #[test]
    fn retransmission_gets_cached_reply_without_reexecuting() {
        let (dp, mut h) = handler();
        let t0 = Instant::now();
        let offer = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("c")),
            ("from-tag", Value::str("f")),
            ("sdp", sdp(4000, "")),
        ]);
        let mut d = b"abc ".to_vec();
        offer.encode_into(&mut d);
        let r1 = h.handle(&d, t0).unwrap();
        let ops = dp.ops().len();
        let r2 = h.handle(&d, t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(dp.ops().len(), ops, "not executed again");
        // Same cookie, different body: a new request.
        let mut d2 = b"abc ".to_vec();
        Value::dict([("command", Value::str("ping"))]).encode_into(&mut d2);
        assert!(String::from_utf8_lossy(&h.handle(&d2, t0).unwrap()).contains("pong"));
        // After the TTL the first request executes again (a re-offer: same ports, set_remote again).
        let r3 = h.handle(&d, t0 + Duration::from_secs(31)).unwrap();
        assert!(dp.ops().len() > ops);
        assert_eq!(r1, r3);
    }

    /// Issue 8: re-offers of one call with a 63 KB SDP under fresh cookies grew the process to
    /// 4.25 GB (the cache bounded entries, not bytes). Now the cache stays within its byte
    /// bound, the newest replies are still served from it, and the call holds one pair.
    #[test]
    fn cache_is_bounded_in_bytes_under_big_reoffers() {
        let (dp, h) = handler();
        let limit = 4 << 20;
        let mut h = h.with_cache_bytes(limit);
        let now = Instant::now();
        let pad: String = (0..800)
            .map(|i| format!("a=x-pad{i}:{}\r\n", "z".repeat(60)))
            .collect();
        let offer = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("big")),
            ("from-tag", Value::str("f")),
            ("sdp", sdp(4000, &pad)),
        ]);
        let mut body = Vec::new();
        offer.encode_into(&mut body);
        assert!(body.len() > 58_000, "{}", body.len());
        let mut last = Vec::new();
        for i in 0..600u32 {
            let mut d = format!("fresh-{i} ").into_bytes();
            d.extend_from_slice(&body);
            last = h.handle(&d, now).unwrap();
            assert!(h.cache_bytes() <= limit, "{} > {limit}", h.cache_bytes());
        }
        assert!(
            last.len() > 58_000,
            "the reply carries the big SDP: {}",
            String::from_utf8_lossy(&last[..last.len().min(300)])
        );
        assert!(h.cache_len() < 80, "{} replies kept", h.cache_len());
        assert!(h.cache_bytes() > limit / 2, "the cache is used");
        // the newest is still answered from the cache (not executed again)
        let ops = dp.ops().len();
        let mut d = b"fresh-599 ".to_vec();
        d.extend_from_slice(&body);
        assert_eq!(h.handle(&d, now).unwrap(), last);
        assert_eq!(dp.ops().len(), ops);
        assert_eq!(dp.open_pairs(), 1);
        // a reply larger than the whole cache is not kept
        let mut tiny = handler().1.with_cache_bytes(1000);
        let mut d = b"one ".to_vec();
        d.extend_from_slice(&body);
        tiny.handle(&d, now).unwrap();
        assert_eq!(tiny.cache_bytes(), 0);
    }

    /// Issue 8: 249 ng offers took every relay port. With a pair limit, offers beyond it get
    /// an ng error and open nothing; a delete makes room again.
    #[test]
    fn ng_sessions_are_capped() {
        let dp = Arc::new(FakeDataPlane::new(RELAY, 30000, 100));
        let calls = Arc::new(Mutex::new(MediaCalls::new(dp.clone()).with_max_pairs(10)));
        let mut h = NgHandler::new(calls);
        let now = Instant::now();
        let offer = |id: &str| {
            Value::dict([
                ("command", Value::str("offer")),
                ("call-id", Value::str(id)),
                ("from-tag", Value::str("f")),
                ("sdp", sdp(4000, "")),
            ])
        };
        for i in 0..10 {
            let r = req(&mut h, &format!("o{i}"), offer(&format!("c{i}")), now);
            assert_eq!(r.get("result"), Some(&Value::str("ok")), "{r:?}");
        }
        for i in 10..249 {
            let r = req(&mut h, &format!("o{i}"), offer(&format!("c{i}")), now);
            assert_eq!(r.get("result"), Some(&Value::str("error")));
        }
        let r = req(&mut h, "x", offer("c10"), now);
        let reason = r.get("error-reason").and_then(Value::as_str).unwrap();
        assert!(reason.starts_with("Too many sessions"), "{reason}");
        assert_eq!(dp.open_pairs(), 10, "the refused offers opened nothing");
        let del = Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str("c0")),
        ]);
        req(&mut h, "d0", del, now);
        let r = req(&mut h, "again", offer("c10"), now);
        assert_eq!(r.get("result"), Some(&Value::str("ok")));
    }

    /// `received-from` names the SIP source: the relay leg may learn a NATed source on it.
    #[test]
    fn received_from_reaches_the_relay_leg() {
        let (dp, mut h) = handler();
        let now = Instant::now();
        let r = req(
            &mut h,
            "rf",
            Value::dict([
                ("command", Value::str("offer")),
                ("call-id", Value::str("n")),
                ("from-tag", Value::str("f")),
                ("sdp", sdp(4000, "")),
                (
                    "received-from",
                    Value::List(vec![Value::str("IP4"), Value::str("198.51.100.8")]),
                ),
            ]),
            now,
        );
        assert_eq!(r.get("result"), Some(&Value::str("ok")));
        assert_eq!(dp.signalling(30000), Some("198.51.100.8".parse().unwrap()));
    }

    #[test]
    fn random_datagrams_never_panic() {
        let (_, mut h) = handler();
        let now = Instant::now();
        let mut x: u64 = 88172645463325252;
        let pieces: [&[u8]; 12] = [
            b"d",
            b"e",
            b"l",
            b"7:command",
            b"5:offer",
            b"4:ping",
            b"7:call-id",
            b"1:x",
            b"8:from-tag",
            b"3:sdp",
            b"i5e",
            b"6:answer",
        ];
        for i in 0..20_000u32 {
            let mut d = format!("{i} ").into_bytes();
            for _ in 0..(x % 10) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                d.extend_from_slice(pieces[(x % pieces.len() as u64) as usize]);
            }
            let _ = h.handle(&d, now);
        }
    }
}
