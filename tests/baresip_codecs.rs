//! Real phones with no codec in common: baresip with only G.722 (its g722 module, spandsp's
//! coder) calls baresip with only G.711 through trunkline, whose trunk to the callee says
//! `codecs: [PCMA]`. trunkline transcodes G.722 ↔ A-law in its relay. What reaches each phone
//! (captured on the wire with tshark) carries the other's tone: 1 kHz from the caller as
//! A-law, 500 Hz from the callee as G.722, checked with a Goertzel filter after decoding with
//! the project's codecs (bit-exact with spandsp's, `codec_interop.rs`; baresip 1.0's sndfile
//! module writes what a phone encodes and decodes into one file, so it cannot say).

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

#[test]
fn g722_phone_and_g711_phone_hear_each_other_through_the_transcoder() {
    isolated(
        "g722_phone_and_g711_phone_hear_each_other_through_the_transcoder",
        false,
        |net| {
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
            let a = Baresip::start(
                net,
                &phone(
                    "alice",
                    alice,
                    net.spare(70),
                    Some(net.spare(66)),
                    1000,
                    &["g722"],
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
                || frames(net, "G722", "PCMA") >= 150.0 && frames(net, "PCMA", "G722") >= 150.0,
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
            // what reached alice: G.722 (spandsp's decoder is bit-exact with ours)
            let to_alice = rtp_to(&pcap, net.spare(70)..=net.spare(70) + 9);
            assert!(to_alice.len() >= 120, "{} packets to alice", to_alice.len());
            assert!(to_alice.iter().all(|p| p[1] & 0x7f == 9), "G.722 only");
            let mut dec = codecs::g722::Decoder::new();
            let mut pcm = Vec::new();
            for p in &to_alice {
                let mut w = vec![0i16; (p.len() - 12) * 2];
                dec.decode(&p[12..], &mut w);
                pcm.extend(w);
            }
            let at_alice = share(&pcm[16000..], 500.0, 16000.0);
            // what reached bob: A-law
            let to_bob = rtp_to(&pcap, net.spare(80)..=net.spare(80) + 9);
            assert!(to_bob.len() >= 120, "{} packets to bob", to_bob.len());
            assert!(to_bob.iter().all(|p| p[1] & 0x7f == 8), "A-law only");
            let mut pcm = Vec::new();
            for p in &to_bob {
                let mut w = vec![0i16; p.len() - 12];
                codecs::g711::decode_alaw(&p[12..], &mut w);
                pcm.extend(w);
            }
            let at_bob = share(&pcm[8000..], 1000.0, 8000.0);
            assert!(
                at_alice > 0.5,
                "alice (G.722) hears bob's 500 Hz: {at_alice:.3}"
            );
            assert!(at_bob > 0.5, "bob (A-law) hears alice's 1 kHz: {at_bob:.3}");
            tl.assert_alive();
        },
    );
}
