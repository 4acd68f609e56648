//! HEP v3 capture (`capture:`), end to end: SIPp calls through trunkline while a collector (a
//! socket of this test, with a HEP3 decoder of its own) receives the capture stream. Every SIP
//! message either SIPp side sent or received is in the stream, the leg B messages carry leg A's
//! Call-ID as their correlation id, and each packet names the capture agent and its key.

mod common;
#[path = "support/tone.rs"]
mod tone;

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

/// A decoded HEP3 packet: generic chunks by type.
struct Hep(BTreeMap<u16, Vec<u8>>);

fn decode(p: &[u8]) -> Option<Hep> {
    if p.len() < 6 || &p[..4] != b"HEP3" || usize::from(u16::from_be_bytes([p[4], p[5]])) != p.len()
    {
        return None;
    }
    let mut chunks = BTreeMap::new();
    let mut i = 6;
    while i + 6 <= p.len() {
        let vendor = u16::from_be_bytes([p[i], p[i + 1]]);
        let kind = u16::from_be_bytes([p[i + 2], p[i + 3]]);
        let len = usize::from(u16::from_be_bytes([p[i + 4], p[i + 5]]));
        if len < 6 || i + len > p.len() {
            return None;
        }
        if vendor == 0 {
            chunks.insert(kind, p[i + 6..i + len].to_vec());
        }
        i += len;
    }
    (i == p.len()).then_some(Hep(chunks))
}

/// (start line, Call-ID, CSeq) of a SIP message.
fn key(msg: &str) -> Option<(String, String, String)> {
    let mut lines = msg.lines();
    let start = lines.next()?.trim().to_string();
    let mut cid = None;
    let mut cseq = None;
    for l in lines {
        if l.trim().is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        match n.trim().to_ascii_lowercase().as_str() {
            "call-id" | "i" => cid = Some(v.trim().to_string()),
            "cseq" => cseq = Some(v.split_whitespace().collect::<Vec<_>>().join(" ")),
            _ => {}
        }
    }
    Some((start, cid?, cseq?))
}

/// The messages of a SIPp `-trace_msg` file, as keys.
fn traced(path: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter_map(|b| {
            let (_, msg) = b.split_once("\n\n")?;
            key(msg.trim_start())
        })
        .collect()
}

/// The test's collector: a socket on the port the configurations name.
fn collector(net: &Net) -> UdpSocket {
    let c = UdpSocket::bind(("127.0.0.1", net.spare(80))).expect("collector");
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    c
}

/// One trunk `pbx` and capture to the test's collector with `more` (`key: value, ...`).
fn capture_config(net: &Net, more: &str) -> String {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let yaml = format!(
        "{}capture: {{ hep: 127.0.0.1:{}, {more} }}\n",
        config_yaml(net, &t, &["pbx"]),
        net.spare(80)
    );
    with_metrics(net, &yaml, "")
}

