//! A 3xx from the callee's trunk, end to end with SIPp (trunk `redirect:`, default relay):
//! relayed, the caller gets the 302 with the redirect target's Contact and nothing of the
//! trunk's path; followed, the Contact's user is routed by the dial plan to a second trunk
//! (another SIPp UAS) and the call completes there, never at the Contact's host.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);
const CALLS: u32 = 3;

/// trunkline with trunk `pbx` (trunk 0, `redirect: mode`, where every call goes) and trunk
/// `second` (trunk 1, where the plan sends user 2000).
fn redirecting(net: &Net, mode: &str) -> Trunkline {
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
    let y = with_trunk_keys(&y, "pbx", net.trunk(0), &format!("redirect: {mode}"));
    Trunkline::start(net, &y)
}

#[test]
fn a_relayed_302_reaches_the_caller_with_its_contact() {
    isolated(
        "a_relayed_302_reaches_the_caller_with_its_contact",
        false,
        |net| {
            let mut tl = redirecting(net, "relay");
            let second = UdpSocket::bind(("127.0.0.1", net.trunk(1))).expect("bind trunk 2");
            second.set_nonblocking(true).expect("nonblocking");
            let callee = Sipp::uas(
                net,
                "uas302",
                "uas_redirect.xml",
                net.trunk(0),
                net.sipp_media(1),
                CALLS,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_redirected.xml", CALLS, 5).run(LIMIT);
            let callee = callee.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!("relayed 302; trunkline log tail:\n{}", tl.log_tail(30));
            caller.assert_all_ok(u64::from(CALLS), &ctx);
            callee.assert_all_ok(u64::from(CALLS), &ctx);
            let mut buf = [0u8; 65535];
            if let Ok((n, _)) = second.recv_from(&mut buf) {
                panic!(
                    "a relayed 302 was followed to trunk 2:\n{}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
        },
    );
}

#[test]
fn a_followed_302_completes_the_call_at_the_trunk_the_plan_picks() {
    isolated(
        "a_followed_302_completes_the_call_at_the_trunk_the_plan_picks",
        false,
        |net| {
            let mut tl = redirecting(net, "follow");
            let first = Sipp::uas(
                net,
                "uas302",
                "uas_redirect.xml",
                net.trunk(0),
                net.sipp_media(1),
                CALLS,
            )
            .spawn();
            let moved = Sipp::uas(
                net,
                "uas_moved",
                "uas_moved_here.xml",
                net.trunk(1),
                net.sipp_media(2),
                CALLS,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            wait_udp_bound(net.trunk(1), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_basic.xml", CALLS, 5)
                .pause_ms(200)
                .run(LIMIT);
            let first = first.wait(Duration::from_secs(15));
            let moved = moved.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!("followed 302; trunkline log tail:\n{}", tl.log_tail(30));
            caller.assert_all_ok(u64::from(CALLS), &ctx);
            first.assert_all_ok(u64::from(CALLS), &ctx);
            moved.assert_all_ok(u64::from(CALLS), &ctx);
        },
    );
}
