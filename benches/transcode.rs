//! Transcoding per packet (criterion): what the relay spends turning one 20 ms RTP packet of
//! one codec into one of another (push + pop of `media_relay::transcode::Transcoder`), and the
//! codecs alone.
//!
//! `cargo bench --bench transcode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use media_relay::transcode::{Codec, Inband, Spec, Transcoder};

fn packet(pt: u8, n: u32, ticks: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    p[4..8].copy_from_slice(&n.wrapping_mul(ticks).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// 20 ms of a 440 Hz tone in `c`.
fn frame(c: Codec) -> Vec<u8> {
    let rate = c.pcm_rate() as usize;
    let pcm: Vec<i16> = (0..rate / 50)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate as f64).sin()) as i16
        })
        .collect();
    let mut out = vec![0u8; 160];
    match c {
        Codec::Pcmu => codecs::g711::encode_ulaw(&pcm, &mut out),
        Codec::Pcma => codecs::g711::encode_alaw(&pcm, &mut out),
        Codec::G722 => {
            codecs::g722::Encoder::new().encode(&pcm, &mut out);
        }
        Codec::Opus => return opus_frame(&pcm),
    }
    out
}

#[cfg(feature = "opus")]
fn opus_frame(pcm: &[i16]) -> Vec<u8> {
    let mut e =
        opus::Encoder::new(16000, opus::Channels::Mono, opus::Application::Voip).expect("libopus");
    let mut out = vec![0u8; 400];
    let n = e.encode(pcm, &mut out).expect("encode");
    out.truncate(n);
    out
}

#[cfg(not(feature = "opus"))]
fn opus_frame(_pcm: &[i16]) -> Vec<u8> {
    Vec::new()
}

fn transcoders(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode");
    g.throughput(Throughput::Elements(1));
    let mut pairs = vec![
        (Codec::Pcmu, Codec::Pcma),
        (Codec::G722, Codec::Pcma),
        (Codec::Pcma, Codec::G722),
        (Codec::G722, Codec::G722),
    ];
    if Codec::OPUS {
        pairs.extend([(Codec::Opus, Codec::Pcma), (Codec::Pcma, Codec::Opus)]);
    }
    for (from, to) in pairs {
        let mut t = Transcoder::new(Spec {
            from,
            from_pt: from.static_pt(),
            to,
            to_pt: to.static_pt(),
            ptime_ms: 20,
            events: None,
            inband: Inband::Off,
        });
        let payload = frame(from);
        let mut seq = 0u32;
        let mut out = [0u8; 1500];
        g.bench_function(format!("{}->{}", from.name(), to.name()), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let p = packet(from.static_pt(), seq, from.clock_rate() / 50, &payload);
                assert_eq!(t.push(&p), Ok(1));
                black_box(t.pop(&mut out))
            })
        });
    }
    let pcm: Vec<i16> = (0..320).map(|i| ((i * 37) % 2000) as i16).collect();
    let mut enc = codecs::g722::Encoder::new();
    let mut bytes = [0u8; 160];
    g.bench_function("g722 encode 20 ms", |b| {
        b.iter(|| black_box(enc.encode(black_box(&pcm), &mut bytes)))
    });
    let mut dec = codecs::g722::Decoder::new();
    let mut samples = [0i16; 320];
    g.bench_function("g722 decode 20 ms", |b| {
        b.iter(|| black_box(dec.decode(black_box(&bytes), &mut samples)))
    });
    let mut down = codecs::resample::Downsampler::new();
    let mut v = Vec::with_capacity(320);
    g.bench_function("16k->8k 20 ms", |b| {
        b.iter(|| {
            v.clear();
            black_box(down.process(black_box(&pcm), &mut v))
        })
    });
    g.finish();
}

criterion_group!(benches, transcoders);
criterion_main!(benches);
