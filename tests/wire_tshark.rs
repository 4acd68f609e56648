//! What goes on the wire, decoded by an independent dissector (tshark): a SIPp call with RTP
//! through trunkline, captured on loopback inside the test's own network namespace.
//!
//! - tshark flags nothing malformed (SIP, SDP, RTP, RTCP) in either direction;
//! - topology hiding (ARCHITECTURE.md invariant 3): no message on leg B carries leg A's Call-ID, tag,
//!   Via or Contact, and the reverse; each leg's SDP names only the relay;
//! - the relay forwards RTP untouched (RFC 3550: SSRC, sequence number and timestamp as sent), and
//!   every packet the caller sent reaches the callee.
//!
//! Fails (never skips) when tshark or SIPp is missing: `scripts/install-deps.sh` installs both.

mod common;
#[path = "support/tone.rs"]
mod tone;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `tshark -r file -Y filter -T fields -e ...`: one Vec of fields per packet.
fn fields(file: &Path, filter: &str, names: &[&str], extra: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(extra).args(["-Y", filter]);
    cmd.args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]);
    for n in names {
        cmd.args(["-e", n]);
    }
    let out = cmd.output().expect("run tshark -r");
    assert!(
        out.status.success(),
        "tshark -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn wire_is_well_formed_topology_hidden_and_rtp_untouched() {
    require_sipp();
    require_tshark();
    isolated(
        "wire_is_well_formed_topology_hidden_and_rtp_untouched",
        true,
        |net| {
            let t = [Trunk {
                name: "pbx",
                port: net.trunk(0),
            }];
            // User-space forwarding: on loopback, the kernel fast path hands a packet straight
            // to the local socket, so its second hop never crosses the captured interface and
            // a capture could not compare both hops. The kernel path's byte-exactness is
            // checked in media-relay/tests/relay_kernel.rs (what arrives == what was sent).
            let yaml = with_metrics(net, &config_yaml(net, &t, &["pbx"]), "").replacen(
                "media:\n",
                "media:\n  kernel_forwarding: off\n",
                1,
            );
            assert!(yaml.contains("kernel_forwarding: off"), "{yaml}");
            let mut tl = Trunkline::start(net, &yaml);
            std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("tone.wav");
            let pcap = net.dir.join("call.pcapng");
            let cap = capture(&pcap, &net.dir.join("tshark.log"));

            let callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .arg("-rtp_echo")
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            Sipp::uac(net, "uac", "uac_rtp.xml", 1, 1)
                .run(Duration::from_secs(30))
                .assert_all_ok(1, "uac");
            callee.wait(Duration::from_secs(10)).assert_all_ok(1, "uas");
            // The last packets through dumpcap's buffer before the capture stops.
            std::thread::sleep(Duration::from_millis(300));
            stop_capture(cap);
            tl.assert_alive();

            let (uac, uas, tl_port) = (net.uac(), net.trunk(0), net.sip());
            let (uac_media, uas_media) = (net.sipp_media(0), net.sipp_media(1));
            let (lo, hi) = {
                let r = net.media_range();
                let (a, b) = r.split_once('-').expect("range");
                (a.parse::<u32>().expect("lo"), b.parse::<u32>().expect("hi"))
            };

            // 1. Nothing malformed, no dissector error, in the whole capture. RTP/RTCP are
            // decoded on the relay's range and the SIPp media ports.
            let decode = [
                "-d",
                &format!("udp.port=={uac_media},rtp"),
                "-d",
                &format!("udp.port=={uas_media},rtp"),
                "-o",
                "rtp.heuristic_rtp:TRUE",
                "-o",
                "rtcp.heuristic_rtcp:TRUE",
            ];
            let bad = fields(
                &pcap,
                "_ws.malformed || _ws.expert.severity == \"Error\"",
                &["frame.number", "_ws.col.Protocol", "_ws.col.Info"],
                &decode,
            );
            assert!(bad.is_empty(), "tshark flags: {bad:?}");

            // 2. SIP on each leg.
            let sip = fields(
                &pcap,
                "sip",
                &[
                    "udp.srcport",
                    "udp.dstport",
                    "sip.Call-ID",
                    "sip.Via",
                    "sip.Contact",
                    "sip.from.tag",
                    "sip.to.tag",
                    "sdp.connection_info.address",
                    "sdp.media.port",
                    "sip.CSeq.method",
                ],
                &[],
            );
            let is = |p: &[String], a: u16, b: u16| {
                (p[0] == a.to_string() && p[1] == b.to_string())
                    || (p[0] == b.to_string() && p[1] == a.to_string())
            };
            let leg_a: Vec<&Vec<String>> = sip.iter().filter(|p| is(p, uac, tl_port)).collect();
            let leg_b: Vec<&Vec<String>> = sip.iter().filter(|p| is(p, uas, tl_port)).collect();
            assert!(
                leg_a.len() >= 6 && leg_b.len() >= 6,
                "INVITE/180/200/ACK/BYE/200 on both legs: A {leg_a:?}\nB {leg_b:?}"
            );
            let a_ids: BTreeSet<&str> = leg_a.iter().map(|p| p[2].as_str()).collect();
            let b_ids: BTreeSet<&str> = leg_b.iter().map(|p| p[2].as_str()).collect();
            assert_eq!(a_ids.len(), 1, "one Call-ID on leg A: {a_ids:?}");
            assert_eq!(b_ids.len(), 1, "one Call-ID on leg B: {b_ids:?}");
            assert!(a_ids.is_disjoint(&b_ids), "Call-ID crossed: {a_ids:?}");
            for p in &leg_b {
                let joined = p.join(" ");
                assert!(
                    !joined.contains("uac-"),
                    "leg A's identity on leg B: {joined}"
                );
                assert!(
                    !p[3].contains(&format!(":{uac}")),
                    "leg A's Via on leg B: {joined}"
                );
            }
            for p in &leg_a {
                let joined = p.join(" ");
                assert!(
                    !p[4].contains(&format!(":{uas}")),
                    "leg B's Contact on leg A: {joined}"
                );
            }
            // Every SDP names the relay: its address and a port from media.ports, never the
            // other side's media port.
            let mut sdps = 0;
            for p in sip.iter().filter(|p| !p[8].is_empty()) {
                let port: u32 = p[8].parse().expect("m= port");
                let from_tl = p[0] == tl_port.to_string();
                if from_tl {
                    sdps += 1;
                    assert!(
                        (lo..=hi).contains(&port),
                        "SDP from trunkline names port {port}, not a relay port: {p:?}"
                    );
                    assert!(
                        p[7].split(',').all(|a| a == "127.0.0.1"),
                        "SDP from trunkline names {}: {p:?}",
                        p[7]
                    );
                }
            }
            assert!(sdps >= 2, "offer to B and answer to A seen: {sip:?}");

            // 3. RTP: what the caller sent is what the callee got, SSRC/seq/timestamp intact.
            let rtp = fields(
                &pcap,
                "rtp",
                &[
                    "udp.srcport",
                    "udp.dstport",
                    "rtp.ssrc",
                    "rtp.seq",
                    "rtp.timestamp",
                ],
                &decode,
            );
            let key = |p: &Vec<String>| (p[2].clone(), p[3].clone(), p[4].clone());
            let sent: BTreeSet<_> = rtp
                .iter()
                .filter(|p| p[0] == uac_media.to_string())
                .map(key)
                .collect();
            let got: BTreeSet<_> = rtp
                .iter()
                .filter(|p| p[1] == uas_media.to_string())
                .map(key)
                .collect();
            assert!(sent.len() >= 90, "caller sent {} RTP packets", sent.len());
            assert_eq!(
                sent, got,
                "RTP from the caller reaches the callee unchanged (SSRC, seq, timestamp)"
            );
            // The relay's packets to the callee come from a relay port, not the caller's.
            assert!(
                rtp.iter()
                    .filter(|p| p[1] == uas_media.to_string())
                    .all(|p| p[0].parse::<u32>().is_ok_and(|s| (lo..=hi).contains(&s))),
                "RTP to the callee comes from the relay's range"
            );
        },
    );
}
