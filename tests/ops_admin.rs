//! The admin API and `trunkline ctl`, as an operator uses them: list the calls up, hang one up
//! (both sides get BYE), list trunks and registrations; the API refuses a request without the
//! token and with a wrong one; `ctl` says plainly when trunkline is not running.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use common::rawsip::{reply, sdp, Uac, Uas};
use common::*;

const TOKEN: &str = "admin-token-0123456789abcdef";

fn ctl(net: &Net, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(trunkline_bin())
        .arg("ctl")
        .arg("--config")
        .arg(net.config_path())
        .args(args)
        .output()
        .expect("run trunkline ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw HTTP request to the admin listener: (status line, body).
fn http_raw(net: &Net, req: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(net.metrics_addr()).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("send");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn ctl_lists_calls_hangs_one_up_and_the_api_wants_its_token() {
    isolated(
        "ctl_lists_calls_hangs_one_up_and_the_api_wants_its_token",
        false,
        |net| {
            let token_file = net.dir.join("admin.token");
            std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
            let t = [Trunk {
                name: "pbx",
                port: net.trunk(0),
            }];
            let yaml = format!(
                "{}admin:\n  token_file: {}\n",
                with_metrics(net, &config_yaml(net, &t, &["pbx"]), ""),
                token_file.display()
            );
            let mut tl = Trunkline::start(net, &yaml);

            // Two calls up: raw UACs and a raw UAS that answers both.
            let uas = Uas {
                sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind uas"),
            };
            let mut uacs = Vec::new();
            let mut relay_ports = Vec::new();
            for i in 0..2u16 {
                let sock = UdpSocket::bind(("127.0.0.1", net.uac() + 10 * i)).expect("bind uac");
                let mut uac = Uac::new(sock, net.sip_addr(), &format!("adm{i}"));
                let body = sdp("127.0.0.1", net.sipp_media(i));
                let cseq = uac.send("INVITE", Some(&body));
                let inv = uas.recv_request("INVITE", Duration::from_secs(5));
                let from = net.sip_addr();
                reply(
                    &uas.sock,
                    from,
                    &inv,
                    200,
                    &format!("b{i}"),
                    Some(&sdp("127.0.0.1", 7000)),
                );
                let ok = uac.final_response("INVITE", cseq);
                assert_eq!(ok.code(), Some(200), "{}", ok.text);
                relay_ports.push(ok.audio_port());
                uas.recv_request("ACK", Duration::from_secs(5));
                uacs.push(uac);
            }

            let (ok, out, err) = ctl(net, &["calls"]);
            assert!(ok, "ctl calls: {err}");
            let rows: Vec<&str> = out
                .lines()
                .skip(1)
                .filter(|l| l.contains("confirmed"))
                .collect();
            assert_eq!(rows.len(), 2, "{out}");
            assert!(out.starts_with("ID"), "{out}");
            let (ok, json, err) = ctl(net, &["--json", "calls"]);
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
            let calls = v["calls"].as_array().expect("calls").clone();
            assert_eq!(calls.len(), 2, "{json}");
            assert_eq!(calls[0]["trunk"], "pbx");
            assert!(calls[0]["legs"]["a"]["call_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("adm")));
            let id = calls[0]["id"].as_u64().expect("id");

            // The caller of the first call sends RTP: /calls shows where it comes from, what the
            // relay port is and how many packets the leg received.
            let first = calls
                .iter()
                .find(|c| {
                    c["legs"]["a"]["call_id"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("adm0"))
                })
                .expect("call adm0")["id"]
                .as_u64()
                .expect("id");
            let media = UdpSocket::bind(("127.0.0.1", net.sipp_media(0))).expect("bind media");
            for seq in 0..5u16 {
                let p = common::rawsip::rtp_packet(seq, 160 * u32::from(seq), 0x1234);
                media
                    .send_to(&p, ("127.0.0.1", relay_ports[0]))
                    .expect("rtp");
            }
            let mut seen = serde_json::Value::Null;
            let counted = wait_until(Instant::now() + Duration::from_secs(5), || {
                let (_, json, _) = ctl(net, &["--json", "calls"]);
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
                    return false;
                };
                let Some(c) = v["calls"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["id"].as_u64() == Some(first)).cloned())
                else {
                    return false;
                };
                seen = c["media"][0]["legs"][0].clone();
                seen["rtp_packets_in"].as_u64() == Some(5)
            });
            assert!(counted, "leg a's media in /calls: {seen}");
            assert_eq!(seen["side"], "a", "{seen}");
            let (_, table, _) = ctl(net, &["calls"]);
            assert!(
                table.contains("RTP IN A/B") && table.contains(" 5/0 "),
                "{table}"
            );
            assert_eq!(
                seen["relay_port"].as_u64(),
                Some(u64::from(relay_ports[0])),
                "{seen}"
            );
            assert_eq!(
                seen["latched"].as_str(),
                Some(format!("127.0.0.1:{}", net.sipp_media(0)).as_str()),
                "{seen}"
            );

            // Hang one up: BYE on both legs.
            let (ok, out, err) = ctl(net, &["hangup", &id.to_string()]);
            assert!(ok, "hangup: {err}");
            assert!(out.contains("ended"), "{out}");
            let bye_b = uas.recv_request("BYE", Duration::from_secs(5));
            reply(&uas.sock, net.sip_addr(), &bye_b, 200, "x", None);
            let bye_a = common::rawsip::recv_until(
                &uacs[0].sock,
                Duration::from_secs(5),
                "BYE to the caller",
                |m| m.is_request("BYE"),
            );
            reply(&uacs[0].sock, net.sip_addr(), &bye_a, 200, "x", None);
            let (_, out, _) = ctl(net, &["calls"]);
            assert_eq!(
                out.lines().filter(|l| l.contains("confirmed")).count(),
                1,
                "{out}"
            );
            let (ok, out, err) = ctl(net, &["hangup", "999999"]);
            assert!(!ok && err.contains("404"), "{out}{err}");

            // Trunks and (no) registrations.
            let (ok, out, err) = ctl(net, &["trunks"]);
            assert!(ok, "{err}");
            assert!(out.contains("pbx") && out.contains("udp"), "{out}");
            let (ok, _, err) = ctl(net, &["registrations"]);
            assert!(ok, "{err}");

            // The API without the token, and with a wrong one.
            let (status, _) = http_raw(net, "GET /calls HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(status.contains("401"), "{status}");
            let (status, _) = http_raw(
                net,
                "GET /calls HTTP/1.1\r\nAuthorization: Bearer admin-token-0123456789abcdeX\r\n\r\n",
            );
            assert!(status.contains("401"), "{status}");
            let (status, body) = http_raw(
                net,
                &format!("GET /calls HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
            );
            assert!(status.contains("200"), "{status} {body}");
            let (ok, _, err) = ctl(net, &["--token", "wrong-token-0123456789", "calls"]);
            assert!(!ok && err.contains("401"), "{err}");
            // /metrics and /health need no token.
            let (status, _) = http_raw(net, "GET /health HTTP/1.1\r\n\r\n");
            assert!(status.contains("200"), "{status}");
            let m = scrape(net);
            assert!(
                metric(
                    &m,
                    "trunkline_admin_requests_refused_total",
                    &[("reason", "unauthorized")]
                )
                .is_some_and(|v| v >= 2.0),
                "{m}"
            );

            // Drain: new calls get 503.
            let (ok, _, err) = ctl(net, &["drain"]);
            assert!(ok, "{err}");
            let r = invite_once(net.sip_addr(), "15551234567", Duration::from_secs(5))
                .expect("an answer");
            assert!(r.starts_with("SIP/2.0 503"), "{r}");
            tl.assert_alive();
            tl.stop();
            let (ok, _, err) = ctl(net, &["calls"]);
            assert!(!ok && err.contains("is trunkline running"), "{err}");
        },
    );
}
