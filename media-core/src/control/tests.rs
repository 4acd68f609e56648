use super::fake::{FakeDataPlane, Op};
use super::*;
use crate::dataplane::RelayError;
use crate::sdp::Direction;
use std::net::{IpAddr, Ipv4Addr};

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));

fn setup(pairs: u16) -> (Arc<FakeDataPlane>, MediaCalls) {
    let dp = Arc::new(FakeDataPlane::new(RELAY, 30000, pairs));
    let calls = MediaCalls::new(dp.clone());
    (dp, calls)
}

fn body(ip: &str, ports: &[u16], extra: &str) -> Vec<u8> {
    let mut s = format!("v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n");
    for p in ports {
        s.push_str(&format!(
            "m=audio {p} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
        ));
    }
    s.into_bytes()
}

fn parsed(out: &[u8]) -> Sdp {
    Sdp::parse(out).expect("relay output parses")
}

fn origin(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .find(|l| l.starts_with("o="))
        .unwrap_or_default()
        .to_string()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const RELAY6: &str = "2001:db8::5";

fn body6(ip: &str, port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=x 1 1 IN IP6 {ip}\r\ns=-\r\nc=IN IP6 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
    .into_bytes()
}

/// RFC 6157 §4: a caller on IPv6 and a callee on IPv4 each get the relay address of their
/// own family, and each one's relay port is of its family.
#[test]
fn each_side_gets_its_familys_relay_address() {
    let dp = Arc::new(FakeDataPlane::dual(
        RELAY,
        RELAY6.parse().unwrap(),
        30000,
        8,
    ));
    let mut mc = MediaCalls::new(dp.clone());
    let peers = Peers {
        from: Some("2001:db8::a".parse().unwrap()),
        to: Some("192.0.2.20".parse().unwrap()),
    };
    let to_b = mc
        .offer_between(Side::A, "c6", "ft", &body6("2001:db8::a", 4000), peers)
        .unwrap();
    let t = String::from_utf8_lossy(&to_b);
    assert!(t.contains("c=IN IP4 203.0.113.1\r\n"), "{t}");
    assert!(origin(&to_b).ends_with(" IN IP4 203.0.113.1"), "{t}");
    let pair = mc.query("c6").unwrap()[0].streams[0].pair.unwrap();
    assert_eq!(dp.family(pair.a), Some(Family::V6));
    assert_eq!(dp.family(pair.b), Some(Family::V4));
    assert_eq!(dp.remote(pair.a).unwrap().0, sa("[2001:db8::a]:4000"));
    assert_eq!(mc.families("c6", "ft"), Some([Family::V6, Family::V4]));
    // B answers on IPv4; A's copy names the IPv6 relay address and port `a`.
    let back = Peers {
        from: Some("192.0.2.20".parse().unwrap()),
        to: Some("2001:db8::a".parse().unwrap()),
    };
    let to_a = mc
        .answer_between(
            Side::B,
            "c6",
            "ft",
            Some("tt"),
            &body("192.0.2.20", &[6000], ""),
            back,
        )
        .unwrap();
    let t = String::from_utf8_lossy(&to_a);
    assert!(t.contains("c=IN IP6 2001:db8::5\r\n"), "{t}");
    assert!(origin(&to_a).ends_with(" IN IP6 2001:db8::5"), "{t}");
    assert_eq!(parsed(&to_a).media()[0].port, pair.a);
    assert_eq!(dp.remote(pair.b).unwrap().0, sa("192.0.2.20:6000"));

    // A re-offers from IPv4 (moved networks): the stream moves to a pair facing A on IPv4.
    let again = Peers {
        from: Some("192.0.2.10".parse().unwrap()),
        to: Some("192.0.2.20".parse().unwrap()),
    };
    let to_b = mc
        .offer_between(Side::A, "c6", "ft", &body("192.0.2.10", &[4002], ""), again)
        .unwrap();
    let p2 = mc.query("c6").unwrap()[0].streams[0].pair.unwrap();
    assert_ne!(p2, pair);
    assert_eq!(dp.family(p2.a), Some(Family::V4));
    assert_eq!(dp.family(pair.a), None, "the old pair is closed");
    assert_eq!(parsed(&to_b).media()[0].port, p2.b);
    assert_eq!(dp.open_pairs(), 1);
    mc.delete("c6", None).unwrap();
    assert_eq!(dp.open_pairs(), 0);
}

/// RFC 5118 §4.9: an IPv4-mapped SDP address is the IPv4 peer (an IPv4 port, an IPv4 remote).
#[test]
fn ipv4_mapped_media_address_is_ipv4() {
    let dp = Arc::new(FakeDataPlane::dual(
        RELAY,
        RELAY6.parse().unwrap(),
        30000,
        4,
    ));
    let mut mc = MediaCalls::new(dp.clone());
    mc.offer_between(
        Side::A,
        "m",
        "ft",
        &body6("::ffff:192.0.2.2", 5000),
        Peers::default(),
    )
    .unwrap();
    let p = mc.query("m").unwrap()[0].streams[0].pair.unwrap();
    assert_eq!(dp.family(p.a), Some(Family::V4));
    assert_eq!(dp.remote(p.a).unwrap().0, sa("192.0.2.2:5000"));
}

/// A single-family data plane serves every side on its one address, as before.
#[test]
fn single_family_relay_ignores_peer_families() {
    let (dp, mut mc) = setup(4);
    let peers = Peers {
        from: Some("2001:db8::a".parse().unwrap()),
        to: Some("192.0.2.20".parse().unwrap()),
    };
    let out = mc
        .offer_between(Side::A, "c1", "ft", &body6("2001:db8::a", 4000), peers)
        .unwrap();
    assert!(String::from_utf8_lossy(&out).contains("c=IN IP4 203.0.113.1"));
    let p = mc.query("c1").unwrap()[0].streams[0].pair.unwrap();
    assert_eq!(dp.family(p.a), Some(Family::V4));
    // A re-offer does not move the stream (no family to move to).
    mc.offer_between(Side::A, "c1", "ft", &body6("2001:db8::a", 4000), peers)
        .unwrap();
    assert_eq!(mc.query("c1").unwrap()[0].streams[0].pair, Some(p));
}

/// Each side's signalling IP goes with its own leg's remote, and only there.
#[test]
fn signalling_ip_reaches_the_leg_facing_its_side() {
    let (dp, mut mc) = setup(10);
    let (ip_a, ip_b): (IpAddr, IpAddr) = (
        "198.51.100.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
    );
    let body_a = body("10.0.0.1", &[4000], "");
    mc.offer_from_peer(Side::A, "c1", "ft", &body_a, Some(ip_a))
        .unwrap();
    let pair = LegPair { a: 30000, b: 30002 };
    assert_eq!(dp.signalling(pair.a), Some(ip_a));
    assert_eq!(dp.signalling(pair.b), None);
    let body_b = body("10.0.0.2", &[5000], "");
    mc.answer_from_peer(Side::B, "c1", "ft", Some("tt"), &body_b, Some(ip_b))
        .unwrap();
    assert_eq!(dp.signalling(pair.a), Some(ip_a));
    assert_eq!(dp.signalling(pair.b), Some(ip_b));
    // a re-offer without a peer takes the NAT allowance away
    mc.offer_from(Side::A, "c1", "ft", &body_a).unwrap();
    assert_eq!(dp.signalling(pair.a), None);
}

#[test]
fn offer_answer_wires_both_legs() {
    let (dp, mut mc) = setup(10);
    let to_b = mc
        .offer("c1", "ft", &body("10.0.0.1", &[4000], ""))
        .unwrap();
    let s = parsed(&to_b);
    let pair = LegPair { a: 30000, b: 30002 };
    assert_eq!(
        s.media()[0].rtp_addr(),
        Some(SocketAddr::new(RELAY, pair.b))
    );
    assert_eq!(
        dp.remote(pair.a),
        Some((sa("10.0.0.1:4000"), Some(sa("10.0.0.1:4001"))))
    );
    assert_eq!(dp.remote(pair.b), None);

    let to_a = mc
        .answer("c1", "ft", "tt", &body("10.0.0.2", &[5000], ""))
        .unwrap();
    let s = parsed(&to_a);
    assert_eq!(
        s.media()[0].rtp_addr(),
        Some(SocketAddr::new(RELAY, pair.a))
    );
    assert_eq!(
        dp.remote(pair.b),
        Some((sa("10.0.0.2:5000"), Some(sa("10.0.0.2:5001"))))
    );
    assert_eq!(mc.to_tag("c1", "ft"), Some("tt"));
    assert!(!String::from_utf8_lossy(&to_a).contains("10.0.0."));
    assert!(!String::from_utf8_lossy(&to_b).contains("10.0.0."));
    assert_eq!(dp.open_pairs(), 1);
    assert_eq!(mc.list(), vec!["c1".to_string()]);
}

#[test]
fn reoffer_reuses_pairs_and_versions_origin() {
    let (dp, mut mc) = setup(10);
    let o1 = mc
        .offer("c1", "ft", &body("10.0.0.1", &[4000, 4002], ""))
        .unwrap();
    mc.answer("c1", "ft", "tt", &body("10.0.0.2", &[5000, 5002], ""))
        .unwrap();
    // Identical re-offer (session refresh): same SDP, same version, no new pairs.
    let o2 = mc
        .offer("c1", "ft", &body("10.0.0.1", &[4000, 4002], ""))
        .unwrap();
    assert_eq!(o1, o2);
    // A moves its media (new port) and holds: new version, same relay ports.
    let o3 = mc
        .offer(
            "c1",
            "ft",
            &body("10.0.0.1", &[4100, 4002], "a=sendonly\r\n"),
        )
        .unwrap();
    assert_ne!(origin(&o1), origin(&o3));
    let v = |o: &[u8]| origin(o).split(' ').nth(2).unwrap().parse::<u64>().unwrap();
    assert_eq!(v(&o3), v(&o1) + 1);
    assert_eq!(parsed(&o3).media()[0].port, 30002);
    assert_eq!(parsed(&o3).media()[0].direction, Direction::SendOnly);
    assert_eq!(dp.remote(30000).unwrap().0, sa("10.0.0.1:4100"));
    let opens = dp.ops().iter().filter(|o| matches!(o, Op::Open(_))).count();
    assert_eq!(opens, 2);
    // Fewer m-lines than before is refused (RFC 3264 §8).
    assert!(matches!(
        mc.offer("c1", "ft", &body("10.0.0.1", &[4000], "")),
        Err(MediaError::StreamCountMismatch {
            expected: 2,
            got: 1
        })
    ));
}

#[test]
fn rejected_streams_hold_no_pair() {
    let (dp, mut mc) = setup(10);
    let o = mc
        .offer("c1", "ft", &body("10.0.0.1", &[4000, 0], ""))
        .unwrap();
    assert_eq!(parsed(&o).media()[1].port, 0);
    assert_eq!(dp.open_pairs(), 1);
    // B rejects the first stream too: its pair closes and the answer keeps port 0.
    let a = mc
        .answer("c1", "ft", "tt", &body("10.0.0.2", &[0, 0], ""))
        .unwrap();
    assert_eq!(parsed(&a).media()[0].port, 0);
    assert_eq!(dp.open_pairs(), 0);
    assert_eq!(mc.open_pairs(), 0);
    // Re-enable it in a re-offer: a new pair.
    let o = mc
        .offer("c1", "ft", &body("10.0.0.1", &[4000, 0], ""))
        .unwrap();
    assert_ne!(parsed(&o).media()[0].port, 0);
    assert_eq!(dp.open_pairs(), 1);
    // An answer cannot accept a stream the offer rejected.
    let a = mc
        .answer("c1", "ft", "tt", &body("10.0.0.2", &[5000, 5002], ""))
        .unwrap();
    assert_eq!(parsed(&a).media()[1].port, 0);
}

#[test]
fn hold_from_callee_with_zero_address() {
    let (dp, mut mc) = setup(10);
    mc.offer("c1", "ft", &body("10.0.0.1", &[4000], ""))
        .unwrap();
    let a1 = mc
        .answer("c1", "ft", "tt", &body("10.0.0.2", &[5000], ""))
        .unwrap();
    // B re-INVITEs with RFC 2543 hold; ng would find the side by tag.
    assert_eq!(mc.find_side("c1", "tt"), Some(("ft".to_string(), Side::B)));
    assert_eq!(mc.find_side("c1", "ft"), Some(("ft".to_string(), Side::A)));
    let before = dp.ops().len();
    let to_a = mc
        .offer_from(Side::B, "c1", "ft", &body("0.0.0.0", &[5000], ""))
        .unwrap();
    let s = parsed(&to_a);
    assert_eq!(s.media()[0].port, 30000, "A-facing port");
    assert_eq!(s.media()[0].direction, Direction::SendOnly);
    assert_eq!(s.media()[0].rtp_addr(), Some(SocketAddr::new(RELAY, 30000)));
    // No set_remote towards 0.0.0.0; B's old address is kept.
    assert_eq!(dp.ops().len(), before);
    assert_eq!(dp.remote(30002).unwrap().0, sa("10.0.0.2:5000"));
    // A answers recvonly: goes to B with the B-facing port.
    let to_b = mc
        .answer_from(
            Side::A,
            "c1",
            "ft",
            None,
            &body("10.0.0.1", &[4000], "a=recvonly\r\n"),
        )
        .unwrap();
    assert_eq!(parsed(&to_b).media()[0].port, 30002);
    assert_eq!(parsed(&to_b).media()[0].direction, Direction::RecvOnly);
    // Resume: B offers again; the SDP to A is new so its version moved on twice from a1.
    let resumed = mc
        .offer_from(Side::B, "c1", "ft", &body("10.0.0.2", &[5000], ""))
        .unwrap();
    let v = |o: &[u8]| origin(o).split(' ').nth(2).unwrap().parse::<u64>().unwrap();
    assert_eq!(v(&resumed), v(&a1) + 2);
    assert_eq!(parsed(&resumed).media()[0].direction, Direction::SendRecv);
    // An answer for an unknown call fails.
    assert_eq!(
        mc.answer_from(Side::A, "nope", "ft", None, &body("10.0.0.2", &[5000], "")),
        Err(MediaError::UnknownCall)
    );
}

#[test]
fn delayed_offer_from_callee() {
    let (dp, mut mc) = setup(10);
    // INVITE without SDP; B's 200 OK carries the offer, A's ACK the answer.
    let to_a = mc
        .offer_from(Side::B, "c1", "ft", &body("10.0.0.2", &[5000], ""))
        .unwrap();
    assert_eq!(parsed(&to_a).media()[0].port, 30000);
    assert_eq!(dp.remote(30002).unwrap().0, sa("10.0.0.2:5000"));
    let to_b = mc
        .answer_from(Side::A, "c1", "ft", None, &body("10.0.0.1", &[4000], ""))
        .unwrap();
    assert_eq!(parsed(&to_b).media()[0].port, 30002);
    assert_eq!(dp.remote(30000).unwrap().0, sa("10.0.0.1:4000"));
}

#[test]
fn rtcp_mux_and_rtcp_attribute() {
    let (dp, mut mc) = setup(10);
    mc.offer("c1", "ft", &body("10.0.0.1", &[4000], "a=rtcp-mux\r\n"))
        .unwrap();
    assert_eq!(
        dp.remote(30000),
        Some((sa("10.0.0.1:4000"), Some(sa("10.0.0.1:4000"))))
    );
    mc.answer(
        "c1",
        "ft",
        "tt",
        &body("10.0.0.2", &[5000], "a=rtcp:6001 IN IP4 10.0.0.9\r\n"),
    )
    .unwrap();
    assert_eq!(
        dp.remote(30002),
        Some((sa("10.0.0.2:5000"), Some(sa("10.0.0.9:6001"))))
    );
}

/// `with_max_pairs`: an offer that would open more pairs than the limit fails whole and
/// opens nothing; re-offers of existing streams and a freed pair make room again.
#[test]
fn pair_limit_refuses_and_changes_nothing() {
    let dp = Arc::new(FakeDataPlane::new(RELAY, 30000, 50));
    let mut mc = MediaCalls::new(dp.clone()).with_max_pairs(3);
    mc.offer("c1", "ft", &body("10.0.0.1", &[4000, 4002], ""))
        .unwrap();
    assert_eq!(
        mc.offer("c2", "ft", &body("10.0.0.1", &[4000, 4002], "")),
        Err(MediaError::PairLimit(3))
    );
    assert_eq!(dp.open_pairs(), 2, "the refused offer left nothing open");
    assert_eq!(mc.list(), vec!["c1".to_string()]);
    mc.offer("c1", "ft", &body("10.0.0.1", &[4000, 4002], ""))
        .expect("a re-offer of open streams needs no new pair");
    mc.offer("c3", "ft", &body("10.0.0.1", &[4000], ""))
        .unwrap();
    assert!(matches!(
        mc.offer("c4", "ft", &body("10.0.0.1", &[4000], "")),
        Err(MediaError::PairLimit(3))
    ));
    mc.delete("c3", None).unwrap();
    mc.offer("c4", "ft", &body("10.0.0.1", &[4000], ""))
        .expect("room again");
    assert_eq!(dp.open_pairs(), 3);
}

#[test]
fn errors_leave_nothing_open() {
    let (dp, mut mc) = setup(2);
    // 17 m-lines: refused before any pair opens.
    let many: Vec<u16> = (0..17).map(|i| 4000 + 2 * i).collect();
    assert_eq!(
        mc.offer("c1", "ft", &body("10.0.0.1", &many, "")),
        Err(MediaError::TooManyStreams(17))
    );
    // 3 streams, 2 pairs available: the two opened are closed again, no call remains.
    assert!(matches!(
        mc.offer("c1", "ft", &body("10.0.0.1", &[4000, 4002, 4004], "")),
        Err(MediaError::Relay(RelayError::PortsExhausted))
    ));
    assert_eq!(dp.open_pairs(), 0);
    assert!(mc.is_empty());
    assert!(matches!(
        mc.offer("c1", "ft", b"garbage"),
        Err(MediaError::Sdp(_))
    ));
    assert!(mc.is_empty());
    assert_eq!(
        mc.answer("c1", "ft", "tt", &body("10.0.0.2", &[5000], "")),
        Err(MediaError::UnknownCall)
    );
    mc.offer("c1", "ft", &body("10.0.0.1", &[4000], ""))
        .unwrap();
    assert!(matches!(
        mc.answer("c1", "ft", "tt", &body("10.0.0.2", &[5000, 5002], "")),
        Err(MediaError::StreamCountMismatch {
            expected: 1,
            got: 2
        })
    ));
    let fqdn = b"v=0\r\no=- 1 1 IN IP4 h.example\r\ns=-\r\nc=IN IP4 h.example\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    assert_eq!(
        mc.answer("c1", "ft", "tt", fqdn),
        Err(MediaError::UnresolvedAddress(0))
    );
    assert_eq!(dp.open_pairs(), 1);
}

