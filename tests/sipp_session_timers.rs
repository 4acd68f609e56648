//! Session timers (RFC 4028) end to end with SIPp on both legs, `sip: { session_expires: 90,
//! min_se: 90 }`: a call whose two peers each refresh their own leg every 30 s stays up for 3
//! minutes (trunkline answers each refresh itself, relays none, sends none of its own), and a
//! caller that stops refreshing has the call ended with BYE on both legs (with trunkline
//! refreshing the trunk's leg meanwhile, as the trunk made it the refresher).

mod common;

use std::time::Duration;

use common::*;

fn start(net: &Net) -> Trunkline {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    // SIPp sends no RTP here: the media timeout must not end the calls first.
    let yaml = config_yaml(net, &t, &["pbx"]).replace("media:\n", "media:\n  timeout: 600\n");
    let sip = "sip: { session_expires: 90, min_se: 90 }\n";
    Trunkline::start(net, &with_metrics(net, &yaml, sip))
}

fn timer_events(net: &Net, event: &str) -> f64 {
    let m = scrape(net);
    metric(
        &m,
        "trunkline_session_timer_events_total",
        &[("event", event)],
    )
    .unwrap_or(0.0)
}

#[test]
fn a_90_s_session_refreshed_every_30_s_by_both_peers_stays_up_3_minutes() {
    isolated(
        "a_90_s_session_refreshed_every_30_s_by_both_peers_stays_up_3_minutes",
        false,
        |net| {
            let mut tl = start(net);
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_timer_refresh.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .args(&["-timeout", "300s"])
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_timer_refresh.xml", 1, 1)
                .args(&["-timeout", "300s"])
                .run(Duration::from_secs(240));
            let callee = callee.wait(Duration::from_secs(20));
            tl.assert_alive();
            let ctx = format!("trunkline log tail:\n{}", tl.log_tail(40));
            caller.assert_all_ok(1, &ctx);
            callee.assert_all_ok(1, &ctx);
            assert_eq!(timer_events(net, "expired"), 0.0, "{ctx}");
            assert_eq!(
                timer_events(net, "refreshed"),
                0.0,
                "trunkline sent none: {ctx}"
            );
        },
    );
}

#[test]
fn a_caller_that_stops_refreshing_is_ended_with_bye_on_both_legs() {
    isolated(
        "a_caller_that_stops_refreshing_is_ended_with_bye_on_both_legs",
        false,
        |net| {
            let mut tl = start(net);
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_timer_refreshed.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .args(&["-timeout", "300s"])
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_timer_silent.xml", 1, 1)
                .args(&["-timeout", "300s"])
                .run(Duration::from_secs(120));
            let callee = callee.wait(Duration::from_secs(20));
            tl.assert_alive();
            let ctx = format!("trunkline log tail:\n{}", tl.log_tail(40));
            caller.assert_all_ok(1, &ctx);
            callee.assert_all_ok(1, &ctx);
            assert_eq!(timer_events(net, "expired"), 1.0, "{ctx}");
            assert_eq!(timer_events(net, "refreshed"), 1.0, "leg B's UPDATE: {ctx}");
        },
    );
}
