//! Real phones with no codec in common: a baresip with only G.722 (its g722 module, spandsp's
//! coder), or only Opus (its opus module, libopus), calls a baresip with only G.711 through
//! trunkline, whose trunk to the callee says `codecs: [PCMA]`. trunkline transcodes in its
//! relay (G.722 ↔ A-law; Opus, 48 kHz RTP clock, ↔ A-law, 8 kHz). What reaches each phone
//! (captured on the wire with tshark) carries the other's tone: 1 kHz from the caller as
//! A-law, 500 Hz from the callee as G.722 or Opus, checked with a Goertzel filter after decoding
//! with the project's codecs (bit-exact with spandsp's, `codec_interop.rs`) or libopus (baresip
//! 1.0's sndfile module writes what a phone encodes and decodes into one file, so it cannot
//! say). The Opus case needs the `opus` feature (the test script builds with it); without it
//! it fails, it does not skip.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn frames(net: &Net, from: &str, to: &str) -> f64 {
    metric(
        &scrape(net),
        "trunkline_transcode_frames_total",
        &[("from", from), ("to", to)],
    )
    .unwrap_or(0.0)
}

/// alice (only baresip module `module`, the codec the relay calls `codec`) calls bob (only
/// G.711) through a trunk with `codecs: [PCMA]`; 3 s of audio each way, transcoded, then
/// alice hangs up. The RTP that reached alice and bob.
fn call_through_the_transcoder(net: &Net, module: &str, codec: &str) -> [Vec<Vec<u8>>; 2] {
    let (alice, bob) = (net.spare(60), net.spare(62));
    let t = [Trunk {
        name: "pbx",
        port: bob,
    }];
    let to_pbx: &[&str] = &["pbx"];
    let y = config_yaml_rules(net, &t, &[(".*", to_pbx)]);
    let y = with_metrics(net, &with_trunk_keys(&y, "pbx", bob, "codecs: [PCMA]"), "");
    let mut tl = Trunkline::start(net, &y);
    let phone = |name, sip, rtp, ctrl, tone, codecs| Phone {
        name,
        sip,
        rtp,
        account: format!("<sip:{name}@127.0.0.1:{sip}>;regint=0;answermode=auto"),
        ctrl,
        tone,
        modules: codecs,
        ..Phone::default()
    };
    let modules = [module];
    let a = Baresip::start(
        net,
        &phone(
            "alice",
            alice,
            net.spare(70),
            Some(net.spare(66)),
            1000,
            &modules,
        ),
    );
    let _b = Baresip::start(
        net,
        &phone(
            "bob",
            bob,
            net.spare(80),
            Some(net.spare(67)),
            500,
            &["g711"],
        ),
    );
    wait_udp_bound(bob, Duration::from_secs(10));
    require_tshark();
    let pcap = net.dir.join("rtp.pcap");
    let filter = format!(
        "udp and (dst portrange {}-{} or dst portrange {}-{})",
        net.spare(70),
        net.spare(70) + 9,
        net.spare(80),
        net.spare(80) + 9
    );
    let cap = capture_filtered(&pcap, &net.dir.join("tshark.log"), &filter);
    let r = a.command("dial", &format!("sip:bob@127.0.0.1:{}", net.sip()));
    assert!(r.contains("\"ok\":true"), "dial: {r}");
    // 3 s of audio each way (50 frames/s)
    let talked = poll_until(
        Instant::now() + Duration::from_secs(15),
        Duration::from_millis(100),
        || frames(net, codec, "PCMA") >= 150.0 && frames(net, "PCMA", codec) >= 150.0,
    );
    assert!(
        talked,
        "transcoded both ways; trunkline log:\n{}\nmetrics:\n{}",
        tl.log_tail(30),
        scrape(net)
    );
    let r = a.command("hangup", "");
    assert!(r.contains("\"ok\":true"), "hangup: {r}");
    let ended = poll_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(100),
        || metric(&scrape(net), "trunkline_active_calls", &[]) == Some(0.0),
    );
    assert!(ended, "{}", scrape(net));
    stop_capture(cap);
    tl.assert_alive();
    let to_alice = rtp_to(&pcap, net.spare(70)..=net.spare(70) + 9);
    let to_bob = rtp_to(&pcap, net.spare(80)..=net.spare(80) + 9);
    assert!(to_alice.len() >= 120, "{} packets to alice", to_alice.len());
    assert!(to_bob.len() >= 120, "{} packets to bob", to_bob.len());
    [to_alice, to_bob]
}

