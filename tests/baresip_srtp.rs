//! A real SRTP phone: baresip with `mediaenc=srtp-mand` (its srtp module, SDES) calls a
//! plain-RTP baresip through trunkline. Leg A is SRTP, leg B plain RTP: the INVITE to the
//! callee has `RTP/AVP` and no `a=crypto`; on the wire (tshark) nothing readable reaches the
//! caller, and what reaches it, decrypted with the key trunkline gave it in its 200 OK, is the
//! callee's 500 Hz; what reaches the callee in the clear is the caller's 1 kHz (which trunkline
//! could only send on by decrypting the caller's SRTP).

mod common;

use std::time::{Duration, Instant};

use common::*;
use media_relay::srtp::{sdes, Context};

/// The SIP messages of a capture sent to `port` whose text contains `needle`.
fn sip_to(pcap: &std::path::Path, port: u16, needle: &str) -> Vec<String> {
    udp_payloads(pcap)
        .into_iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .filter(|t| t.contains(needle))
        .collect()
}

fn crypto(sip: &str) -> Vec<String> {
    sip.lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn srtp_baresip_and_plain_baresip_hear_each_other() {
    isolated(
        "srtp_baresip_and_plain_baresip_hear_each_other",
        false,
        |net| {
            let (alice, bob) = (net.spare(60), net.spare(62));
            let t = [Trunk {
                name: "pbx",
                port: bob,
            }];
            let to_pbx: &[&str] = &["pbx"];
            let y = with_metrics(net, &config_yaml_rules(net, &t, &[(".*", to_pbx)]), "");
            let mut tl = Trunkline::start(net, &y);
            let a = Baresip::start(
                net,
                &Phone {
                    name: "alice",
                    sip: alice,
                    rtp: net.spare(70),
                    account: format!(
                        "<sip:alice@127.0.0.1:{alice}>;regint=0;answermode=auto;mediaenc=srtp-mand"
                    ),
                    ctrl: Some(net.spare(66)),
                    tone: 1000,
                    modules: &["g711", "srtp"],
                    ..Phone::default()
                },
            );
            let _b = Baresip::start(
                net,
                &Phone {
                    name: "bob",
                    sip: bob,
                    rtp: net.spare(80),
                    account: format!("<sip:bob@127.0.0.1:{bob}>;regint=0;answermode=auto"),
                    ctrl: None,
                    tone: 500,
                    modules: &["g711"],
                    ..Phone::default()
                },
            );
            wait_udp_bound(bob, Duration::from_secs(10));
            require_tshark();
            let pcap = net.dir.join("call.pcap");
            let filter = format!(
            "udp and (port {} or port {} or port {} or dst portrange {}-{} or dst portrange {}-{})",
            net.sip(),
            alice,
            bob,
            net.spare(70),
            net.spare(70) + 9,
            net.spare(80),
            net.spare(80) + 9
        );
            let cap = capture_filtered(&pcap, &net.dir.join("tshark.log"), &filter);
            let r = a.command("dial", &format!("sip:bob@127.0.0.1:{}", net.sip()));
            assert!(r.contains("\"ok\":true"), "dial: {r}");
            let srtp = |m: &str| metric(m, "trunkline_srtp_packets_total", &[]).unwrap_or(0.0);
            let talked = poll_until(
                Instant::now() + Duration::from_secs(15),
                Duration::from_millis(100),
                || srtp(&scrape(net)) >= 300.0,
            );
            assert!(
                talked,
                "SRTP both ways on leg A; trunkline log:\n{}\nmetrics:\n{}",
                tl.log_tail(30),
                scrape(net)
            );
            // baresip opens its RTCP path with one plain RTCP APP packet ("PINGPONG") before
            // its SRTCP: on an SRTP leg it fails authentication and is dropped; every other
            // packet authenticates
            let failures = metric(&scrape(net), "trunkline_srtp_auth_failures_total", &[]);
            assert!(failures.is_some_and(|f| f <= 2.0), "{failures:?}");
            let r = a.command("hangup", "");
            assert!(r.contains("\"ok\":true"), "hangup: {r}");
            let ended = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || metric(&scrape(net), "trunkline_active_calls", &[]) == Some(0.0),
            );
            assert!(ended, "{}", scrape(net));
            stop_capture(cap);

            // signalling: SRTP offered by alice, plain RTP to bob, trunkline's own key to alice
            let invite_b = sip_to(&pcap, bob, "INVITE sip:");
            let invite_b = invite_b.first().expect("the INVITE to bob");
            assert!(invite_b.contains(" RTP/AVP "), "{invite_b}");
            assert!(crypto(invite_b).is_empty(), "a=crypto crossed:\n{invite_b}");
            let ok_a = sip_to(&pcap, alice, "SIP/2.0 200 ");
            let ok_a = ok_a
                .iter()
                .find(|m| m.contains("INVITE") && m.contains("m=audio"))
                .expect("the 200 OK to alice's INVITE");
            assert!(ok_a.contains("RTP/SAVP"), "{ok_a}");
            let lines = crypto(ok_a);
            let key = sdes::parse(lines.first().expect("trunkline's a=crypto"))
                .expect("a valid a=crypto")
                .key;

            // media to bob: plain PCMU with alice's 1 kHz
            let to_bob = rtp_to(&pcap, net.spare(80)..=net.spare(80) + 9);
            assert!(to_bob.len() >= 100, "{} packets to bob", to_bob.len());
            let mut pcm = Vec::new();
            for p in &to_bob {
                let mut w = vec![0i16; p.len() - 12];
                codecs::g711::decode_ulaw(&p[12..], &mut w);
                pcm.extend(w);
            }
            let at_bob = share(&pcm[8000..], 1000.0, 8000.0);
            assert!(at_bob > 0.5, "bob hears alice's 1 kHz: {at_bob:.3}");

            // media to alice: SRTP, unreadable as it is; decrypted, bob's 500 Hz
            let to_alice = rtp_to(&pcap, net.spare(70)..=net.spare(70) + 9);
            assert!(to_alice.len() >= 100, "{} packets to alice", to_alice.len());
            let mut ctx = Context::new(&key);
            let (mut raw, mut clear) = (Vec::new(), Vec::new());
            for p in &to_alice {
                let mut b = p.clone();
                // 80-bit tag: the payload is the packet less its header and tag
                let mut w = vec![0i16; p.len().saturating_sub(22)];
                codecs::g711::decode_ulaw(&p[12..12 + w.len()], &mut w);
                raw.extend(w);
                let n = b.len();
                let n = ctx
                    .unprotect_rtp(&mut b, n)
                    .expect("decrypts with trunkline's key");
                let mut w = vec![0i16; n - 12];
                codecs::g711::decode_ulaw(&b[12..n], &mut w);
                clear.extend(w);
            }
            let heard = share(&clear[8000..], 500.0, 8000.0);
            let leaked = share(&raw[8000..], 500.0, 8000.0);
            assert!(heard > 0.5, "alice hears bob's 500 Hz: {heard:.3}");
            assert!(
                leaked < 0.05,
                "the tone is readable without the key: {leaked:.3}"
            );
            tl.assert_alive();
        },
    );
}