#[test]
fn the_hep_stream_holds_every_message_of_both_legs_correlated_per_call() {
    require_sipp();
    isolated(
        "the_hep_stream_holds_every_message_of_both_legs_correlated_per_call",
        false,
        |net| {
            let collector = collector(net);
            let mut tl = Trunkline::start(net, &capture_config(net, "id: 2042, password: hep-key"));
            let calls = 3;
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                calls,
            )
            .args(&[
                "-trace_msg",
                "-message_file",
                &net.dir.join("uas.msg").to_string_lossy(),
            ])
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_basic.xml", calls, 10)
                .pause_ms(100)
                .args(&[
                    "-trace_msg",
                    "-message_file",
                    &net.dir.join("uac.msg").to_string_lossy(),
                ])
                .run(Duration::from_secs(60));
            let callee = callee.wait(Duration::from_secs(15));
            caller.assert_all_ok(u64::from(calls), &tl.log_tail(20));
            callee.assert_all_ok(u64::from(calls), &tl.log_tail(20));

            // Collect the stream until it has been quiet for a moment.
            let mut packets = Vec::new();
            let mut buf = vec![0u8; 65536];
            let mut quiet_since = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_millis(500) {
                if let Ok(n) = collector.recv(&mut buf) {
                    packets.push(decode(&buf[..n]).expect("a well-formed HEP3 packet"));
                    quiet_since = Instant::now();
                }
            }
            assert!(!packets.is_empty(), "no HEP packet:\n{}", tl.log_tail(20));
            let mut in_stream = BTreeSet::new();
            let mut correlation = BTreeMap::new();
            for p in &packets {
                let kind = p.0.get(&11).map(Vec::as_slice);
                assert!(
                    kind == Some(&[1u8][..]) || kind == Some(&[5u8][..]),
                    "protocol type SIP or RTCP: {kind:?}"
                );
                if kind != Some(&[1u8][..]) {
                    continue;
                }
                assert_eq!(
                    p.0.get(&12).map(Vec::as_slice),
                    Some(&2042u32.to_be_bytes()[..])
                );
                assert_eq!(p.0.get(&14).map(Vec::as_slice), Some(&b"hep-key"[..]));
                let payload = String::from_utf8_lossy(p.0.get(&15).expect("payload"));
                let k = key(&payload).expect("a SIP message");
                let corr =
                    String::from_utf8_lossy(p.0.get(&17).expect("correlation id")).to_string();
                correlation.insert(k.1.clone(), corr);
                in_stream.insert(k);
            }
            let uac = traced(&net.dir.join("uac.msg"));
            let uas = traced(&net.dir.join("uas.msg"));
            assert!(uac.len() >= 7 * calls as usize, "uac trace: {}", uac.len());
            assert!(uas.len() >= 6 * calls as usize, "uas trace: {}", uas.len());
            for k in uac.iter().chain(&uas) {
                assert!(in_stream.contains(k), "{k:?} is not in the HEP stream");
            }
            // Leg B's messages are correlated to leg A's Call-ID: each call one id, both legs.
            let a_ids: BTreeSet<&String> = uac.iter().map(|k| &k.1).collect();
            let b_ids: BTreeSet<&String> = uas.iter().map(|k| &k.1).collect();
            assert_eq!(a_ids.len(), calls as usize);
            assert_eq!(b_ids.len(), calls as usize);
            let mut tied = BTreeSet::new();
            for b in &b_ids {
                let c = correlation.get(*b).expect("leg B correlated");
                assert!(
                    a_ids.contains(c),
                    "leg B {b} correlated to {c}, not a leg A Call-ID"
                );
                tied.insert(c.clone());
            }
            assert_eq!(
                tied.len(),
                calls as usize,
                "each call its own correlation id"
            );
            for a in &a_ids {
                assert_eq!(correlation.get(*a), Some(*a), "leg A's own id");
            }
            let m = scrape(net);
            let sent = metric(&m, "trunkline_hep_packets_total", &[("result", "sent")]);
            assert_eq!(sent, Some(packets.len() as f64), "{m}");
            tl.assert_alive();
        },
    );
}

#[test]
fn a_collector_that_is_down_costs_the_calls_nothing() {
    require_sipp();
    isolated(
        "a_collector_that_is_down_costs_the_calls_nothing",
        false,
        |net| {
            let t = [Trunk {
                name: "pbx",
                port: net.trunk(0),
            }];
            // Nothing listens on the collector's port.
            let yaml = format!(
                "{}capture: {{ hep: 127.0.0.1:{} }}\n",
                config_yaml(net, &t, &["pbx"]),
                net.closed()
            );
            let mut tl = Trunkline::start(net, &with_metrics(net, &yaml, ""));
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                5,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_basic.xml", 5, 10)
                .pause_ms(100)
                .run(Duration::from_secs(60));
            caller.assert_all_ok(5, &tl.log_tail(20));
            callee.wait(Duration::from_secs(15)).assert_all_ok(5, "uas");
            let m = scrape(net);
            let dropped =
                metric(&m, "trunkline_hep_packets_total", &[("result", "dropped")]).unwrap_or(0.0);
            let sent =
                metric(&m, "trunkline_hep_packets_total", &[("result", "sent")]).unwrap_or(0.0);
            assert!(
                sent + dropped >= 5.0 * 6.0 * 2.0,
                "sent {sent} dropped {dropped}"
            );
            assert!(dropped > 0.0, "ICMP refusals are counted as drops: {m}");
            tl.assert_alive();
        },
    );
}

