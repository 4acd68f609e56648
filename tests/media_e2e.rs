//! Media through the B2BUA, end to end (issue 3, "What to build" 6): every SDP crossing
//! trunkline carries `media.address` and a port of `media.ports`, and RTP/RTCP really flows
//! between the two phones through the relay, untouched.
//!
//! The relay listens on 127.0.0.2 (`media.address`), phone A's media on 127.0.0.11, phone B's on
//! 127.0.0.12 (all loopback), so an address leaking from one leg to the other is visible.
//!
//! * `sipp_call_sees_only_the_relay`: SIPp UAC -> trunkline -> SIPp UAS; the SDP each SIPp
//!   receives (captured with `-trace_msg`) names the relay address and a relay port, never the
//!   other SIPp's media address or port.
//! * `rtp_end_to_end_epoll` / `rtp_end_to_end_io_uring`: the SIP signalling is done by the test
//!   (raw SIP over UDP, both phones), the media by the test's own UDP endpoints: RTP and RTCP
//!   both ways arrive from the relay's address and the port the receiver was told in SDP,
//!   byte for byte (SSRC, sequence, timestamp untouched); a re-INVITE `a=sendonly` (hold,
//!   RFC 3264 §8.4) keeps the relay ports and passes the direction; after the call, `/metrics`
//!   shows the packets and bytes moved and MOS/jitter/loss observations. Run once per back end,
//!   named explicitly (`media.backend`), and the back end in use is checked in `/metrics`;
//!   epoll with `media.workers: 2`, io_uring with `workers: 1` and `io_uring_batch_us: 0`
//!   (the worker count is checked in the start-up log).
//! * `sipp_rtp_stream_echoed_through_relay`: SIPp's own RTP: the caller plays 2 s of G.711
//!   (`rtp_stream`), the callee echoes it (`-rtp_echo`); the relay forwards both directions.
//! * `media_timeout_ends_call`: `media.timeout: 1`, an answered call with no RTP gets a BYE on
//!   both legs within a few seconds and `trunkline_media_timeouts_total` counts it.

mod common;
#[path = "support/tone.rs"]
mod tone;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::rawsip::{collect, recv_until, reply, Uac, Uas};
use common::*;

const RELAY_IP: &str = "127.0.0.2";
const A_IP: &str = "127.0.0.11";
const B_IP: &str = "127.0.0.12";

/// Trunk `pbx` on trunk port 0, every call routed to it; the relay on [`RELAY_IP`].
fn media_yaml(net: &Net, backend: &str, timeout: Option<u64>) -> String {
    media_yaml_with(net, backend, timeout, "")
}

/// [`media_yaml`] with `extra` lines in the `media:` section.
fn media_yaml_with(net: &Net, backend: &str, timeout: Option<u64>, extra: &str) -> String {
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let y = config_yaml(net, &t, &["pbx"]);
    let old = format!("  address: 127.0.0.1\n  ports: {}\n", net.media_range());
    assert!(
        y.contains(&old),
        "config_yaml's media section changed:\n{y}"
    );
    let mut media = format!(
        "  address: {RELAY_IP}\n  ports: {}\n  backend: {backend}\n",
        net.media_range()
    );
    if let Some(s) = timeout {
        media += &format!("  timeout: {s}\n");
    }
    media += extra;
    with_metrics(net, &y.replace(&old, &media), "")
}

fn media_range(net: &Net) -> (u16, u16) {
    let r = net.media_range();
    let (lo, hi) = r.split_once('-').expect("lo-hi");
    (lo.parse().expect("lo"), hi.parse().expect("hi"))
}

// ---------------------------------------------------------------------------------------------
// SDP as the phones see it

#[derive(Debug, Clone, PartialEq)]
struct SeenSdp {
    /// Every `c=` address (session and media level).
    conns: Vec<IpAddr>,
    /// The `m=audio` port.
    port: u16,
    /// `a=sendrecv|sendonly|recvonly|inactive` lines.
    dirs: Vec<String>,
}

