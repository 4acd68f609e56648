//! Relay data-plane benches: the per-packet quality bookkeeping, RTCP parsing, and a packet's
//! round trip through a running relay on loopback for each back end.
//!
//! `cargo bench --bench relay`

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use media_relay::relay::quality::{RtpHeader, RtpReceiver};
use media_relay::relay::rtcp;
use media_relay::{Backend, DataPlane, Relay, RelayConfig};

fn rtp(seq: u16, ts: u32) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
    p
}

fn quality(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut r = RtpReceiver::default();
    let mut seq = 0u16;
    c.bench_function("relay/rtp_loss_jitter_per_packet", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let p = rtp(seq, seq as u32 * 160);
            let h = RtpHeader::parse(black_box(&p)).unwrap();
            r.on_packet(&h, 8000, t0 + Duration::from_millis(20 * seq as u64));
        })
    });
    // SR with one report block + SDES, as most endpoints send.
    let mut sr = vec![0x81u8, 200, 0, 12];
    sr.extend_from_slice(&[0u8; 48]);
    sr.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b']);
    c.bench_function("relay/rtcp_parse_sr_sdes", |b| {
        b.iter(|| {
            let mut n = 0;
            for p in rtcp::packets(black_box(&sr)) {
                if let rtcp::RtcpPacket::Sr { blocks, .. } = p {
                    n += blocks.iter().count();
                }
            }
            n
        })
    });
}

fn roundtrip(c: &mut Criterion) {
    for (name, backend, base) in [
        ("epoll", Backend::Epoll, 26000u16),
        ("io_uring", Backend::IoUring, 26100u16),
    ] {
        let Ok(relay) = Relay::start(RelayConfig {
            address: "127.0.0.1".parse().unwrap(),
            port_min: base,
            port_max: base + 99,
            backend,
            workers: 1,
            timeout: Duration::from_secs(600),
            strict_source: false,
        }) else {
            eprintln!("relay bench: {name} unavailable, skipped");
            continue;
        };
        let pair = relay.open_pair().unwrap();
        let x = UdpSocket::bind("127.0.0.1:0").unwrap();
        let y = UdpSocket::bind("127.0.0.1:0").unwrap();
        y.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        relay
            .set_remote(pair.a, x.local_addr().unwrap(), None)
            .unwrap();
        relay
            .set_remote(pair.b, y.local_addr().unwrap(), None)
            .unwrap();
        let to: SocketAddr = SocketAddr::new("127.0.0.1".parse().unwrap(), pair.a);
        let mut buf = [0u8; 2048];
        let mut seq = 0u16;
        c.bench_function(&format!("relay/loopback_roundtrip_{name}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                x.send_to(&rtp(seq, seq as u32 * 160), to).unwrap();
                y.recv(&mut buf).unwrap()
            })
        });
        relay.shutdown();
    }
}

criterion_group!(benches, quality, roundtrip);
criterion_main!(benches);
