//! Issue 13: the PSTN both ways through an MGCP residential gateway (`mgcp-gw-sim`, a
//! scripted RFC 3435 gateway with two lines sending a tone and recording what it hears):
//! - line 1 goes off-hook and dials 1001: a SIPp callee (echoing RTP) answers, the line's tone
//!   comes back to it through the relay, the line hangs up and the SIP side gets BYE;
//! - a SIPp call to +15551230001 rings line 1 (RQNT L/rg with the caller id), the simulator
//!   answers, SIPp's tone reaches the line through the relay, BYE -> DLCX;
//! - the gateway restarts (RSIP) mid-call: the SIP leg gets BYE within a second, the line is
//!   armed again and the next call to it works;
//! - 10,000 hostile datagrams from the gateway's address (garbage, NTFYs for unknown endpoints,
//!   with stale request ids or broken event lists) change nothing: the line then calls as usual;
//! - a gateway that stops answering its audits is down in the metrics and a route through it
//!   fails over to the next trunk at once; it is up again when it answers.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[path = "support/tone.rs"]
mod tone;

/// trunkline with gateway gw1 (simulator at `gw`, two lines) and SIP trunk pbx.
fn config(net: &Net) -> String {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let rules: [(&str, &[&str]); 3] = [
        ("^1001$", &["pbx"]),
        ("^\\+?15551230002$", &["gw1", "pbx"]),
        ("^\\+?1555123", &["gw1"]),
    ];
    let yaml = config_yaml_rules(net, &t, &rules);
    let extra = format!(
        "mgcp: {{ listen: 127.0.0.1:{agent} }}\ngateways:\n  gw1:\n    address: 127.0.0.1:{gw}\n    \
         endpoints: 'aaln/*@gw1'\n    lines: {{ '+15551230001': aaln/1, '+15551230002': aaln/2 }}\n    \
         digit_map: '(0T|[1-7]xxx|9x.T)'\n    ring_time: 20\n    audit_interval: 1\n",
        agent = net.spare(1),
        gw = net.spare(2),
    );
    with_metrics(net, &yaml, &extra)
}

fn sim(net: &Net, extra: &[&str]) -> GwSim {
    let listen = format!("127.0.0.1:{}", net.spare(2));
    let agent = format!("127.0.0.1:{}", net.spare(1));
    let wav = net.dir.to_string_lossy().to_string();
    let mut args = vec![
        "--listen",
        &listen,
        "--agent",
        &agent,
        "--domain",
        "gw1",
        "--lines",
        "2",
        "--wav-dir",
        &wav,
    ];
    args.extend_from_slice(extra);
    GwSim::start(&args)
}