fn parse_sdp(body: &str) -> SeenSdp {
    let mut conns = Vec::new();
    let mut port = None;
    let mut dirs = Vec::new();
    for l in body.lines().map(str::trim) {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            conns.push(c.trim().parse().expect("c= address"));
        } else if let Some(m) = l.strip_prefix("m=audio ") {
            port = Some(m.split(' ').next().unwrap_or("").parse().expect("m= port"));
        } else if let Some(d) = l.strip_prefix("a=") {
            if ["sendrecv", "sendonly", "recvonly", "inactive"].contains(&d) {
                dirs.push(d.to_string());
            }
        }
    }
    SeenSdp {
        conns,
        port: port.unwrap_or_else(|| panic!("no m=audio in SDP:\n{body}")),
        dirs,
    }
}

/// The SDP a phone received: the relay's address only, a port of the range, nothing of the
/// other side (`foreign_ip`, `foreign_port`).
fn assert_anchored(who: &str, net: &Net, body: &str, foreign_ip: &str, foreign_port: u16) -> u16 {
    let s = parse_sdp(body);
    let relay: IpAddr = RELAY_IP.parse().expect("ip");
    assert!(
        !s.conns.is_empty() && s.conns.iter().all(|c| *c == relay),
        "{who}: c= must be the relay address {RELAY_IP}:\n{body}"
    );
    let (lo, hi) = media_range(net);
    assert!(
        (lo..=hi).contains(&s.port) && s.port.is_multiple_of(2),
        "{who}: m= port {} outside media.ports {lo}-{hi} (or odd):\n{body}",
        s.port
    );
    assert_ne!(s.port, foreign_port, "{who}: saw the other side's port");
    assert!(
        !body.contains(foreign_ip),
        "{who}: the other side's address {foreign_ip} leaked:\n{body}"
    );
    s.port
}

fn sdp(ip: &str, port: u16, dir: &str, version: u32) -> String {
    format!(
        "v=0\r\no=phone 42 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Raw SIP over UDP: just enough UAC and UAS for one call

/// One answered call A -> trunkline -> B: A offers `a_media`, B answers `b_media`. Returns the
/// relay ports A and B were told (A sends to `pa`, B to `pb`).
fn set_up_call(net: &Net, uac: &mut Uac, uas: &Uas, a_media: u16, b_media: u16) -> (u16, u16) {
    let cseq = uac.send("INVITE", Some(&sdp(A_IP, a_media, "sendrecv", 1)));
    let inv = uas.recv_request("INVITE", Duration::from_secs(10));
    let pb = assert_anchored("B (INVITE)", net, inv.body(), A_IP, a_media);
    reply(
        &uas.sock,
        net.sip_addr(),
        &inv,
        200,
        "b-tag",
        Some(&sdp(B_IP, b_media, "sendrecv", 1)),
    );
    let ok = uac.final_response("INVITE", cseq);
    assert_eq!(ok.code(), Some(200), "A: {}", ok.text);
    let pa = assert_anchored("A (200)", net, ok.body(), B_IP, b_media);
    assert_ne!(pa, pb, "each side gets its own relay port");
    uas.recv_request("ACK", Duration::from_secs(5));
    (pa, pb)
}

// ---------------------------------------------------------------------------------------------
// RTP

fn rtp_packet(seq: u16, ts: u32, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| fill ^ (i as u8)));
    p
}

/// An RTCP receiver report (RFC 3550 §6.4.2) with no report blocks.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// `got` (what a phone received) is exactly `sent` (what the other phone sent), byte for byte,
/// in order, each from the relay port the receiver was told in SDP (`relay_port`).
fn assert_flows(what: &str, got: &[(SocketAddr, Vec<u8>)], sent: &[Vec<u8>], relay_port: u16) {
    let relay: IpAddr = RELAY_IP.parse().expect("ip");
    assert_eq!(
        got.len(),
        sent.len(),
        "{what}: {} of {} packets arrived",
        got.len(),
        sent.len()
    );
    for (i, ((src, bytes), want)) in got.iter().zip(sent).enumerate() {
        assert_eq!(
            *src,
            SocketAddr::new(relay, relay_port),
            "{what}: packet {i} must come from the relay port the receiver was told"
        );
        assert_eq!(bytes, want, "{what}: packet {i} changed on the way");
    }
}

