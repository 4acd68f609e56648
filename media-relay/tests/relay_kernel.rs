//! The kernel (eBPF) fast path, end to end over real UDP sockets on 127.0.0.1, with both back
//! ends: flows move into the kernel once both sources settle, packets arrive unchanged from the
//! relay's ports, stats (counts, loss) and the media timeout stay whole, a new offer takes the
//! flows back to user space, and a foreign source never rides the kernel path.
//!
//! Loads a real eBPF program: needs root and Linux 6.6+ (CI runs as root). Without them the
//! tests fail, unless `TRUNKLINE_NO_BPF=1` says this machine cannot (then they print SKIP). The
//! io_uring variants also fail where the kernel refuses io_uring, unless
//! `TRUNKLINE_NO_IO_URING=1` allows that skip.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media_relay::relay::{KernelForwarding, RelayTuning};
use media_relay::{Backend, DataPlane, Relay, RelayConfig, RelayEvent, RelayTotals};

fn start(
    backend: Backend,
    base: u16,
    timeout: Duration,
    kernel: KernelForwarding,
) -> Option<Relay> {
    let cfg = RelayConfig {
        address: "127.0.0.1".parse().unwrap(),
        port_min: base,
        port_max: base + 99,
        backend,
        workers: 1,
        timeout,
        strict_source: false,
    };
    let tuning = RelayTuning {
        kernel_forwarding: kernel,
        ..RelayTuning::default()
    };
    match Relay::start_with(cfg, &tuning) {
        Ok(r) => {
            if kernel == KernelForwarding::On {
                let ifs = r.kernel_interfaces().expect("kernel path on");
                assert!(ifs.iter().any(|i| i == "lo"), "{ifs:?}");
            }
            Some(r)
        }
        Err(e) if std::env::var_os("TRUNKLINE_NO_BPF").is_some() => {
            println!("SKIP (TRUNKLINE_NO_BPF): {e}");
            None
        }
        Err(e)
            if backend == Backend::IoUring
                && e.to_string().contains("io_uring")
                && std::env::var_os("TRUNKLINE_NO_IO_URING").is_some() =>
        {
            println!("SKIP (TRUNKLINE_NO_IO_URING): kernel refused io_uring: {e}");
            None
        }
        Err(e) => panic!("relay start ({backend:?}): {e}"),
    }
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    s
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), port)
}

fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12..20].copy_from_slice(b"payload!");
    p
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut b = [0u8; 2048];
    loop {
        match s.recv_from(&mut b) {
            Ok((n, from)) => return Some((b[..n].to_vec(), from)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn wait_totals(r: &Relay, cond: impl Fn(&RelayTotals) -> bool) -> RelayTotals {
    let t0 = Instant::now();
    loop {
        let t = r.totals();
        if cond(&t) || t0.elapsed() > Duration::from_secs(3) {
            return t;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One RTP packet each way, checked at the far side: unchanged, from the relay's port.
struct Call {
    pair: media_relay::LegPair,
    x: UdpSocket,
    y: UdpSocket,
    xseq: u16,
    yseq: u16,
}

impl Call {
    fn new(r: &Relay) -> Call {
        let pair = r.open_pair().unwrap();
        let (x, y) = (client(), client());
        r.set_remote(pair.a, x.local_addr().unwrap(), None).unwrap();
        r.set_remote(pair.b, y.local_addr().unwrap(), None).unwrap();
        Call {
            pair,
            x,
            y,
            xseq: 1000,
            yseq: 7000,
        }
    }

    fn exchange(&mut self) {
        let p = rtp(self.xseq, self.xseq as u32 * 160, 0xaaaa);
        self.x.send_to(&p, at(self.pair.a)).unwrap();
        let (got, from) = recv(&self.y).expect("Y gets X's RTP");
        assert_eq!((got, from), (p, at(self.pair.b)));
        let q = rtp(self.yseq, self.yseq as u32 * 160, 0xbbbb);
        self.y.send_to(&q, at(self.pair.b)).unwrap();
        let (got, from) = recv(&self.x).expect("X gets Y's RTP");
        assert_eq!((got, from), (q, at(self.pair.a)));
        self.xseq = self.xseq.wrapping_add(1);
        self.yseq = self.yseq.wrapping_add(1);
    }
}

macro_rules! kernel_tests {
    ($m:ident, $backend:expr, $base:expr) => {
        mod $m {
            use super::*;
            const B: Backend = $backend;
            const BASE: u16 = $base;

            #[test]
            fn settled_flows_move_to_the_kernel_with_whole_stats_and_timeout() {
                let timeout = Duration::from_secs(2);
                let Some(r) = start(B, BASE, timeout, KernelForwarding::On) else {
                    return;
                };
                let events = r.events();
                let mut c = Call::new(&r);
                for _ in 0..3 {
                    c.exchange();
                }
                let t = wait_totals(&r, |t| t.kernel_flows == 2);
                assert_eq!(t.kernel_flows, 2, "both directions installed: {t:?}");
                let user_in = t.packets_in;
                // 100 more each way, X skipping 5 sequence numbers: all through the kernel
                for i in 0..100 {
                    if i == 50 {
                        c.xseq = c.xseq.wrapping_add(5);
                    }
                    c.exchange();
                }
                let sa = r.stats(c.pair.a).unwrap();
                let sb = r.stats(c.pair.b).unwrap();
                assert_eq!(sa.rtp_packets_in, 103, "{sa:?}");
                assert_eq!(sa.rtp_bytes_in, 103 * 172);
                assert_eq!(sa.packets_lost, 5, "gap seen by the kernel: {sa:?}");
                assert_eq!(sb.rtp_packets_in, 103);
                assert_eq!(sb.packets_lost, 0);
                assert_eq!(sb.rtp_packets_out, 103, "X's packets left through b");
                assert!(sa.mos.is_some());
                let t = wait_totals(&r, |t| t.packets_in == 206);
                assert_eq!(t.packets_in, 206, "{t:?}");
                assert!(
                    (200..=206 - user_in).contains(&t.kernel_packets),
                    "the 200 after the install went through the kernel: {t:?}"
                );
                // media keeps flowing through the kernel longer than the timeout: no timeout
                let until = Instant::now() + timeout + Duration::from_millis(1500);
                while Instant::now() < until {
                    c.exchange();
                    std::thread::sleep(Duration::from_millis(50));
                }
                assert!(
                    events.try_iter().next().is_none(),
                    "no media timeout while the kernel forwards"
                );
                // silence: the timeout fires
                match events.recv_timeout(timeout * 3) {
                    Ok(RelayEvent::MediaTimeout(p)) => assert_eq!(p, c.pair),
                    other => panic!("expected a media timeout, got {other:?}"),
                }
                r.close_pair(c.pair);
                let t = wait_totals(&r, |t| t.kernel_flows == 0);
                assert_eq!(t.kernel_flows, 0, "closing removes the flows");
                r.shutdown();
            }

            #[test]
            fn a_new_offer_takes_the_flows_back_and_foreign_sources_stay_out() {
                let Some(r) = start(B, BASE + 100, Duration::from_secs(60), KernelForwarding::On)
                else {
                    return;
                };
                let mut c = Call::new(&r);
                for _ in 0..3 {
                    c.exchange();
                }
                assert_eq!(wait_totals(&r, |t| t.kernel_flows == 2).kernel_flows, 2);
                // a third party sending to X's relay port reaches user space, which drops it
                let intruder = client();
                intruder.send_to(&rtp(1, 1, 0xdead), at(c.pair.a)).unwrap();
                c.y.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                assert!(recv(&c.y).is_none(), "foreign source not forwarded");
                c.y.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let t = wait_totals(&r, |t| t.dropped_foreign_source == 1);
                assert_eq!(t.dropped_foreign_source, 1);
                // re-offer: X moves to a new socket (new address in SDP)
                let x2 = client();
                r.set_remote(c.pair.a, x2.local_addr().unwrap(), None)
                    .unwrap();
                let t = wait_totals(&r, |t| t.kernel_flows == 0);
                assert_eq!(t.kernel_flows, 0, "re-offer: back to user space");
                c.x = x2;
                for _ in 0..3 {
                    c.exchange();
                }
                assert_eq!(
                    wait_totals(&r, |t| t.kernel_flows == 2).kernel_flows,
                    2,
                    "settled again on the new address"
                );
                for _ in 0..10 {
                    c.exchange();
                }
                let sa = r.stats(c.pair.a).unwrap();
                assert_eq!(sa.rtp_packets_in, 16);
                assert_eq!(sa.latched, Some(c.x.local_addr().unwrap()));
                r.shutdown();
            }

            #[test]
            fn a_new_ssrc_comes_back_to_user_space_then_returns_to_the_kernel() {
                let Some(r) = start(B, BASE + 300, Duration::from_secs(60), KernelForwarding::On)
                else {
                    return;
                };
                let mut c = Call::new(&r);
                for _ in 0..3 {
                    c.exchange();
                }
                assert_eq!(wait_totals(&r, |t| t.kernel_flows == 2).kernel_flows, 2);
                // X restarts its stream (new SSRC, new sequence): every packet still arrives
                for i in 0..6u16 {
                    let p = rtp(40_000 + i, 9_000 + 160 * i as u32, 0xcccc);
                    c.x.send_to(&p, at(c.pair.a)).unwrap();
                    let (got, from) = recv(&c.y).expect("Y gets the new stream");
                    assert_eq!((got, from), (p, at(c.pair.b)));
                    let q = rtp(c.yseq, c.yseq as u32 * 160, 0xbbbb);
                    c.y.send_to(&q, at(c.pair.b)).unwrap();
                    recv(&c.x).expect("X still gets Y's RTP");
                    c.yseq = c.yseq.wrapping_add(1);
                }
                // the new source is validated and back in the kernel
                let t = wait_totals(&r, |t| t.kernel_flows == 2);
                assert_eq!(t.kernel_flows, 2, "{t:?}");
                let before = r.totals().kernel_packets;
                for i in 6..16u16 {
                    let p = rtp(40_000 + i, 9_000 + 160 * i as u32, 0xcccc);
                    c.x.send_to(&p, at(c.pair.a)).unwrap();
                    assert_eq!(recv(&c.y).expect("kernel path").0, p);
                }
                let sa = r.stats(c.pair.a).unwrap();
                assert_eq!(sa.rtp_packets_in, 3 + 16);
                let t = wait_totals(&r, |t| t.kernel_packets >= before + 10);
                assert!(t.kernel_packets >= before + 10, "{t:?}");
                r.shutdown();
            }

            /// A NATed source (another port than its SDP, on its signalling IP) reaches the
            /// kernel only once learned: nothing is installed while it is in probation, then
            /// both directions are; a sprayer from another IP never rides the kernel path.
            #[test]
            fn a_nat_source_reaches_the_kernel_only_after_probation() {
                let Some(r) = start(B, BASE + 400, Duration::from_secs(60), KernelForwarding::On)
                else {
                    return;
                };
                let mut c = Call::new(&r);
                let sdp_x: SocketAddr = "127.0.0.1:9".parse().unwrap();
                r.set_remote_from(c.pair.a, sdp_x, None, Some(c.x.local_addr().unwrap().ip()))
                    .unwrap();
                // Y is learned at once (its SDP address); its media goes to X's SDP address
                for i in 0..3u16 {
                    c.y.send_to(&rtp(7000 + i, 0, 0xbbbb), at(c.pair.b))
                        .unwrap();
                }
                // X in probation: two packets dropped, nothing in the kernel
                for i in 0..2u16 {
                    c.x.send_to(&rtp(1000 + i, 0, 0xaaaa), at(c.pair.a))
                        .unwrap();
                }
                r.stats(c.pair.a).unwrap();
                let t = wait_totals(&r, |t| t.dropped_probation == 2);
                assert_eq!((t.dropped_probation, t.kernel_flows), (2, 0), "{t:?}");
                c.xseq = 1002;
                c.yseq = 7003;
                for _ in 0..3 {
                    c.exchange();
                }
                let t = wait_totals(&r, |t| t.kernel_flows == 2);
                assert_eq!(
                    t.kernel_flows, 2,
                    "learned: both directions installed: {t:?}"
                );
                let evil = UdpSocket::bind("127.0.0.66:0").unwrap();
                for i in 0..5u16 {
                    evil.send_to(&rtp(1005 + i, 0, 0xaaaa), at(c.pair.a))
                        .unwrap();
                }
                c.exchange();
                let t = wait_totals(&r, |t| t.dropped_foreign_source == 5);
                assert_eq!(t.dropped_foreign_source, 5, "{t:?}");
                assert_eq!(
                    r.stats(c.pair.a).unwrap().latched,
                    Some(c.x.local_addr().unwrap())
                );
                r.shutdown();
            }

            #[test]
            fn off_means_user_space_only() {
                let Some(r) = start(
                    B,
                    BASE + 200,
                    Duration::from_secs(60),
                    KernelForwarding::Off,
                ) else {
                    return;
                };
                assert!(r.kernel_interfaces().is_none());
                let mut c = Call::new(&r);
                for _ in 0..20 {
                    c.exchange();
                }
                let t = wait_totals(&r, |t| t.packets_out == 40);
                assert_eq!(
                    (t.packets_out, t.kernel_flows, t.kernel_packets),
                    (40, 0, 0)
                );
                r.shutdown();
            }
        }
    };
}

kernel_tests!(epoll, Backend::Epoll, 47000);
kernel_tests!(io_uring, Backend::IoUring, 47500);

// ---------------------------------------------------------------------------------------------
// Across network namespaces: the routed (non-loopback) paths of the program

mod netns {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::process::Command;

    fn ip(args: &[&str]) {
        let st = Command::new("ip")
            .args(args)
            .status()
            .expect("ip (iproute2)");
        assert!(st.success(), "ip {args:?} failed");
    }

    /// Named namespaces for the two endpoints, deleted (with their veth ends) on drop.
    struct Hosts {
        names: Vec<String>,
    }

    impl Drop for Hosts {
        fn drop(&mut self) {
            for n in &self.names {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
        }
    }

    /// A UDP socket bound to `addr` inside the named namespace `ns`.
    fn socket_in(ns: &str, addr: &str) -> UdpSocket {
        let path = format!("/run/netns/{ns}");
        let addr = addr.to_string();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("netns handle");
            // SAFETY: setns on this (short-lived) thread only, with a valid namespace fd.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let s = UdpSocket::bind(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1000)))
                .unwrap();
            s
        })
        .join()
        .unwrap()
    }

    /// Relay in its own namespace with two routed interfaces: A (10.77.1.2) behind `ra`
    /// (10.77.1.1, the media address) and B (10.77.2.2) behind `rb` (10.77.2.1). B reaches
    /// the media address through `rb`, so once in the kernel, B -> A packets arrive on one
    /// interface and must leave through the other (route lookup + neighbour redirect), and A's
    /// packets to a peer on the relay host itself must go through loopback. Both checked.
    #[test]
    fn kernel_path_routes_between_interfaces_and_to_local_peers() {
        let body = || {
            // SAFETY: moves only this test's thread into a fresh network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                if std::env::var_os("TRUNKLINE_NO_BPF").is_some() {
                    println!("SKIP (TRUNKLINE_NO_BPF): unshare: {e}");
                    return;
                }
                panic!("unshare(CLONE_NEWNET): {e} (needs root)");
            }
            let tag = format!("{}", std::process::id());
            let (na, nb) = (format!("tlka{tag}"), format!("tlkb{tag}"));
            ip(&["link", "set", "lo", "up"]);
            let _hosts = Hosts {
                names: vec![na.clone(), nb.clone()],
            };
            for (ns, r, e, net) in [(&na, "ra", "ea", "10.77.1"), (&nb, "rb", "eb", "10.77.2")] {
                ip(&["netns", "add", ns]);
                ip(&["link", "add", r, "type", "veth", "peer", "name", e]);
                ip(&["link", "set", e, "netns", ns]);
                ip(&["addr", "add", &format!("{net}.1/24"), "dev", r]);
                ip(&["link", "set", r, "up"]);
                ip(&["-n", ns, "link", "set", "lo", "up"]);
                ip(&["-n", ns, "addr", "add", &format!("{net}.2/24"), "dev", e]);
                ip(&["-n", ns, "link", "set", e, "up"]);
                ip(&[
                    "-n",
                    ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("{net}.1"),
                ]);
            }
            let cfg = RelayConfig {
                address: "10.77.1.1".parse().unwrap(),
                port_min: 40000,
                port_max: 40099,
                backend: Backend::Epoll,
                workers: 1,
                timeout: Duration::from_secs(60),
                strict_source: false,
            };
            let tuning = RelayTuning {
                kernel_forwarding: KernelForwarding::On,
                ..RelayTuning::default()
            };
            let r = Relay::start_with(cfg, &tuning).expect("relay with the kernel path");
            let ifs = r.kernel_interfaces().unwrap().to_vec();
            for want in ["lo", "ra", "rb"] {
                assert!(ifs.iter().any(|i| i == want), "{want} in {ifs:?}");
            }
            let media = |port: u16| -> SocketAddr { format!("10.77.1.1:{port}").parse().unwrap() };
            // `kernel`: how many of the 80 packets must have gone through the kernel at least
            let run = |x: &UdpSocket, y: &UdpSocket, kernel: u64| {
                let pair = r.open_pair().unwrap();
                r.set_remote(pair.a, x.local_addr().unwrap(), None).unwrap();
                r.set_remote(pair.b, y.local_addr().unwrap(), None).unwrap();
                let before = r.totals().kernel_packets;
                for i in 0..40u16 {
                    let p = rtp(i, i as u32 * 160, 0x1111);
                    x.send_to(&p, media(pair.a)).unwrap();
                    let (got, from) = recv(y).unwrap_or_else(|| panic!("y misses packet {i}"));
                    assert_eq!((got, from), (p, media(pair.b)));
                    let q = rtp(500 + i, i as u32 * 160, 0x2222);
                    y.send_to(&q, media(pair.b)).unwrap();
                    let (got, from) = recv(x).unwrap_or_else(|| panic!("x misses packet {i}"));
                    assert_eq!((got, from), (q, media(pair.a)));
                }
                let sa = r.stats(pair.a).unwrap();
                assert_eq!(sa.rtp_packets_in, 40);
                let t = wait_totals(&r, |t| t.kernel_packets >= before + kernel);
                assert!(
                    t.kernel_packets >= before + kernel,
                    "{kernel} packets through the kernel: {t:?}"
                );
                r.close_pair(pair);
            };
            // A (outside, via ra) <-> B (outside, via rb): both directions in the kernel
            let a = socket_in(&na, "10.77.1.2:0");
            let b = socket_in(&nb, "10.77.2.2:0");
            run(&a, &b, 70);
            // A (outside) <-> a peer on the relay's own host and address: A's packets go up
            // through user space (the kernel can only hand a packet to a local socket on the
            // loopback interface), the local peer's leave through the kernel out of `ra`
            let local = UdpSocket::bind("10.77.1.1:0").unwrap();
            local
                .set_read_timeout(Some(Duration::from_millis(1000)))
                .unwrap();
            run(&a, &local, 35);
            r.shutdown();
        };
        std::thread::spawn(body).join().unwrap();
    }
}