#[test]
fn query_delete_list() {
    let (dp, mut mc) = setup(10);
    mc.offer("c1", "ft", &body("10.0.0.1", &[4000], ""))
        .unwrap();
    mc.answer("c1", "ft", "tt", &body("10.0.0.2", &[5000], ""))
        .unwrap();
    mc.offer("c2", "x", &body("10.0.0.3", &[4000], "")).unwrap();
    dp.set_stats(
        30000,
        LegStats {
            rtp_packets_in: 50,
            rtp_bytes_in: 8600,
            ..LegStats::default()
        },
    );
    let q = mc.query("c1").unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].to_tag.as_deref(), Some("tt"));
    let legs = &q[0].streams[0].legs;
    assert_eq!(legs[0].side, Side::A);
    assert_eq!(legs[0].tag.as_deref(), Some("ft"));
    assert_eq!(legs[0].stats.rtp_packets_in, 50);
    assert_eq!(legs[0].remote, Some(sa("10.0.0.1:4000")));
    assert_eq!(legs[1].port, 30002);
    assert_eq!(
        mc.call_for_pair(LegPair { a: 30000, b: 30002 }),
        Some(("c1".into(), "ft".into()))
    );
    assert_eq!(mc.list(), vec!["c1".to_string(), "c2".to_string()]);

    // Delete by the callee's tag (BYE from B) finds the call too.
    assert_eq!(
        mc.call_for_pair(LegPair { a: 30004, b: 30006 }),
        Some(("c2".into(), "x".into()))
    );
    assert_eq!(mc.open_pairs(), 2);
    let gone = mc.delete("c1", Some("tt")).unwrap();
    assert_eq!(mc.call_for_pair(LegPair { a: 30000, b: 30002 }), None);
    assert_eq!(gone[0].streams[0].legs[0].stats.rtp_packets_in, 50);
    assert_eq!(dp.open_pairs(), 1);
    assert_eq!(mc.delete("c1", None), Err(MediaError::UnknownCall));
    assert_eq!(mc.query("c1"), Err(MediaError::UnknownCall));
    mc.delete("c2", None).unwrap();
    assert_eq!(dp.open_pairs(), 0);
    assert!(mc.is_empty());
}

