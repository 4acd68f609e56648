//! Interop: Kamailio as a carrier (its `auth`, `registrar` and `usrloc` modules; config
//! `tests/peers/kamailio-carrier.cfg`, ours). trunkline registers with it using the trunk's
//! `auth:` credentials (Kamailio challenges every REGISTER with 401), Kamailio's location table
//! then holds trunkline's Contact, and a call the carrier sends to that registration arrives at
//! the PBX side as a call from the carrier trunk.
//!
//! Fails (never skips) when Kamailio or SIPp is missing: `scripts/install-deps.sh` installs both.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Kamailio's configuration for this test: listening on `port`, accepting `user`/`password`.
fn carrier_cfg(net: &Net, port: u16, user: &str, password: &str, algorithm: &str) -> String {
    include_str!("peers/kamailio-carrier.cfg")
        .replace("@PORT@", &port.to_string())
        .replace("@USER@", user)
        .replace("@PASSWORD@", password)
        .replace("@ALGORITHM@", algorithm)
        .replace("@CUSTOMER_PORT@", &net.uac().to_string())
        .replace("@UAS_PORT@", &net.trunk(1).to_string())
}

/// trunkline with a `carrier` trunk (Kamailio at `kam`, with `auth` and `extra` keys) and a
/// `pbx` trunk (trunk port 0): calls from the carrier go to the PBX, all others to the carrier.
fn trunkline_yaml(net: &Net, kam: u16, password: &str, extra: &str) -> String {
    let yaml = format!(
        "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
         media:\n  address: 127.0.0.1\n  ports: {media}\n\
         trunks:\n\
         \x20 carrier:\n\
         \x20   address: 127.0.0.1:{kam}\n\
         \x20   auth: {{ username: acme, password: '{password}', realm: carrier.test }}\n\
         {extra}\
         \x20 pbx: {{ address: 127.0.0.1:{pbx} }}\n\
         dialplan:\n\
         \x20 - match: {{ source_trunk: carrier }}\n\
         \x20   route: [pbx]\n\
         \x20 - route: [carrier]\n",
        sip = net.sip(),
        media = net.media_range(),
        pbx = net.trunk(0),
    );
    with_metrics(net, &yaml, "")
}

fn registered(net: &Net) -> Option<f64> {
    metric(
        &scrape(net),
        "trunkline_trunk_registered",
        &[("trunk", "carrier")],
    )
}

#[test]
fn trunkline_registers_with_kamailio_and_takes_the_carriers_calls() {
    require_sipp();
    isolated(
        "trunkline_registers_with_kamailio_and_takes_the_carriers_calls",
        false,
        |net| {
            let kport = net.spare(60);
            let kam = Kamailio::start(net, &carrier_cfg(net, kport, "acme", "s3cret", ""), kport);
            let register = "    register: { user: '1000', domain: carrier.test, expires: 120, \
                            contact_user: trunk1 }\n";
            let mut tl = Trunkline::start(net, &trunkline_yaml(net, kport, "s3cret", register));
            let ok = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || registered(net) == Some(1.0),
            );
            assert!(
                ok,
                "not registered (metric {:?}); kamailio log:\n{}\ntrunkline log:\n{}",
                registered(net),
                kam.log_text(),
                tl.log_tail(30)
            );
            let log = kam.log_text();
            assert!(log.contains("CARRIER-CHALLENGE REGISTER"), "{log}");
            assert!(
                log.contains("CARRIER-REGISTERED sip:1000@carrier.test"),
                "{log}"
            );
            // Kamailio's location table holds trunkline's Contact for the AoR.
            let dump = kam.kamcmd(&["ul.dump"]);
            assert!(
                dump.contains("1000")
                    && dump.contains(&format!("sip:trunk1@127.0.0.1:{}", net.sip())),
                "kamcmd ul.dump:\n{dump}"
            );
            let m = scrape(net);
            assert_eq!(
                metric(
                    &m,
                    "trunkline_trunk_registrations_total",
                    &[("trunk", "carrier"), ("result", "ok")]
                ),
                Some(1.0),
                "{m}"
            );
            // The password shows nowhere.
            assert!(!m.contains("s3cret") && !tl.log_tail(200).contains("s3cret"));

            // The carrier's customer calls the registered user: Kamailio sends the call to
            // trunkline's Contact; it comes in as from the carrier and goes to the PBX.
            let callee = Sipp::uas(
                net,
                "pbx",
                "uas_basic.xml",
                net.trunk(0),
                net.sipp_media(1),
                1,
            )
            .spawn();
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let kam_addr = std::net::SocketAddr::from(([127, 0, 0, 1], kport));
            let caller = Sipp::uac_to(net, "customer", "uac_basic.xml", kam_addr, 1, 1)
                .pause_ms(200)
                .run(LIMIT);
            let callee = callee.wait(Duration::from_secs(15));
            tl.assert_alive();
            let ctx = format!(
                "customer -> kamailio -> trunkline -> pbx; kamailio log:\n{}\ntrunkline log:\n{}",
                kam.log_text(),
                tl.log_tail(30)
            );
            caller.assert_all_ok(1, &ctx);
            callee.assert_all_ok(1, &ctx);
            let m = scrape(net);
            assert_eq!(
                metric(
                    &m,
                    "trunkline_calls_total",
                    &[("trunk", "carrier"), ("direction", "inbound")]
                ),
                Some(1.0),
                "{m}"
            );

            // Graceful shutdown un-REGISTERs: Kamailio's table empties.
            tl.stop();
            let gone = poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(100),
                || !kam.kamcmd(&["ul.dump"]).contains("sip:trunk1@"),
            );
            assert!(
                gone,
                "still registered after shutdown:\n{}",
                kam.kamcmd(&["ul.dump"])
            );
        },
    );
}

