//! IPv6 and dual stack end to end (RFC 6157, RFC 5118): trunkline listens on both families
//! (`0.0.0.0:5060` and `[::]:5060`, UDP and TCP side by side, which only works with the IPv6
//! sockets IPv6-only), and each leg of a call is written in its own family: Via and Contact with
//! our address of that family (`[2001:db8::5]:5060` as an RFC 5118 reference towards IPv6), the
//! SDP with the relay address of that family (`c=IN IP6 2001:db8::5` / `c=IN IP4 127.0.0.2`),
//! and RTP crosses between an IPv6 and an IPv4 port of one relay pair.
//!
//! The relay's addresses (127.0.0.2, and 2001:db8::5 added to `lo` in the test's namespace)
//! differ from the SIPp peers' (127.0.0.1, ::1), so an address of one leg leaking into the
//! other, or an unrewritten SDP, is visible.
//!
//! * `ipv6_caller_to_ipv4_pbx_rtp_both_ways`: SIPp UAC on `[::1]` plays 2 s of G.711 → trunkline
//!   → SIPp UAS on 127.0.0.1 echoes it (`-rtp_echo`): each side's SDP has its family's `c=`
//!   line and a relay port, neither side sees the other family, ~200 RTP packets relayed.
//! * `ipv4_caller_to_ipv6_trunk_rtp_both_ways`: the other way round, to a trunk at `[::1]:5090`.
//! * `rfc5118_messages_over_ipv6_udp`: the RFC 5118 torture messages
//!   (`signaling/tests/rfc5118/`), each sent from its own `[::1]` socket (its top Via's sent-by
//!   made that socket, `;rport`), get the RFC's verdict from a running trunkline: §4.2 a 400, the
//!   others what a valid request gets (REGISTER without a registrar 405, out-of-dialog BYE 481,
//!   OPTIONS 200, INVITE 100 and an INVITE to the IPv6 trunk whose SDP names the relay's IPv6
//!   address).

mod common;
#[path = "support/tone.rs"]
mod tone;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const RELAY4: &str = "127.0.0.2";
const RELAY6: &str = "2001:db8::5";
const LIMIT: Duration = Duration::from_secs(30);

