//! Operations, part 1: the Prometheus endpoint on `metrics.listen` (issue 4, "What to build" 1).
//! `GET /metrics` serves `trunkline_` series that `promtool check metrics` accepts (promtool
//! must be installed: scripts/install-deps.sh; a missing promtool fails the test), and the
//! series move with real SIPp calls. `GET /health` answers, unknown paths are 404.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

/// One trunk `pbx` on trunk port 0; `to_user` 911 is rejected 403 by the dial plan.
fn start(net: &Net) -> Trunkline {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let yaml = config_yaml(net, &t, &["pbx"]).replace(
        "dialplan:\n",
        "dialplan:\n  - match: { to_user: '^911$' }\n    reject: { code: 403 }\n",
    );
    Trunkline::start(net, &with_metrics(net, &yaml, ""))
}

#[test]
fn metrics_pass_promtool_and_move_with_calls() {
    require_promtool();
    isolated("metrics_pass_promtool_and_move_with_calls", false, |net| {
        let mut tl = start(net);
        let (code, body) = http(net.metrics_addr(), "GET", "/health");
        assert_eq!((code, body.trim()), (200, "ok"));
        let (code, _) = http(net.metrics_addr(), "GET", "/nope");
        assert_eq!(code, 404);

        let before = scrape(net);
        promtool_check(&before);
        // The list, present from the start.
        for name in [
            "trunkline_active_calls",
            "trunkline_post_dial_delay_seconds_bucket",
            "trunkline_sip_transactions_total",
            "trunkline_sip_retransmissions_total",
            "trunkline_sip_messages_received_total",
            "trunkline_sip_messages_sent_total",
            "trunkline_relay_sessions",
            "trunkline_relay_packets_forwarded_total",
            "trunkline_relay_bytes_forwarded_total",
            "trunkline_relay_mos_bucket",
            "trunkline_relay_jitter_seconds_bucket",
            "trunkline_relay_loss_ratio_bucket",
            "trunkline_relay_backend_info",
            "trunkline_config_reloads_total",
            "trunkline_config_generation",
            "trunkline_build_info",
        ] {
            assert!(
                metric(&before, name, &[]).is_some(),
                "{name} missing from /metrics:\n{before}"
            );
        }
        assert_eq!(
            metric(&before, "trunkline_config_generation", &[]),
            Some(1.0)
        );
        assert_eq!(
            metric(&before, "trunkline_relay_backend_info", &[]),
            Some(1.0),
            "exactly one relay back end is in use"
        );
        assert_eq!(metric(&before, "trunkline_build_info", &[]), Some(1.0));
        let rx0 = metric(&before, "trunkline_sip_messages_received_total", &[]).unwrap_or(0.0);
        let tx0 = metric(&before, "trunkline_sip_messages_sent_total", &[]).unwrap_or(0.0);

        // 20 answered calls through trunk pbx.
        let n = 20u32;
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            n,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", n, 20)
            .pause_ms(100)
            .run(LIMIT);
        let callee = callee.wait(Duration::from_secs(15));
        caller.assert_all_ok(n as u64, "uac");
        callee.assert_all_ok(n as u64, "uas");
        // One call the dial plan rejects.
        let resp = invite_once(net.sip_addr(), "911", Duration::from_secs(5))
            .expect("an answer to INVITE 911");
        assert_eq!(status_code(resp.as_bytes()), Some(403), "{resp}");
        tl.assert_alive();

        let after = scrape(net);
        promtool_check(&after);
        let get = |name: &str, labels: &[(&str, &str)]| metric(&after, name, labels);
        assert_eq!(
            get(
                "trunkline_calls_total",
                &[("trunk", "pbx"), ("status_class", "2xx")]
            ),
            Some(n as f64),
            "answered calls by trunk:\n{after}"
        );
        assert_eq!(
            get("trunkline_call_attempts_total", &[("trunk", "pbx")]),
            Some(n as f64)
        );
        assert_eq!(
            get("trunkline_post_dial_delay_seconds_count", &[]),
            Some(n as f64),
            "one post-dial delay per answered call"
        );
        assert_eq!(
            get("trunkline_call_duration_seconds_count", &[]),
            Some(n as f64)
        );
        assert_eq!(
            get("trunkline_sip_requests_rejected_total", &[("code", "403")]),
            Some(1.0),
            "the dial plan's 403:\n{after}"
        );
        assert_eq!(get("trunkline_active_calls", &[]), Some(0.0));
        // Per call trunkline receives at least INVITE, ACK, BYE (leg A) and 180, 200, 200 (leg
        // B), and sends as many; plus the rejected INVITE and its ACK.
        let rx = get(
            "trunkline_sip_messages_received_total",
            &[("transport", "UDP")],
        )
        .expect("udp received");
        let tx =
            get("trunkline_sip_messages_sent_total", &[("transport", "UDP")]).expect("udp sent");
        assert!(
            rx - rx0 >= (6 * n + 2) as f64,
            "messages received moved {rx0} -> {rx}"
        );
        assert!(
            tx - tx0 >= (6 * n + 1) as f64,
            "messages sent moved {tx0} -> {tx}"
        );
        assert!(
            get("trunkline_sip_transactions_total", &[("side", "server")]).unwrap_or(0.0)
                >= (2 * n + 1) as f64,
            "server transactions (INVITE and BYE per call)"
        );
        assert!(
            get("trunkline_sip_transactions_total", &[("side", "client")]).unwrap_or(0.0)
                >= (2 * n) as f64,
            "client transactions (INVITE and BYE per call)"
        );
    });
}

