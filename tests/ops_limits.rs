//! Operations: overload and abuse protection (issue 4, "What to build" 4). Per-trunk
//! `max_cps` and `max_calls` (503 + Retry-After, the trunk never sees more), the process-wide
//! `limits.max_calls` and queue overload, per-source request rate limits (a flood is dropped,
//! other sources and trunks still served) and the scanner User-Agent block list (no answer at
//! all). Each shows in its metric.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

/// One trunk `pbx` (with `trunk_extra` added to its entry, e.g. `max_cps: 5`) and the catch-all
/// route to it, metrics on, and `extra` top-level YAML (e.g. a `limits:` section).
fn start(net: &Net, trunk_extra: &str, extra: &str) -> Trunkline {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let mut yaml = config_yaml(net, &t, &["pbx"]);
    if !trunk_extra.is_empty() {
        // Only trunk entries end in `transport: udp }` (listeners end with their address).
        yaml = yaml.replace(
            "transport: udp }",
            &format!("transport: udp, {trunk_extra} }}"),
        );
    }
    Trunkline::start(net, &with_metrics(net, &yaml, extra))
}

fn retry_after(resp: &str) -> u32 {
    header(resp, "Retry-After", None)
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("503 without a Retry-After (RFC 3261 §21.5.4):\n{resp}"))
}

fn m(net: &Net, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&scrape(net), name, labels).unwrap_or(0.0)
}

/// Polls the metric until it equals `want` (10 s at most).
fn wait_metric(net: &Net, name: &str, labels: &[(&str, &str)], want: f64) {
    let (mut body, mut v) = (String::new(), 0.0);
    let ok = poll_until(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            body = scrape(net);
            v = metric(&body, name, labels).unwrap_or(0.0);
            v == want
        },
    );
    assert!(ok, "{name}{labels:?} = {v}, waited for {want}:\n{body}");
}

/// An OPTIONS from `sock` (with an optional User-Agent) to `to`.
fn options(sock: &UdpSocket, to: SocketAddr, n: u32, ua: Option<&str>) {
    let me = sock.local_addr().expect("local");
    let mut msg = options_request(me, to, n);
    if let Some(ua) = ua {
        msg = msg.replace("Accept:", &format!("User-Agent: {ua}\r\nAccept:"));
    }
    sock.send_to(msg.as_bytes(), to).expect("send");
}

/// Responses arriving on `sock` within `wait`: their status codes.
fn collect(sock: &UdpSocket, wait: Duration) -> Vec<u16> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 65535];
    let mut out = Vec::new();
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Some(c) = status_code(&buf[..n]) {
                out.push(c);
            }
        }
    }
    out
}

/// A SIPp caller at 40 calls/s against a trunk limited to `max_cps: 5`: the UAS never sees
/// more than 5 calls in a second, the rest are answered 503 at once (none of them reaches the
/// trunk), and the limit's counter says how many.
#[test]
fn trunk_max_cps_sheds_with_503() {
    isolated("trunk_max_cps_sheds_with_503", false, |net| {
        let mut tl = start(net, "max_cps: 5", "");
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            1000,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        // 40 calls offered within ~1 s.
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", 40, 40).run(Duration::from_secs(20));
        let callee = callee.stop();
        tl.assert_alive();
        let body = scrape(net);
        let attempts =
            metric(&body, "trunkline_call_attempts_total", &[("trunk", "pbx")]).unwrap_or(0.0);
        let refused = metric(
            &body,
            "trunkline_trunk_limit_rejections_total",
            &[("trunk", "pbx"), ("limit", "cps")],
        )
        .unwrap_or(0.0);
        let rejected_503 = metric(
            &body,
            "trunkline_sip_requests_rejected_total",
            &[("code", "503")],
        )
        .unwrap_or(0.0);
        eprintln!(
            "max_cps 5, 40 calls at 40/s over {:?}: uas saw {}, uac ok {} failed {}, \
             attempts {attempts}, refused {refused}",
            caller.elapsed, callee.incoming, caller.successful, caller.failed
        );
        // All 40 were offered within about a second (SIPp's rate), so at most two windows.
        let windows = caller.elapsed.as_secs_f64().ceil().max(1.0);
        assert!(
            callee.incoming >= 5 && callee.incoming as f64 <= 5.0 * (windows + 1.0),
            "the trunk saw {} calls",
            callee.incoming
        );
        assert_eq!(
            attempts, callee.incoming as f64,
            "every attempt reached the UAS"
        );
        assert_eq!(caller.successful, callee.incoming, "{:?}", caller.errors);
        assert_eq!(caller.failed, 40 - caller.successful);
        assert_eq!(refused, 40.0 - attempts, "each refused call counted once");
        assert_eq!(rejected_503, refused, "each refused call answered 503");
    });
}

