//! trunkline as the presence agent, with real phones (baresip's presence module on both
//! sides): alice watches bob (her address book entry `;presence=p2p`), authenticating her
//! SUBSCRIBE like a call. Bob is not registered: she sees closed. Bob's phone registers: open.
//! Bob removes his bindings (SIPp: `Contact: *`, `Expires: 0`, with his Digest): closed. A
//! second phone of bob's that publishes (baresip `pubint`) registers: open; bob sets himself
//! offline (it PUBLISHes `closed`): closed; online again: open. baresip logs each change of a
//! contact's status ("<sip:bob@...> changed status from Online to Offline"). A missing
//! baresip or SIPp fails.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn yaml(net: &Net) -> String {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let base = config_yaml(net, &t, &["pbx"]);
    with_metrics(
        net,
        &base,
        "registrar:\n  domains: [127.0.0.1]\n  algorithms: [MD5]\n  keepalive: 0\n  users:\n    \
         alice: { password: a1ice }\n    bob: { password: b0b }\n",
    )
}

/// `line` without its ANSI colour sequences (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in line.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// Times alice's log says bob's status changed to `to` (baresip 1.0 says Online and
/// Offline: basic open and closed).
fn changes_to(net: &Net, to: &str) -> usize {
    let log = std::fs::read_to_string(net.dir.join("alice.log")).unwrap_or_default();
    log.lines()
        .map(plain)
        .filter(|l| l.contains("sip:bob@") && l.contains("changed status"))
        .filter(|l| {
            l.trim_end()
                .to_ascii_lowercase()
                .ends_with(&format!("to {to}"))
        })
        .count()
}

fn wait_for(net: &Net, what: &str, cond: impl FnMut() -> bool) {
    let ok = poll_until(
        Instant::now() + Duration::from_secs(20),
        Duration::from_millis(100),
        cond,
    );
    let log = std::fs::read_to_string(net.dir.join("alice.log")).unwrap_or_default();
    assert!(ok, "{what}; alice's log:\n{log}\n{}", scrape(net));
}

#[test]
fn a_watcher_follows_registration_and_publications() {
    isolated(
        "a_watcher_follows_registration_and_publications",
        false,
        |net| {
            let tl = Trunkline::start(net, &yaml(net));
            let contacts = format!("\"Bob\" <sip:bob@127.0.0.1:{}>;presence=p2p", net.sip());
            let _alice = Baresip::start(
                net,
                &Phone {
                    name: "alice",
                    sip: net.spare(30),
                    rtp: net.spare(40),
                    account: format!(
                        "<sip:alice@127.0.0.1:{}>;auth_pass=a1ice;regint=300",
                        net.sip()
                    ),
                    contacts: &contacts,
                    tone: 440,
                    ..Phone::default()
                },
            );
            // Her SUBSCRIBE is challenged (bob is offline: no free pass), answered, and
            // trunkline notifies "closed".
            wait_for(net, "alice's subscription", || {
                let m = scrape(net);
                metric(&m, "trunkline_presence_watchers", &[]) == Some(1.0)
                    && metric(&m, "trunkline_presence_notifies_total", &[]).unwrap_or(0.0) >= 1.0
            });
            let bob_phone = |name: &'static str, port: u16, extra: &str| Phone {
                name,
                sip: port,
                rtp: port + 10,
                account: format!(
                    "<sip:bob@127.0.0.1:{}>;auth_pass=b0b;regint=300{extra}",
                    net.sip()
                ),
                ctrl: Some(port + 5),
                tone: 500,
                ..Phone::default()
            };
            let bob = Baresip::start(net, &bob_phone("bob", net.spare(60), ""));
            wait_for(net, "bob registered: open", || {
                changes_to(net, "online") >= 1
            });
            require_sipp();
            Sipp::uac(net, "bob-unregister", "phone_unregister.xml", 1, 1)
                .args(&["-p", &net.spare(90).to_string(), "-s", "bob"])
                .args(&["-au", "bob", "-ap", "b0b"])
                .run(Duration::from_secs(20))
                .assert_all_ok(1, "bob removes his bindings");
            wait_for(net, "bob unregistered: closed", || {
                changes_to(net, "offline") >= 1
            });
            drop(bob);
            let bob = Baresip::start(net, &bob_phone("bob2", net.spare(100), ";pubint=300"));
            wait_for(net, "bob's publishing phone registered: open", || {
                changes_to(net, "online") >= 2
            });
            wait_for(net, "bob's PUBLISH kept", || {
                metric(&scrape(net), "trunkline_presence_publishers", &[]) == Some(1.0)
            });
            bob.command("presence_offline", "");
            wait_for(net, "bob published closed", || {
                changes_to(net, "offline") >= 2
            });
            bob.command("presence_online", "");
            wait_for(net, "bob published open", || changes_to(net, "online") >= 3);
            let m = scrape(net);
            assert_eq!(
                metric(&m, "trunkline_registered_contacts", &[]),
                Some(2.0),
                "{m}"
            );
            drop(tl);
        },
    );
}