#[test]
fn a_line_calls_a_sip_phone_and_hears_its_tone_back() {
    require_sipp();
    isolated(
        "a_line_calls_a_sip_phone_and_hears_its_tone_back",
        false,
        |net| {
            let gw = sim(
                net,
                &[
                    "--at",
                    "0.3:offhook:1",
                    "--at",
                    "0.8:dial:1:1001",
                    "--talk",
                    "1:3",
                ],
            );
            let mut tl = Trunkline::start(net, &config(net));
            let callee = Sipp::uas(
                net,
                "pbx",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .arg("-rtp_echo")
            .spawn();
            let armed = gw.wait_for("rqnt aaln/1@gw1", Duration::from_secs(5));
            assert!(armed.contains("R=L/hd(N)"), "{armed}");
            let dial = gw.wait_nth("rqnt aaln/1@gw1", 2, Duration::from_secs(5));
            assert!(
                dial.contains("S=L/dl") && dial.contains("D/[0-9#*T](D)"),
                "{dial}"
            );
            let ntfy = gw.wait_for("ntfy aaln/1@gw1 O=D/1", Duration::from_secs(5));
            assert_eq!(ntfy, "ntfy aaln/1@gw1 O=D/1,D/0,D/0,D/1");
            let mdcx = gw.wait_for("mdcx aaln/1@gw1", Duration::from_secs(10));
            assert!(mdcx.contains("M=sendrecv"), "{mdcx}");
            let dlcx = gw.wait_for("dlcx aaln/1@gw1", Duration::from_secs(15));
            callee
                .wait(Duration::from_secs(10))
                .assert_all_ok(1, &tl.log_tail(40));
            let received = field(&dlcx, "received").unwrap_or(0);
            let rms = field(&dlcx, "rms").unwrap_or(0);
            assert!(
                received > 50 && rms > 1000,
                "the line's tone came back through the relay: {dlcx}\n{}",
                gw.said()
            );
            // re-armed after on-hook
            let again = gw.wait_for("answer", Duration::from_secs(1));
            assert!(!again.is_empty());
            // the DLCX answer's connection parameters (P: PS, PR) reach the metrics
            let counted = poll_until(
                std::time::Instant::now() + Duration::from_secs(5),
                Duration::from_millis(50),
                || {
                    let m = scrape(net);
                    let get = |d| {
                        metric(
                            &m,
                            "trunkline_mgcp_connection_packets_total",
                            &[("direction", d)],
                        )
                        .unwrap_or(0.0)
                    };
                    get("sent") > 50.0 && get("received") > 50.0
                },
            );
            assert!(counted, "DLCX counters in /metrics:\n{}", scrape(net));
            let m = scrape(net);
            assert_eq!(
                metric(
                    &m,
                    "trunkline_mgcp_calls_total",
                    &[("direction", "inbound"), ("gateway", "gw1")]
                ),
                Some(1.0),
                "{m}"
            );
            tl.assert_alive();
        },
    );
}

#[test]
fn a_sip_call_rings_a_line_and_the_line_answers() {
    require_sipp();
    isolated(
        "a_sip_call_rings_a_line_and_the_line_answers",
        false,
        |net| {
            std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("tone.wav");
            let gw = sim(net, &["--answer-after", "1"]);
            let mut tl = Trunkline::start(net, &config(net));
            gw.wait_for("rqnt aaln/1@gw1", Duration::from_secs(5));
            let caller = Sipp::uac(net, "caller", "uac_rtp.xml", 1, 1)
                .args(&["-s", "+15551230001"])
                .run(Duration::from_secs(30));
            caller.assert_all_ok(1, &tl.log_tail(40));
            let ring = gw.wait_for("rqnt aaln/1@gw1 X=", Duration::from_secs(1));
            let ringing = gw.said();
            assert!(
                ringing.contains("S=L/rg,L/ci(,\"caller\",)"),
                "ringing with the caller id: {ring}\n{ringing}"
            );
            let dlcx = gw.wait_for("dlcx aaln/1@gw1", Duration::from_secs(10));
            let received = field(&dlcx, "received").unwrap_or(0);
            assert!(
                received > 50 && field(&dlcx, "rms").unwrap_or(0) > 1000,
                "SIPp's tone reached the line: {dlcx}"
            );
            let m = scrape(net);
            assert_eq!(
                metric(
                    &m,
                    "trunkline_mgcp_calls_total",
                    &[("direction", "outbound"), ("gateway", "gw1")]
                ),
                Some(1.0),
                "{m}"
            );
            // the admin API shows the gateway up with its lines
            let (code, body) = http(net.metrics_addr(), "GET", "/trunks");
            assert_eq!(code, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let gw1 = v["trunks"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["name"] == "gw1"))
                .cloned()
                .unwrap_or_default();
            assert_eq!(gw1["up"], true, "{body}");
            assert_eq!(gw1["mgcp"]["lines"], 2, "{body}");
            let states = &gw1["mgcp"]["line_states"];
            let total: i64 = [
                "idle", "hanging", "unarmed", "talking", "ringing", "calling", "dialling",
            ]
            .iter()
            .map(|s| states[*s].as_i64().unwrap_or(0))
            .sum();
            assert_eq!(total, 2, "{body}");
            tl.assert_alive();
        },
    );
}

#[test]
fn a_gateway_restart_ends_its_calls_and_the_line_works_again() {
    require_sipp();
    isolated(
        "a_gateway_restart_ends_its_calls_and_the_line_works_again",
        false,
        |net| {
            let gw = sim(
                net,
                &[
                    "--at",
                    "0.3:offhook:1",
                    "--at",
                    "0.6:dial:1:1001",
                    "--at",
                    "4:restart",
                    "--at",
                    "5:onhook:1",
                    "--at",
                    "6:offhook:1",
                    "--at",
                    "6.3:dial:1:1001",
                    "--at",
                    "9:onhook:1",
                    "--talk",
                    "1:30",
                ],
            );
            let mut tl = Trunkline::start(net, &config(net));
            let callee = Sipp::uas(
                net,
                "pbx",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                2,
            )
            .arg("-rtp_echo")
            .spawn();
            gw.wait_for("mdcx aaln/1@gw1", Duration::from_secs(10));
            gw.wait_for("rsip restart", Duration::from_secs(10));
            let t = Instant::now();
            // the call's BYE: SIPp's first call completes; the line is armed again
            gw.wait_nth("rqnt aaln/1@gw1", 5, Duration::from_secs(5));
            let rearm = gw.said();
            assert!(rearm.contains("answer"), "{rearm}");
            // the second call from the line after the restart is answered too
            gw.wait_nth("mdcx aaln/1@gw1", 2, Duration::from_secs(15));
            let m = scrape(net);
            assert_eq!(
                metric(
                    &m,
                    "trunkline_mgcp_rsips_total",
                    &[("gateway", "gw1"), ("method", "restart")]
                ),
                Some(1.0),
                "{m}"
            );
            assert!(t.elapsed() < Duration::from_secs(15));
            // both calls ended with BYE: the one the restart cut, and the next one on-hook
            callee
                .wait(Duration::from_secs(10))
                .assert_all_ok(2, &tl.log_tail(40));
            tl.assert_alive();
        },
    );
}

fn gateway_up(net: &Net) -> Option<u64> {
    metric(
        &scrape(net),
        "trunkline_mgcp_gateway_up",
        &[("gateway", "gw1")],
    )
    .map(|v| v as u64)
}

#[test]
fn a_silent_gateway_is_down_and_its_routes_fail_over() {
    require_sipp();
    isolated(
        "a_silent_gateway_is_down_and_its_routes_fail_over",
        false,
        |net| {
            let gw = sim(net, &[]);
            let mut tl = Trunkline::start(net, &config(net));
            gw.wait_for("auep aaln/*@gw1", Duration::from_secs(5));
            assert!(
                poll_until(
                    Instant::now() + Duration::from_secs(5),
                    Duration::from_millis(100),
                    || { gateway_up(net) == Some(1) }
                ),
                "gw1 up: {}",
                scrape(net)
            );
            drop(gw);
            // one audit unanswered through its retransmissions (about 10 s): down
            assert!(
                poll_until(
                    Instant::now() + Duration::from_secs(25),
                    Duration::from_millis(200),
                    || { gateway_up(net) == Some(0) }
                ),
                "gw1 down after it stopped answering: {}",
                tl.log_tail(20)
            );
            let callee = Sipp::uas(
                net,
                "pbx",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let t = Instant::now();
            Sipp::uac(net, "caller", "uac_basic.xml", 1, 1)
                .args(&["-s", "+15551230002"])
                .run(Duration::from_secs(20))
                .assert_all_ok(1, &tl.log_tail(30));
            callee
                .wait(Duration::from_secs(10))
                .assert_all_ok(1, "the next trunk of the route answered");
            assert!(
                t.elapsed() < Duration::from_secs(8),
                "failed over at once: {:?}",
                t.elapsed()
            );
            // back: the next audit is answered
            let _gw = sim(net, &[]);
            assert!(
                poll_until(
                    Instant::now() + Duration::from_secs(15),
                    Duration::from_millis(200),
                    || { gateway_up(net) == Some(1) }
                ),
                "gw1 up again: {}",
                tl.log_tail(20)
            );
            tl.assert_alive();
        },
    );
}

#[test]
fn garbage_from_the_gateway_leaves_its_lines_working() {
    require_sipp();
    isolated(
        "garbage_from_the_gateway_leaves_its_lines_working",
        false,
        |net| {
            let gw = sim(
                net,
                &[
                    "--at",
                    "0.3:garbage:0:10000",
                    "--at",
                    "2:offhook:1",
                    "--at",
                    "2.3:dial:1:1001",
                    "--talk",
                    "1:1",
                ],
            );
            let mut tl = Trunkline::start(net, &config(net));
            let callee = Sipp::uas(
                net,
                "pbx",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .arg("-rtp_echo")
            .spawn();
            gw.wait_for("garbage 10000", Duration::from_secs(10));
            gw.wait_for("dlcx aaln/1@gw1", Duration::from_secs(15));
            callee
                .wait(Duration::from_secs(10))
                .assert_all_ok(1, &tl.log_tail(30));
            let m = scrape(net);
            let bad = metric(
                &m,
                "trunkline_mgcp_dropped_total",
                &[("reason", "bad_notify")],
            )
            .unwrap_or(0.0) as u64;
            // a burst of 10,000 overflows the socket buffer (UDP drops what it cannot hold):
            // what was read was refused, and the line still works
            assert!(
                bad >= 100,
                "NTFYs for no endpoint or with a stale X refused: {bad}\n{m}"
            );
            tl.assert_alive();
        },
    );
}

/// tshark decodes every MGCP message of a line's call and a gateway restart, none malformed.
#[test]
fn tshark_decodes_every_mgcp_message() {
    require_sipp();
    require_tshark();
    isolated("tshark_decodes_every_mgcp_message", false, |net| {
        let pcap = net.dir.join("mgcp.pcap");
        let filter = format!("udp port {} or udp port {}", net.spare(1), net.spare(2));
        let cap = capture_filtered(&pcap, &net.dir.join("tshark.log"), &filter);
        let gw = sim(
            net,
            &[
                "--at",
                "0.3:offhook:1",
                "--at",
                "0.6:dial:1:1001",
                "--talk",
                "1:1",
                "--at",
                "4:restart",
            ],
        );
        let mut tl = Trunkline::start(net, &config(net));
        let callee = Sipp::uas(
            net,
            "pbx",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            1,
        )
        .arg("-rtp_echo")
        .spawn();
        gw.wait_for("dlcx aaln/1@gw1", Duration::from_secs(15));
        callee
            .wait(Duration::from_secs(10))
            .assert_all_ok(1, &tl.log_tail(40));
        gw.wait_for("rsip restart", Duration::from_secs(10));
        // the RSIP answered and the lines armed again
        let rearmed = || {
            let said = gw.said();
            said.split_once("rsip restart")
                .is_some_and(|(_, after)| after.contains("answer") && after.contains("rqnt aaln/2"))
        };
        assert!(
            poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(20),
                rearmed
            ),
            "{}",
            gw.said()
        );
        tl.assert_alive();
        // dumpcap writes in blocks: wait until the restart is in the file, then stop
        let ports = [net.spare(1), net.spare(2)];
        poll_until(
            Instant::now() + Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                std::process::Command::new("tshark")
                    .arg("-r")
                    .arg(&pcap)
                    .args(["-d", &format!("udp.port=={},mgcp", ports[0])])
                    .args(["-Y", "mgcp.req.verb == \"RSIP\""])
                    .output()
                    .is_ok_and(|o| !o.stdout.is_empty())
            },
        );
        stop_capture(cap);
        let seen = mgcp_on_the_wire(&pcap, &ports);
        for v in [
            "AUEP", "RQNT", "NTFY", "CRCX", "MDCX", "DLCX", "RSIP", "200", "250",
        ] {
            assert!(seen.iter().any(|x| x == v), "tshark saw no {v}: {seen:?}");
        }
    });
}

/// What tshark decodes as MGCP on `ports` (verbs and response codes), asserting that no
/// frame is malformed.
fn mgcp_on_the_wire(pcap: &std::path::Path, ports: &[u16]) -> Vec<String> {
    let mut cmd = std::process::Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    for p in ports {
        cmd.args(["-d", &format!("udp.port=={p},mgcp")]);
    }
    cmd.args(["-Y", "mgcp || _ws.malformed"])
        .args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"])
        .args([
            "-e",
            "mgcp.req.verb",
            "-e",
            "mgcp.rsp.rspcode",
            "-e",
            "_ws.malformed",
        ]);
    let out = cmd.output().expect("run tshark -r");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut seen = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(
            f.get(2).is_none_or(|m| m.is_empty()),
            "malformed MGCP: {line}\n{text}"
        );
        for v in f.iter().take(2).flat_map(|x| x.split(',')) {
            if !v.is_empty() {
                seen.push(v.to_string());
            }
        }
    }
    assert!(seen.len() > 10, "tshark decoded little MGCP: {text}");
    seen
}
