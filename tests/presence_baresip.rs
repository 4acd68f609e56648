//! trunkline as the presence agent, with real phones (baresip's presence module on both
//! sides): alice watches bob (her address book entry `;presence=p2p`), authenticating her
//! SUBSCRIBE like a call. Bob is not registered: she sees closed. Bob registers: open. Bob
//! sets himself offline (baresip PUBLISHes `closed`): closed. Online again: open. Bob quits
//! (un-REGISTER, his publication withdrawn): closed. baresip logs each change of a contact's
//! status ("<sip:bob@...> changed status from Online to Offline"). A missing baresip fails.

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
            let bob = Baresip::start(
                net,
                &Phone {
                    name: "bob",
                    sip: net.spare(60),
                    rtp: net.spare(70),
                    account: format!(
                        "<sip:bob@127.0.0.1:{}>;auth_pass=b0b;regint=300;pubint=300",
                        net.sip()
                    ),
                    ctrl: Some(net.spare(65)),
                    tone: 500,
                    ..Phone::default()
                },
            );
            wait_for(net, "bob registered: open", || {
                changes_to(net, "online") >= 1
            });
            wait_for(net, "bob's PUBLISH kept", || {
                metric(&scrape(net), "trunkline_presence_publishers", &[]) == Some(1.0)
            });
            bob.command("presence_offline", "");
            wait_for(net, "bob published closed", || {
                changes_to(net, "offline") >= 1
            });
            bob.command("presence_online", "");
            wait_for(net, "bob published open", || changes_to(net, "online") >= 2);
            bob.stop();
            wait_for(net, "bob unregistered: closed", || {
                changes_to(net, "offline") >= 2
            });
            let m = scrape(net);
            assert_eq!(
                metric(&m, "trunkline_registered_contacts", &[]),
                Some(1.0),
                "{m}"
            );
            assert_eq!(
                metric(&m, "trunkline_presence_publishers", &[]),
                Some(0.0),
                "{m}"
            );
            drop(tl);
        },
    );
}
