//! Messages for a user who is offline (RFC 3428, `registrar.offline_messages`): the carrier
//! sends alice two MESSAGEs while no phone of hers is registered; trunkline accepts each (202)
//! and keeps it in the location store, is killed with SIGKILL between the two and restarted;
//! then baresip registers as alice and receives both, text unchanged and in order. baresip is
//! a real phone (Debian's package; scripts/install-deps.sh installs it): missing, the test fails.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime};

use common::rawsip::recv_until;
use common::*;

fn yaml(net: &Net) -> String {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let base = config_yaml(net, &t, &["pbx"]);
    // baresip 1.0 answers MD5 challenges only (see registrar_sipp.rs).
    with_metrics(
        net,
        &base,
        &format!(
            "registrar:\n  domains: [127.0.0.1]\n  algorithms: [MD5]\n  keepalive: 0\n  \
             store: {}\n  offline_messages: {{ per_user: 10, ttl: 3600 }}\n  users:\n    \
             alice: {{ password: s3cret }}\n",
            net.dir.join("location.db").display()
        ),
    )
}

/// The carrier (the `pbx` trunk's address) sends `text` to alice; the final answer's status.
fn send(net: &Net, carrier: &UdpSocket, n: u32, text: &str) -> u16 {
    let p = net.trunk(0);
    let m = format!(
        "MESSAGE sip:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKim{n}\r\n\
         Max-Forwards: 70\r\nTo: <sip:alice@127.0.0.1>\r\nFrom: <sip:+15550001@127.0.0.1>;tag=im{n}\r\n\
         Call-ID: offline-{n}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{text}",
        text.len()
    );
    carrier
        .send_to(m.as_bytes(), net.sip_addr())
        .expect("send MESSAGE");
    let r = recv_until(carrier, Duration::from_secs(5), "MESSAGE answer", |m| {
        m.code().is_some_and(|c| c >= 200)
    });
    r.code().unwrap_or(0)
}

fn mtime(net: &Net) -> SystemTime {
    std::fs::metadata(net.dir.join("location.db"))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[test]
fn messages_to_an_offline_phone_survive_a_kill_and_arrive_when_it_registers() {
    isolated(
        "messages_to_an_offline_phone_survive_a_kill_and_arrive_when_it_registers",
        false,
        |net| {
            let mut tl = Trunkline::start(net, &yaml(net));
            let carrier = UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind carrier");
            let before = mtime(net);
            let first = "Hello alice, first (kept across a crash)";
            assert_eq!(send(net, &carrier, 1, first), 202, "{}", tl.log_tail(20));
            // The store has committed it once the file changed (its writer commits at once).
            let committed = poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(20),
                || mtime(net) > before,
            );
            assert!(committed, "the store file never changed");
            tl.signal(libc::SIGKILL);
            assert!(tl.wait_exit(Duration::from_secs(5)).is_some(), "SIGKILL");

            let tl = Trunkline::start(net, &yaml(net));
            let log = tl.log_text();
            assert!(log.contains("registrar.store loaded"), "{log}");
            let m = scrape(net);
            assert_eq!(
                metric(&m, "trunkline_offline_messages_held", &[]),
                Some(1.0),
                "the first message came back from the store:\n{m}"
            );
            let second = "and a second one, ünïcode intact";
            assert_eq!(send(net, &carrier, 2, second), 202);

            // alice's phone comes up with no account, its console is watched, then it
            // registers (`uanew`): both messages arrive, in order.
            let phone = Baresip::start(
                net,
                &Phone {
                    name: "alice",
                    sip: net.spare(30),
                    rtp: net.spare(40),
                    ctrl: Some(net.spare(35)),
                    console: Some(net.spare(36)),
                    tone: 440,
                    ..Phone::default()
                },
            );
            let console = phone.console();
            let account = format!(
                "<sip:alice@127.0.0.1:{}>;auth_pass=s3cret;regint=300",
                net.sip()
            );
            phone.command("uanew", &account);
            let got = poll_until(
                Instant::now() + Duration::from_secs(15),
                Duration::from_millis(100),
                || {
                    let l = console.text();
                    l.contains(first) && l.contains(second)
                },
            );
            let l = console.text();
            let log = std::fs::read_to_string(net.dir.join("alice.log")).unwrap_or_default();
            assert!(
                got,
                "baresip did not receive both messages:\n{l}\n{log}\n{}",
                tl.log_tail(30)
            );
            let (a, b) = (l.find(first).unwrap(), l.find(second).unwrap());
            assert!(a < b, "in the order they were sent:\n{l}");
            let m = scrape(net);
            let delivered = poll_until(
                Instant::now() + Duration::from_secs(5),
                Duration::from_millis(50),
                || {
                    let m = scrape(net);
                    metric(&m, "trunkline_offline_messages_held", &[]) == Some(0.0)
                },
            );
            assert!(delivered, "{m}");
            let m = scrape(net);
            assert_eq!(
                metric(
                    &m,
                    "trunkline_offline_messages_total",
                    &[("outcome", "delivered")]
                ),
                Some(2.0),
                "{m}"
            );
        },
    );
}
