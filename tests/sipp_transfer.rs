//! A blind transfer from the PBX side carried out by trunkline (`refer: handle`), end to end
//! with three SIPp peers: the carrier's caller, the PBX that transfers it to extension 2000,
//! and the target (another trunk, which echoes RTP). The caller ends up talking to the target
//! with media through the relay: 2 s of G.711 from the caller come back through it.

mod common;

#[path = "support/tone.rs"]
mod tone;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_pbx_transfers_its_caller_to_another_trunk_with_media_through_the_relay() {
    isolated(
        "a_pbx_transfers_its_caller_to_another_trunk_with_media_through_the_relay",
        false,
        |net| {
            let t = [
                Trunk {
                    name: "pbx",
                    port: net.trunk(0),
                },
                Trunk {
                    name: "second",
                    port: net.trunk(1),
                },
            ];
            let (second, pbx): (&[&str], &[&str]) = (&["second"], &["pbx"]);
            let y = config_yaml_rules(net, &t, &[("^2000$", second), (".*", pbx)]);
            let line = format!(
                "pbx: {{ address: 127.0.0.1:{}, transport: udp",
                net.trunk(0)
            );
            assert!(y.contains(&line), "{y}");
            let y = with_metrics(
                net,
                &y.replace(&line, &format!("{line}, refer: handle")),
                "",
            );
            let mut tl = Trunkline::start(net, &y);
            std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("write tone.wav");
            let target = Sipp::uas(
                net,
                "target",
                "uas_transfer_target.xml",
                net.trunk(1),
                net.sipp_media(2),
                1,
            )
            .arg("-rtp_echo")
            .spawn();
            let transferor = Sipp::uas(
                net,
                "pbx",
                "uas_transferor.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            wait_udp_bound(net.trunk(1), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_transferred.xml", 1, 1).run(LIMIT);
            let transferor = transferor.wait(Duration::from_secs(15));
            let target = target.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!("trunkline log tail:\n{}", tl.log_tail(30));
            caller.assert_all_ok(1, &ctx);
            transferor.assert_all_ok(1, &ctx);
            target.assert_all_ok(1, &ctx);
            let mut body = String::new();
            poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(100),
                || {
                    body = scrape(net);
                    metric(
                        &body,
                        "trunkline_transfers_total",
                        &[("result", "completed")],
                    ) == Some(1.0)
                },
            );
            assert_eq!(
                metric(
                    &body,
                    "trunkline_transfers_total",
                    &[("result", "completed")]
                ),
                Some(1.0),
                "{body}"
            );
            // The caller played ~100 packets to the target, which echoed them: both ways
            // through the relay, after the transfer (no media flowed before it).
            let fwd = metric(
                &body,
                "trunkline_relay_packets_forwarded_total",
                &[("kind", "all")],
            )
            .unwrap_or(0.0);
            assert!(
                (160.0..=220.0).contains(&fwd),
                "forwarded {fwd}: want ~200 (100 each way):\n{body}"
            );
        },
    );
}