/// trunkline's log without terminal colour sequences.
fn plain_log(tl: &Trunkline) -> String {
    let mut out = String::new();
    let mut esc = false;
    for ch in tl.log_text().chars() {
        match (esc, ch) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// `workers`/`batch_us`: `media.workers` and `media.io_uring_batch_us` to configure.
fn rtp_end_to_end(net: &Net, backend: &str, workers: usize, batch_us: u32) {
    let extra = format!("  workers: {workers}\n  io_uring_batch_us: {batch_us}\n");
    let mut tl = Trunkline::start(net, &media_yaml_with(net, backend, None, &extra));
    let log = plain_log(&tl);
    assert!(
        log.contains(&format!("workers={workers}")),
        "media.workers {workers} not applied:\n{log}"
    );
    let m0 = scrape(net);
    assert_eq!(
        metric(&m0, "trunkline_relay_backend_info", &[("backend", backend)]),
        Some(1.0),
        "the relay must run the back end asked for ({backend}):\n{}",
        tl.log_tail(20)
    );

    let uac_sock = UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A SIP");
    let uas = Uas {
        sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B SIP"),
    };
    let mut uac = Uac::new(uac_sock, net.sip_addr(), &format!("rtp-{backend}"));
    let (a_port, b_port) = (net.spare(0), net.spare(10));
    let a_rtp = UdpSocket::bind((A_IP, a_port)).expect("bind A RTP");
    let a_rtcp = UdpSocket::bind((A_IP, a_port + 1)).expect("bind A RTCP");
    let b_rtp = UdpSocket::bind((B_IP, b_port)).expect("bind B RTP");
    let b_rtcp = UdpSocket::bind((B_IP, b_port + 1)).expect("bind B RTCP");

    let (pa, pb) = set_up_call(net, &mut uac, &uas, a_port, b_port);
    let relay: IpAddr = RELAY_IP.parse().expect("ip");

    // (b) RTP both ways, 50 packets each (1 s of G.711 at 20 ms), unchanged.
    let n = 50u16;
    let (ssrc_a, ssrc_b) = (0x1111_2222u32, 0x3333_4444u32);
    let mut from_a = Vec::new();
    let mut from_b = Vec::new();
    let mut got_b = Vec::new();
    let mut got_a = Vec::new();
    for i in 0..n {
        let pa_pkt = rtp_packet(1000 + i, 160 * i as u32, ssrc_a, 0xa5);
        let pb_pkt = rtp_packet(60000u16.wrapping_add(i), 7 + 160 * i as u32, ssrc_b, 0x5a);
        a_rtp.send_to(&pa_pkt, (relay, pa)).expect("A sends RTP");
        b_rtp.send_to(&pb_pkt, (relay, pb)).expect("B sends RTP");
        from_a.push(pa_pkt);
        from_b.push(pb_pkt);
        got_b.extend(collect(&b_rtp, usize::MAX, Duration::from_millis(10)));
        got_a.extend(collect(&a_rtp, usize::MAX, Duration::from_millis(10)));
    }
    got_b.extend(collect(
        &b_rtp,
        from_a.len() - got_b.len().min(from_a.len()),
        Duration::from_secs(2),
    ));
    got_a.extend(collect(
        &a_rtp,
        from_b.len() - got_a.len().min(from_b.len()),
        Duration::from_secs(2),
    ));
    assert_flows("RTP A -> B", &got_b, &from_a, pb);
    assert_flows("RTP B -> A", &got_a, &from_b, pa);

    // RTCP on port + 1 both ways.
    let rr_a = rtcp_rr(ssrc_a);
    a_rtcp.send_to(&rr_a, (relay, pa + 1)).expect("A RTCP");
    let got = collect(&b_rtcp, 1, Duration::from_secs(2));
    assert_flows("RTCP A -> B", &got, &[rr_a], pb + 1);
    let rr_b = rtcp_rr(ssrc_b);
    b_rtcp.send_to(&rr_b, (relay, pb + 1)).expect("B RTCP");
    let got = collect(&a_rtcp, 1, Duration::from_secs(2));
    assert_flows("RTCP B -> A", &got, &[rr_b], pa + 1);

    // (c) Hold: A re-offers a=sendonly; the ports stay, the direction passes both ways.
    let cseq = uac.send("INVITE", Some(&sdp(A_IP, a_port, "sendonly", 2)));
    let reinv = uas.recv_request("INVITE", Duration::from_secs(10));
    let seen = parse_sdp(reinv.body());
    assert_eq!(
        assert_anchored("B (re-INVITE)", net, reinv.body(), A_IP, a_port),
        pb,
        "hold must keep B's relay port"
    );
    assert!(
        seen.dirs.iter().any(|d| d == "sendonly"),
        "B must see a=sendonly:\n{}",
        reinv.body()
    );
    reply(
        &uas.sock,
        net.sip_addr(),
        &reinv,
        200,
        "b-tag",
        Some(&sdp(B_IP, b_port, "recvonly", 2)),
    );
    let ok = uac.final_response("INVITE", cseq);
    assert_eq!(ok.code(), Some(200), "A: hold answered {}", ok.text);
    assert_eq!(
        assert_anchored("A (re-INVITE 200)", net, ok.body(), B_IP, b_port),
        pa,
        "hold must keep A's relay port"
    );
    assert!(
        parse_sdp(ok.body()).dirs.iter().any(|d| d == "recvonly"),
        "A must see a=recvonly:\n{}",
        ok.body()
    );
    uas.recv_request("ACK", Duration::from_secs(5));
    // Media on hold is still anchored: what A sends (sendonly) still reaches B.
    let mut held = Vec::new();
    for i in n..n + 10 {
        let p = rtp_packet(1000 + i, 160 * i as u32, ssrc_a, 0xa5);
        a_rtp.send_to(&p, (relay, pa)).expect("A sends RTP");
        held.push(p);
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = collect(&b_rtp, held.len(), Duration::from_secs(2));
    assert_flows("RTP A -> B on hold", &got, &held, pb);

    // BYE from A.
    let cseq = uac.send("BYE", None);
    let bye = uas.recv_request("BYE", Duration::from_secs(10));
    reply(&uas.sock, net.sip_addr(), &bye, 200, "b-tag", None);
    let ok = uac.final_response("BYE", cseq);
    assert_eq!(ok.code(), Some(200), "A: BYE answered {}", ok.text);

    // (e) /metrics: packets and bytes moved; quality observed for both legs.
    let moved = (2 * n as usize + 10 + 2) as f64;
    let mut body = String::new();
    poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            body = scrape(net);
            let mos = metric(&body, "trunkline_relay_mos_count", &[]).unwrap_or(0.0);
            let sessions = metric(&body, "trunkline_relay_sessions", &[]).unwrap_or(-1.0);
            mos >= 2.0 && sessions == 0.0
        },
    );
    let packets = metric(
        &body,
        "trunkline_relay_packets_forwarded_total",
        &[("kind", "all")],
    )
    .unwrap_or(0.0);
    let bytes = metric(
        &body,
        "trunkline_relay_bytes_forwarded_total",
        &[("kind", "all")],
    )
    .unwrap_or(0.0);
    assert!(
        packets >= moved,
        "packets forwarded {packets} < {moved}:\n{body}"
    );
    assert!(
        bytes >= (2 * n as usize + 10) as f64 * 172.0,
        "bytes forwarded {bytes}:\n{body}"
    );
    for h in [
        "trunkline_relay_mos_count",
        "trunkline_relay_jitter_seconds_count",
        "trunkline_relay_loss_ratio_count",
    ] {
        let c = metric(&body, h, &[]).unwrap_or(0.0);
        assert!(c >= 2.0, "{h} = {c}: both legs carried RTP:\n{body}");
    }
    assert_eq!(
        metric(&body, "trunkline_relay_sessions", &[]),
        Some(0.0),
        "the call's relay ports are released"
    );
    // As root the kernel fast path (media.kernel_forwarding: auto) carries the settled RTP,
    // and the counters above include what it forwarded.
    let kernel = metric(
        &body,
        "trunkline_relay_packets_forwarded_total",
        &[("kind", "kernel")],
    )
    .unwrap_or(0.0);
    if is_root() && std::env::var_os("TRUNKLINE_NO_BPF").is_none() {
        assert!(
            log.contains("kernel_forwarding=ebpf"),
            "as root the kernel path runs (TRUNKLINE_NO_BPF=1 where it cannot):\n{log}"
        );
        assert!(
            kernel >= 80.0,
            "most of the 100 RTP packets went through the kernel: {kernel}\n{body}"
        );
        assert_eq!(
            metric(&body, "trunkline_relay_kernel_flows", &[]),
            Some(0.0),
            "the call's kernel flows are removed"
        );
    }
    tl.assert_alive();
}

#[test]
fn rtp_end_to_end_epoll() {
    isolated("rtp_end_to_end_epoll", false, |net| {
        rtp_end_to_end(net, "epoll", 2, 200)
    });
}

#[test]
fn rtp_end_to_end_io_uring() {
    isolated("rtp_end_to_end_io_uring", false, |net| {
        rtp_end_to_end(net, "io_uring", 1, 0)
    });
}

#[test]
fn media_timeout_ends_call() {
    isolated("media_timeout_ends_call", false, |net| {
        let mut tl = Trunkline::start(net, &media_yaml(net, "auto", Some(1)));
        let uac_sock = UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A SIP");
        let uas = Uas {
            sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B SIP"),
        };
        let mut uac = Uac::new(uac_sock, net.sip_addr(), "timeout");
        let t0 = Instant::now();
        set_up_call(net, &mut uac, &uas, net.spare(0), net.spare(10));
        // No RTP at all: the relay reports the pair idle after 1 s, the core ends the call.
        let bye_b = uas.recv_request("BYE", Duration::from_secs(6));
        reply(&uas.sock, net.sip_addr(), &bye_b, 200, "b-tag", None);
        let bye_a = recv_until(&uac.sock, Duration::from_secs(6), "A: BYE", |m| {
            m.is_request("BYE")
        });
        reply(
            &uac.sock,
            net.sip_addr(),
            &bye_a,
            200,
            &uac.tag.clone(),
            None,
        );
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "BYE after {took:?} (media.timeout 1 s)"
        );
        let (mut body, mut n) = (String::new(), 0.0);
        let counted = poll_until(
            Instant::now() + Duration::from_secs(3),
            Duration::from_millis(100),
            || {
                body = scrape(net);
                n = metric(&body, "trunkline_media_timeouts_total", &[]).unwrap_or(0.0);
                n == 1.0
            },
        );
        assert!(
            counted,
            "trunkline_media_timeouts_total = {n}, want 1:\n{body}"
        );
        tl.assert_alive();
    });
}

