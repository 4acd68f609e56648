//! Fuzz bodies shared by the cargo-fuzz targets in `fuzz/` (`sdp`, `ng`, `rtcp`) and by the
//! stable mutation loop in `media-core/tests/fuzz_loop.rs`, so both check the same
//! invariants. Each takes arbitrary bytes and panics only when an invariant breaks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::control::fake::FakeDataPlane;
use crate::control::{MediaCalls, Peers, Side};
use crate::ng::{bencode, NgHandler};
use crate::sdp::{OriginState, Sdp};
use crate::{quality, rtcp};

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));

/// SDP parse and rewrite, then the same bytes as offer/answer/re-offer through [`MediaCalls`].
///
/// Invariants: nothing panics; an SDP that parses rewrites (with one port per m-line) into an
/// SDP that parses again with the same number of m-lines, the relay's address and the given
/// ports (0 stays 0); a refused offer leaves no pair open.
pub fn sdp(data: &[u8]) {
    if let Ok(s) = Sdp::parse(data) {
        let n = s.media().len();
        let ports: Vec<u16> = s
            .media()
            .iter()
            .enumerate()
            .map(|(i, m)| if m.port == 0 { 0 } else { 30000 + 2 * i as u16 })
            .collect();
        let mut origin = OriginState::new(7, 1);
        if let Ok(out) = s.rewrite(RELAY, &ports, Some(&mut origin)) {
            let again = Sdp::parse(&out).expect("rewritten SDP parses");
            assert_eq!(again.media().len(), n, "m-line count kept");
            for (m, &p) in again.media().iter().zip(&ports) {
                assert_eq!(m.port, p, "port of the rewrite");
                if p != 0 {
                    if let Some(a) = m.rtp_addr() {
                        assert_eq!(a.ip(), RELAY, "only the relay address leaves");
                    }
                }
            }
        }
        let _ = s.rewrite(RELAY, &[], None);
    }
    let dp = Arc::new(FakeDataPlane::new(RELAY, 30000, 8));
    let mut mc = MediaCalls::new(dp.clone()).with_max_pairs(6);
    let peer = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
    let offered = mc.offer_from_peer(Side::A, "c", "f", data, peer);
    if offered.is_err() {
        assert_eq!(dp.open_pairs(), 0, "a refused new offer opens nothing");
    }
    let _ = mc.answer_from_peer(Side::B, "c", "f", Some("t"), data, peer);
    let _ = mc.offer_from(Side::B, "c", "f", data);
    let _ = mc.answer_from(Side::A, "c", "f", None, data);
    let _ = mc.query("c");
    let _ = mc.delete("c", None);
    assert_eq!(dp.open_pairs(), 0, "delete releases every pair");

    // Dual stack: the same bytes between an IPv6 and an IPv4 peer, then a re-offer from the
    // other family (pairs move); the SDP sent to each names only the relay of its family.
    let v6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
    let dp = Arc::new(FakeDataPlane::dual(RELAY, v6, 30000, 8));
    let mut mc = MediaCalls::new(dp.clone()).with_max_pairs(6);
    let a6 = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa)));
    let b4 = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)));
    let to_b = mc.offer_between(Side::A, "d", "f", data, Peers { from: a6, to: b4 });
    let only = |out: &[u8], ip: IpAddr| {
        if let Ok(s) = Sdp::parse(out) {
            for m in s.media().iter().filter(|m| m.port != 0) {
                if let Some(a) = m.rtp_addr() {
                    assert_eq!(a.ip(), ip, "a leg gets its family's relay address");
                }
            }
        }
    };
    match &to_b {
        Ok(out) => only(out, RELAY),
        Err(_) => assert_eq!(dp.open_pairs(), 0, "a refused new offer opens nothing"),
    }
    let to_a = mc.answer_between(
        Side::B,
        "d",
        "f",
        Some("t"),
        data,
        Peers { from: b4, to: a6 },
    );
    if let (Ok(_), Ok(out)) = (&to_b, &to_a) {
        if mc
            .families("d", "f")
            .is_some_and(|f| f[0] == crate::Family::V6)
        {
            only(out, v6);
        }
    }
    let _ = mc.offer_between(Side::A, "d", "f", data, Peers { from: b4, to: b4 });
    let _ = mc.delete("d", None);
    assert_eq!(
        dp.open_pairs(),
        0,
        "delete releases every pair (dual stack)"
    );
}

/// bencode decoding and ng command handling.
///
/// Invariants: nothing panics; what decodes encodes back to bytes that decode to the same
/// value; the handler answers a datagram with a cookie under the same cookie, and a
/// retransmission of it with the same reply.
pub fn ng(data: &[u8]) {
    if let Ok(v) = bencode::decode(data) {
        let bytes = v.encode();
        assert_eq!(
            bencode::decode(&bytes).as_ref(),
            Ok(&v),
            "bencode round trip"
        );
    }
    let dp = Arc::new(FakeDataPlane::new(RELAY, 30000, 8));
    let calls = Arc::new(Mutex::new(MediaCalls::new(dp).with_max_pairs(6)));
    let mut h = NgHandler::new(calls).with_cache_bytes(1 << 16);
    let now = Instant::now();
    let _ = h.handle(data, now);
    let mut d = b"fz ".to_vec();
    d.extend_from_slice(data);
    let r1 = h
        .handle(&d, now)
        .expect("a datagram with a cookie is answered");
    assert!(r1.starts_with(b"fz "), "reply under the request's cookie");
    let r2 = h
        .handle(&d, now + Duration::from_secs(1))
        .expect("answered");
    assert_eq!(r1, r2, "a retransmission gets the same reply");
    assert!(h.cache_bytes() <= 1 << 16);
    // and as a decoded dictionary, without the cache
    if let Ok(v) = bencode::decode(data) {
        let _ = h.command(&v);
    }
}

/// RTCP compound parsing and RTP header parsing (the bytes the relay reads on every packet).
///
/// Invariants: nothing panics; report blocks are whole 24-byte blocks; the iterator ends.
pub fn rtcp(data: &[u8]) {
    let _ = rtcp::is_rtcp(data);
    let mut n = 0usize;
    for p in rtcp::packets(data) {
        n += 1;
        assert!(n <= data.len() / 4 + 1, "the compound iterator ends");
        match p {
            rtcp::RtcpPacket::Sr { blocks, .. } | rtcp::RtcpPacket::Rr { blocks, .. } => {
                assert!(blocks.iter().count() <= blocks.len());
                let _ = blocks.first();
            }
            rtcp::RtcpPacket::XrVoip(_) | rtcp::RtcpPacket::Other(_) => {}
        }
    }
    if let Some(h) = quality::RtpHeader::parse(data) {
        let mut rx = quality::RtpReceiver::default();
        let t = Instant::now();
        rx.on_packet(&h, quality::static_clock_rate(h.payload_type), t);
        rx.on_packet(&h, 0, t + Duration::from_millis(20));
        let _ = (rx.lost(), rx.fraction_lost(), rx.jitter_ms());
    }
}
