//! SRTP per-packet cost (criterion): what the relay spends on one packet of an SRTP leg, per
//! suite, 160-byte G.711 payload (a 20 ms frame). Decrypt is authenticate + decrypt; a
//! forwarded SRTP<->RTP packet costs one of the two, an SRTP<->SRTP one both.
//!
//! `cargo bench --bench srtp -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use media_relay::srtp::{Context, MasterKey, Suite};

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend(std::iter::repeat_n(0xd5, 160));
    p.resize(p.len() + Suite::MAX_OVERHEAD, 0);
    p
}

fn suites(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    for suite in Suite::ALL {
        let key =
            MasterKey::new(suite, &vec![0x42; suite.key_len() + suite.salt_len()]).expect("key");
        let mut tx = Context::new(&key);
        let mut seq = 0u16;
        g.bench_function(format!("protect/{}", suite.name()), |b| {
            let mut buf = packet(0);
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                black_box(tx.protect_rtp(&mut buf, 172).expect("protect"))
            })
        });
        // A stream of protected packets to unprotect, in order (each once: replays fail).
        let mut sender = Context::new(&key);
        let n = 200_000usize;
        let mut stream: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut p = packet(i as u16);
                let len = sender.protect_rtp(&mut p, 172).expect("protect");
                p.truncate(len);
                p.resize(len + Suite::MAX_OVERHEAD, 0);
                p
            })
            .collect();
        let protected_len = 172 + suite.rtp_overhead();
        let mut rx = Context::new(&key);
        let mut i = 0usize;
        g.bench_function(format!("unprotect/{}", suite.name()), |b| {
            b.iter(|| {
                if i == n {
                    // a fresh receiver for the next pass over the same packets
                    rx = Context::new(&key);
                    i = 0;
                }
                let mut p = stream[i].clone();
                i += 1;
                black_box(rx.unprotect_rtp(&mut p, protected_len).expect("unprotect"))
            })
        });
        stream.clear();
    }
    g.finish();
}

criterion_group!(benches, suites);
criterion_main!(benches);