/// An offer with audio, an MSRP session (RFC 4975, over TCP) and a rejected stream.
fn mixed(ip: &str, audio: u16, msrp: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {audio} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=message {msrp} TCP/MSRP *\r\na=path:msrp://{ip}:{msrp}/s1;tcp\r\n\
m=application 0 *\r\n"
    )
    .into_bytes()
}

#[test]
fn a_tcp_stream_is_rejected_and_the_others_relayed() {
    let (dp, mut mc) = setup(10);
    let to_b = mc
        .offer("c1", "ft", &mixed("10.0.0.1", 4000, 2855))
        .unwrap();
    let s = parsed(&to_b);
    let m = s.media();
    assert_eq!(m.len(), 3, "every m-line stays (RFC 3264 §8)");
    assert_eq!(m[0].rtp_addr(), Some(SocketAddr::new(RELAY, 30002)));
    assert_eq!(m[1].port, 0, "MSRP rejected, never a UDP relay port");
    assert_eq!(m[2].port, 0);
    assert_eq!(dp.open_pairs(), 1, "one pair: the audio");
    let text = String::from_utf8_lossy(&to_b);
    assert!(!text.contains("10.0.0.1:4000"), "{text}");
    // The callee answers the rejected streams with port 0: the caller gets them rejected.
    let ans = "v=0\r\no=y 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 0\r\nm=message 0 TCP/MSRP *\r\nm=application 0 *\r\n";
    let to_a = parsed(&mc.answer("c1", "ft", "tt", ans.as_bytes()).unwrap());
    assert_eq!(
        to_a.media()[0].rtp_addr(),
        Some(SocketAddr::new(RELAY, 30000))
    );
    assert_eq!(to_a.media()[1].port, 0);
}