/// Adds [`RELAY6`] to `lo` of the test's namespace (`lo` itself has `::1` once up).
fn add_relay_v6_address() {
    let out = Command::new("ip")
        .args([
            "-6",
            "addr",
            "add",
            &format!("{RELAY6}/128"),
            "dev",
            "lo",
            "nodad",
        ])
        .output()
        .expect("run `ip` (iproute2: scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "ip -6 addr add {RELAY6}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Dual-stack listeners (wildcards of both families, UDP and TCP, so their coexistence is
/// tested), the relay on both families, and one trunk `dest` at `trunk_addr` taking every call.
fn dual_yaml(net: &Net, trunk_addr: &str) -> String {
    let sip = net.sip();
    with_metrics(
        net,
        &format!(
            "listen:\n\
             \x20 - {{ transport: udp, address: 0.0.0.0:{sip} }}\n\
             \x20 - {{ transport: tcp, address: 0.0.0.0:{sip} }}\n\
             \x20 - {{ transport: udp, address: '[::]:{sip}' }}\n\
             \x20 - {{ transport: tcp, address: '[::]:{sip}' }}\n\
             media:\n\
             \x20 address: {RELAY4}\n\
             \x20 address_v6: {RELAY6}\n\
             \x20 ports: {}\n\
             trunks:\n\
             \x20 dest: {{ address: '{trunk_addr}', transport: udp }}\n\
             dialplan:\n\
             \x20 - route: [dest]\n",
            net.media_range()
        ),
        "",
    )
}

/// Every message SIPp logged with `-trace_msg` as received, as text.
fn received(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split("----------------------------------------------- ")
        .filter(|b| b.contains("message received"))
        .map(|b| b.replace("\r\n", "\n"))
        .collect()
}

/// The SDP body of the one received message that carries one.
fn received_sdp(who: &str, msgs: &[String]) -> String {
    let bodies: Vec<String> = msgs
        .iter()
        .filter_map(|m| {
            let (_, msg) = m.split_once("\n\n")?;
            let (_, body) = msg.split_once("\n\n")?;
            body.contains("m=audio").then(|| body.to_string())
        })
        .collect();
    assert_eq!(bodies.len(), 1, "{who}: one SDP expected:\n{msgs:#?}");
    bodies[0].clone()
}

/// `c=` and `o=` name the relay address of the receiver's family; the m= port is the relay's.
fn assert_family_sdp(who: &str, net: &Net, sdp: &str, v6: bool) {
    let (kind, relay) = if v6 { ("IP6", RELAY6) } else { ("IP4", RELAY4) };
    let conns: Vec<&str> = sdp.lines().filter(|l| l.starts_with("c=")).collect();
    assert!(
        !conns.is_empty() && conns.iter().all(|c| *c == format!("c=IN {kind} {relay}")),
        "{who}: every c= must be `c=IN {kind} {relay}`:\n{sdp}"
    );
    let o = sdp.lines().find(|l| l.starts_with("o=")).unwrap_or("");
    assert!(o.ends_with(&format!(" IN {kind} {relay}")), "{who}: o= {o}");
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{who}: no m=audio port:\n{sdp}"));
    let (lo, hi) = net.media_range().split_once('-').map_or((0, 0), |(a, b)| {
        (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
    });
    assert!(
        (lo..=hi).contains(&port),
        "{who}: port {port} not the relay's:\n{sdp}"
    );
}

/// What the other family looks like in text: none of it may reach a leg of this family.
fn assert_no_other_family(who: &str, msgs: &[String], v6: bool) {
    for m in msgs {
        if v6 {
            assert!(
                !m.contains("127.0.0."),
                "{who}: an IPv4 address reached the IPv6 leg:\n{m}"
            );
        } else {
            assert!(
                !m.contains("::1") && !m.contains("2001:db8"),
                "{who}: an IPv6 address reached the IPv4 leg:\n{m}"
            );
        }
    }
}

/// Our Contact on the 200 OK (or Via on a request) towards a leg: the wildcard listener's
/// advertised address of the leg's family.
fn assert_our_address(who: &str, net: &Net, msgs: &[String], v6: bool) {
    let ours = if v6 {
        format!("[{RELAY6}]:{}", net.sip())
    } else {
        format!("{RELAY4}:{}", net.sip())
    };
    assert!(
        msgs.iter()
            .any(|m| m.contains(&format!("<sip:{ours}>"))
                || m.contains(&format!("SIP/2.0/UDP {ours};"))),
        "{who}: trunkline's address {ours} in no message:\n{msgs:#?}"
    );
}

/// RTP relayed both ways: ~100 packets played, as many echoed.
fn assert_rtp_relayed(net: &Net) {
    let mut body = String::new();
    poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            body = scrape(net);
            metric(&body, "trunkline_relay_mos_count", &[]).unwrap_or(0.0) >= 2.0
        },
    );
    let fwd = metric(
        &body,
        "trunkline_relay_packets_forwarded_total",
        &[("kind", "all")],
    )
    .unwrap_or(0.0);
    assert!(
        (180.0..=210.0).contains(&fwd),
        "forwarded {fwd}: want ~200 (100 each way):\n{body}"
    );
    assert!(
        metric(&body, "trunkline_relay_mos_count", &[]).unwrap_or(0.0) >= 2.0,
        "both legs scored:\n{body}"
    );
    // A pair with an IPv6 leg stays in user space (the eBPF fast path is IPv4 only), also
    // where the kernel path runs (as root).
    let kernel = metric(
        &body,
        "trunkline_relay_packets_forwarded_total",
        &[("kind", "kernel")],
    );
    assert_eq!(kernel, Some(0.0), "IPv6 media in the kernel path:\n{body}");
}

/// One call from a SIPp UAC at `caller_ip` to a SIPp UAS at `callee_ip` (the trunk), RTP played
/// by the caller and echoed by the callee; returns (caller's messages, callee's messages).
fn call(net: &Net, caller_ip: &str, callee_ip: &str) -> (Vec<String>, Vec<String>) {
    std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("write tone.wav");
    let uas_log = net.dir.join("uas.msg.log");
    let uac_log = net.dir.join("uac.msg.log");
    let callee = Sipp::uas(
        net,
        "uas",
        "uas_basic.xml",
        net.trunk(0),
        net.sipp_media(1),
        1,
    )
    .local_ip(callee_ip)
    .arg("-rtp_echo")
    .args(&["-trace_msg", "-message_file", &uas_log.to_string_lossy()])
    .spawn();
    wait_udp_bound(net.trunk(0), Duration::from_secs(5));
    let target: SocketAddr = if caller_ip.contains(':') {
        format!("[{caller_ip}]:{}", net.sip()).parse().expect("v6")
    } else {
        net.sip_addr()
    };
    let caller = Sipp::uac_to(net, "uac", "uac_rtp.xml", target, 1, 1)
        .local_ip(caller_ip)
        .args(&["-trace_msg", "-message_file", &uac_log.to_string_lossy()])
        .run(LIMIT);
    caller.assert_all_ok(1, "SIPp caller with rtp_stream");
    callee
        .wait(Duration::from_secs(10))
        .assert_all_ok(1, "SIPp callee with -rtp_echo");
    (received(&uac_log), received(&uas_log))
}

#[test]
fn ipv6_caller_to_ipv4_pbx_rtp_both_ways() {
    require_sipp();
    isolated("ipv6_caller_to_ipv4_pbx_rtp_both_ways", true, |net| {
        add_relay_v6_address();
        let pbx = format!("127.0.0.1:{}", net.trunk(0));
        let mut tl = Trunkline::start(net, &dual_yaml(net, &pbx));
        let (uac, uas) = call(net, "::1", "127.0.0.1");
        // The caller on IPv6 sees IPv6 only: the relay's IPv6 address in the SDP, our IPv6
        // address (an RFC 5118 reference) as Contact.
        assert_family_sdp("UAC (IPv6)", net, &received_sdp("UAC", &uac), true);
        assert_our_address("UAC (IPv6)", net, &uac, true);
        assert_no_other_family("UAC (IPv6)", &uac, true);
        // The PBX on IPv4 sees IPv4 only.
        assert_family_sdp("UAS (IPv4)", net, &received_sdp("UAS", &uas), false);
        assert_our_address("UAS (IPv4)", net, &uas, false);
        assert_no_other_family("UAS (IPv4)", &uas, false);
        assert_rtp_relayed(net);
        tl.assert_alive();
    });
}

#[test]
fn ipv4_caller_to_ipv6_trunk_rtp_both_ways() {
    require_sipp();
    isolated("ipv4_caller_to_ipv6_trunk_rtp_both_ways", true, |net| {
        add_relay_v6_address();
        let carrier = format!("[::1]:{}", net.trunk(0));
        let mut tl = Trunkline::start(net, &dual_yaml(net, &carrier));
        let (uac, uas) = call(net, "127.0.0.1", "::1");
        assert_family_sdp("UAC (IPv4)", net, &received_sdp("UAC", &uac), false);
        assert_our_address("UAC (IPv4)", net, &uac, false);
        assert_no_other_family("UAC (IPv4)", &uac, false);
        // The carrier on IPv6: our Via towards it is `[2001:db8::5]:5060`.
        assert_family_sdp("UAS (IPv6)", net, &received_sdp("UAS", &uas), true);
        assert_our_address("UAS (IPv6)", net, &uas, true);
        assert_no_other_family("UAS (IPv6)", &uas, true);
        assert_rtp_relayed(net);
        tl.assert_alive();
    });
}

/// `msg` with its top Via's sent-by replaced by `at` and `;rport` added (responses come back to
/// the test's socket; the rest of the message is the RFC's).
fn via_to(msg: &[u8], at: SocketAddr) -> Vec<u8> {
    let text = String::from_utf8(msg.to_vec()).expect("corpus is text");
    let start = text.find("\r\nVia: SIP/2.0/").expect("a Via") + 2;
    let line_end = start + text[start..].find("\r\n").expect("CRLF");
    let line = &text[start..line_end];
    // "Via: SIP/2.0/UDP " then the sent-by
    let proto = line.find("SIP/2.0/").expect("sent-protocol");
    let sent_by_at = proto + line[proto..].find(' ').expect("sent-by") + 1;
    let rest = &line[sent_by_at..];
    let params = rest.find(';').map_or("", |i| &rest[i..]);
    let head = &line[..sent_by_at];
    let new = format!("{head}{at};rport{params}");
    format!("{}{new}{}", &text[..start], &text[line_end..]).into_bytes()
}

fn status_of(data: &[u8]) -> Option<u16> {
    let t = std::str::from_utf8(data).ok()?;
    t.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

#[test]
fn rfc5118_messages_over_ipv6_udp() {
    isolated("rfc5118_messages_over_ipv6_udp", true, |net| {
        add_relay_v6_address();
        let trunk = UdpSocket::bind(("::1", net.trunk(0))).expect("bind the IPv6 trunk");
        trunk
            .set_read_timeout(Some(Duration::from_millis(2000)))
            .expect("timeout");
        let carrier = format!("[::1]:{}", net.trunk(0));
        let mut tl = Trunkline::start(net, &dual_yaml(net, &carrier));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("signaling/tests/rfc5118");
        let to: SocketAddr = format!("[::1]:{}", net.sip()).parse().expect("v6");
        // (file, the final status the RFC's verdict leads to; 100 = an INVITE being routed)
        let cases: &[(&str, u16)] = &[
            ("ipv6-good", 405),
            ("ipv6-bad", 400),
            ("port-ambiguous", 405),
            ("port-unambiguous", 405),
            ("via-received-param-with-delim", 481),
            ("via-received-param-no-delim", 200),
            ("ipv6-in-sdp", 100),
            ("mult-ip-in-header", 481),
            ("mult-ip-in-sdp", 100),
            ("ipv4-mapped-ipv6", 100),
            ("ipv6-bug-abnf-3-colons", 200),
            ("ipv6-correct-abnf-2-colons", 200),
        ];
        let mut failures = Vec::new();
        for &(name, want) in cases {
            let raw = std::fs::read(dir.join(format!("{name}.dat"))).expect("corpus file");
            let sock = UdpSocket::bind("[::1]:0").expect("bind [::1]");
            sock.set_read_timeout(Some(Duration::from_millis(2000)))
                .expect("timeout");
            let msg = via_to(&raw, sock.local_addr().expect("local"));
            sock.send_to(&msg, to).expect("send");
            let mut buf = [0u8; 8192];
            let got = match sock.recv_from(&mut buf) {
                Ok((n, _)) => status_of(&buf[..n]),
                Err(e) => {
                    failures.push(format!("{name}: no answer ({e})"));
                    continue;
                }
            };
            if got != Some(want) {
                failures.push(format!("{name}: got {got:?}, want {want}"));
                continue;
            }
            if want == 100 {
                // Routed: the IPv6 trunk gets an INVITE from our IPv6 address, with the SDP
                // on the relay's IPv6 address.
                let n = loop {
                    match trunk.recv_from(&mut buf) {
                        Ok((n, _)) if buf[..n].starts_with(b"INVITE ") => break Some(n),
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                };
                let Some(n) = n else {
                    failures.push(format!("{name}: no INVITE reached the trunk"));
                    continue;
                };
                let inv = String::from_utf8_lossy(&buf[..n]).into_owned();
                let ok = inv.contains(&format!("Via: SIP/2.0/UDP [{RELAY6}]:{};", net.sip()))
                    && inv.contains(&format!("c=IN IP6 {RELAY6}\r\n"))
                    && !inv.contains("c=IN IP4");
                if !ok {
                    failures.push(format!("{name}: INVITE to the trunk:\n{inv}"));
                }
                // Busy: the call ends, so the next message reusing its Call-ID and From tag
                // (the RFC's messages share them) is a new call, not a merged request (482).
                let from = format!("[::1]:{}", net.sip()).parse().expect("v6");
                rawsip::reply(&trunk, from, &rawsip::Msg { text: inv }, 486, "busy", None);
                let mut final_status = None;
                while let Ok((n, _)) = sock.recv_from(&mut buf) {
                    final_status = status_of(&buf[..n]);
                    if final_status.is_some_and(|s| s >= 200) {
                        break;
                    }
                }
                if final_status != Some(486) {
                    failures.push(format!("{name}: final answer {final_status:?}, want 486"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        tl.assert_alive();
    });
}