#[test]
fn wrong_credentials_fail_the_registration_without_a_loop() {
    isolated(
        "wrong_credentials_fail_the_registration_without_a_loop",
        false,
        |net| {
            let kport = net.spare(60);
            let kam = Kamailio::start(net, &carrier_cfg(net, kport, "acme", "right", ""), kport);
            let register = "    register: { user: '1000', domain: carrier.test }\n";
            let mut tl = Trunkline::start(net, &trunkline_yaml(net, kport, "wrong", register));
            let failed = || {
                metric(
                    &scrape(net),
                    "trunkline_trunk_registrations_total",
                    &[("trunk", "carrier"), ("result", "401")],
                )
            };
            let ok = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || failed() == Some(1.0),
            );
            assert!(
                ok,
                "no failure counted: {:?}\n{}",
                failed(),
                tl.log_tail(30)
            );
            assert_eq!(registered(net), Some(0.0));
            // One unauthenticated REGISTER and one with credentials, then the back-off (10 s):
            // exactly two challenges.
            std::thread::sleep(Duration::from_secs(2)); // a quiet period, not synchronisation
            let challenges = kam.log_text().matches("CARRIER-CHALLENGE REGISTER").count();
            assert_eq!(challenges, 2, "{}", kam.log_text());
            tl.assert_alive();
        },
    );
}

/// RFC 8760: a carrier whose challenges say `algorithm=SHA-256` (Kamailio's `auth` module
/// with `algorithm` set) gets a SHA-256 answer.
#[test]
fn trunkline_answers_a_sha256_challenge() {
    isolated("trunkline_answers_a_sha256_challenge", false, |net| {
        let kport = net.spare(60);
        let cfg = carrier_cfg(net, kport, "acme", "s3cret", "SHA-256");
        let kam = Kamailio::start(net, &cfg, kport);
        let register = "    register: { user: '1000', domain: carrier.test }\n";
        let tl = Trunkline::start(net, &trunkline_yaml(net, kport, "s3cret", register));
        let ok = poll_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(100),
            || registered(net) == Some(1.0),
        );
        assert!(
            ok,
            "not registered with SHA-256; kamailio log:\n{}\ntrunkline log:\n{}",
            kam.log_text(),
            tl.log_tail(30)
        );
        let log = kam.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("CARRIER-REGISTERED"))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains("algorithm=SHA-256"), "{line}");
    });
}

/// SIPp's built-in UAS as the carrier's callee (behind Kamailio, a proxy: the tests/sipp UAS
/// scenarios refuse the proxy's second Via by design).
fn carrier_callee(net: &Net, calls: u32) -> SippRun {
    Sipp::uas(
        net,
        "callee",
        "uas_basic.xml",
        net.trunk(1),
        net.sipp_media(2),
        calls,
    )
    .builtin("uas")
    .spawn()
}

#[test]
fn calls_to_the_carrier_answer_its_challenge_and_wrong_credentials_fail_after_one_retry() {
    require_sipp();
    isolated(
        "calls_to_the_carrier_answer_its_challenge_and_wrong_credentials_fail_after_one_retry",
        false,
        |net| {
            let kport = net.spare(60);
            let kam = Kamailio::start(net, &carrier_cfg(net, kport, "acme", "s3cret", ""), kport);
            let mut tl = Trunkline::start(net, &trunkline_yaml(net, kport, "s3cret", ""));
            let callee = carrier_callee(net, 3);
            wait_udp_bound(net.trunk(1), Duration::from_secs(5));
            let caller = Sipp::uac(net, "pbx-caller", "uac_basic.xml", 3, 3)
                .pause_ms(100)
                .run(LIMIT);
            let ctx = format!(
                "pbx -> trunkline -> kamailio (407) -> callee; kamailio log:\n{}\ntrunkline log:\n{}",
                kam.log_text(),
                tl.log_tail(30)
            );
            caller.assert_all_ok(3, &ctx);
            // (SIPp's built-in UAS does not end by itself: the caller's result is the proof.)
            drop(callee.stop());
            let log = kam.log_text();
            assert_eq!(log.matches("CARRIER-AUTHORIZED INVITE").count(), 3, "{log}");
            assert_eq!(log.matches("CARRIER-REFUSED").count(), 0, "{log}");
            let m = scrape(net);
            assert_eq!(
                metric(&m, "trunkline_trunk_auth_total", &[("result", "answered")]),
                Some(3.0),
                "{m}"
            );
            tl.stop();

            // Wrong credentials: the caller gets the carrier's 407, after exactly one
            // authenticated INVITE.
            let kam2_port = net.spare(70);
            let cfg = carrier_cfg(net, kam2_port, "acme", "right", "");
            let kam2 = Kamailio::start_named(net, "kamailio-wrong", &cfg, kam2_port);
            let mut tl = Trunkline::start(net, &trunkline_yaml(net, kam2_port, "wrong", ""));
            let resp = invite_once(net.sip_addr(), "15551234567", Duration::from_secs(10))
                .unwrap_or_else(|| panic!("no answer:\n{}", tl.log_tail(30)));
            assert!(resp.starts_with("SIP/2.0 407"), "{resp}");
            assert!(
                header(&resp, "Proxy-Authenticate", None).is_none(),
                "the carrier's challenge reached the caller: {resp}"
            );
            let log = kam2.log_text();
            assert_eq!(log.matches("CARRIER-REFUSED INVITE").count(), 1, "{log}");
            tl.assert_alive();
        },
    );
}
