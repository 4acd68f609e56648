//! End-to-end interop: SIPp caller → trunkline (B2BUA) → SIPp callee(s), over loopback, each
//! test in its own network namespace (see `common`). The callee scenarios fail any call in which
//! the caller's Call-ID, branch, tag or Contact shows up, or that arrives with two Vias, so every
//! passing call here also proves topology hiding (RFC 3261 §6 "B2BUA"; ARCHITECTURE.md invariant 3).

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn one_trunk(net: &Net) -> Trunkline {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    Trunkline::start(net, &config_yaml(net, &t, &["pbx"]))
}

/// Runs `uas` on trunk 0 and `uac` against trunkline; asserts every call succeeds on both sides.
fn call_pair(
    net: &Net,
    tl: &mut Trunkline,
    uas: &str,
    uac: &str,
    calls: u32,
    rate: u32,
    pause: u32,
) {
    let callee = Sipp::uas(net, "uas", uas, net.trunk(0), net.sipp_media(1), calls).spawn();
    wait_udp_bound(net.trunk(0), Duration::from_secs(5));
    let caller = Sipp::uac(net, "uac", uac, calls, rate)
        .pause_ms(pause)
        .run(LIMIT);
    let callee = callee.wait(Duration::from_secs(15));
    tl.assert_alive();
    let ctx = format!(
        "{uac} -> trunkline -> {uas}; trunkline log tail:\n{}",
        tl.log_tail(20)
    );
    caller.assert_all_ok(calls as u64, &ctx);
    callee.assert_all_ok(calls as u64, &ctx);
}

/// RFC 3261 §13/§15: INVITE with SDP, 180, 200, ACK, BYE, 200 through the B2BUA.
#[test]
fn basic_call() {
    isolated("basic_call", false, |net| {
        let mut tl = one_trunk(net);
        call_pair(net, &mut tl, "uas_basic.xml", "uac_basic.xml", 5, 10, 200);
    });
}

/// The acceptance run: 300 calls at 50 calls/s, none fails, the callee never sees the
/// caller's Call-ID (nor branch, tag, Contact).
#[test]
fn load_300_calls_at_50_per_second() {
    isolated("load_300_calls_at_50_per_second", false, |net| {
        let mut tl = one_trunk(net);
        let t0 = Instant::now();
        call_pair(
            net,
            &mut tl,
            "uas_basic.xml",
            "uac_basic.xml",
            300,
            50,
            1000,
        );
        eprintln!("300 calls at 50/s done in {:?}", t0.elapsed());
    });
}

/// RFC 3261 §9: the caller cancels while the callee rings; 200 for the CANCEL, 487 for the
/// INVITE on both legs, and the callee gets its ACK.
#[test]
fn cancel_ringing_call() {
    isolated("cancel_ringing_call", false, |net| {
        let mut tl = one_trunk(net);
        call_pair(net, &mut tl, "uas_cancel.xml", "uac_cancel.xml", 3, 5, 0);
    });
}

/// A 486 from the callee reaches the caller (RFC 3261 §16.7-like best response; 4xx other
/// than 408 does not fail over).
#[test]
fn busy_486_reaches_caller() {
    isolated("busy_486_reaches_caller", false, |net| {
        let mut tl = one_trunk(net);
        call_pair(net, &mut tl, "uas_busy.xml", "uac_busy.xml", 3, 5, 0);
    });
}

/// Hold: re-INVITE with a=sendonly answered a=recvonly (RFC 3264 §8.4) crosses both legs.
#[test]
fn hold_reinvite() {
    isolated("hold_reinvite", false, |net| {
        let mut tl = one_trunk(net);
        call_pair(net, &mut tl, "uas_hold.xml", "uac_hold.xml", 3, 5, 200);
    });
}

/// Offerless re-INVITE (RFC 3261 §14.1, RFC 3264): the callee's offer in its 200 reaches the
/// caller through the relay, the caller's answer in its ACK reaches the callee in trunkline's
/// ACK (which waits for it).
#[test]
fn offerless_reinvite() {
    isolated("offerless_reinvite", false, |net| {
        let mut tl = one_trunk(net);
        call_pair(
            net,
            &mut tl,
            "uas_reinvite_offerless.xml",
            "uac_reinvite_offerless.xml",
            3,
            5,
            200,
        );
    });
}

/// The callee hangs up: its BYE reaches the caller in the caller's dialog (RFC 3261 §15.1).
#[test]
fn bye_from_callee() {
    isolated("bye_from_callee", false, |net| {
        let mut tl = one_trunk(net);
        call_pair(
            net,
            &mut tl,
            "uas_callee_bye.xml",
            "uac_callee_bye.xml",
            3,
            5,
            200,
        );
    });
}