/// `max_calls: 5` with calls held up: the 6th INVITE gets 503 with Retry-After while the
/// trunk holds 5; the gauge shows 5, then 0 once the calls end, and a call fits again.
#[test]
fn trunk_max_calls_sixth_gets_503() {
    isolated("trunk_max_calls_sixth_gets_503", false, |net| {
        let mut tl = start(net, "max_calls: 5", "limits: { retry_after: 7 }\n");
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            6,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", 5, 50)
            .pause_ms(2500)
            .spawn();
        wait_metric(
            net,
            "trunkline_trunk_active_calls",
            &[("trunk", "pbx")],
            5.0,
        );
        let resp = invite_once(net.sip_addr(), "sixth", Duration::from_secs(3))
            .expect("an answer to the 6th INVITE");
        assert_eq!(status_code(resp.as_bytes()), Some(503), "{resp}");
        assert_eq!(retry_after(&resp), 7, "limits.retry_after");
        assert_eq!(
            m(
                net,
                "trunkline_trunk_limit_rejections_total",
                &[("trunk", "pbx"), ("limit", "calls")]
            ),
            1.0
        );
        let ctx = format!("trunkline log:\n{}", tl.log_tail(20));
        caller.wait(Duration::from_secs(15)).assert_all_ok(5, &ctx);
        wait_metric(
            net,
            "trunkline_trunk_active_calls",
            &[("trunk", "pbx")],
            0.0,
        );
        // Room again: a 6th call goes through (the UAS answers it). A raw INVITE: a second
        // SIPp run would reuse the first one's branches, which the transaction layer still
        // holds (RFC 6026 Accepted state) and absorbs as retransmissions.
        let ok = invite_once(net.sip_addr(), "again", Duration::from_secs(5))
            .expect("an answer once the trunk has room");
        assert_eq!(status_code(ok.as_bytes()), Some(200), "{ok}");
        drop(callee);
        assert_eq!(
            m(net, "trunkline_call_attempts_total", &[("trunk", "pbx")]),
            6.0,
            "the refused call never reached the trunk"
        );
        tl.assert_alive();
    });
}

/// `limits.max_calls: 2` (process-wide): with two calls up, a third INVITE gets 503 with
/// Retry-After and counts as an overload rejection (reason "calls"); OPTIONS and the calls
/// in progress are unaffected.
#[test]
fn process_max_calls_gives_503_retry_after() {
    isolated("process_max_calls_gives_503_retry_after", false, |net| {
        let mut tl = start(net, "", "limits:\n  max_calls: 2\n");
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            2,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", 2, 50)
            .pause_ms(2000)
            .spawn();
        wait_metric(
            net,
            "trunkline_trunk_active_calls",
            &[("trunk", "pbx")],
            2.0,
        );
        let resp = invite_once(net.sip_addr(), "third", Duration::from_secs(3))
            .expect("an answer to the 3rd INVITE");
        assert_eq!(status_code(resp.as_bytes()), Some(503), "{resp}");
        assert_eq!(retry_after(&resp), 5, "default retry_after");
        assert_eq!(
            options_status(net.sip_addr(), Duration::from_secs(2)),
            Some(200)
        );
        assert_eq!(
            m(
                net,
                "trunkline_overload_rejections_total",
                &[("reason", "calls")]
            ),
            1.0
        );
        let ctx = format!("trunkline log:\n{}", tl.log_tail(20));
        caller.wait(Duration::from_secs(15)).assert_all_ok(2, &ctx);
        callee.wait(Duration::from_secs(10)).assert_all_ok(2, &ctx);
        tl.assert_alive();
    });
}