/// What reached bob, A-law only, carries alice's 1 kHz.
fn assert_bob_hears_alice(to_bob: &[Vec<u8>]) {
    assert!(to_bob.iter().all(|p| p[1] & 0x7f == 8), "A-law only");
    let mut pcm = Vec::new();
    for p in to_bob {
        let mut w = vec![0i16; p.len() - 12];
        codecs::g711::decode_alaw(&p[12..], &mut w);
        pcm.extend(w);
    }
    let at_bob = share(&pcm[8000..], 1000.0, 8000.0);
    assert!(at_bob > 0.5, "bob (A-law) hears alice's 1 kHz: {at_bob:.3}");
}

#[test]
fn g722_phone_and_g711_phone_hear_each_other_through_the_transcoder() {
    isolated(
        "g722_phone_and_g711_phone_hear_each_other_through_the_transcoder",
        false,
        |net| {
            let [to_alice, to_bob] = call_through_the_transcoder(net, "g722", "G722");
            // what reached alice: G.722 (spandsp's decoder is bit-exact with ours)
            assert!(to_alice.iter().all(|p| p[1] & 0x7f == 9), "G.722 only");
            let mut dec = codecs::g722::Decoder::new();
            let mut pcm = Vec::new();
            for p in &to_alice {
                let mut w = vec![0i16; (p.len() - 12) * 2];
                dec.decode(&p[12..], &mut w);
                pcm.extend(w);
            }
            let at_alice = share(&pcm[16000..], 500.0, 16000.0);
            assert!(
                at_alice > 0.5,
                "alice (G.722) hears bob's 500 Hz: {at_alice:.3}"
            );
            assert_bob_hears_alice(&to_bob);
        },
    );
}

#[cfg(not(feature = "opus"))]
#[test]
fn opus_transcoding_needs_the_opus_feature() {
    panic!(
        "built without Opus: run the tests as scripts/test.sh does (cargo test --features opus, \
         libopus-dev from scripts/install-deps.sh)"
    );
}

#[cfg(feature = "opus")]
#[test]
fn opus_phone_and_g711_phone_hear_each_other_through_the_transcoder() {
    isolated(
        "opus_phone_and_g711_phone_hear_each_other_through_the_transcoder",
        false,
        |net| {
            let [to_alice, to_bob] = call_through_the_transcoder(net, "opus", "opus");
            // what reached alice: Opus, on trunkline's 48 kHz timeline
            let pt = to_alice[0][1] & 0x7f;
            assert!((96..=127).contains(&pt), "a dynamic payload type: {pt}");
            assert!(to_alice.iter().all(|p| p[1] & 0x7f == pt), "Opus only");
            let ts = |p: &Vec<u8>| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let steps: Vec<u32> = to_alice
                .windows(2)
                .map(|w| ts(&w[1]).wrapping_sub(ts(&w[0])))
                .collect();
            let per_frame = steps.iter().filter(|s| **s == 960).count();
            assert!(
                per_frame * 10 >= steps.len() * 9,
                "960 ticks (20 ms at 48 kHz) a packet"
            );
            let mut dec = opus::Decoder::new(16000, opus::Channels::Mono).expect("libopus");
            let mut pcm = Vec::new();
            for p in &to_alice {
                let mut w = vec![0i16; 1920];
                let n = dec
                    .decode(&p[12..], &mut w, false)
                    .expect("Opus from trunkline");
                pcm.extend_from_slice(&w[..n]);
            }
            let at_alice = share(&pcm[16000..], 500.0, 16000.0);
            assert!(
                at_alice > 0.5,
                "alice (Opus) hears bob's 500 Hz: {at_alice:.3}"
            );
            assert_bob_hears_alice(&to_bob);
        },
    );
}