#[test]
fn a_tcp_stream_can_be_passed_untouched() {
    let (dp, mc) = setup(10);
    let mut mc = mc.with_tcp_streams(TcpStreams::Pass);
    let to_b = mc
        .offer("c1", "ft", &mixed("10.0.0.1", 4000, 2855))
        .unwrap();
    let s = parsed(&to_b);
    let m = s.media();
    assert_eq!(m[0].rtp_addr(), Some(SocketAddr::new(RELAY, 30002)));
    assert_eq!(m[1].port, 2855);
    assert_eq!(
        m[1].rtp_addr(),
        Some(sa("10.0.0.1:2855")),
        "its own c= kept"
    );
    assert!(String::from_utf8_lossy(&to_b).contains("a=path:msrp://10.0.0.1:2855/s1;tcp"));
    assert_eq!(dp.open_pairs(), 1);
}

#[test]
fn a_rejected_stream_without_formats_does_not_refuse_the_offer() {
    for rejected in ["m=application 0 *", "m=application 0", "m=video 0 RTP/AVP"] {
        let (_dp, mut mc) = setup(10);
        let offer = format!(
            "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n{rejected}\r\n"
        );
        let out = mc
            .offer("c1", "ft", offer.as_bytes())
            .unwrap_or_else(|e| panic!("{rejected}: {e}"));
        let s = parsed(&out);
        assert_eq!(s.media()[1].port, 0);
        assert!(s.media()[0].rtp_addr().is_some());
    }
    // A live stream still needs its proto and formats.
    let (_dp, mut mc) = setup(10);
    let bad = "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP\r\n";
    assert!(mc.offer("c1", "ft", bad.as_bytes()).is_err());
}