/// `source_rate: 20, source_burst: 20`: a flood of 400 OPTIONS from 127.0.0.2 gets about
/// the burst answered and the rest dropped unanswered (counted), while another source
/// (127.0.0.3) is answered during the flood and the trunk's own address (127.0.0.1) is
/// exempt; a SIPp call from there still completes.
#[test]
fn source_flood_is_dropped_others_still_served() {
    isolated(
        "source_flood_is_dropped_others_still_served",
        false,
        |net| {
            let mut tl = start(net, "", "limits: { source_rate: 20, source_burst: 20 }\n");
            let to = net.sip_addr();
            let flood = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
            let other = UdpSocket::bind("127.0.0.3:0").expect("bind 127.0.0.3");
            let trunk = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            let t0 = Instant::now();
            for n in 0..400 {
                options(&flood, to, n, None);
                if n % 100 == 50 {
                    options(&other, to, n, None);
                }
            }
            // The trunk's address: 100 requests at once, all answered.
            for n in 0..100 {
                options(&trunk, to, 1000 + n, None);
            }
            let sent_in = t0.elapsed();
            let flood_answers = collect(&flood, Duration::from_millis(700));
            let other_answers = collect(&other, Duration::from_millis(100));
            let trunk_answers = collect(&trunk, Duration::from_millis(100));
            eprintln!(
                "flood of 400 in {sent_in:?}: {} answered; other source {} of 4; trunk {} of 100",
                flood_answers.len(),
                other_answers.len(),
                trunk_answers.len()
            );
            // The burst, plus 20/s for the time the flood took to send.
            let allowed = 20.0 + 20.0 * sent_in.as_secs_f64() + 1.0;
            assert!(
                flood_answers.len() >= 20 && flood_answers.len() as f64 <= allowed,
                "{} flood requests answered (at most {allowed:.0} allowed)",
                flood_answers.len()
            );
            assert_eq!(other_answers.len(), 4, "another source is not limited");
            assert_eq!(trunk_answers.len(), 100, "trunk addresses are exempt");
            let limited = m(net, "trunkline_requests_rate_limited_total", &[]);
            assert_eq!(limited, 400.0 - flood_answers.len() as f64);
            assert!(m(net, "trunkline_rate_limit_sources", &[]) >= 1.0);
            // A call (SIPp on 127.0.0.1, the trunk's address) still completes.
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let ctx = format!("trunkline log:\n{}", tl.log_tail(20));
            Sipp::uac(net, "uac", "uac_basic.xml", 1, 1)
                .run(Duration::from_secs(15))
                .assert_all_ok(1, &ctx);
            callee.wait(Duration::from_secs(10)).assert_all_ok(1, &ctx);
            tl.assert_alive();
        },
    );
}

/// Requests from a scanner (`User-Agent: friendly-scanner`, the default block list; any case)
/// get no answer at all, not even to an INVITE; the same request without it is answered; each
/// is counted.
#[test]
fn scanner_user_agent_gets_no_answer() {
    isolated("scanner_user_agent_gets_no_answer", false, |net| {
        let mut tl = start(net, "", "");
        let to = net.sip_addr();
        let s = UdpSocket::bind("127.0.0.5:0").expect("bind");
        options(&s, to, 1, Some("friendly-scanner"));
        options(&s, to, 2, Some("SIPVicious 0.3.4"));
        let invite = format!(
            "INVITE sip:100@{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-scan-1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:100@{me}>;tag=scan\r\n\
             To: <sip:100@{to}>\r\n\
             Call-ID: scan-1@x\r\n\
             CSeq: 1 INVITE\r\n\
             User-Agent: friendly-scanner\r\n\
             Content-Length: 0\r\n\r\n",
            me = s.local_addr().expect("local")
        );
        s.send_to(invite.as_bytes(), to).expect("send");
        assert_eq!(
            collect(&s, Duration::from_millis(1000)),
            Vec::<u16>::new(),
            "a scanner gets nothing back"
        );
        options(&s, to, 3, Some("Linphone/5.2"));
        assert_eq!(collect(&s, Duration::from_millis(500)), vec![200]);
        assert_eq!(
            m(
                net,
                "trunkline_requests_blocked_total",
                &[("reason", "user_agent")]
            ),
            3.0
        );
        tl.assert_alive();
    });
}

