//! The registrar with real SIP peers (SIPp): a phone registers with Digest authentication, then
//! a carrier's call to its address of record reaches the phone (a SIPp UAS on the port the
//! REGISTER came from) through trunkline, media anchored; a wrong password never registers;
//! calls to an unknown user get 404. Metrics count registrations.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn yaml(net: &Net) -> String {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let base = config_yaml(net, &t, &["pbx"]);
    with_metrics(
        net,
        &base,
        "registrar:\n  domains: [127.0.0.1]\n  users:\n    alice: { password: s3cret }\n    bob: { password: b0b }\n",
    )
}

#[test]
fn registered_phone_receives_the_carriers_call() {
    require_sipp();
    isolated(
        "registered_phone_receives_the_carriers_call",
        false,
        |net| {
            let mut tl = Trunkline::start(net, &yaml(net));
            let phone_port = net.spare(20);
            // a wrong password: challenged again, never registered
            let bad = Sipp::uac(net, "register-bad", "phone_register.xml", 1, 1)
                .args(&["-p", &phone_port.to_string(), "-s", "alice"])
                .args(&["-au", "alice", "-ap", "wrong"])
                .run(LIMIT);
            assert_eq!(bad.successful, 0, "a wrong password must not register");
            // the right one
            Sipp::uac(net, "register", "phone_register.xml", 1, 1)
                .args(&["-p", &phone_port.to_string(), "-s", "alice"])
                .args(&["-au", "alice", "-ap", "s3cret"])
                .run(LIMIT)
                .assert_all_ok(1, "REGISTER with Digest");
            let m = scrape(net);
            assert_eq!(
                metric(&m, "trunkline_registered_contacts", &[]),
                Some(1.0),
                "{m}"
            );
            assert_eq!(
                metric(&m, "trunkline_sip_registers_total", &[("status", "200")]),
                Some(1.0)
            );
            assert!(
                metric(&m, "trunkline_sip_registers_total", &[("status", "401")]).unwrap_or(0.0)
                    >= 2.0
            );

            // the phone now answers on the port it registered from
            let phone = Sipp::uas(
                net,
                "phone",
                "uas_basic.xml",
                phone_port,
                net.sipp_media(1),
                1,
            )
            .spawn();
            wait_udp_bound(phone_port, Duration::from_secs(5));
            Sipp::uac(net, "carrier", "uac_basic.xml", 1, 1)
                .args(&["-s", "alice"])
                .run(LIMIT)
                .assert_all_ok(1, "carrier's call to alice");
            phone
                .wait(Duration::from_secs(10))
                .assert_all_ok(1, "alice's phone answered");
            // an unknown user of the domain: 404, and the dial plan's trunk is not tried. (From
            // another port: the scenarios' fixed Via branch would otherwise make this INVITE a
            // retransmission of the first carrier call's, RFC 6026's Accepted state.)
            let r = Sipp::uac(net, "carrier-unknown", "uac_notfound.xml", 1, 1)
                .args(&["-s", "nobody", "-p", &net.spare(21).to_string()])
                .run(LIMIT);
            r.assert_all_ok(1, "404 for an unknown user");
            let m = scrape(net);
            assert!(
                metric(&m, "trunkline_calls_total", &[("trunk", "registered")]).unwrap_or(0.0)
                    >= 1.0,
                "the call is counted on the registered route:\n{m}"
            );
            tl.assert_alive();
        },
    );
}
