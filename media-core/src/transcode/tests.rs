use super::*;
use codecs::{g711, g722};

const SSRC: u32 = 0x1122_3344;

fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; RTP_HEADER];
    header(&mut p, marker, pt, seq, ts, SSRC);
    p.extend_from_slice(payload);
    p
}

fn tone(freq: f64, rate: f64, n: usize, start: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| (9000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
        .collect()
}

/// Power of `freq` in `x` (Goertzel), normalised by the signal's power: 1.0 for a pure tone.
fn share(x: &[i16], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s = v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let p = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let e: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    2.0 * p / (e * x.len() as f64)
}

fn spec(from: Codec, to: Codec, ptime_ms: u16) -> Spec {
    Spec {
        from,
        from_pt: from.static_pt(),
        to,
        to_pt: to.static_pt(),
        ptime_ms,
        events: None,
        inband: Inband::Off,
    }
}

fn pop_all(t: &mut Transcoder) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(n) = t.pop(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn field(p: &[u8]) -> (bool, u8, u16, u32, u32) {
    let r = parse(p).expect("rtp");
    (r.marker, r.pt, r.seq, r.ts, r.ssrc)
}

#[test]
fn alaw_to_ulaw_keeps_numbering_and_the_tone() {
    let mut t = Transcoder::new(spec(Codec::Pcma, Codec::Pcmu, 20));
    let mut heard = Vec::new();
    for i in 0..25u16 {
        let pcm = tone(1000.0, 8000.0, 160, i as usize * 160);
        let mut a = vec![0u8; 160];
        g711::encode_alaw(&pcm, &mut a);
        let ts = 8000 + 160 * i as u32;
        assert_eq!(t.push(&rtp(8, 500 + i, ts, i == 0, &a)), Ok(1));
        let out = pop_all(&mut t);
        assert_eq!(out.len(), 1);
        let (m, pt, seq, ots, ssrc) = field(&out[0]);
        assert_eq!((m, pt, seq, ots, ssrc), (i == 0, 0, 500 + i, ts, SSRC));
        let mut lin = vec![0i16; 160];
        g711::decode_ulaw(&out[0][12..], &mut lin);
        heard.extend(lin);
    }
    assert!(share(&heard, 1000.0, 8000.0) > 0.95);
    assert_eq!(t.frames(), 25);
}

#[test]
fn g722_to_alaw_and_back_is_the_same_tone() {
    // a 16 kHz tone encoded as a G.722 phone would
    let mut enc = g722::Encoder::new();
    let mut fwd = Transcoder::new(spec(Codec::G722, Codec::Pcma, 20));
    let mut back = Transcoder::new(spec(Codec::Pcma, Codec::G722, 20));
    let mut at_8k = Vec::new();
    let mut at_16k = Vec::new();
    let mut dec = g722::Decoder::new();
    for i in 0..50u16 {
        let pcm = tone(700.0, 16000.0, 320, i as usize * 320);
        let mut g = vec![0u8; 160];
        enc.encode(&pcm, &mut g);
        fwd.push(&rtp(9, i, 160 * i as u32, false, &g))
            .expect("a frame");
        for p in pop_all(&mut fwd) {
            assert_eq!(p.len(), 12 + 160);
            let mut lin = vec![0i16; 160];
            g711::decode_alaw(&p[12..], &mut lin);
            at_8k.extend(lin);
            // and on to a G.722 receiver
            back.push(&p).expect("a frame");
            for q in pop_all(&mut back) {
                assert_eq!(field(&q).1, 9);
                let mut w = vec![0i16; 320];
                dec.decode(&q[12..], &mut w);
                at_16k.extend(w);
            }
        }
    }
    assert_eq!(at_8k.len(), 8000);
    assert!(share(&at_8k[800..], 700.0, 8000.0) > 0.9);
    assert!(share(&at_16k[1600..], 700.0, 16000.0) > 0.9);
    // nothing above the narrow band was invented on the way back up
    assert!(share(&at_16k[1600..], 7300.0, 16000.0) < 0.01);
}

#[test]
fn ptime_20_to_30_and_30_to_20() {
    let mut t = Transcoder::new(spec(Codec::Pcmu, Codec::Pcma, 30));
    let mut got = Vec::new();
    for i in 0..6u16 {
        let r = t.push(&rtp(0, 10 + i, 160 * i as u32, i == 0, &[0xff; 160]));
        got.extend(pop_all(&mut t));
        // 20 ms in: a 30 ms frame after the 2nd, 3rd, 5th and 6th packet
        assert_eq!(r.is_ok(), i % 3 != 0, "packet {i}: {r:?}");
    }
    let f: Vec<_> = got.iter().map(|p| field(p)).collect();
    assert_eq!(f.len(), 4);
    for (k, (m, pt, seq, ts, _)) in f.iter().enumerate() {
        assert_eq!(
            (*m, *pt, *seq, *ts),
            (k == 0, 8, 10 + k as u16, 240 * k as u32)
        );
        assert_eq!(got[k].len(), 12 + 240);
    }

    let mut t = Transcoder::new(spec(Codec::Pcma, Codec::Pcmu, 20));
    assert_eq!(t.push(&rtp(8, 0, 0, false, &[0xd5; 240])), Ok(1));
    assert_eq!(pop_all(&mut t).len(), 1);
    assert_eq!(t.push(&rtp(8, 1, 240, false, &[0xd5; 240])), Ok(2));
    let two = pop_all(&mut t);
    assert_eq!(
        two.iter().map(|p| field(p).3).collect::<Vec<_>>(),
        [160, 320]
    );
}

#[test]
fn events_are_relayed_with_the_receivers_payload_type_and_cn_is_not() {
    let mut s = spec(Codec::Pcma, Codec::Pcmu, 20);
    s.events = Some((101, 96));
    let mut t = Transcoder::new(s);
    let ev = codecs::dtmf::TelephoneEvent {
        event: 5,
        end: false,
        volume: 10,
        duration: 160,
    }
    .encode();
    assert_eq!(t.push(&rtp(101, 7, 1000, true, &ev)), Ok(1));
    let out = pop_all(&mut t);
    assert_eq!(out.len(), 1);
    assert_eq!(field(&out[0]), (true, 96, 7, 1000, SSRC));
    assert_eq!(&out[0][12..], &ev);
    // comfort noise and unknown payload types are never sent into PCMU
    assert_eq!(
        t.push(&rtp(13, 8, 1160, false, &[40])),
        Err(Skip::Unsupported)
    );
    assert_eq!(
        t.push(&rtp(18, 9, 1160, false, &[1; 20])),
        Err(Skip::Unsupported)
    );
    // without negotiated events on both sides, events are dropped too
    let mut t = Transcoder::new(spec(Codec::Pcma, Codec::Pcmu, 20));
    assert_eq!(
        t.push(&rtp(101, 7, 1000, true, &ev)),
        Err(Skip::Unsupported)
    );
}

#[test]
fn runs_sources_and_late_packets() {
    let mut t = Transcoder::new(spec(Codec::Pcma, Codec::Pcmu, 20));
    t.push(&rtp(8, 1, 0, false, &[0xd5; 160])).unwrap();
    t.push(&rtp(8, 2, 160, false, &[0xd5; 160])).unwrap();
    let f: Vec<_> = pop_all(&mut t).iter().map(|p| field(p)).collect();
    assert!(f[0].0, "the first packet starts a run");
    assert!(!f[1].0);
    // a duplicate and an older packet
    assert_eq!(
        t.push(&rtp(8, 2, 160, false, &[0xd5; 160])),
        Err(Skip::Late)
    );
    assert_eq!(
        t.push(&rtp(8, 0, 4_294_967_136, false, &[0xd5; 160])),
        Err(Skip::Late)
    );
    // after a silence (timestamp jump) the marker is set again
    t.push(&rtp(8, 3, 8000, false, &[0xd5; 160])).unwrap();
    let f = field(&pop_all(&mut t)[0]);
    assert_eq!((f.0, f.2, f.3), (true, 3, 8000));
    // a new SSRC: numbering follows the new source
    let mut p = rtp(8, 900, 77, false, &[0xd5; 160]);
    p[8..12].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(t.push(&p), Ok(1));
    let f = field(&pop_all(&mut t)[0]);
    assert_eq!((f.0, f.2, f.3, f.4), (true, 900, 77, 7));
}

#[test]
fn header_extensions_csrcs_and_padding_are_parsed_and_dropped() {
    let mut t = Transcoder::new(spec(Codec::Pcma, Codec::Pcmu, 20));
    let mut p = vec![0xb1, 8, 0, 1, 0, 0, 0, 0];
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one-word extension
    p.extend_from_slice(&[0xd5; 160]);
    p.extend_from_slice(&[0, 0, 3]); // three octets of padding
    assert_eq!(t.push(&p), Ok(1));
    let out = pop_all(&mut t);
    assert_eq!(out[0].len(), 12 + 160);
    assert_eq!(out[0][0], 0x80);
}

#[test]
fn garbage_never_panics() {
    let mut t = Transcoder::new(spec(Codec::G722, Codec::Pcmu, 30));
    for bad in [
        &[][..],
        &[0x80, 9, 0, 1],
        &[0x40; 40],
        &[0x8f; 20],                                    // 15 CSRCs past the end
        &[0x90, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // extension past the end
        &[0xa0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200],  // padding longer than the packet
    ] {
        assert_eq!(t.push(bad), Err(Skip::Malformed), "{bad:?}");
    }
    assert_eq!(
        t.push(&rtp(9, 1, 0, false, &[0; MAX_PAYLOAD + 1])),
        Err(Skip::Malformed)
    );
    let mut x: u32 = 99;
    let mut buf = [0u8; 1500];
    for n in 0..5000usize {
        let p: Vec<u8> = (0..(n % 400))
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let _ = t.push(&p);
        while t.pop(&mut buf).is_some() {}
    }
    // a too small output buffer is refused, not overrun
    t.push(&rtp(9, 5, 0, false, &[0; 240])).ok();
    let mut small = [0u8; 20];
    assert_eq!(t.pop(&mut small), None);
}

fn inband(from: Codec, to: Codec, inband: Inband) -> Transcoder {
    Transcoder::new(Spec {
        inband,
        ..spec(from, to, 20)
    })
}

fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
    codecs::dtmf::TelephoneEvent {
        event: code,
        end,
        volume: 10,
        duration,
    }
    .encode()
}

#[test]
fn events_become_tones_for_a_side_without_them() {
    let mut t = inband(Codec::Pcmu, Codec::Pcma, Inband::Generate(101));
    let silence = [0xffu8; 160];
    assert_eq!(t.push(&rtp(0, 1, 0, false, &silence)), Ok(1));
    pop_all(&mut t);
    // digit 5 from ts 160 for 60 ms, updates every 20 ms, the end three times
    let mut out = Vec::new();
    for (k, d) in [160u16, 320, 480].into_iter().enumerate() {
        let end = k == 2;
        t.push(&rtp(101, 2 + k as u16, 160, k == 0, &event(5, end, d)))
            .expect("a frame of tone");
        out.extend(pop_all(&mut t));
        if k == 1 {
            // the sender's audio while the event lasts is muted
            assert_eq!(t.push(&rtp(0, 9, 480, false, &silence)), Err(Skip::Late));
        }
    }
    for k in 0..2 {
        let r = t.push(&rtp(101, 5 + k, 160, false, &event(5, true, 480)));
        assert_eq!(r, Err(Skip::Late), "the end's retransmissions make nothing");
    }
    assert_eq!(out.len(), 3, "60 ms of tone in 20 ms frames");
    let mut pcm = Vec::new();
    for (i, p) in out.iter().enumerate() {
        let (_, pt, _, ts, _) = field(p);
        assert_eq!((pt, ts), (8, 160 + 160 * i as u32));
        let mut lin = vec![0i16; 160];
        g711::decode_alaw(&p[12..], &mut lin);
        pcm.extend(lin);
    }
    let mut found = Vec::new();
    let mut det = codecs::tones::Detector::new(8000);
    det.process(&pcm, |c| found.push(c));
    det.process(&[0; 800], |c| found.push(c));
    use codecs::tones::Change;
    assert_eq!(found, [Change::Start(5), Change::Stop(5)]);
    // audio after the event goes on
    assert_eq!(t.push(&rtp(0, 10, 640, false, &silence)), Ok(1));
}

#[test]
fn tones_become_events_for_a_side_that_wants_them() {
    let mut t = inband(Codec::Pcma, Codec::Pcmu, Inband::Detect(101));
    let mut pcm = Vec::new();
    codecs::tones::generate(7, 10, 8000, 0, 800, &mut pcm); // 100 ms of '7'
    pcm.extend(std::iter::repeat_n(0i16, 1600)); // 200 ms of silence
    let mut events = Vec::new();
    let mut loud_audio = 0;
    for (i, chunk) in pcm.chunks(160).enumerate() {
        let mut a = vec![0u8; 160];
        g711::encode_alaw(chunk, &mut a);
        t.push(&rtp(8, i as u16, 160 * i as u32, false, &a)).ok();
        for p in pop_all(&mut t) {
            let (m, pt, _, ts, _) = field(&p);
            if pt == 101 {
                events.push((
                    m,
                    ts,
                    codecs::dtmf::TelephoneEvent::parse(&p[12..]).unwrap(),
                ));
            } else {
                let mut lin = vec![0i16; 160];
                g711::decode_ulaw(&p[12..], &mut lin);
                loud_audio += lin.iter().filter(|s| s.abs() > 2000).count();
            }
        }
    }
    assert!(events.len() >= 5, "{events:?}");
    let (m, ts0, first) = events[0];
    assert!(m, "the start has the marker");
    assert_eq!((first.event, first.end), (7, false));
    assert!(events.iter().all(|(_, ts, e)| *ts == ts0 && e.event == 7));
    let ends: Vec<_> = events.iter().filter(|(_, _, e)| e.end).collect();
    assert_eq!(ends.len(), 3, "the end three times: {events:?}");
    assert!(ends[0].2.duration >= 400, "{:?}", ends[0]);
    // the durations grow, never shrink
    assert!(events
        .windows(2)
        .all(|w| w[1].2.duration >= w[0].2.duration));
    // the tone is muted once found (the first ~50 ms go through before it is recognised)
    assert!(loud_audio <= 480, "{loud_audio} loud samples");
}

/// Opus (libopus, `--features opus`) to and from G.711 and G.722: the tone survives, the RTP
/// clock changes (48 kHz Opus, 8 kHz the others: 960 ticks a 20 ms frame against 160), and the
/// numbering stays the sender's.
#[cfg(feature = "opus")]
#[test]
fn opus_to_alaw_and_back_keeps_the_tone_and_rescales_the_clock() {
    let mut enc = opus::Encoder::new(16000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut dec = opus::Decoder::new(16000, opus::Channels::Mono).unwrap();
    let opus_spec = |from: Codec, to: Codec| Spec {
        from_pt: if from == Codec::Opus {
            111
        } else {
            from.static_pt()
        },
        to_pt: if to == Codec::Opus {
            111
        } else {
            to.static_pt()
        },
        ..spec(from, to, 20)
    };
    let mut fwd = Transcoder::new(opus_spec(Codec::Opus, Codec::Pcma));
    let mut back = Transcoder::new(opus_spec(Codec::Pcma, Codec::Opus));
    let mut to_g722 = Transcoder::new(opus_spec(Codec::Opus, Codec::G722));
    let (mut at_8k, mut back_16k, mut wide) = (Vec::new(), Vec::new(), Vec::new());
    let mut g722_dec = g722::Decoder::new();
    for i in 0..50u16 {
        let pcm = tone(600.0, 16000.0, 320, i as usize * 320);
        let mut pkt = vec![0u8; 400];
        let n = enc.encode(&pcm, &mut pkt).unwrap();
        let ts = 48_000 + 960 * i as u32;
        let p = rtp(111, 7000 + i, ts, i == 0, &pkt[..n]);
        assert_eq!(fwd.push(&p), Ok(1), "packet {i}");
        assert_eq!(to_g722.push(&p), Ok(1));
        for q in pop_all(&mut to_g722) {
            let mut w = vec![0i16; 320];
            g722_dec.decode(&q[12..], &mut w);
            wide.extend(w);
        }
        for a in pop_all(&mut fwd) {
            let (m, pt, seq, ots, _) = field(&a);
            assert_eq!((m, pt, seq), (i == 0, 8, 7000 + i));
            assert_eq!(a.len(), 12 + 160);
            // one 8 kHz frame further per packet, from the first packet's timestamp on
            assert_eq!(ots.wrapping_sub(48_000), 160 * i as u32);
            let mut lin = vec![0i16; 160];
            g711::decode_alaw(&a[12..], &mut lin);
            at_8k.extend(lin);
            back.push(&a).expect("a frame");
            for o in pop_all(&mut back) {
                let (_, pt, _, ots, _) = field(&o);
                assert_eq!(pt, 111);
                assert_eq!(ots.wrapping_sub(48_000) % 960, 0, "48 kHz clock again");
                let mut w = vec![0i16; 960];
                let n = dec.decode(&o[12..], &mut w, false).unwrap();
                assert_eq!(n, 320, "20 ms at 16 kHz");
                back_16k.extend_from_slice(&w[..n]);
            }
        }
    }
    assert_eq!(at_8k.len(), 8000);
    assert!(
        share(&at_8k[1600..], 600.0, 8000.0) > 0.8,
        "{}",
        share(&at_8k[1600..], 600.0, 8000.0)
    );
    assert!(share(&wide[3200..], 600.0, 16000.0) > 0.8);
    assert!(share(&back_16k[3200..], 600.0, 16000.0) > 0.7);
}

/// Garbage in an Opus payload decodes to nothing (or libopus's concealment), never a panic.
#[cfg(feature = "opus")]
#[test]
fn garbage_opus_is_dropped() {
    let mut t = Transcoder::new(Spec {
        from_pt: 111,
        ..spec(Codec::Opus, Codec::Pcmu, 20)
    });
    for i in 0..200u16 {
        let junk: Vec<u8> = (0..(i % 60) as u8)
            .map(|b| b.wrapping_mul(37) ^ 0xa5)
            .collect();
        let _ = t.push(&rtp(111, i, 960 * i as u32, false, &junk));
        pop_all(&mut t);
    }
}

fn event_packet(pt: u8, seq: u16, ts: u32, marker: bool, code: u8, end: bool, d: u16) -> Vec<u8> {
    let ev = codecs::dtmf::TelephoneEvent {
        event: code,
        end,
        volume: 10,
        duration: d,
    };
    rtp(pt, seq, ts, marker, &ev.encode())
}

/// `dtmf: info` on the receiving side: the sender's events are reported once each, when
/// they end (or when the next one starts, their end lost), never sent on.
#[test]
fn events_for_a_sip_info_side_are_reported_not_sent() {
    let mut t = Transcoder::new(Spec {
        inband: Inband::Report(101),
        ..spec(Codec::Pcmu, Codec::Pcmu, 20)
    });
    let audio = vec![0xffu8; 160];
    assert_eq!(t.push(&rtp(0, 1, 0, true, &audio)), Ok(1));
    pop_all(&mut t);
    // digit 5 for 800 ticks (100 ms), its end sent three times
    for (i, (d, end)) in [
        (160, false),
        (480, false),
        (800, true),
        (800, true),
        (800, true),
    ]
    .into_iter()
    .enumerate()
    {
        let p = event_packet(101, 2 + i as u16, 160, i == 0, 5, end, d);
        assert_eq!(t.push(&p), Err(Skip::Signalled));
        assert!(pop_all(&mut t).is_empty(), "nothing sent on");
    }
    assert_eq!(
        t.take_dtmf(),
        Some(Dtmf {
            code: 5,
            duration_ms: 100
        })
    );
    assert_eq!(t.take_dtmf(), None, "once");
    // an event whose end is lost: reported when the next starts
    t.push(&event_packet(101, 10, 2000, true, 11, false, 400))
        .ok();
    t.push(&event_packet(101, 11, 4000, true, 1, false, 160))
        .ok();
    assert_eq!(
        t.take_dtmf(),
        Some(Dtmf {
            code: 11,
            duration_ms: 50
        })
    );
}

/// A digit from SIP INFO goes to the receiver as telephone-events paced with the audio: the
/// start with the marker, one update a frame with the duration so far, the end three times,
/// all with the timestamp where it began; the audio meanwhile is silence.
#[test]
fn digits_from_sip_info_are_injected_as_events() {
    let mut t = Transcoder::new(Spec {
        inband: Inband::Inject(96),
        ..spec(Codec::Pcma, Codec::Pcma, 20)
    });
    let mut a = vec![0u8; 160];
    g711::encode_alaw(&tone(1000.0, 8000.0, 160, 0), &mut a);
    assert_eq!(t.push(&rtp(8, 100, 16_000, false, &a)), Ok(1));
    pop_all(&mut t);
    t.inject(Dtmf {
        code: 7,
        duration_ms: 60,
    });
    let mut events = Vec::new();
    let mut silent = true;
    for i in 1..6u16 {
        t.push(&rtp(8, 100 + i, 16_000 + 160 * i as u32, false, &a))
            .ok();
        for p in pop_all(&mut t) {
            let (m, pt, _, ts, _) = field(&p);
            if pt == 96 {
                let ev = codecs::dtmf::TelephoneEvent::parse(&p[12..]).unwrap();
                events.push((m, ts, ev.event, ev.end, ev.duration));
            } else if events.len() < 4 {
                let mut lin = vec![0i16; 160];
                g711::decode_alaw(&p[12..], &mut lin);
                silent &= lin.iter().all(|s| s.abs() < 16);
            }
        }
    }
    assert_eq!(
        events,
        vec![
            (true, 16_160, 7, false, 160),
            (false, 16_160, 7, false, 320),
            (false, 16_160, 7, true, 480),
            (false, 16_160, 7, true, 480),
            (false, 16_160, 7, true, 480),
        ]
    );
    assert!(silent, "the audio under the digit is muted");
    // numbering stays contiguous across events and audio
    let mut t2 = Transcoder::new(Spec {
        inband: Inband::Inject(96),
        ..spec(Codec::Pcma, Codec::Pcma, 20)
    });
    t2.push(&rtp(8, 1, 0, false, &a)).ok();
    t2.inject(Dtmf {
        code: 1,
        duration_ms: 40,
    });
    let mut seqs = Vec::new();
    for i in 0..6u16 {
        t2.push(&rtp(8, 2 + i, 160 * (i as u32 + 1), false, &a))
            .ok();
        seqs.extend(pop_all(&mut t2).iter().map(|p| field(p).2));
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{seqs:?}"
    );
}
