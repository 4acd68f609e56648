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
            let y = with_metrics(
                net,
                &with_trunk_keys(&y, "pbx", net.trunk(0), "refer: handle"),
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

/// The PBX of the attended transfer: a raw UAS on the trunk port.
struct Pbx {
    sock: std::net::UdpSocket,
    tl: std::net::SocketAddr,
}

impl Pbx {
    /// Take a call: its INVITE answered 200 with SDP (To tag `tag`), its ACK.
    fn answer(&self, tag: &str) -> common::rawsip::Msg {
        let inv = common::rawsip::recv_until(&self.sock, Duration::from_secs(10), "INVITE", |m| {
            m.is_request("INVITE")
        });
        let port = self.sock.local_addr().unwrap().port() + 1;
        common::rawsip::reply(
            &self.sock,
            self.tl,
            &inv,
            200,
            tag,
            Some(&common::rawsip::sdp("127.0.0.1", port)),
        );
        common::rawsip::recv_until(&self.sock, Duration::from_secs(5), "ACK", |m| {
            m.is_request("ACK")
        });
        inv
    }
}

/// An attended transfer (RFC 3891) between two calls of trunkline's: the PBX talks to two
/// carrier callers and REFERs the first to the second's dialog with Replaces. trunkline joins
/// the two callers through the first call's relay pair (the second caller echoes the first's
/// RTP), BYEs both of the PBX's legs and NOTIFYs it 200; the first caller's BYE reaches the
/// second.
#[test]
fn an_attended_transfer_joins_two_carrier_callers() {
    isolated(
        "an_attended_transfer_joins_two_carrier_callers",
        false,
        |net| {
            let t = [Trunk {
                name: "pbx",
                port: net.trunk(0),
            }];
            let y = config_yaml(net, &t, &["pbx"]);
            let y = with_metrics(
                net,
                &with_trunk_keys(&y, "pbx", net.trunk(0), "refer: handle"),
                "",
            );
            let mut tl = Trunkline::start(net, &y);
            std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("write tone.wav");
            let pbx = Pbx {
                sock: std::net::UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind pbx"),
                tl: net.sip_addr(),
            };
            let first = Sipp::uac(net, "first", "uac_transferred.xml", 1, 1).spawn();
            let inv1 = pbx.answer("p1");
            let second_port = net.spare(30).to_string();
            let second_media = net.sipp_media(3).to_string();
            let second = Sipp::uac(net, "second", "uac_joined.xml", 1, 1)
                .args(&["-p", &second_port, "-mp", &second_media, "-rtp_echo"])
                .spawn();
            let inv2 = pbx.answer("p2");
            // REFER in the first call's dialog, Replaces naming the second's.
            let h =
                |m: &common::rawsip::Msg, n: &str| header(&m.text, n, None).unwrap().to_string();
            let contact = h(&inv1, "Contact");
            let target = contact
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_string();
            let ours2 = h(&inv2, "From").split("tag=").nth(1).unwrap().to_string();
            let cid2 = h(&inv2, "Call-ID").replace('@', "%40");
            let refer = format!(
                "REFER {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-refer1\r\n\
                 From: {};tag=p1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 REFER\r\n\
                 Contact: <sip:pbx@127.0.0.1:{p}>\r\nMax-Forwards: 70\r\n\
                 Refer-To: <sip:2000@127.0.0.1:{p}?Replaces={cid2}%3Bto-tag%3D{ours2}%3Bfrom-tag%3Dp2>\r\n\
                 Content-Length: 0\r\n\r\n",
                h(&inv1, "To"),
                h(&inv1, "From"),
                h(&inv1, "Call-ID"),
                p = net.trunk(0)
            );
            pbx.sock
                .send_to(refer.as_bytes(), pbx.tl)
                .expect("send REFER");
            // Every request to the PBX answered 200 until both its legs are ended and the
            // transfer reported done.
            let (mut accepted, mut done, mut byes) = (false, false, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(20);
            while !(accepted && done && byes.len() == 2) && Instant::now() < deadline {
                let m =
                    common::rawsip::recv_until(&pbx.sock, Duration::from_secs(20), "any", |_| true);
                if m.code() == Some(202) {
                    accepted = true;
                } else if m.is_request("NOTIFY") {
                    done |= m.body().starts_with("SIP/2.0 200");
                    common::rawsip::reply(&pbx.sock, pbx.tl, &m, 200, "p", None);
                } else if m.is_request("BYE") {
                    byes.push(h(&m, "Call-ID"));
                    common::rawsip::reply(&pbx.sock, pbx.tl, &m, 200, "p", None);
                }
            }
            assert!(accepted && done, "202 and NOTIFY 200: {accepted} {done}");
            byes.sort();
            let mut want = vec![h(&inv1, "Call-ID"), h(&inv2, "Call-ID")];
            want.sort();
            assert_eq!(byes, want, "both of the PBX's legs ended");
            let first = first.wait(Duration::from_secs(20));
            let second = second.wait(Duration::from_secs(20));
            tl.assert_alive();
            let ctx = format!("trunkline log tail:\n{}", tl.log_tail(30));
            first.assert_all_ok(1, &ctx);
            second.assert_all_ok(1, &ctx);
            let body = scrape(net);
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
