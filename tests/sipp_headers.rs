//! Header policy per trunk end to end with SIPp (`identity:`, `headers:`): an untrusted
//! carrier's asserted identity and its internal X- header never reach the PBX; the PBX's
//! trunk adds its account header; the trusted PBX's asserted identity reaches the carrier.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);
const CALLS: u32 = 3;

#[test]
fn an_untrusted_carriers_identity_is_removed_and_the_pbxs_rules_hold() {
    isolated(
        "an_untrusted_carriers_identity_is_removed_and_the_pbxs_rules_hold",
        false,
        |net| {
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
            let y = config_yaml(net, &t, &["pbx"]);
            let y = with_trunk_keys(&y, "carrier", net.uac(), "identity: untrusted");
            let y = with_trunk_keys(
                &y,
                "pbx",
                net.trunk(0),
                "headers: { remove: ['X-I*'], add: { X-Account: acme-42 } }",
            );
            let mut tl = Trunkline::start(net, &y);
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_identity.xml",
                net.trunk(0),
                net.sipp_media(1),
                CALLS,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_identity.xml", CALLS, 5)
                .pause_ms(200)
                .run(LIMIT);
            let callee = callee.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!("trunkline log tail:\n{}", tl.log_tail(20));
            caller.assert_all_ok(CALLS as u64, &ctx);
            callee.assert_all_ok(CALLS as u64, &ctx);
        },
    );
}

/// The dial plan on the asserted identity of a trusted carrier: `match.pai_user` routes the
/// call and its captures rewrite leg B's From user and display name.
#[test]
fn the_dial_plan_routes_on_a_trusted_pai_and_rewrites_the_from() {
    isolated(
        "the_dial_plan_routes_on_a_trusted_pai_and_rewrites_the_from",
        false,
        |net| {
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
            let y = config_yaml(net, &t, &["carrier"]);
            let plan = y.find("dialplan:").expect("plan");
            let y = format!(
                "{}dialplan:\n  - match: {{ source_trunk: carrier, pai_user: '^\\+1(\\d{{3}})(\\d+)$' }}\n    \
                 rewrite: {{ from_user: 'pai$1$2', from_display: 'Asserted $1' }}\n    route: [pbx]\n",
                &y[..plan]
            );
            let mut tl = Trunkline::start(net, &y);
            let callee = Sipp::uas(
                net,
                "uas",
                "uas_from_rewrite.xml",
                net.trunk(0),
                net.sipp_media(1),
                CALLS,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let caller = Sipp::uac(net, "uac", "uac_identity.xml", CALLS, 5)
                .pause_ms(200)
                .run(LIMIT);
            let callee = callee.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!("trunkline log tail:\n{}", tl.log_tail(20));
            caller.assert_all_ok(CALLS as u64, &ctx);
            callee.assert_all_ok(CALLS as u64, &ctx);
        },
    );
}