// ---------------------------------------------------------------------------------------------
// SIPp

/// The bodies of the messages SIPp logged as received in its `-trace_msg` file.
fn sipp_received_bodies(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter(|b| b.contains("message received"))
        .filter_map(|b| {
            let b = b.replace("\r\n", "\n");
            b.split_once("\n\n").map(|(_, rest)| {
                // the message itself: drop SIPp's framing line; the body follows the blank line
                rest.split_once("\n\n")
                    .map_or(String::new(), |(_, body)| body.to_string())
            })
        })
        .filter(|b| b.contains("m=audio"))
        .collect()
}

#[test]
fn sipp_call_sees_only_the_relay() {
    require_sipp();
    isolated("sipp_call_sees_only_the_relay", false, |net| {
        let _tl = Trunkline::start(net, &media_yaml(net, "auto", None));
        let uas_log = net.dir.join("uas.msg.log");
        let uac_log = net.dir.join("uac.msg.log");
        let calls = 3;
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            calls,
        )
        .args(&["-trace_msg", "-message_file", &uas_log.to_string_lossy()])
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_basic.xml", calls, 10)
            .pause_ms(200)
            .args(&["-trace_msg", "-message_file", &uac_log.to_string_lossy()])
            .run(Duration::from_secs(30));
        caller.assert_all_ok(calls as u64, "media through trunkline");
        let callee = callee.wait(Duration::from_secs(10));
        callee.assert_all_ok(calls as u64, "media through trunkline (callee)");

        let offers = sipp_received_bodies(&uas_log);
        let answers = sipp_received_bodies(&uac_log);
        assert_eq!(offers.len(), calls as usize, "UAS offers:\n{offers:?}");
        assert_eq!(answers.len(), calls as usize, "UAC answers:\n{answers:?}");
        // SIPp's own media address is 127.0.0.1; the relay's is RELAY_IP.
        for o in &offers {
            assert_anchored("SIPp UAS (offer)", net, o, "127.0.0.1", net.sipp_media(0));
        }
        for a in &answers {
            assert_anchored("SIPp UAC (answer)", net, a, "127.0.0.1", net.sipp_media(1));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Cost per call (measurement, not a pass/fail test)

/// utime + stime of every thread of `pid`, by thread name, in clock ticks.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse().ok())
            .collect();
        let name = comm.trim().to_string();
        let ticks = f.iter().sum::<u64>();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 += ticks,
            None => out.push((name, ticks)),
        }
    }
    out
}

