//! Real phones: baresip calls baresip through trunkline, and the callee (on a trunk with
//! `refer: handle`) transfers the call to a third baresip with its menu's `transfer` (a REFER,
//! RFC 3515). trunkline carries the transfer out: afterwards the caller and the target talk,
//! media both ways through the relay, and the transferor's leg is over. (Debian's baresip 1.0
//! has no 100rel, so the "100rel required" part of this flow is covered by SIPp,
//! `tests/sipp_prack.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;

fn phone(name: &str, sip: u16, rtp: u16, ctrl: Option<u16>, tone: u32) -> Phone<'_> {
    Phone {
        name,
        sip,
        rtp,
        account: format!("<sip:{name}@127.0.0.1:{sip}>;regint=0;answermode=auto"),
        ctrl,
        tone,
        ..Phone::default()
    }
}

/// Relayed packets per second over `d`.
fn relay_rate(net: &Net, d: Duration) -> f64 {
    let fwd = |b: &str| {
        metric(
            b,
            "trunkline_relay_packets_forwarded_total",
            &[("kind", "all")],
        )
        .unwrap_or(0.0)
    };
    let before = fwd(&scrape(net));
    std::thread::sleep(d);
    (fwd(&scrape(net)) - before) / d.as_secs_f64()
}

#[test]
fn baresip_transfers_its_caller_to_another_baresip() {
    isolated(
        "baresip_transfers_its_caller_to_another_baresip",
        false,
        |net| {
            // baresip binds SIP over UDP and TCP on its port and TLS on the next one.
            let (alice, bob, carol) = (net.spare(60), net.spare(62), net.spare(64));
            let t = [
                Trunk {
                    name: "pbx",
                    port: bob,
                },
                Trunk {
                    name: "carol",
                    port: carol,
                },
            ];
            let (to_carol, to_pbx): (&[&str], &[&str]) = (&["carol"], &["pbx"]);
            let y = config_yaml_rules(net, &t, &[("^carol$", to_carol), (".*", to_pbx)]);
            let y = with_metrics(net, &with_trunk_keys(&y, "pbx", bob, "refer: handle"), "");
            let mut tl = Trunkline::start(net, &y);
            let a = Baresip::start(
                net,
                &phone("alice", alice, net.spare(70), Some(net.spare(66)), 440),
            );
            let b = Baresip::start(
                net,
                &phone("bob", bob, net.spare(80), Some(net.spare(67)), 660),
            );
            let _c = Baresip::start(net, &phone("carol", carol, net.spare(90), None, 880));
            wait_udp_bound(bob, Duration::from_secs(10));
            wait_udp_bound(carol, Duration::from_secs(10));
            let r = a.command("dial", &format!("sip:bob@127.0.0.1:{}", net.sip()));
            assert!(r.contains("\"ok\":true"), "dial: {r}");
            let up = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || {
                    metric(
                        &scrape(net),
                        "trunkline_relay_packets_forwarded_total",
                        &[("kind", "all")],
                    )
                    .unwrap_or(0.0)
                        > 50.0
                },
            );
            assert!(
                up,
                "alice and bob talk; trunkline log:\n{}",
                tl.log_tail(30)
            );
            let r = b.command("transfer", &format!("sip:carol@127.0.0.1:{}", net.sip()));
            assert!(r.contains("\"ok\":true"), "transfer: {r}");
            let done = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || {
                    metric(
                        &scrape(net),
                        "trunkline_transfers_total",
                        &[("result", "completed")],
                    ) == Some(1.0)
                },
            );
            assert!(
                done,
                "transfer completed; trunkline log:\n{}",
                tl.log_tail(40)
            );
            // One call left (alice and carol), the transferor's leg ended.
            let gone = poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(100),
                || metric(&scrape(net), "trunkline_active_calls", &[]) == Some(1.0),
            );
            assert!(gone, "{}", scrape(net));
            // Both ways: each phone sends 50 packets/s, one direction alone would be ~50/s.
            let rate = relay_rate(net, Duration::from_secs(2));
            assert!(
                (80.0..=130.0).contains(&rate),
                "relayed {rate} packets/s after the transfer: want ~100 (alice <-> carol)"
            );
            tl.assert_alive();
        },
    );
}
