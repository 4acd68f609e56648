//! Logs an operator can ship and grep: `--log-format json` writes one JSON object per line, and
//! no line carries a secret of the configuration (trunk passwords, registrar passwords, the
//! capture key, the reload token), even when they are used.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn json_logs_are_one_object_per_line_and_carry_no_secret() {
    isolated(
        "json_logs_are_one_object_per_line_and_carry_no_secret",
        false,
        |net| {
            let secrets = [
                "trunk-secret-1",
                "phone-secret-2",
                "hep-secret-3",
                "token-secret-4-long-enough",
            ];
            let yaml = format!(
            "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
             media:\n  address: 127.0.0.1\n  ports: {media}\n\
             registrar:\n  domains: [example.com]\n  users: {{ alice: {{ password: {p2} }} }}\n\
             capture: {{ hep: 127.0.0.1:{closed}, password: {p3} }}\n\
             trunks:\n\
             \x20 carrier: {{ address: 127.0.0.1:{closed}, auth: {{ username: acme, password: {p1} }},\n\
             \x20            register: {{ domain: carrier.test }}, probe: {{ interval: 1 }} }}\n\
             dialplan:\n  - route: [carrier]\n",
            sip = net.sip(),
            media = net.media_range(),
            closed = net.closed(),
            p1 = secrets[0],
            p2 = secrets[1],
            p3 = secrets[2],
        );
            let yaml = with_metrics(net, &yaml, "").replace(
                &format!("  listen: 127.0.0.1:{}\n", net.metrics()),
                &format!(
                    "  listen: 127.0.0.1:{}\n  reload_token: {}\n",
                    net.metrics(),
                    secrets[3]
                ),
            );
            assert!(yaml.contains("reload_token"), "{yaml}");
            let mut tl =
                Trunkline::start_with(net, &yaml, net.sip_addr(), &["--log-format", "json"]);
            // Use them: the registration and the probes run, a call is tried and a phone registers
            // with a wrong password.
            let _ = invite_once(net.sip_addr(), "15551234567", Duration::from_secs(3));
            let reg = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{u};branch=z9hG4bK-l1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=l1\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: logs-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:{u}>\r\n\
             Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"x\", \
             uri=\"sip:example.com\", response=\"00\"\r\nContent-Length: 0\r\n\r\n",
            u = net.uac()
        );
            let s = std::net::UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind");
            s.send_to(reg.as_bytes(), net.sip_addr()).expect("send");
            let ok = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || {
                    let log = std::fs::read_to_string(&tl.log).unwrap_or_default();
                    log.contains("trunk down") && log.contains("registration with the trunk")
                },
            );
            tl.assert_alive();
            tl.stop();
            let log = std::fs::read_to_string(&tl.log).unwrap_or_default();
            assert!(ok, "expected lines missing:\n{log}");
            let mut n = 0;
            for line in log.lines().filter(|l| !l.trim().is_empty()) {
                let l = line.trim();
                assert!(
                    l.starts_with('{')
                        && l.ends_with('}')
                        && l.contains("\"level\":")
                        && l.contains("\"fields\":"),
                    "not a JSON log object: {l}"
                );
                n += 1;
            }
            assert!(n >= 5, "{n} lines");
            for s in secrets {
                assert!(!log.contains(s), "the secret {s} is in the log:\n{log}");
            }
        },
    );
}
