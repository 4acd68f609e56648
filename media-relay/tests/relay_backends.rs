//! Relay data plane over real UDP sockets on 127.0.0.1, for each back end.
//!
//! Every test is generated twice (module `epoll` and module `io_uring`). When the kernel refuses
//! io_uring the io_uring variants fail, unless `TRUNKLINE_NO_IO_URING=1` says this machine
//! cannot (then they print `SKIP` and return).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media_relay::relay::RelayTuning;
use media_relay::{Backend, DataPlane, Family, LegPair, RelayError, RelayEvent};

mod common;
use common::*;

macro_rules! backend_tests {
    ($m:ident, $backend:expr, $base:expr) => {
        mod $m {
            use super::*;
            const B: Backend = $backend;
            const BASE: u16 = $base;

            #[test]
            fn a_pair_opened_on_given_ports_forwards() {
                let Some(r) = start(B, BASE, BASE + 99, Duration::from_secs(60), false) else {
                    return;
                };
                let v4 = [Family::V4, Family::V4];
                let want = LegPair {
                    a: BASE + 40,
                    b: BASE + 60,
                };
                assert_eq!(r.open_pair_at(want, v4), Ok(want));
                assert_eq!(
                    r.open_pair_at(want, v4),
                    Err(RelayError::PortUnavailable(want.a)),
                    "open already"
                );
                let odd = LegPair {
                    a: BASE + 41,
                    b: BASE + 70,
                };
                assert!(r.open_pair_at(odd, v4).is_err(), "an RTCP port");
                let (x, y) = (client(), client());
                r.set_remote(want.a, x.local_addr().unwrap(), None).unwrap();
                r.set_remote(want.b, y.local_addr().unwrap(), None).unwrap();
                let p = rtp(1, 160, 0xaaaa);
                x.send_to(&p, relay_addr(want.a)).unwrap();
                let (got, from) = recv(&y).expect("Y gets RTP from X");
                assert_eq!((got, from), (p, relay_addr(want.b)));
                // Closed, its sockets kept by its worker: the same ports open again by number.
                r.close_pair(want);
                let t0 = Instant::now();
                loop {
                    match r.open_pair_at(want, v4) {
                        Ok(got) => break assert_eq!(got, want),
                        Err(e) if t0.elapsed() > Duration::from_secs(2) => panic!("reopen: {e}"),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                r.set_remote(want.a, x.local_addr().unwrap(), None).unwrap();
                r.set_remote(want.b, y.local_addr().unwrap(), None).unwrap();
                let q = rtp(2, 320, 0xaaaa);
                x.send_to(&q, relay_addr(want.a)).unwrap();
                assert_eq!(recv(&y).map(|r| r.0), Some(q), "forwarded after reopening");
            }

            #[test]
            fn rtp_both_ways_and_rtcp_on_plus_one() {
                let Some(r) = start(B, BASE, BASE + 99, Duration::from_secs(60), false) else {
                    return;
                };
                let c = call(&r);
                assert_eq!(c.pair.a % 2, 0);
                assert_eq!(c.pair.b % 2, 0);
                for i in 0..5u16 {
                    let p = rtp(i, i as u32 * 160, 0xaaaa);
                    c.x.send_to(&p, relay_addr(c.pair.a)).unwrap();
                    let (got, from) = recv(&c.y).expect("Y gets RTP from X");
                    assert_eq!(got, p, "forwarded unchanged");
                    assert_eq!(from, relay_addr(c.pair.b), "sent from b");
                    let q = rtp(100 + i, i as u32 * 160, 0xbbbb);
                    c.y.send_to(&q, relay_addr(c.pair.b)).unwrap();
                    let (got, from) = recv(&c.x).expect("X gets RTP from Y");
                    assert_eq!(got, q);
                    assert_eq!(from, relay_addr(c.pair.a));
                }
                // RTCP: X's RTCP socket -> a+1 -> out of b+1 -> Y's RTCP socket.
                let rr = [0x80u8, 201, 0, 1, 0, 0, 0xaa, 0xaa];
                c.xc.send_to(&rr, relay_addr(c.pair.a + 1)).unwrap();
                let (got, from) = recv(&c.yc).expect("Y gets RTCP");
                assert_eq!(&got[..], &rr[..]);
                assert_eq!(from, relay_addr(c.pair.b + 1));
                c.yc.send_to(&rr, relay_addr(c.pair.b + 1)).unwrap();
                let (_, from) = recv(&c.xc).expect("X gets RTCP");
                assert_eq!(from, relay_addr(c.pair.a + 1));

                let sa = r.stats(c.pair.a).unwrap();
                assert_eq!(sa.rtp_packets_in, 5);
                assert_eq!(sa.rtp_packets_out, 5);
                assert_eq!(sa.rtp_bytes_in, 5 * 172);
                assert_eq!(sa.rtcp_packets_in, 1);
                assert_eq!(sa.rtcp_packets_out, 1);
                assert_eq!(sa.latched, Some(c.x.local_addr().unwrap()));
                let t = wait_totals(&r, |t| t.packets_out == 12);
                assert_eq!(t.packets_out, 12);
                assert_eq!(t.active_pairs, 1);
                r.shutdown();
            }

            #[test]
            fn latches_to_nat_address_after_probation() {
                let Some(r) = start(B, BASE + 100, BASE + 199, Duration::from_secs(60), false)
                else {
                    return;
                };
                let pair = r.open_pair().unwrap();
                let (x, y) = (client(), client());
                // X signals a private address it does not send from (behind NAT), from the
                // IP it sends media from.
                let sdp_x: SocketAddr = "127.0.0.1:9".parse().unwrap();
                r.set_remote_from(pair.a, sdp_x, None, Some(x.local_addr().unwrap().ip()))
                    .unwrap();
                r.set_remote(pair.b, y.local_addr().unwrap(), None).unwrap();
                // Probation: the first packets are dropped, the third in sequence passes.
                for i in 0..3u16 {
                    x.send_to(&rtp(i, 160 * u32::from(i), 1), relay_addr(pair.a))
                        .unwrap();
                }
                let (got, _) = recv(&y).expect("Y gets X's media after probation");
                assert_eq!(got, rtp(2, 320, 1));
                assert!(recv_quiet(&y, Duration::from_millis(100)).is_none());
                y.send_to(&rtp(1, 0, 2), relay_addr(pair.b)).unwrap();
                let (_, from) = recv(&x).expect("media goes to the learned NAT address");
                assert_eq!(from, relay_addr(pair.a));
                assert_eq!(
                    r.stats(pair.a).unwrap().latched,
                    Some(x.local_addr().unwrap())
                );
                let t = wait_totals(&r, |t| t.dropped_probation == 2);
                assert_eq!(t.dropped_probation, 2);
            }

            /// RTP Bleed: a source on another IP than the leg's SDP and signalling never gets
            /// or injects a packet, before or after the real source is learned.
            #[test]
            fn rtp_bleed_guard_and_relearn() {
                let Some(r) = start(B, BASE + 200, BASE + 299, Duration::from_secs(60), false)
                else {
                    return;
                };
                let c = call(&r);
                // X is behind NAT: its SDP names an address it does not send from.
                let sdp_x: SocketAddr = "127.0.0.1:9".parse().unwrap();
                r.set_remote_from(c.pair.a, sdp_x, None, Some(c.x.local_addr().unwrap().ip()))
                    .unwrap();
                let evil = UdpSocket::bind("127.0.0.66:0").unwrap();
                evil.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                // The sprayer goes first, in sequence: never learned.
                for i in 0..20u16 {
                    evil.send_to(&rtp(500 + i, 0, 66), relay_addr(c.pair.a))
                        .unwrap();
                }
                c.y.send_to(&rtp(1, 0, 2), relay_addr(c.pair.b)).unwrap();
                assert!(recv_quiet(&c.y, Duration::from_millis(100)).is_none());
                assert!(recv(&evil).is_none(), "the sprayer got Y's media");
                for i in 0..12u16 {
                    c.x.send_to(&rtp(i, i as u32 * 160, 1), relay_addr(c.pair.a))
                        .unwrap();
                    if i >= 2 {
                        recv(&c.y).expect("X's media passes after probation");
                    }
                }
                let z = client();
                z.send_to(&rtp(500, 0, 66), relay_addr(c.pair.a)).unwrap();
                // Z's packet must not reach Y; X's next one does (and is the next thing Y sees).
                c.x.send_to(&rtp(12, 12 * 160, 1), relay_addr(c.pair.a))
                    .unwrap();
                let (got, _) = recv(&c.y).unwrap();
                assert_eq!(got, rtp(12, 12 * 160, 1));
                assert!(recv_quiet(&c.y, Duration::from_millis(100)).is_none());
                // Y's media still goes to X, not to Z.
                c.y.send_to(&rtp(1, 0, 2), relay_addr(c.pair.b)).unwrap();
                recv(&c.x).expect("X still gets media");
                assert!(recv_quiet(&z, Duration::from_millis(100)).is_none());
                assert!(recv(&evil).is_none());
                let t = wait_totals(&r, |t| t.dropped_foreign_source == 21);
                assert_eq!(t.dropped_foreign_source, 21);

                // A new offer re-opens learning: Z (the endpoint moved to another port of
                // the signalling IP) is learned after probation.
                r.set_remote_from(c.pair.a, sdp_x, None, Some(c.x.local_addr().unwrap().ip()))
                    .unwrap();
                // set_remote is asynchronous; the stats round trip orders after it.
                r.stats(c.pair.a).unwrap();
                for i in 0..3u16 {
                    z.send_to(&rtp(501 + i, 0, 67), relay_addr(c.pair.a))
                        .unwrap();
                }
                let (got, _) = recv(&c.y).expect("Z's media passes after re-offer");
                assert_eq!(got, rtp(503, 0, 67));
                c.y.send_to(&rtp(2, 160, 2), relay_addr(c.pair.b)).unwrap();
                recv(&z).expect("media goes to the re-learned source");
                assert_eq!(
                    r.stats(c.pair.a).unwrap().latched,
                    Some(z.local_addr().unwrap())
                );
            }

            #[test]
            fn strict_source_drops_other_sources() {
                let Some(r) = start(B, BASE + 300, BASE + 399, Duration::from_secs(60), true)
                else {
                    return;
                };
                let c = call(&r);
                let z = client();
                z.send_to(&rtp(1, 0, 66), relay_addr(c.pair.a)).unwrap();
                c.x.send_to(&rtp(1, 0, 1), relay_addr(c.pair.a)).unwrap();
                let Some((got, _)) = recv(&c.y) else {
                    panic!(
                        "X's packet not relayed: {:?} {:?}",
                        r.totals(),
                        r.stats(c.pair.a)
                    );
                };
                assert_eq!(got, rtp(1, 0, 1));
                assert!(recv_quiet(&c.y, Duration::from_millis(100)).is_none());
                assert_eq!(
                    wait_totals(&r, |t| t.dropped_foreign_source == 1).dropped_foreign_source,
                    1
                );
            }

            #[test]
            fn unsignalled_and_no_destination_are_dropped_and_counted() {
                let Some(r) = start(B, BASE + 400, BASE + 499, Duration::from_secs(60), false)
                else {
                    return;
                };
                let pair = r.open_pair().unwrap();
                let (x, y) = (client(), client());
                x.send_to(&rtp(1, 0, 1), relay_addr(pair.a)).unwrap();
                assert_eq!(
                    wait_totals(&r, |t| t.dropped_not_ready == 1).dropped_not_ready,
                    1
                );
                // a is signalled, b is not: X's media has nowhere to go.
                r.set_remote(pair.a, x.local_addr().unwrap(), None).unwrap();
                x.send_to(&rtp(2, 160, 1), relay_addr(pair.a)).unwrap();
                assert!(recv_quiet(&y, Duration::from_millis(100)).is_none());
                let t = wait_totals(&r, |t| t.dropped_no_destination == 1);
                let s = r.stats(pair.a).unwrap();
                assert_eq!(s.packets_dropped, 2);
                assert_eq!(t.dropped_not_ready, 1);
                assert_eq!(t.dropped_no_destination, 1);
                assert_eq!(t.packets_out, 0);
            }

            #[test]
            fn media_timeout_event() {
                let Some(r) = start(B, BASE + 500, BASE + 599, Duration::from_millis(300), false)
                else {
                    return;
                };
                let ev = r.events();
                let t0 = Instant::now();
                let idle = r.open_pair().unwrap();
                let busy = call(&r);
                // Keep media flowing on `busy` while `idle` times out.
                let mut got = None;
                let mut seq = 0u16;
                while t0.elapsed() < Duration::from_secs(3) {
                    busy.x
                        .send_to(&rtp(seq, seq as u32 * 160, 1), relay_addr(busy.pair.a))
                        .unwrap();
                    seq += 1;
                    if let Ok(e) = ev.recv_timeout(Duration::from_millis(20)) {
                        got = Some((e, t0.elapsed()));
                        break;
                    }
                }
                let (e, at) = got.expect("a media timeout event");
                assert_eq!(e, RelayEvent::MediaTimeout(idle));
                assert!(at >= Duration::from_millis(290), "fired after {at:?}");
                // The busy pair did not time out.
                for _ in 0..10 {
                    busy.x
                        .send_to(&rtp(seq, 0, 1), relay_addr(busy.pair.a))
                        .unwrap();
                    seq += 1;
                    assert!(ev.recv_timeout(Duration::from_millis(50)).is_err());
                }
                assert_eq!(r.totals().media_timeouts, 1);
            }

            #[test]
            fn port_exhaustion_and_close_returns_ports() {
                // 8 ports = 4 RTP/RTCP port pairs = 2 leg pairs.
                let Some(r) = start(B, BASE + 600, BASE + 607, Duration::from_secs(60), false)
                else {
                    return;
                };
                let p1 = r.open_pair().unwrap();
                let p2 = r.open_pair().unwrap();
                assert_eq!(r.open_pair(), Err(RelayError::PortsExhausted));
                let c = client();
                c.send_to(&rtp(1, 0, 1), relay_addr(p1.a)).unwrap();
                r.close_pair(p1);
                assert!(r.stats(p1.a).is_none());
                assert_eq!(
                    r.set_remote(p1.a, c.local_addr().unwrap(), None),
                    Err(RelayError::UnknownPort(p1.a))
                );
                // Ports come back once the worker closed the sockets.
                let t0 = Instant::now();
                let p3 = loop {
                    match r.open_pair() {
                        Ok(p) => break p,
                        Err(RelayError::PortsExhausted)
                            if t0.elapsed() < Duration::from_secs(2) =>
                        {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(e) => panic!("{e}"),
                    }
                };
                let mut got = [p3.a, p3.b];
                got.sort();
                let mut want = [p1.a, p1.b];
                want.sort();
                assert_eq!(got, want);
                assert_ne!(p3, p2);
                // Final stats arrive when the worker has applied the close (asynchronous).
                let t0 = Instant::now();
                let closed = loop {
                    let v = r.drain_closed_stats();
                    if !v.is_empty() || t0.elapsed() > Duration::from_secs(2) {
                        break v;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                };
                assert_eq!(closed.len(), 1);
                assert_eq!(closed[0].pair, p1);
                assert_eq!(r.totals().active_pairs, 2);
            }

            #[test]
            fn stats_loss_and_jitter_from_crafted_sequence() {
                let Some(r) = start(B, BASE + 700, BASE + 799, Duration::from_secs(60), false)
                else {
                    return;
                };
                let c = call(&r);
                let mut sent = 0;
                // 100 sequence numbers, every 10th missing, sent as a burst: timestamps advance
                // 20 ms per packet while arrivals are ~simultaneous, so jitter approaches 20 ms.
                for seq in 0u16..100 {
                    if seq % 10 == 5 {
                        continue;
                    }
                    c.x.send_to(&rtp(seq, seq as u32 * 160, 7), relay_addr(c.pair.a))
                        .unwrap();
                    sent += 1;
                }
                for _ in 0..sent {
                    recv(&c.y).expect("all sent packets are relayed");
                }
                let s = r.stats(c.pair.a).unwrap();
                assert_eq!(s.rtp_packets_in, 90);
                assert_eq!(s.packets_lost, 10);
                assert!(
                    (s.fraction_lost - 10.0 / 99.0).abs() < 1e-6,
                    "{}",
                    s.fraction_lost
                );
                // (after each gap |D| is 40 ms, so the estimate sits a little above 20 ms)
                assert!(
                    s.jitter_ms > 10.0 && s.jitter_ms < 30.0,
                    "jitter {}",
                    s.jitter_ms
                );
                let mos = s.mos.unwrap();
                assert!(mos > 1.0 && mos < 4.0, "10% loss gives a poor MOS: {mos}");
                let sb = r.stats(c.pair.b).unwrap();
                assert_eq!(sb.rtp_packets_out, 90);
                assert_eq!(sb.rtp_packets_in, 0);
                assert_eq!(sb.mos, None);
                r.close_pair(c.pair);
                // Final stats are kept after close.
                let t0 = Instant::now();
                let closed = loop {
                    let v = r.drain_closed_stats();
                    if !v.is_empty() || t0.elapsed() > Duration::from_secs(2) {
                        break v;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                };
                assert_eq!(closed[0].a.packets_lost, 10);
            }

            #[test]
            fn rtcp_mux_on_rtp_port() {
                let Some(r) = start(B, BASE + 800, BASE + 899, Duration::from_secs(60), false)
                else {
                    return;
                };
                let c = call(&r);
                let sr = {
                    let mut v = vec![0x80u8, 200, 0, 6];
                    v.extend_from_slice(&[0u8; 24]);
                    v
                };
                c.x.send_to(&sr, relay_addr(c.pair.a)).unwrap();
                let (got, from) = recv(&c.y).unwrap();
                assert_eq!(got, sr);
                assert_eq!(from, relay_addr(c.pair.b));
                let s = r.stats(c.pair.a).unwrap();
                assert_eq!((s.rtcp_packets_in, s.rtp_packets_in), (1, 0));
            }

            #[test]
            fn closed_ports_are_kept_and_reused() {
                // 4 RTP/RTCP port pairs = 2 leg pairs.
                let Some(r) = start(B, BASE + 1000, BASE + 1007, Duration::from_secs(60), false)
                else {
                    return;
                };
                let c1 = call(&r);
                c1.x.send_to(&rtp(1, 0, 1), relay_addr(c1.pair.a)).unwrap();
                assert_eq!(recv(&c1.y).unwrap().0, rtp(1, 0, 1));
                r.close_pair(c1.pair);
                // A stray from the closed call reaches a kept socket: dropped, not forwarded.
                c1.x.send_to(&rtp(2, 160, 1), relay_addr(c1.pair.a))
                    .unwrap();
                assert!(recv_quiet(&c1.y, Duration::from_millis(100)).is_none());
                // Cold ports are preferred while the kept ones rest (REUSE_AFTER).
                let c2 = call(&r);
                assert!(![c1.pair.a, c1.pair.b].contains(&c2.pair.a));
                assert!(![c1.pair.a, c1.pair.b].contains(&c2.pair.b));
                // The range is used up: the kept sockets serve the next pair at once.
                let c3 = call(&r);
                let (mut got, mut want) = ([c3.pair.a, c3.pair.b], [c1.pair.a, c1.pair.b]);
                got.sort();
                want.sort();
                assert_eq!(got, want);
                for (seq, (from, to, port, dst)) in [
                    (&c3.x, &c3.y, c3.pair.a, c3.pair.b),
                    (&c3.y, &c3.x, c3.pair.b, c3.pair.a),
                ]
                .into_iter()
                .enumerate()
                {
                    let p = rtp(10 + seq as u16, 0, 3);
                    from.send_to(&p, relay_addr(port)).unwrap();
                    let (bytes, src) = recv(to).expect("relayed on reused sockets");
                    assert_eq!((bytes, src), (p, relay_addr(dst)));
                }
                let t = wait_totals(&r, |t| t.packets_out == 3);
                assert_eq!(t.packets_out, 3, "the stray was not forwarded");
                assert_eq!(t.active_pairs, 2);
                r.close_pair(c2.pair);
                r.close_pair(c3.pair);
                let t = r.totals();
                assert_eq!((t.active_pairs, t.ports_free, t.ports_total), (0, 4, 4));
            }

            /// Dual stack: one pair joins a peer on IPv6 (port `a`, bound on ::1) and one on
            /// IPv4 (port `b`, on 127.0.0.1), RTP and RTCP both ways; a closed pair's kept ports
            /// serve only their own family, and ports kept by one family are closed for the
            /// other when nothing else is left.
            #[test]
            fn dual_stack_pair_joins_ipv6_and_ipv4() {
                let tuning = RelayTuning {
                    address_v6: Some("::1".parse().unwrap()),
                    ..RelayTuning::default()
                };
                let Some(r) = start_tuned(
                    B,
                    BASE + 1100,
                    BASE + 1107,
                    Duration::from_secs(60),
                    false,
                    &tuning,
                ) else {
                    return;
                };
                assert_eq!(
                    r.local_ip_for(Family::V6),
                    "::1".parse::<std::net::IpAddr>().unwrap()
                );
                assert_eq!(r.local_ip_for(Family::V4), r.local_ip());
                let pair = r.open_pair_for([Family::V6, Family::V4]).unwrap();
                let x6 = UdpSocket::bind("[::1]:0").unwrap();
                x6.set_read_timeout(Some(Duration::from_millis(1000)))
                    .unwrap();
                let x6c = UdpSocket::bind("[::1]:0").unwrap();
                x6c.set_read_timeout(Some(Duration::from_millis(1000)))
                    .unwrap();
                let (y, yc) = (client(), client());
                r.set_remote(
                    pair.a,
                    x6.local_addr().unwrap(),
                    Some(x6c.local_addr().unwrap()),
                )
                .unwrap();
                r.set_remote(
                    pair.b,
                    y.local_addr().unwrap(),
                    Some(yc.local_addr().unwrap()),
                )
                .unwrap();
                let at6 = |p: u16| SocketAddr::new("::1".parse().unwrap(), p);
                for i in 0..4u16 {
                    let p = rtp(i, u32::from(i) * 160, 0x6666);
                    x6.send_to(&p, at6(pair.a)).unwrap();
                    let (got, from) = recv(&y).expect("IPv4 side gets the IPv6 side's RTP");
                    assert_eq!((got, from), (p, relay_addr(pair.b)));
                    let q = rtp(50 + i, u32::from(i) * 160, 0x4444);
                    y.send_to(&q, relay_addr(pair.b)).unwrap();
                    let (got, from) = recv(&x6).expect("IPv6 side gets the IPv4 side's RTP");
                    assert_eq!((got, from), (q, at6(pair.a)));
                }
                let rr = [0x80u8, 201, 0, 1, 0, 0, 0x66, 0x66];
                x6c.send_to(&rr, at6(pair.a + 1)).unwrap();
                assert_eq!(recv(&yc).expect("RTCP to IPv4").1, relay_addr(pair.b + 1));
                yc.send_to(&rr, relay_addr(pair.b + 1)).unwrap();
                assert_eq!(recv(&x6c).expect("RTCP to IPv6").1, at6(pair.a + 1));
                assert_eq!(
                    r.stats(pair.a).unwrap().latched,
                    Some(x6.local_addr().unwrap())
                );
                let t = wait_totals(&r, |t| t.packets_out == 10);
                assert_eq!(t.packets_out, 10);
                assert_eq!(t.kernel_flows, 0, "IPv6 flows stay in user space");

                // Kept after close: one IPv6 and one IPv4 port. Two IPv4/IPv4 pairs need four
                // IPv4 ports: the two cold ones, the kept IPv4 one, and the IPv6 one, which is
                // closed (the first try fails) and comes back as IPv4.
                r.close_pair(pair);
                let p1 = r.open_pair_for([Family::V4, Family::V4]).unwrap();
                assert!(![pair.a, pair.b].contains(&p1.a) && ![pair.a, pair.b].contains(&p1.b));
                assert_eq!(
                    r.open_pair_for([Family::V4, Family::V4]),
                    Err(RelayError::PortsExhausted)
                );
                let t0 = Instant::now();
                let p2 = loop {
                    match r.open_pair_for([Family::V4, Family::V4]) {
                        Ok(p) => break p,
                        Err(e) if t0.elapsed() > Duration::from_secs(2) => panic!("{e}"),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                };
                let (mut got, mut want) = ([p2.a, p2.b], [pair.a, pair.b]);
                got.sort();
                want.sort();
                assert_eq!(got, want, "the old ports, now both IPv4");
                let (u, v) = (client(), client());
                r.set_remote(p2.a, u.local_addr().unwrap(), None).unwrap();
                r.set_remote(p2.b, v.local_addr().unwrap(), None).unwrap();
                let port6 = pair.a;
                let (from, to, dst) = if p2.a == port6 {
                    (&u, &v, p2.b)
                } else {
                    (&v, &u, p2.a)
                };
                from.send_to(&rtp(1, 0, 9), relay_addr(port6)).unwrap();
                assert_eq!(recv(to).expect("re-bound as IPv4").1, relay_addr(dst));
                r.close_pair(p1);
                r.close_pair(p2);
                let t = r.totals();
                assert_eq!((t.active_pairs, t.ports_free, t.ports_total), (0, 4, 4));
            }

            #[test]
            fn srtp_leg_to_plain_leg_and_forgeries_dropped() {
                use media_relay::srtp::{Context, MasterKey, Suite};
                let Some(r) = start(B, BASE + 1100, BASE + 1199, Duration::from_secs(60), false)
                else {
                    return;
                };
                let c = call(&r);
                let suite = Suite::AesCm128HmacSha1_80;
                let x_key = MasterKey::new(suite, &[0x11; 30]).unwrap();
                let relay_key = MasterKey::new(suite, &[0x22; 30]).unwrap();
                // the leg facing X speaks SRTP: X's key in, the relay's own key out
                r.set_srtp(c.pair.a, Some(x_key.clone()), Some(relay_key.clone()))
                    .unwrap();
                let (mut x_tx, mut x_rx) = (Context::new(&x_key), Context::new(&relay_key));
                for i in 0..5u16 {
                    let plain = rtp(i, u32::from(i) * 160, 0xaaaa);
                    let mut buf = plain.clone();
                    buf.resize(plain.len() + 10, 0);
                    let n = x_tx.protect_rtp(&mut buf, plain.len()).unwrap();
                    c.x.send_to(&buf[..n], relay_addr(c.pair.a)).unwrap();
                    let (got, _) = recv(&c.y).expect("Y gets plain RTP");
                    assert_eq!(got, plain, "decrypted for the plain leg");
                    if i == 4 {
                        // the same packet again: a replay, dropped
                        c.x.send_to(&buf[..n], relay_addr(c.pair.a)).unwrap();
                        // a forged one (a new index, payload flipped): dropped
                        let fresh = rtp(50, 0, 0xaaaa);
                        let mut forged = fresh.clone();
                        forged.resize(fresh.len() + 10, 0);
                        let m = x_tx.protect_rtp(&mut forged, fresh.len()).unwrap();
                        forged.truncate(m);
                        forged[30] ^= 0xff;
                        c.x.send_to(&forged, relay_addr(c.pair.a)).unwrap();
                        assert!(recv_quiet(&c.y, Duration::from_millis(200)).is_none());
                    }
                    let q = rtp(100 + i, u32::from(i) * 160, 0xbbbb);
                    c.y.send_to(&q, relay_addr(c.pair.b)).unwrap();
                    let (mut got, _) = recv(&c.x).expect("X gets SRTP");
                    assert_eq!(got.len(), q.len() + 10, "protected with an 80-bit tag");
                    assert_ne!(got[12..q.len()], q[12..], "payload in the clear");
                    let n = got.len();
                    let n = x_rx.unprotect_rtp(&mut got, n).expect("the relay's key");
                    assert_eq!(got[..n], q[..]);
                }
                // SRTCP from X decrypted to RTCP for Y
                let rr = [0x80u8, 201, 0, 1, 0, 0, 0xaa, 0xaa];
                let mut buf = rr.to_vec();
                buf.resize(rr.len() + 14, 0);
                let n = x_tx.protect_rtcp(&mut buf, rr.len()).unwrap();
                c.xc.send_to(&buf[..n], relay_addr(c.pair.a + 1)).unwrap();
                let (got, _) = recv(&c.yc).expect("Y gets RTCP");
                assert_eq!(&got[..], &rr[..]);
                let t = wait_totals(&r, |t| {
                    t.srtp_auth_failures == 1 && t.srtp_replays == 1 && t.srtp_packets >= 11
                });
                assert_eq!((t.srtp_auth_failures, t.srtp_replays), (1, 1));
                assert!(t.srtp_packets >= 11, "{}", t.srtp_packets);
                r.shutdown();
            }

            #[test]
            fn transcoded_pair_alaw_30ms_to_ulaw_20ms_and_back() {
                use media_relay::transcode::{Codec, Inband, Spec};
                let Some(r) = start(B, BASE + 1200, BASE + 1299, Duration::from_secs(60), false)
                else {
                    return;
                };
                let c = call(&r);
                let spec = |from: Codec, to: Codec, ptime_ms| Spec {
                    from,
                    from_pt: from.static_pt(),
                    to,
                    to_pt: to.static_pt(),
                    ptime_ms,
                    events: None,
                    inband: Inband::Off,
                };
                // X speaks A-law in 30 ms packets, Y mu-law in 20 ms ones
                r.set_transcode(c.pair.a, Some(spec(Codec::Pcma, Codec::Pcmu, 20)))
                    .unwrap();
                r.set_transcode(c.pair.b, Some(spec(Codec::Pcmu, Codec::Pcma, 30)))
                    .unwrap();
                let packet = |pt: u8, seq: u16, ts: u32, octet: u8, n: usize| {
                    let mut p = rtp(seq, ts, 0xaaaa);
                    p[1] = pt;
                    p.truncate(12);
                    p.extend(std::iter::repeat_n(octet, n));
                    p
                };
                // A-law 0xd5 and mu-law 0xff are both (near) zero
                for i in 0..4u16 {
                    let p = packet(8, i, 240 * u32::from(i), 0xd5, 240);
                    c.x.send_to(&p, relay_addr(c.pair.a)).unwrap();
                }
                let mut seqs = Vec::new();
                for _ in 0..6 {
                    let (got, _) = recv(&c.y).expect("Y gets mu-law");
                    assert_eq!((got[1] & 0x7f, got.len()), (0, 12 + 160));
                    assert!(
                        got[12..].iter().all(|&b| b | 0x81 == 0xff),
                        "silence: {:x?}",
                        &got[12..16]
                    );
                    seqs.push((
                        u16::from_be_bytes([got[2], got[3]]),
                        u32::from_be_bytes([got[4], got[5], got[6], got[7]]),
                    ));
                }
                assert_eq!(
                    seqs,
                    (0..6u16)
                        .map(|k| (k, 160 * u32::from(k)))
                        .collect::<Vec<_>>()
                );
                for i in 0..3u16 {
                    let p = packet(0, 40 + i, 160 * u32::from(i), 0xff, 160);
                    c.y.send_to(&p, relay_addr(c.pair.b)).unwrap();
                }
                for k in 0..2u16 {
                    let (got, _) = recv(&c.x).expect("X gets A-law");
                    assert_eq!((got[1] & 0x7f, got.len()), (8, 12 + 240));
                    assert_eq!(u16::from_be_bytes([got[2], got[3]]), 40 + k);
                }
                // comfort noise is not sent into PCMU
                c.x.send_to(&packet(13, 9, 2000, 40, 1), relay_addr(c.pair.a))
                    .unwrap();
                assert!(recv_quiet(&c.y, Duration::from_millis(200)).is_none());
                let t = wait_totals(&r, |t| t.transcode_drops == 1 && t.pairs_transcode == 1);
                let (a, u) = (Codec::Pcma.index(), Codec::Pcmu.index());
                assert_eq!(t.transcode_frames[a * Codec::ALL.len() + u], 6);
                assert_eq!(t.transcode_frames[u * Codec::ALL.len() + a], 2);
                assert_eq!((t.transcode_drops, t.pairs_transcode), (1, 1));
                r.close_pair(c.pair);
                let t = wait_totals(&r, |t| t.pairs_transcode == 0);
                assert_eq!(t.pairs_transcode, 0);
                r.shutdown();
            }

            #[test]
            fn many_pairs_across_workers() {
                let Some(r) = start(B, BASE + 900, BASE + 999, Duration::from_secs(60), false)
                else {
                    return;
                };
                let calls: Vec<Call> = (0..10).map(|_| call(&r)).collect();
                for (i, c) in calls.iter().enumerate() {
                    c.x.send_to(&rtp(i as u16, 0, i as u32), relay_addr(c.pair.a))
                        .unwrap();
                }
                for (i, c) in calls.iter().enumerate() {
                    let (got, _) = recv(&c.y).unwrap();
                    assert_eq!(got, rtp(i as u16, 0, i as u32));
                }
                for c in &calls {
                    r.close_pair(c.pair);
                }
                assert_eq!(r.totals().active_pairs, 0);
            }
        }
    };
}

backend_tests!(epoll, Backend::Epoll, 21000);
backend_tests!(io_uring, Backend::IoUring, 23000);

#[test]
fn auto_picks_a_backend() {
    let r = start(Backend::Auto, 25000, 25099, Duration::from_secs(60), false).unwrap();
    assert!(["io_uring", "epoll"].contains(&r.backend_name()));
    let c = call(&r);
    c.x.send_to(&rtp(1, 0, 1), relay_addr(c.pair.a)).unwrap();
    recv(&c.y).expect("relayed");
}

/// CPU the whole process has used (all threads), and the calling thread alone.
fn cpu_now() -> (Duration, Duration) {
    // SAFETY: getrusage/clock_gettime fill the structs they are given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        (
            tv(ru.ru_utime) + tv(ru.ru_stime),
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
        )
    }
}

/// The relay control work of one B2BUA call, paced like SIPp's default uac/uas at 1000 calls/s:
/// each millisecond an offer (open_pair, set_remote, clock rates), 300 us later the answer
/// (set_remote, clock rates) and the delete of the previous call (close_pair; with the plain
/// relay handle, MediaCalls::delete also reads both legs' stats, with `NoLiveStats`, as the
/// B2BUA uses it, not). Reports CPU per call of the
/// calling ("signaling") thread and of the whole process (the relay workers included).
///
/// `cargo test --release -p media-relay --test relay_backends control_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn control_cost_per_call() {
    use media_relay::control::MediaCalls;
    use std::sync::Arc;
    let n: u32 = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let offer = b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let answer = b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    // The pacing alone (sleeps, clock reads), to subtract.
    let pace = |mut op: Box<dyn FnMut(u32, bool) + '_>| {
        let tick = Duration::from_millis(1);
        let (p0, t0) = cpu_now();
        let mut next = Instant::now();
        for i in 0..n {
            op(i, false);
            let half = Instant::now() + Duration::from_micros(300);
            while Instant::now() < half {
                std::thread::sleep(half - Instant::now());
            }
            op(i, true);
            next += tick;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        let (p1, t1) = cpu_now();
        (p1 - p0, t1 - t0)
    };
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let (bp, bt) = pace(Box::new(|_, _| {}));
    println!(
        "pacing alone: {:.1} us CPU per call (calling thread {:.1} us)",
        per(bp),
        per(bt)
    );
    for (backend, live_stats) in [
        (Backend::Epoll, true),
        (Backend::IoUring, true),
        (Backend::Epoll, false),
        (Backend::IoUring, false),
    ] {
        let Some(r) = start(backend, 30000, 39999, Duration::from_secs(60), false) else {
            continue;
        };
        let r = Arc::new(r);
        // The B2BUA's handle (src/server.rs) reads no live stats; the ng port's does.
        let dp: Arc<dyn DataPlane> = if live_stats {
            r.clone()
        } else {
            Arc::new(media_relay::relay::NoLiveStats(r.clone()))
        };
        let mut calls = MediaCalls::new(dp);
        let (p, t) = pace(Box::new(|i, second| {
            let id = format!("call-{i}");
            if !second {
                calls.offer(&id, "a", offer).unwrap();
                return;
            }
            calls.answer(&id, "a", "b", answer).unwrap();
            if i > 0 {
                calls.delete(&format!("call-{}", i - 1), Some("a")).unwrap();
            }
        }));
        let _ = calls.delete(&format!("call-{}", n - 1), Some("a"));
        println!(
            "{} ({}): {n} calls at 1000/s: {:.1} us CPU per call beyond the pacing \
             (calling thread {:.1} us, relay workers {:.1} us)",
            r.backend_name(),
            if live_stats {
                "delete reads live stats"
            } else {
                "NoLiveStats"
            },
            per(p.saturating_sub(bp)),
            per(t.saturating_sub(bt)),
            per(p.saturating_sub(t).saturating_sub(bp.saturating_sub(bt))),
        );
    }
}

/// Relay ports are chosen at random (CSPRNG), not in sequence: a call's ports say nothing about
/// the next call's. Every port of the range is still handed out, exactly once while in use,
/// and ports closed (kept open for reuse) come back in an order that is not the closing order.
#[test]
fn relay_ports_are_random_and_all_reachable() {
    let r = start(Backend::Epoll, 25200, 25599, Duration::from_secs(60), false).unwrap();
    let pairs: Vec<LegPair> = (0..100).map(|_| r.open_pair().unwrap()).collect();
    assert_eq!(r.open_pair(), Err(RelayError::PortsExhausted));
    let mut ports: Vec<u16> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
    let steps = ports
        .windows(2)
        .filter(|w| (w[1] as i32 - w[0] as i32).abs() <= 4)
        .count();
    assert!(
        steps < 20,
        "{steps} of 199 allocations next to the previous one: {ports:?}"
    );
    ports.sort_unstable();
    let all: Vec<u16> = (25200..25600).step_by(2).collect();
    assert_eq!(ports, all, "every even port once");
    for p in &pairs {
        r.close_pair(*p);
    }
    // The range is used up by kept sockets: reopening takes them at once, in a shuffled order.
    let again: Vec<LegPair> = (0..100).map(|_| r.open_pair().unwrap()).collect();
    let mut seen: Vec<u16> = again.iter().flat_map(|p| [p.a, p.b]).collect();
    let order_kept = seen.clone();
    seen.sort_unstable();
    assert_eq!(seen, all, "every kept port reused once");
    let closing: Vec<u16> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
    let same_place = order_kept
        .iter()
        .zip(&closing)
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        same_place < 40,
        "{same_place} of 200 kept ports reused in closing order"
    );
    assert_eq!(r.open_pair(), Err(RelayError::PortsExhausted));
}