/// Process overload: with `overload_queue: 20`, a burst of thousands of requests queued at
/// once turns the overload state on; INVITEs that arrive meanwhile get 503 with Retry-After
/// (counted, reason "queue") while the OPTIONS are all still answered, and the state clears
/// once the queue drains.
#[test]
fn queue_overload_sheds_invites_with_503() {
    isolated("queue_overload_sheds_invites_with_503", false, |net| {
        let mut tl = start(net, "", "limits: { overload_queue: 20 }\n");
        let to = net.sip_addr();
        let burst = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let caller = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let me = caller.local_addr().expect("local");
        let mut invites = 0;
        for n in 0..4000 {
            options(&burst, to, n, None);
            if n % 200 == 199 {
                invites += 1;
                let inv = format!(
                    "INVITE sip:100@{to} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {me};branch=z9hG4bK-ovl-{n}\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:ovl@{me}>;tag=ovl{n}\r\n\
                     To: <sip:100@{to}>\r\n\
                     Call-ID: ovl-{n}@x\r\n\
                     CSeq: 1 INVITE\r\n\
                     Contact: <sip:ovl@{me}>\r\n\
                     Content-Length: 0\r\n\r\n"
                );
                caller.send_to(inv.as_bytes(), to).expect("send");
            }
        }
        // Read the answers (the OPTIONS' too, so the socket buffer does not overflow).
        // Distinct INVITEs (the 503s are retransmitted until ACKed, RFC 3261 §17.2.1).
        let mut retry = std::collections::HashSet::new();
        let mut other = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        caller
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 65535];
        while Instant::now() < deadline {
            if let Ok((n, _)) = caller.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let cid = header(&text, "Call-ID", Some("i"))
                    .unwrap_or("")
                    .to_string();
                if status_code(&buf[..n]) == Some(503)
                    && header(&text, "Retry-After", None).is_some()
                {
                    retry.insert(cid);
                } else if status_code(&buf[..n]).is_some_and(|c| c >= 200) {
                    other.insert(cid);
                }
            }
        }
        let options_answered = collect(&burst, Duration::from_millis(200)).len();
        let body = scrape(net);
        let shed = metric(
            &body,
            "trunkline_overload_rejections_total",
            &[("reason", "queue")],
        )
        .unwrap_or(0.0);
        eprintln!(
            "burst of 4000 OPTIONS + {invites} INVITEs: {} INVITEs 503+Retry-After, {} \
             other finals; shed counter {shed}; OPTIONS answered (tail) {options_answered}",
            retry.len(),
            other.len()
        );
        assert!(!retry.is_empty(), "no INVITE was shed during the burst");
        assert_eq!(shed, retry.len() as f64, "each shed INVITE counted once");
        assert_eq!(
            metric(&body, "trunkline_overloaded", &[]),
            Some(0.0),
            "overload clears once the queue drained"
        );
        tl.assert_alive();
    });
}

/// Limits count calls *from* a trunk too: the caller (SIPp on the UAC port) is the trunk
/// `carrier` with `max_calls: 2`; with two of its calls up, its third INVITE gets 503 with
/// Retry-After although the destination trunk has room.
#[test]
fn calls_from_a_trunk_count_against_it() {
    isolated("calls_from_a_trunk_count_against_it", false, |net| {
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
            &format!("127.0.0.1:{}, transport: udp }}", net.uac()),
            &format!("127.0.0.1:{}, transport: udp, max_calls: 2 }}", net.uac()),
        );
        assert!(yaml.contains("max_calls: 2"), "{yaml}");
        let mut tl = Trunkline::start(net, &with_metrics(net, &yaml, ""));
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            2,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        // Three calls held 2 s each: the third is refused at once.
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", 3, 50)
            .pause_ms(2000)
            .run(Duration::from_secs(20));
        let body = scrape(net);
        eprintln!(
            "carrier max_calls 2, 3 calls: ok {} failed {}",
            caller.successful, caller.failed
        );
        assert_eq!(
            (caller.successful, caller.failed),
            (2, 1),
            "{}",
            caller.errors
        );
        assert_eq!(
            metric(
                &body,
                "trunkline_trunk_limit_rejections_total",
                &[("trunk", "carrier"), ("limit", "calls")]
            ),
            Some(1.0)
        );
        assert_eq!(
            metric(&body, "trunkline_call_attempts_total", &[("trunk", "pbx")]),
            Some(2.0)
        );
        assert_eq!(
            metric(
                &body,
                "trunkline_trunk_active_calls",
                &[("trunk", "carrier")]
            ),
            Some(0.0),
            "released when the calls ended"
        );
        callee
            .wait(Duration::from_secs(10))
            .assert_all_ok(2, &tl.log_tail(20));
        tl.assert_alive();
    });
}

/// `limits` follow a reload: a User-Agent that was served is blocked once the file says so
/// (POST /reload), with no restart.
#[test]
fn limits_follow_a_reload() {
    isolated("limits_follow_a_reload", false, |net| {
        let t = [Trunk {
            name: "pbx",
            port: net.trunk(0),
        }];
        let base = config_yaml(net, &t, &["pbx"]);
        let mut tl = Trunkline::start(net, &with_metrics(net, &base, ""));
        let to = net.sip_addr();
        let s = UdpSocket::bind("127.0.0.6:0").expect("bind");
        options(&s, to, 1, Some("EvilBot/1.0"));
        assert_eq!(collect(&s, Duration::from_millis(500)), vec![200]);
        replace_config(
            net,
            &with_metrics(net, &base, "limits:\n  user_agent_block: [evilbot]\n"),
            false,
        );
        let (code, body) = http(net.metrics_addr(), "POST", "/reload");
        assert_eq!(code, 200, "{body}");
        options(&s, to, 2, Some("EvilBot/1.0"));
        assert_eq!(collect(&s, Duration::from_millis(700)), Vec::<u16>::new());
        // The list replaced the default one: friendly-scanner is served now.
        options(&s, to, 3, Some("friendly-scanner"));
        assert_eq!(collect(&s, Duration::from_millis(500)), vec![200]);
        tl.assert_alive();
    });
}