/// The caller's leg over TCP (RFC 3261 §18), the trunk leg over UDP.
#[test]
fn tcp_caller_leg() {
    isolated("tcp_caller_leg", false, |net| {
        let mut tl = one_trunk(net);
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
            .args(&["-t", "t1"])
            .pause_ms(200)
            .run(LIMIT);
        let callee = callee.wait(Duration::from_secs(15));
        tl.assert_alive();
        let ctx = format!("TCP caller; trunkline log tail:\n{}", tl.log_tail(20));
        caller.assert_all_ok(5, &ctx);
        callee.assert_all_ok(5, &ctx);
    });
}

/// OPTIONS addressed to trunkline itself is answered 200 (RFC 3261 §11.2), from SIPp and
/// from a raw socket.
#[test]
fn options_to_trunkline() {
    isolated("options_to_trunkline", false, |net| {
        let mut tl = one_trunk(net);
        let r = Sipp::uac(net, "uac", "uac_options.xml", 3, 10).run(LIMIT);
        r.assert_all_ok(3, "OPTIONS via SIPp");
        assert_eq!(options_status(tl.addr, Duration::from_secs(3)), Some(200));
        tl.assert_alive();
    });
}

/// Failover on 503: trunk 1 answers 503, trunk 2 answers 200; every call succeeds and each
/// trunk sees every call once.
#[test]
fn failover_on_503() {
    isolated("failover_on_503", false, |net| {
        let t = [
            Trunk {
                name: "first",
                port: net.trunk(0),
            },
            Trunk {
                name: "second",
                port: net.trunk(1),
            },
        ];
        let mut tl = Trunkline::start(net, &config_yaml(net, &t, &["first", "second"]));
        let down = Sipp::uas(
            net,
            "uas503",
            "uas_unavailable.xml",
            net.trunk(0),
            net.sipp_media(1),
            3,
        )
        .spawn();
        let up = Sipp::uas(
            net,
            "uas200",
            "uas_basic.xml",
            net.trunk(1),
            net.sipp_media(2),
            3,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        wait_udp_bound(net.trunk(1), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", 3, 5)
            .pause_ms(200)
            .run(LIMIT);
        let down = down.wait(Duration::from_secs(15));
        let up = up.wait(Duration::from_secs(15));
        tl.assert_alive();
        let ctx = format!("failover 503; trunkline log tail:\n{}", tl.log_tail(30));
        caller.assert_all_ok(3, &ctx);
        down.assert_all_ok(3, &ctx);
        up.assert_all_ok(3, &ctx);
    });
}

/// Failover on a transport error: trunk 1 is a closed port (ICMP port unreachable), so the
/// call must move to trunk 2 at once, well before timer B (RFC 3261 §17.1.1.2 / §18.4 says a
/// transport error is a 503-equivalent failure of the transaction).
#[test]
fn failover_on_closed_port_is_fast() {
    isolated("failover_on_closed_port_is_fast", false, |net| {
        let t = [
            Trunk {
                name: "dead",
                port: net.closed(),
            },
            Trunk {
                name: "alive",
                port: net.trunk(1),
            },
        ];
        let mut tl = Trunkline::start(net, &config_yaml(net, &t, &["dead", "alive"]));
        let up = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(1),
            net.sipp_media(2),
            1,
        )
        .spawn();
        wait_udp_bound(net.trunk(1), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", 1, 1)
            .pause_ms(100)
            .run(LIMIT);
        let up = up.wait(Duration::from_secs(15));
        tl.assert_alive();
        let ctx = format!(
            "failover closed port; trunkline log tail:\n{}",
            tl.log_tail(30)
        );
        caller.assert_all_ok(1, &ctx);
        up.assert_all_ok(1, &ctx);
        // One call with a 100 ms pause: everything beyond ~2 s is waiting for a timeout.
        assert!(
            caller.elapsed < Duration::from_millis(2500),
            "call via the second trunk took {:?}; the closed port should fail over at once",
            caller.elapsed
        );
    });
}

/// A 6xx is final (RFC 3261 §16.7 step 5, §21.6): trunk 1 answers 603, the caller gets 603,
/// and trunk 2 never sees an INVITE.
#[test]
fn decline_603_stops_failover() {
    isolated("decline_603_stops_failover", false, |net| {
        let t = [
            Trunk {
                name: "first",
                port: net.trunk(0),
            },
            Trunk {
                name: "second",
                port: net.trunk(1),
            },
        ];
        let second = UdpSocket::bind(("127.0.0.1", net.trunk(1))).expect("bind trunk 2");
        second.set_nonblocking(true).expect("nonblocking");
        let mut tl = Trunkline::start(net, &config_yaml(net, &t, &["first", "second"]));
        let first = Sipp::uas(
            net,
            "uas603",
            "uas_decline.xml",
            net.trunk(0),
            net.sipp_media(1),
            3,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_decline.xml", 3, 5).run(LIMIT);
        let first = first.wait(Duration::from_secs(15));
        // Checked below: nothing reaches trunk 2. Time for a stray message to arrive.
        std::thread::sleep(Duration::from_millis(300));
        tl.assert_alive();
        let ctx = format!("603; trunkline log tail:\n{}", tl.log_tail(30));
        caller.assert_all_ok(3, &ctx);
        first.assert_all_ok(3, &ctx);
        let mut buf = [0u8; 65535];
        if let Ok((n, from)) = second.recv_from(&mut buf) {
            panic!(
                "trunk 2 received a message after a 603 from trunk 1 (from {from}):\n{}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    });
}

/// No dial plan rule matches: 404 (RFC 3261 §21.4.5).
#[test]
fn no_route_is_404() {
    isolated("no_route_is_404", false, |net| {
        let t = [Trunk {
            name: "pbx",
            port: net.trunk(0),
        }];
        let only_nines: &[&str] = &["pbx"];
        let y = config_yaml_rules(net, &t, &[("^9[0-9]+$", only_nines)]);
        let mut tl = Trunkline::start(net, &y);
        let trunk = UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind trunk");
        trunk.set_nonblocking(true).expect("nonblocking");
        // SIPp calls service 1000, which does not match ^9.
        let caller = Sipp::uac(net, "uac", "uac_notfound.xml", 2, 5).run(LIMIT);
        tl.assert_alive();
        caller.assert_all_ok(2, &format!("404; trunkline log tail:\n{}", tl.log_tail(30)));
        let mut buf = [0u8; 65535];
        assert!(
            trunk.recv_from(&mut buf).is_err(),
            "the trunk received a request although no rule matched"
        );
    });
}

/// `sip.ringing_timeout`: a callee that rings and never answers is CANCELled when it runs out
/// (the SIPp callee sees the CANCEL and answers 487), and the caller, with no other target, gets
/// 408 instead of ringing forever.
#[test]
fn endless_ringing_is_cancelled_after_ringing_timeout() {
    isolated(
        "endless_ringing_is_cancelled_after_ringing_timeout",
        false,
        |net| {
            let t = [Trunk {
                name: "pbx",
                port: net.trunk(0),
            }];
            let yaml = format!(
                "{}sip:\n  ringing_timeout: 2\n",
                config_yaml(net, &t, &["pbx"])
            );
            let mut tl = Trunkline::start(net, &yaml);
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_cancel.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let t0 = Instant::now();
            let r = invite_once(net.sip_addr(), "1000", Duration::from_secs(10))
                .expect("a final answer within 10 s");
            let took = t0.elapsed();
            assert_eq!(status_code(r.as_bytes()), Some(408), "{r}");
            assert!(
                took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
                "408 after {took:?} (ringing_timeout 2 s)"
            );
            callee
                .wait(Duration::from_secs(15))
                .assert_all_ok(1, "the callee saw the CANCEL and answered 487");
            tl.assert_alive();
        },
    );
}

/// RFC 3261 §18.1.1: a leg B INVITE over 1300 bytes to a UDP trunk with `tcp_fallback` goes
/// over TCP (the callee listens on TCP only: a UDP INVITE would never arrive), and the whole
/// dialog with it (ACK, BYE).
#[test]
fn a_large_invite_goes_to_a_tcp_fallback_trunk_over_tcp() {
    isolated(
        "a_large_invite_goes_to_a_tcp_fallback_trunk_over_tcp",
        false,
        |net| {
            let t = [Trunk {
                name: "pbx",
                port: net.trunk(0),
            }];
            let yaml = config_yaml(net, &t, &["pbx"]).replace(
                "transport: udp }\ndialplan",
                "transport: udp, tcp_fallback: true }\ndialplan",
            );
            assert!(yaml.contains("tcp_fallback"), "{yaml}");
            let mut tl = Trunkline::start(net, &yaml);
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                2,
            )
            .args(&["-t", "t1"])
            .spawn();
            wait_tcp_listening(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_large.xml", 2, 2)
                .pause_ms(200)
                .run(LIMIT);
            let callee = callee.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!("large INVITE; trunkline log tail:\n{}", tl.log_tail(20));
            caller.assert_all_ok(2, &ctx);
            callee.assert_all_ok(2, &ctx);
        },
    );
}