/// The capture stream's quality reports (HEP type 5, JSON as collectors read RTCP): a call with
/// RTP the callee echoes gets periodic reports and, when it ends, one final report per leg,
/// correlated by leg A's Call-ID, with the packets the relay counted on each leg.
#[test]
fn media_quality_reports_follow_each_call_into_the_capture_stream() {
    require_sipp();
    isolated(
        "media_quality_reports_follow_each_call_into_the_capture_stream",
        false,
        |net| {
            let collector = collector(net);
            std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("tone.wav");
            let mut tl = Trunkline::start(net, &capture_config(net, "quality_interval: 1"));
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .args(&["-rtp_echo"])
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_rtp.xml", 1, 1)
                .args(&[
                    "-trace_msg",
                    "-message_file",
                    &net.dir.join("uac.msg").to_string_lossy(),
                ])
                .run(Duration::from_secs(60));
            caller.assert_all_ok(1, &tl.log_tail(20));
            callee.wait(Duration::from_secs(15)).assert_all_ok(1, "uas");
            let call_id = traced(&net.dir.join("uac.msg"))
                .first()
                .map(|k| k.1.clone())
                .expect("the caller's Call-ID");

            // Reports until both final ones are in (or the deadline).
            let mut reports: Vec<serde_json::Value> = Vec::new();
            let mut buf = vec![0u8; 65536];
            let deadline = Instant::now() + Duration::from_secs(10);
            let finals = |r: &[serde_json::Value]| {
                r.iter().filter(|v| v["trunkline"]["final"] == true).count()
            };
            while Instant::now() < deadline && finals(&reports) < 2 {
                let Ok(n) = collector.recv(&mut buf) else {
                    continue;
                };
                let p = decode(&buf[..n]).expect("a well-formed HEP3 packet");
                if p.0.get(&11).map(Vec::as_slice) != Some(&[5u8][..]) {
                    continue;
                }
                let corr = String::from_utf8_lossy(p.0.get(&17).expect("correlation id"));
                assert_eq!(corr, call_id, "a report is correlated by leg A's Call-ID");
                let v: serde_json::Value =
                    serde_json::from_slice(p.0.get(&15).expect("payload")).expect("JSON body");
                assert_eq!(v["type"], 201, "{v}");
                assert!(v["report_blocks"][0]["packets_lost"].is_i64(), "{v}");
                reports.push(v);
            }
            assert_eq!(finals(&reports), 2, "one final report per leg: {reports:?}");
            assert!(
                reports.iter().any(|v| v["trunkline"]["final"] == false),
                "periodic reports during the 2.5 s call: {reports:?}"
            );
            for leg in ["a", "b"] {
                let last = reports
                    .iter()
                    .find(|v| v["trunkline"]["final"] == true && v["trunkline"]["leg"] == leg)
                    .unwrap_or_else(|| panic!("final report of leg {leg}: {reports:?}"));
                let n = last["trunkline"]["rtp_packets_in"].as_u64().unwrap_or(0);
                assert!(n >= 50, "leg {leg} received RTP through the relay: {last}");
                assert!(
                    last["trunkline"]["mos"].as_f64().is_some_and(|m| m > 3.0),
                    "{last}"
                );
            }
            tl.assert_alive();
        },
    );
}