fn policy(a: Option<&[&str]>, b: Option<&[&str]>) -> MediaPolicy {
    let list = |v: Option<&[&str]>| {
        v.map(|v| {
            v.iter()
                .map(|n| CodecName::parse(n).expect("name"))
                .collect()
        })
    };
    MediaPolicy {
        srtp: None,
        codecs: [list(a), list(b)],
    }
}

fn sdp_with(ip: &str, port: u16, mline: &str) -> Vec<u8> {
    format!("v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {mline}")
        .into_bytes()
}

fn transcodes(dp: &FakeDataPlane) -> Vec<(u16, Option<crate::transcode::Spec>)> {
    dp.ops()
        .into_iter()
        .filter_map(|o| match o {
            Op::SetTranscode { port, spec } => Some((port, spec)),
            _ => None,
        })
        .collect()
}

/// A G.722 phone calls a trunk that takes PCMA only: the trunk is offered PCMA, answers it,
/// the phone's answer names G.722, and both legs transcode.
#[test]
fn codec_policy_offers_the_trunks_codecs_and_transcodes_on_the_answer() {
    use crate::transcode::Codec;
    let (dp, mut mc) = setup(4);
    let phone = sdp_with(
        "192.0.2.10",
        4000,
        "RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
    );
    let pol = policy(None, Some(&["PCMA", "telephone-event"]));
    let to_b = mc
        .offer_with(Side::A, "c1", "ta", &phone, Peers::default(), &pol)
        .unwrap();
    let m = parsed(&to_b).media()[0].clone();
    assert_eq!(m.formats, ["8", "101"]);
    assert!(m.rtpmaps.iter().all(|r| r.encoding != "G722"));
    let pair = mc.query("c1").unwrap()[0].streams[0].pair.unwrap();
    assert!(transcodes(&dp).is_empty(), "nothing before the answer");

    let trunk = sdp_with(
        "192.0.2.20",
        5000,
        "RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
    );
    let to_a = mc
        .answer_between(Side::B, "c1", "ta", Some("tb"), &trunk, Peers::default())
        .unwrap();
    let m = parsed(&to_a).media()[0].clone();
    assert_eq!(
        m.formats,
        ["9", "101"],
        "the phone hears its own codec named"
    );
    let t = transcodes(&dp);
    assert_eq!(t.len(), 2);
    let (from_a, from_b) = (t[0].1.unwrap(), t[1].1.unwrap());
    assert_eq!((t[0].0, t[1].0), (pair.a, pair.b));
    assert_eq!(
        (from_a.from, from_a.to, from_a.to_pt),
        (Codec::G722, Codec::Pcma, 8)
    );
    assert_eq!(
        (from_b.from, from_b.to, from_b.to_pt),
        (Codec::Pcma, Codec::G722, 9)
    );
    assert_eq!(from_a.events, Some((101, 101)));

    // a re-offer from A answered the same way sets nothing again
    mc.offer_with(Side::A, "c1", "ta", &phone, Peers::default(), &pol)
        .unwrap();
    mc.answer_between(Side::B, "c1", "ta", Some("tb"), &trunk, Peers::default())
        .unwrap();
    assert_eq!(transcodes(&dp).len(), 2);
    // a re-offer answered with a codec in common: forwarded again (transcoders cleared)
    let both = sdp_with(
        "192.0.2.10",
        4000,
        "RTP/AVP 9 8 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    mc.offer_with(Side::A, "c1", "ta", &both, Peers::default(), &pol)
        .unwrap();
    mc.answer_between(Side::B, "c1", "ta", Some("tb"), &trunk, Peers::default())
        .unwrap();
    let t = transcodes(&dp);
    assert_eq!(t.len(), 4);
    assert_eq!((t[2].1, t[3].1), (None, None));
}

#[test]
fn codec_policy_refusals_are_codec_errors() {
    let (dp, mut mc) = setup(4);
    let g729 = sdp_with(
        "192.0.2.10",
        4000,
        "RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
    );
    let pol = policy(None, Some(&["PCMA"]));
    let e = mc
        .offer_with(Side::A, "c2", "ta", &g729, Peers::default(), &pol)
        .unwrap_err();
    assert_eq!(e, MediaError::Codec(CodecError::NoCommon));
    assert_eq!(dp.open_pairs(), 0, "a refused offer holds no ports");
    // without a policy the same offer passes untouched
    let out = mc
        .offer_with(
            Side::A,
            "c3",
            "ta",
            &g729,
            Peers::default(),
            &MediaPolicy::default(),
        )
        .unwrap();
    assert_eq!(parsed(&out).media()[0].formats, ["18"]);
}