/// `trunkline_calls_total` by direction: calls from a trunk count as `inbound` at that trunk,
/// calls sent to a trunk as `outbound` at it; a call from the trunk that the dial plan rejects
/// counts inbound with its status class.
#[test]
fn calls_are_counted_by_direction() {
    require_promtool();
    isolated("calls_are_counted_by_direction", false, |net| {
        let t = [
            Trunk {
                name: "pbx",
                port: net.trunk(0),
            },
            Trunk {
                name: "carrier",
                port: net.uac(),
            },
        ];
        let yaml = config_yaml(net, &t, &["pbx"]).replace(
            "dialplan:\n",
            "dialplan:\n  - match: { to_user: '^911$' }\n    reject: { code: 403 }\n",
        );
        let mut tl = Trunkline::start(net, &with_metrics(net, &yaml, ""));
        let n = 4;
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            n,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        // SIPp calls from the carrier trunk's address.
        Sipp::uac(net, "uac", "uac_basic.xml", n, 10)
            .pause_ms(100)
            .run(LIMIT)
            .assert_all_ok(n as u64, "uac");
        callee.wait(LIMIT).assert_all_ok(n as u64, "uas");
        // And one the dial plan refuses, from the same trunk address.
        let from = format!("127.0.0.1:{}", net.uac());
        let r = invite_once_from(&from, net.sip_addr(), "911", Duration::from_secs(5))
            .expect("an answer to INVITE 911");
        assert_eq!(status_code(r.as_bytes()), Some(403), "{r}");
        tl.assert_alive();
        let m = scrape(net);
        promtool_check(&m);
        let get = |labels: &[(&str, &str)]| metric(&m, "trunkline_calls_total", labels);
        let want = n as f64;
        assert_eq!(
            get(&[
                ("trunk", "carrier"),
                ("direction", "inbound"),
                ("status_class", "2xx")
            ]),
            Some(want),
            "{m}"
        );
        assert_eq!(
            get(&[
                ("trunk", "pbx"),
                ("direction", "outbound"),
                ("status_class", "2xx")
            ]),
            Some(want),
            "{m}"
        );
        assert_eq!(
            get(&[
                ("trunk", "carrier"),
                ("direction", "inbound"),
                ("status_class", "4xx")
            ]),
            Some(1.0),
            "the refused call counts at its source: {m}"
        );
        assert_eq!(
            get(&[("trunk", "pbx"), ("direction", "inbound")]),
            None,
            "nothing came from the pbx: {m}"
        );
    });
}

/// Refusals before routing are counted by reason: an unparseable datagram (parse_error) and a
/// request the RFC 3261 checks refuse (an unknown `Require` extension gets 420: admission).
#[test]
fn rejected_messages_are_counted_by_reason() {
    require_promtool();
    isolated("rejected_messages_are_counted_by_reason", false, |net| {
        let mut tl = start(net);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let me = sock.local_addr().expect("addr");
        sock.send_to(b"INVITE this is not SIP\r\n\r\n", net.sip_addr())
            .expect("send");
        let opts = options_request(me, net.sip_addr(), 1).replacen(
            "Content-Length:",
            "Require: no-such-extension\r\nContent-Length:",
            1,
        );
        sock.send_to(opts.as_bytes(), net.sip_addr()).expect("send");
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Some(code) = status_code(&buf[..n]) {
                got.push(code);
                if code == 420 {
                    break;
                }
            }
        }
        assert!(
            got.contains(&420),
            "420 Bad Extension for the Require: {got:?}"
        );
        tl.assert_alive();
        let m = scrape(net);
        promtool_check(&m);
        let get = |reason: &str| {
            metric(
                &m,
                "trunkline_sip_messages_rejected_total",
                &[("reason", reason)],
            )
        };
        assert!(get("parse_error").unwrap_or(0.0) >= 1.0, "{m}");
        assert_eq!(get("admission"), Some(1.0), "{m}");
        assert_eq!(get("rate_limited"), Some(0.0), "{m}");
    });
}
