//! srtpload: paced SRTP ↔ RTP load through a relay that bridges them (rtpengine or trunkline
//! over ng, `scripts/ngcalls-srtp.py` sets the calls up), like `benches/rtpload.c` for plain
//! RTP: the same output fields, so `scripts/bench-media.sh --srtp` reads both.
//!
//! stdin: one call per line, `pa ra pb rb KEY_A KEY_RELAY`: side A (port pa) speaks SRTP
//! (AES_CM_128_HMAC_SHA1_80) to the relay's ra with its own key KEY_A (`inline:...` of its
//! a=crypto) and decrypts what it gets with the key the relay answered, KEY_RELAY; side B (pb)
//! speaks plain RTP to rb. Each leg sends `--pps` 172-byte RTP packets (160-byte payload whose
//! first 8 bytes are the send time) per second for `--seconds`, on random ticks about 1 ms
//! apart as `benches/rtpload.c` does (`--per-packet`: each at its own time, as the shared
//! rtpblast.c), then drains for 0.5 s; loss and
//! one-way latency (p50, p99, max) are over both directions. A packet to side A that does not
//! authenticate is counted as `nonrtp`. Bounded in count and time; loopback only.
//!
//! `cargo run --release --example srtpload -- --pps 50 --seconds 10 < calls.txt`

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use media_relay::srtp::{sdes, Context};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

struct Leg {
    sock: UdpSocket,
    to: SocketAddr,
    seq: u16,
    ts: u32,
    ssrc: u32,
    /// Side A: protects what it sends, unprotects what it gets.
    tx: Option<Context>,
    rx: Option<Context>,
}

fn key(inline: &str) -> media_relay::srtp::MasterKey {
    sdes::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 {inline}"))
        .unwrap_or_else(|e| panic!("srtpload: bad key {inline}: {e:?}"))
        .key
}

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pps = arg(&args, "--pps", 50.0);
    // --per-packet: every packet at its own time (one wake-up per packet, as rtpblast.c)
    let per_packet = args.iter().any(|a| a == "--per-packet");
    let secs = arg(&args, "--seconds", 10.0).min(600.0);
    let mut legs: Vec<Leg> = Vec::new();
    for line in std::io::stdin().lines().map_while(Result::ok) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        let port = |s: &str| s.parse::<u16>().expect("srtpload: a port");
        let local = |p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
        let n = legs.len() as u32;
        for (me, relay, keys) in [
            (port(f[0]), port(f[1]), Some((f[4], f[5]))),
            (port(f[2]), port(f[3]), None),
        ] {
            let sock = UdpSocket::bind(local(me)).expect("srtpload: bind");
            legs.push(Leg {
                sock,
                to: local(relay),
                seq: 0,
                ts: 0,
                ssrc: 0x30000 + n + legs.len() as u32,
                tx: keys.map(|(a, _)| Context::new(&key(a))),
                rx: keys.map(|(_, r)| Context::new(&key(r))),
            });
        }
    }
    if legs.is_empty() {
        eprintln!("srtpload: no calls on stdin");
        std::process::exit(2);
    }
    let mut poll = Poll::new().expect("poll");
    for (i, l) in legs.iter_mut().enumerate() {
        poll.registry()
            .register(&mut l.sock, Token(i), Interest::READABLE)
            .expect("register");
    }
    let n = legs.len();
    let total = (pps * secs) as u64 * n as u64;
    let interval = Duration::from_secs_f64(1.0 / (pps * n as f64));
    let (mut sent, mut recvd, mut bad) = (0u64, 0u64, 0u64);
    let mut lat: Vec<u32> = Vec::with_capacity(total as usize + 16);
    let t0 = Instant::now();
    let drain_end = t0 + Duration::from_secs_f64(secs) + Duration::from_millis(500);
    let mut events = Events::with_capacity(256);
    let mut pkt = [0u8; 256];
    let mut buf = [0u8; 2048];
    let mut cur = 0usize;
    let mut next_tick = t0;
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        let now = Instant::now();
        if now >= drain_end {
            break;
        }
        while now >= next_tick && sent < total && t0 + interval.mul_f64(sent as f64) <= now {
            let l = &mut legs[cur];
            cur = (cur + 1) % n;
            pkt[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            pkt[2..4].copy_from_slice(&l.seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&l.ts.to_be_bytes());
            pkt[8..12].copy_from_slice(&l.ssrc.to_be_bytes());
            l.seq = l.seq.wrapping_add(1);
            l.ts = l.ts.wrapping_add(160);
            pkt[12..172].fill(0xff);
            let at = t0.elapsed().as_nanos() as u64;
            pkt[12..20].copy_from_slice(&at.to_le_bytes());
            let len = match l.tx.as_mut() {
                Some(tx) => tx.protect_rtp(&mut pkt, 172).expect("protect"),
                None => 172,
            };
            let _ = l.sock.send_to(&pkt[..len], l.to);
            sent += 1;
        }
        // sends go out on ticks 0.3-1.7 ms apart (1 ms on average, random so as never to run
        // in step with the scheduler tick), as benches/rtpload.c does: the relay sees the
        // bursts a real mix of calls gives it, not one wake-up per packet
        if per_packet {
            next_tick = now;
        } else if now >= next_tick {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            next_tick = now + Duration::from_micros(300 + rng % 1400);
        }
        let wait = if per_packet && sent < total {
            (t0 + interval.mul_f64(sent as f64)).saturating_duration_since(Instant::now())
        } else {
            next_tick.saturating_duration_since(Instant::now())
        };
        poll.poll(&mut events, Some(wait.max(Duration::from_micros(50))))
            .expect("poll");
        for ev in events.iter() {
            let l = &mut legs[ev.token().0];
            while let Ok((len, _)) = l.sock.recv_from(&mut buf) {
                let len = match l.rx.as_mut() {
                    Some(rx) => match rx.unprotect_rtp(&mut buf, len) {
                        Ok(m) => m,
                        Err(_) => {
                            bad += 1;
                            continue;
                        }
                    },
                    None => len,
                };
                if len < 20 || buf[0] & 0xc0 != 0x80 {
                    bad += 1;
                    continue;
                }
                let mut t = [0u8; 8];
                t.copy_from_slice(&buf[12..20]);
                let at = u64::from_le_bytes(t);
                let d = (t0.elapsed().as_nanos() as u64).saturating_sub(at) / 1000;
                recvd += 1;
                if lat.len() < lat.capacity() {
                    lat.push(d.min(u64::from(u32::MAX)) as u32);
                }
            }
        }
    }
    lat.sort_unstable();
    let pick = |q: usize| {
        lat.get(lat.len().saturating_sub(1) * q / 100)
            .copied()
            .unwrap_or(0)
    };
    let el = secs.max(0.001);
    println!(
        "legs={n} pps_per_leg={pps:.0} seconds={secs:.1} sent={sent} received={recvd} \
         loss_pct={:.3} offered_pps={:.0} lat_us_p50={} lat_us_p99={} lat_us_max={} nonrtp={bad}",
        if sent > 0 {
            100.0 * sent.saturating_sub(recvd) as f64 / sent as f64
        } else {
            0.0
        },
        sent as f64 / el,
        pick(50),
        pick(99),
        pick(100),
    );
}