/// SIPp's embedded scenario `name` (`uac`/`uas`) without its SDP bodies.
fn sipp_without_sdp(net: &Net, name: &str) -> std::path::PathBuf {
    let out = std::process::Command::new("sipp")
        .args(["-sd", name])
        .output()
        .expect("sipp -sd");
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut res = String::new();
    let mut in_body = false;
    for line in xml.lines() {
        if line.trim() == "v=0" {
            in_body = true;
        }
        if in_body && line.trim() == "]]>" {
            in_body = false;
        }
        if in_body || line.contains("Content-Type: application/sdp") {
            continue;
        }
        res.push_str(&line.replace("Content-Length: [len]", "Content-Length: 0"));
        res.push('\n');
    }
    let p = net.dir.join(format!("{name}_nosdp.xml"));
    std::fs::write(&p, res).expect("write scenario");
    p
}

/// trunkline's CPU per call with SIPp's default uac/uas (both carry SDP, so every call opens
/// and closes a relay pair) against the same calls without SDP (no media at all): the
/// difference is what media costs per call (SDP parse and rewrite, relay control, workers).
///
/// `CALLS=20000 cargo test --release --test media_e2e relay_cost_per_call -- --ignored --nocapture`
#[test]
#[ignore]
fn relay_cost_per_call() {
    require_sipp();
    isolated("relay_cost_per_call", false, |net| {
        let calls: u32 = std::env::var("CALLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10000);
        let yaml = media_yaml(net, "auto", None).replace(
            &format!("ports: {}", net.media_range()),
            "ports: 20000-39999",
        );
        for with_sdp in [true, false] {
            let tl = Trunkline::start(net, &yaml);
            let (uac, uas): (Vec<String>, Vec<String>) = if with_sdp {
                (
                    vec!["-sn".into(), "uac".into()],
                    vec!["-sn".into(), "uas".into()],
                )
            } else {
                let c = sipp_without_sdp(net, "uac");
                let s = sipp_without_sdp(net, "uas");
                (
                    vec!["-sf".into(), c.to_string_lossy().into_owned()],
                    vec!["-sf".into(), s.to_string_lossy().into_owned()],
                )
            };
            let port = net.trunk(0).to_string();
            let mut callee = std::process::Command::new("sipp")
                .args(&uas)
                .args(["-i", "127.0.0.1", "-p", &port, "-nostdin"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn_group()
                .expect("sipp uas");
            wait_udp_bound(net.trunk(0), Duration::from_secs(5));
            let before = thread_ticks(tl.pid());
            let t0 = Instant::now();
            let st = std::process::Command::new("sipp")
                .arg(net.sip_addr().to_string())
                .args(&uac)
                .args(["-i", "127.0.0.1", "-p", &net.uac().to_string()])
                .args(["-m", &calls.to_string(), "-r", "1000", "-nostdin"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("sipp uac");
            let wall = t0.elapsed();
            let after = thread_ticks(tl.pid());
            let _ = callee.kill();
            let _ = callee.wait();
            assert!(st.success(), "SIPp uac: {st} (some calls failed)");
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let us = |t: u64| t as f64 * 1e6 / hz / calls as f64;
            let mut total = 0;
            let mut per_thread = String::new();
            for (name, t1) in &after {
                let t0 = before
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, t)| *t);
                let d = t1.saturating_sub(t0);
                total += d;
                if d > 0 {
                    per_thread += &format!(" {name} {:.1}", us(d));
                }
            }
            println!(
                "{} SDP: {calls} calls at 1000/s in {:.1} s: trunkline {:.1} us CPU per call \
                 (per thread:{per_thread})",
                if with_sdp { "with" } else { "without" },
                wall.as_secs_f64(),
                us(total),
            );
            drop(tl);
        }
    });
}

/// SIPp's own RTP (Debian's build has `rtp_stream` and `-rtp_echo`): the caller plays 2 s of
/// G.711 (100 packets), the callee echoes what it receives to its sender (the relay), so every
/// packet crosses the relay twice; the relay forwards both directions and scores both legs.
#[test]
fn sipp_rtp_stream_echoed_through_relay() {
    require_sipp();
    isolated("sipp_rtp_stream_echoed_through_relay", false, |net| {
        let mut tl = Trunkline::start(net, &media_yaml(net, "auto", None));
        std::fs::write(net.dir.join("tone.wav"), tone::tone_wav()).expect("write tone.wav");
        let callee = Sipp::uas(
            net,
            "uas",
            "uas_basic.xml",
            net.trunk(0),
            net.sipp_media(1),
            1,
        )
        .arg("-rtp_echo")
        .spawn();
        wait_udp_bound(net.trunk(0), Duration::from_secs(5));
        let caller = Sipp::uac(net, "uac", "uac_rtp.xml", 1, 1).run(LIMIT_SIPP);
        caller.assert_all_ok(1, "SIPp call with rtp_stream");
        callee
            .wait(Duration::from_secs(10))
            .assert_all_ok(1, "SIPp callee with -rtp_echo");
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
        // A -> B is at most the 100 packets played; more than 180 means the echo came back.
        assert!(
            (180.0..=210.0).contains(&fwd),
            "forwarded {fwd}: want ~200 (100 each way):\n{body}"
        );
        assert!(
            metric(&body, "trunkline_relay_mos_count", &[]).unwrap_or(0.0) >= 2.0,
            "both legs scored:\n{body}"
        );
        tl.assert_alive();
    });
}

const LIMIT_SIPP: Duration = Duration::from_secs(30);

/// A relay with room for one call only (4 ports: one RTP/RTCP pair per leg). The second call
/// finds no ports: that is the server's condition, not a bad offer, so it gets 503 with
/// Retry-After (not 488) and is counted as rejected; once the first call ends, its ports serve a
/// new call.
#[test]
fn relay_ports_exhausted_is_503_with_retry_after() {
    isolated(
        "relay_ports_exhausted_is_503_with_retry_after",
        false,
        |net| {
            let (lo, _) = media_range(net);
            let lo = lo + lo % 2;
            let yaml = media_yaml(net, "epoll", None).replace(
                &format!("ports: {}", net.media_range()),
                &format!("ports: {}-{}", lo, lo + 3),
            );
            let mut tl = Trunkline::start(net, &yaml);
            let uas = Uas {
                sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B SIP"),
            };
            let mut first = Uac::new(
                UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A SIP"),
                net.sip_addr(),
                "first",
            );
            set_up_call(net, &mut first, &uas, net.spare(0), net.spare(10));

            let mut second = Uac::new(
                UdpSocket::bind(("127.0.0.1", 0)).expect("bind A2 SIP"),
                net.sip_addr(),
                "second",
            );
            let cseq = second.send("INVITE", Some(&sdp(A_IP, net.spare(2), "sendrecv", 1)));
            let r = second.final_response("INVITE", cseq);
            assert_eq!(r.code(), Some(503), "no relay ports left: {}", r.text);
            let ra = header(&r.text, "Retry-After", None).expect("Retry-After on the 503");
            assert!(ra.trim().parse::<u32>().is_ok_and(|s| s > 0), "{ra}");

            // The first call ends; its ports carry the next call.
            let cseq = first.send("BYE", None);
            let bye = uas.recv_request("BYE", Duration::from_secs(5));
            reply(&uas.sock, net.sip_addr(), &bye, 200, "b-tag", None);
            assert_eq!(first.final_response("BYE", cseq).code(), Some(200));
            let mut third = Uac::new(
                UdpSocket::bind(("127.0.0.1", 0)).expect("bind A3 SIP"),
                net.sip_addr(),
                "third",
            );
            set_up_call(net, &mut third, &uas, net.spare(4), net.spare(12));
            let body = scrape(net);
            let rejected = metric(
                &body,
                "trunkline_sip_requests_rejected_total",
                &[("code", "503")],
            );
            assert_eq!(rejected, Some(1.0), "the 503 is counted:\n{body}");
            tl.assert_alive();
        },
    );
}

/// `media.strict_source: true`: the relay takes media only from the address and port each
/// side's SDP names. RTP from anywhere else (an RTP Bleed probe, or a NATed phone) is dropped;
/// from the signalled address it flows. With the default (latching), the first source is taken.
#[test]
fn strict_source_drops_media_from_elsewhere() {
    isolated("strict_source_drops_media_from_elsewhere", false, |net| {
        let mut tl = Trunkline::start(
            net,
            &media_yaml_with(net, "auto", None, "  strict_source: true\n"),
        );
        let uas = Uas {
            sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B SIP"),
        };
        let mut uac = Uac::new(
            UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A SIP"),
            net.sip_addr(),
            "strict",
        );
        let (a_port, b_port) = (net.spare(0), net.spare(10));
        let a_rtp = UdpSocket::bind((A_IP, a_port)).expect("bind A RTP");
        let stranger = UdpSocket::bind((A_IP, a_port + 4)).expect("bind stranger");
        let b_rtp = UdpSocket::bind((B_IP, b_port)).expect("bind B RTP");
        let (pa, _pb) = set_up_call(net, &mut uac, &uas, a_port, b_port);
        let relay: IpAddr = RELAY_IP.parse().expect("ip");

        // From a port the SDP did not name: dropped, even as the very first packet.
        for i in 0..10u16 {
            let p = rtp_packet(i, 160 * u32::from(i), 0xbad0_bad0, 0x11);
            stranger.send_to(&p, (relay, pa)).expect("stranger sends");
        }
        let got = collect(&b_rtp, 1, Duration::from_millis(500));
        assert!(
            got.is_empty(),
            "media from an unsignalled source was relayed: {got:?}"
        );
        // From the signalled address: relayed.
        let sent: Vec<Vec<u8>> = (0..10u16)
            .map(|i| rtp_packet(100 + i, 160 * u32::from(i), 0x600d_600d, 0x22))
            .collect();
        for p in &sent {
            a_rtp.send_to(p, (relay, pa)).expect("A sends");
        }
        let got = collect(&b_rtp, sent.len(), Duration::from_secs(2));
        assert_eq!(got.len(), sent.len(), "media from the SDP's address flows");
        tl.assert_alive();
    });
}
