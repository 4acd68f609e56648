//! Reliable provisional responses (RFC 3262) end to end with SIPp, per leg: the callee's trunk
//! sends its 183 reliably and gets trunkline's PRACK; a caller that supports 100rel gets
//! trunkline's own reliable 183 and PRACKs it; the call then completes (ACK, BYE).

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);
const CALLS: u32 = 3;

fn one_trunk(net: &Net) -> Trunkline {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    Trunkline::start(net, &config_yaml(net, &t, &["pbx"]))
}

fn reliable_183_call(name: &str, uac: &str) {
    isolated(name, false, |net| {
        let mut tl = one_trunk(net);
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_reliable_183.xml",
            net.trunk(0),
            net.sipp_media(1),
            CALLS,
        )
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", uac, CALLS, 5)
            .pause_ms(200)
            .run(LIMIT);
        let callee = callee.wait(Duration::from_secs(15));
        tl.assert_alive();
        let ctx = format!(
            "{uac} -> reliable 183; trunkline log tail:\n{}",
            tl.log_tail(30)
        );
        caller.assert_all_ok(u64::from(CALLS), &ctx);
        callee.assert_all_ok(u64::from(CALLS), &ctx);
    });
}

/// Both legs reliable: each PRACKs its own 183 (trunkline's RSeq on leg A, the trunk's on B).
#[test]
fn a_reliable_183_is_pracked_on_both_legs() {
    reliable_183_call("a_reliable_183_is_pracked_on_both_legs", "uac_reliable.xml");
}

/// A caller without 100rel gets the 183 unreliably (uac_basic.xml takes it as optional) while
/// the trunk still gets its PRACK (uas_reliable_183.xml requires it).
#[test]
fn a_caller_without_100rel_gets_the_183_unreliably_and_the_trunk_its_prack() {
    reliable_183_call(
        "a_caller_without_100rel_gets_the_183_unreliably_and_the_trunk_its_prack",
        "uac_basic.xml",
    );
}
