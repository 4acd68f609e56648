//! Interop: Kamailio's own `rtpengine` module, unchanged, drives the trunkline binary's media
//! relay through its rtpengine-compatible ng control port (`media.ng_listen`), while SIPp places
//! calls through Kamailio (issue 3, "Control port compatible with rtpengine's ng protocol").
//!
//! SIPp UAC -> Kamailio (rtpengine_offer / rtpengine_answer / rtpengine_delete against
//! trunkline's ng port) -> SIPp UAS. Each side must see an SDP naming a trunkline relay port,
//! RTP sent by the caller must reach the callee through the relay, and every call's relay
//! session must be gone after its BYE. Kamailio config: `tests/peers/kamailio-ng.cfg` (ours).
//!
//! Fails (never skips) when Kamailio or SIPp is missing: `scripts/install-deps.sh` installs both.

mod common;
#[path = "support/tone.rs"]
mod tone;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The SDP bodies SIPp logged as received in its `-trace_msg` file.
fn received_sdps(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter(|b| b.contains("message received"))
        .filter_map(|b| b.split_once("\r\n\r\n").or_else(|| b.split_once("\n\n")))
        .map(|(_, body)| body.to_string())
        .filter(|body| body.contains("m=audio"))
        .collect()
}

fn media_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio port in {sdp}"))
}

#[test]
fn kamailio_rtpengine_module_drives_trunkline_ng() {
    require_sipp();
    require_kamailio();
    isolated(
        "kamailio_rtpengine_module_drives_trunkline_ng",
        false,
        |net| {
            let ng_port = net.spare(50);
            let proxy = net.spare(60);
            let t = [Trunk {
                name: "pbx",
                port: net.trunk(0),
            }];
            let yaml = config_yaml(net, &t, &["pbx"]).replace(
                &format!("  ports: {}\n", net.media_range()),
                &format!(
                    "  ports: {}\n  ng_listen: 127.0.0.1:{ng_port}\n",
                    net.media_range()
                ),
            );
            assert!(yaml.contains("ng_listen"), "{yaml}");
            let mut tl = Trunkline::start(net, &with_metrics(net, &yaml, ""));
            wait_udp_bound(ng_port, Duration::from_secs(5));

            let kcfg = include_str!("peers/kamailio-ng.cfg")
                .replace("@PROXY_PORT@", &proxy.to_string())
                .replace("@UAS_PORT@", &net.trunk(0).to_string())
                .replace("@NG_PORT@", &ng_port.to_string());
            let kam = Kamailio::start(net, &kcfg, proxy);
            let klog = kam.log.clone();

            std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("tone.wav");
            let calls = 3;
            let uas_trace = net.dir.join("uas.msg");
            let uac_trace = net.dir.join("uac.msg");
            // SIPp's built-in UAS (the interop scenarios in tests/sipp/ refuse a proxy's extra Via
            // by design), echoing the RTP it receives.
            let callee = Command::new("sipp")
                .args(["-sn", "uas", "-i", "127.0.0.1", "-nostdin", "-p"])
                .arg(net.trunk(0).to_string())
                .args(["-mp", &net.sipp_media(1).to_string(), "-rtp_echo"])
                .args(["-m", &calls.to_string(), "-timeout", "60s"])
                .args(["-trace_msg", "-message_file"])
                .arg(&uas_trace)
                .current_dir(&net.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn_group()
                .expect("sipp uas");
            let mut callee = ChildGuard(Some(callee));
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));

            // The caller plays 2 s of G.711 per call (tests/sipp/uac_rtp.xml) through the relay.
            let uac = Command::new("sipp")
                .arg(format!("127.0.0.1:{proxy}"))
                .args(["-sf", &scenario("uac_rtp.xml").to_string_lossy()])
                .args(["-i", "127.0.0.1", "-nostdin", "-p", &net.uac().to_string()])
                .args(["-mp", &net.sipp_media(0).to_string()])
                .args(["-m", &calls.to_string(), "-r", "3", "-timeout", "60s"])
                .args(["-timeout_error", "-trace_msg", "-message_file"])
                .arg(&uac_trace)
                .current_dir(&net.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn_group()
                .expect("sipp uac");
            // While the calls are up, the relay holds their sessions.
            let mut peak = 0.0f64;
            poll_until(
                Instant::now() + Duration::from_secs(3),
                Duration::from_millis(100),
                || {
                    let m = scrape(net);
                    peak = peak.max(metric(&m, "trunkline_relay_sessions", &[]).unwrap_or(0.0));
                    peak >= 2.0
                },
            );
            let out = uac.wait_with_output().expect("sipp uac ran");
            let klog_text = || std::fs::read_to_string(&klog).unwrap_or_default();
            assert!(
            out.status.success(),
            "SIPp calls through Kamailio failed ({}):\n{}\nkamailio log:\n{}\ntrunkline log:\n{}\nthe caller's last messages:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .join("\n"),
            klog_text(),
            tl.log_tail(30),
            std::fs::read_to_string(&uac_trace)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
            if let Some(mut c) = callee.0.take() {
                c.wait_timeout(Duration::from_secs(10));
            }
            assert!(peak >= 2.0, "relay sessions while calls were up: {peak}");

            // Both sides saw trunkline's relay, not each other.
            let (lo, hi) = {
                let r = net.media_range();
                let (a, b) = r.split_once('-').expect("range");
                (a.parse::<u16>().expect("lo"), b.parse::<u16>().expect("hi"))
            };
            let at_uas = received_sdps(&uas_trace);
            let at_uac = received_sdps(&uac_trace);
            assert!(at_uas.len() >= calls, "offers at the callee: {at_uas:?}");
            assert!(at_uac.len() >= calls, "answers at the caller: {at_uac:?}");
            for sdp in at_uas.iter().chain(&at_uac) {
                let p = media_port(sdp);
                assert!(
                    (lo..=hi).contains(&p),
                    "SDP names port {p}, not a trunkline relay port ({lo}-{hi}):\n{sdp}"
                );
            }

            // RTP crossed the relay both ways (the callee echoes), and every BYE deleted its call.
            let mut m = String::new();
            poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(100),
                || {
                    m = scrape(net);
                    metric(&m, "trunkline_relay_sessions", &[]).unwrap_or(-1.0) == 0.0
                },
            );
            assert_eq!(
                metric(&m, "trunkline_relay_sessions", &[]),
                Some(0.0),
                "sessions left after BYE (rtpengine_delete):\n{m}"
            );
            let fwd = metric(
                &m,
                "trunkline_relay_packets_forwarded_total",
                &[("kind", "all")],
            )
            .unwrap_or(0.0);
            assert!(
            fwd >= (calls * 150) as f64,
            "RTP through the relay: {fwd} packets forwarded for {calls} calls of 100 packets echoed"
        );
            let log = klog_text();
            assert!(!log.contains("ERROR"), "kamailio logged errors:\n{log}");
            drop(kam);
            tl.assert_alive();
        },
    );
}

/// Kills a child process (and its group) when the test ends early.
struct ChildGuard(Option<ProcGuard>);
