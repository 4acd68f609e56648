//! The kernel (eBPF) fast path, end to end over real UDP sockets on 127.0.0.1, with both back
//! ends: flows move into the kernel once both sources settle, packets arrive unchanged from the
//! relay's ports, stats (counts, loss) and the media timeout stay whole, a new offer takes the
//! flows back to user space, and a foreign source never rides the kernel path.
//!
//! Loads a real eBPF program: needs root and Linux 6.6+ (CI runs as root). Without them the
//! tests fail, unless `TRUNKLINE_NO_BPF=1` says this machine cannot (then they print SKIP).

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
        Err(e) if backend == Backend::IoUring && e.to_string().contains("io_uring") => {
            println!("SKIP: kernel refused io_uring: {e}");
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
kernel_tests!(io_uring, Backend::IoUring, 47400);
