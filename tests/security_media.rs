//! RTP hijack ("RTP Bleed", issue 8 item 4) tried as an attacker would, through trunkline with
//! its default media settings, in the test's own network namespace.
//!
//! The relay is on 127.0.0.2, the caller's media on 127.0.0.11, the callee's on 127.0.0.12, both
//! phones signal from 127.0.0.1, and the attacker sprays RTP from 127.0.0.66 at every port of
//! the relay range (in sequence, one SSRC, as a real RTP stream would look) from the moment the
//! callee rings until the call ends.
//!
//! * `sprayer_gets_nothing_and_nat_caller_talks`: three calls whose phones send from their SDP
//!   addresses, then one whose caller is behind NAT (media from its signalling IP, another port
//!   than its SDP says). Every call: the attacker receives no packet at all, the callee none of
//!   the attacker's, and both phones get all 100 of each other's packets (the NATed caller too:
//!   two-way audio once its source passed probation). `/metrics` counts the dropped packets
//!   (`reason="foreign_source"`, and `reason="probation"` for the NATed caller's first ones).
//! * `too_many_m_lines_get_488`: an INVITE whose SDP has 17 m= lines is answered 488 by
//!   trunkline and never reaches the callee (no relay ports held for it).
//! * `ng_listen_off_loopback_needs_allow_list`: `trunkline check` refuses a non-loopback
//!   `media.ng_listen` without `media.ng_allow`, naming FILE:LINE:COLUMN of `ng_listen`; with
//!   the list it passes, and a bad entry is named at its own line.
//! * `ng_port_allow_list_and_stream_cap`: ng on 0.0.0.0 with `ng_allow: [10.99.0.2/32]` and
//!   `ng_max_streams: 3` (addresses on the namespace's `lo`): a ping from 10.99.0.1 gets no
//!   answer, from 10.99.0.2 and loopback it does; three offers get ports, the fourth an ng
//!   error (`Too many sessions`), a delete makes room again.
//! * `ng_big_reoffers_keep_rss_bounded`: 5,000 re-offers of one call with a 63 KB SDP, each
//!   under a fresh cookie (the 4.25 GB): trunkline's RSS grows by less than 150 MB
//!   (the reply cache holds at most 64 MiB; unbounded it would hold over 300 MB), every
//!   re-offer is answered, and the call holds one relay pair.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::rawsip::*;
use common::*;

const RELAY_IP: &str = "127.0.0.2";
const A_IP: &str = "127.0.0.11";
const B_IP: &str = "127.0.0.12";
const ATTACKER_IP: &str = "127.0.0.66";
const SSRC_A: u32 = 0x0a0a_0a0a;
const SSRC_B: u32 = 0x0b0b_0b0b;
const SSRC_EVIL: u32 = 0xbad0_0066;
/// Packets each phone sends per call (after any NAT learning).
const N: usize = 100;

fn yaml(net: &Net) -> String {
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
    let media = format!("  address: {RELAY_IP}\n  ports: {}\n", net.media_range());
    with_metrics(net, &y.replace(&old, &media), "")
}

fn media_range(net: &Net) -> (u16, u16) {
    let r = net.media_range();
    let (lo, hi) = r.split_once('-').expect("lo-hi");
    (lo.parse().expect("lo"), hi.parse().expect("hi"))
}

fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    assert!(
        poll_until(Instant::now() + limit, Duration::from_millis(2), cond),
        "{what}: not within {limit:?}"
    );
}

/// The attacker: sprays every port of the relay range, round after round, and counts what it
/// receives.
struct Sprayer {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Sprayer {
    fn start(relay: IpAddr, lo: u16, hi: u16) -> Sprayer {
        let sock = UdpSocket::bind((ATTACKER_IP, 0)).expect("bind attacker");
        let rx = sock.try_clone().expect("clone");
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (s1, r1) = (stop.clone(), rounds.clone());
        let tx = std::thread::spawn(move || {
            let mut seq: u16 = 0;
            while !s1.load(Ordering::Relaxed) {
                let p = rtp_packet(seq, u32::from(seq) * 160, SSRC_EVIL);
                for port in lo..=hi {
                    let _ = sock.send_to(&p, (relay, port));
                }
                seq = seq.wrapping_add(1);
                r1.fetch_add(1, Ordering::SeqCst);
                // pacing (about 25 rounds/s), not synchronisation
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        let (s2, got) = (stop.clone(), received.clone());
        let rxt = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Relaxed) {
                if rx.recv_from(&mut buf).is_ok() {
                    got.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Sprayer {
            stop,
            rounds,
            received,
            threads: vec![tx, rxt],
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::SeqCst)
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits until `n` more rounds covered the whole range.
    fn wait_rounds(&self, n: u64) {
        let r0 = self.rounds();
        wait_for("spray rounds", Duration::from_secs(20), || {
            self.rounds() >= r0 + n
        });
    }
}

impl Drop for Sprayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a phone received in a call, by SSRC.
#[derive(Default, Debug)]
struct Seen {
    /// From the other phone, with a sequence number of the main burst, from the relay port.
    wanted: usize,
    from_attacker: usize,
    wrong_source: usize,
}

/// Reads `sock` until `N` packets of `ssrc` with `seq >= first_seq` arrived, or `limit`.
fn receive(
    sock: &UdpSocket,
    ssrc: u32,
    first_seq: u16,
    relay: SocketAddr,
    limit: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + limit;
    while seen.wanted < N && Instant::now() < deadline {
        for (src, p) in collect(sock, 1, Duration::from_millis(50)) {
            let seq = p.get(2..4).map_or(0, |s| u16::from_be_bytes([s[0], s[1]]));
            match ssrc_of(&p) {
                Some(s) if s == SSRC_EVIL => seen.from_attacker += 1,
                Some(s) if s == ssrc && seq >= first_seq => {
                    if src == relay {
                        seen.wanted += 1;
                    } else {
                        seen.wrong_source += 1;
                    }
                }
                _ => {}
            }
        }
    }
    seen
}

/// One call under attack. `nat`: the caller's SDP names 127.0.0.1:<a port nobody uses>, its
/// media comes from 127.0.0.1:<another port> (its signalling IP).
fn attacked_call(net: &Net, uas: &Uas, spray: &Sprayer, name: &str, nat: bool) {
    let relay: IpAddr = RELAY_IP.parse().expect("ip");
    let mut uac = Uac::new(
        UdpSocket::bind(("127.0.0.1", 0)).expect("bind A SIP"),
        net.sip_addr(),
        name,
    );
    let (a_media, a_sdp) = if nat {
        let m = UdpSocket::bind(("127.0.0.1", 0)).expect("bind A media");
        // a port the SDP names but nobody sends from or listens on
        (m, sdp("127.0.0.1", net.spare(7)))
    } else {
        let m = UdpSocket::bind((A_IP, 0)).expect("bind A media");
        let port = m.local_addr().expect("local").port();
        (m, sdp(A_IP, port))
    };
    let b_media = UdpSocket::bind((B_IP, 0)).expect("bind B media");
    let b_port = b_media.local_addr().expect("local").port();

    let cseq = uac.send("INVITE", Some(&a_sdp));
    let inv = uas.recv_request("INVITE", Duration::from_secs(10));
    let pb = inv.audio_port();
    reply(&uas.sock, net.sip_addr(), &inv, 180, "b-tag", None);
    // The callee rings while the attacker sprays every port, well past any learning window
    // a latch-the-first-source relay would have.
    spray.wait_rounds(15);
    reply(
        &uas.sock,
        net.sip_addr(),
        &inv,
        200,
        "b-tag",
        Some(&sdp(B_IP, b_port)),
    );
    let ok = uac.final_response("INVITE", cseq);
    assert_eq!(ok.code(), Some(200), "{name}: {}", ok.text);
    let pa = ok.audio_port();
    uas.recv_request("ACK", Duration::from_secs(5));
    spray.wait_rounds(3);

    let (to_a, to_b) = (SocketAddr::new(relay, pa), SocketAddr::new(relay, pb));
    if nat {
        // The NATed caller talks first; its source is learned after a few in-sequence packets.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seq = 0u16;
        loop {
            assert!(
                Instant::now() < deadline,
                "{name}: the NATed caller's media never reached the callee"
            );
            a_media
                .send_to(&rtp_packet(seq, u32::from(seq) * 160, SSRC_A), to_a)
                .expect("A sends");
            seq += 1;
            let got = collect(&b_media, 1, Duration::from_millis(20));
            if got.iter().any(|(_, p)| ssrc_of(p) == Some(SSRC_A)) {
                break;
            }
        }
        // continue the same stream below
        assert!(seq < 1000);
    }
    let first_seq = 1000u16;
    for i in 0..N as u16 {
        let seq = first_seq + i;
        let ts = u32::from(seq) * 160;
        a_media
            .send_to(&rtp_packet(seq, ts, SSRC_A), to_a)
            .expect("A sends");
        b_media
            .send_to(&rtp_packet(seq, ts, SSRC_B), to_b)
            .expect("B sends");
        // pacing, not synchronisation
        std::thread::sleep(Duration::from_millis(2));
    }
    let at_b = receive(&b_media, SSRC_A, first_seq, to_b, Duration::from_secs(5));
    let at_a = receive(&a_media, SSRC_B, first_seq, to_a, Duration::from_secs(5));
    // Whatever else the relay would send the attacker has had time to arrive by now.
    spray.wait_rounds(2);
    assert_eq!(
        spray.received(),
        0,
        "{name}: the attacker received media (callee: {at_b:?}, caller: {at_a:?})"
    );
    assert_eq!(
        at_b.from_attacker, 0,
        "{name}: the attacker's packets reached the callee ({at_b:?})"
    );
    assert_eq!(
        at_a.from_attacker, 0,
        "{name}: the attacker's packets reached the caller ({at_a:?})"
    );
    assert_eq!(
        at_b.wanted, N,
        "{name}: callee got {at_b:?} of the caller's {N}"
    );
    assert_eq!(
        at_a.wanted, N,
        "{name}: caller got {at_a:?} of the callee's {N}"
    );

    let cseq = uac.send("BYE", None);
    let bye = uas.recv_request("BYE", Duration::from_secs(5));
    reply(&uas.sock, net.sip_addr(), &bye, 200, "b-tag", None);
    assert_eq!(uac.final_response("BYE", cseq).code(), Some(200));
}

#[test]
fn sprayer_gets_nothing_and_nat_caller_talks() {
    isolated("sprayer_gets_nothing_and_nat_caller_talks", true, |net| {
        let mut tl = Trunkline::start(net, &yaml(net));
        let uas = Uas {
            sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B SIP"),
        };
        let (lo, hi) = media_range(net);
        let spray = Sprayer::start(RELAY_IP.parse().expect("ip"), lo, hi);
        for i in 0..3 {
            attacked_call(net, &uas, &spray, &format!("plain{i}"), false);
        }
        attacked_call(net, &uas, &spray, "nat", true);
        drop(spray);
        let body = scrape(net);
        let dropped = |reason: &str| {
            metric(
                &body,
                "trunkline_relay_dropped_packets_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0)
        };
        assert!(
            dropped("foreign_source") > 0.0,
            "the attacker's packets are counted as foreign_source:\n{body}"
        );
        assert!(
            dropped("probation") >= 2.0,
            "the NATed caller's first packets are counted as probation:\n{body}"
        );
        tl.assert_alive();
    });
}

#[test]
fn too_many_m_lines_get_488() {
    isolated("too_many_m_lines_get_488", true, |net| {
        let mut tl = Trunkline::start(net, &yaml(net));
        let uas = Uas {
            sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B SIP"),
        };
        let mut uac = Uac::new(
            UdpSocket::bind(("127.0.0.1", 0)).expect("bind A SIP"),
            net.sip_addr(),
            "many",
        );
        let mut body = sdp(A_IP, 4000);
        for i in 1..17u16 {
            body += &format!("m=audio {} RTP/AVP 0\r\n", 4000 + 2 * i);
        }
        let cseq = uac.send("INVITE", Some(&body));
        let r = uac.final_response("INVITE", cseq);
        assert_eq!(r.code(), Some(488), "{}", r.text);
        // A sane call right after still reaches the callee.
        let mut ok = Uac::new(
            UdpSocket::bind(("127.0.0.1", 0)).expect("bind A SIP"),
            net.sip_addr(),
            "sane",
        );
        ok.send("INVITE", Some(&sdp(A_IP, 4000)));
        let inv = uas.recv_request("INVITE", Duration::from_secs(10));
        assert!(
            inv.text.contains("Call-ID:") && !inv.text.contains("many-"),
            "the refused INVITE must not reach the callee"
        );
        tl.assert_alive();
    });
}

fn check_config(
    dir: &std::path::Path,
    name: &str,
    yaml: &str,
) -> (bool, String, std::path::PathBuf) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write config");
    let out = std::process::Command::new(trunkline_bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run trunkline check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

/// The LINE of a `FILE:LINE:COLUMN:` line of `stderr` naming `file`.
fn located(stderr: &str, file: &std::path::Path) -> Option<usize> {
    let prefix = format!("{}:", file.display());
    stderr.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(&prefix)?;
        let mut it = rest.splitn(3, ':');
        let line = it.next()?.trim().parse().ok()?;
        let _col: usize = it.next()?.trim().parse().ok()?;
        Some(line)
    })
}

#[test]
fn ng_listen_off_loopback_needs_allow_list() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("security_media")
        .join(format!("check-{}", std::process::id()));
    let base = "listen:\n  - { transport: udp, address: 127.0.0.1:5060 }\nmedia:\n  \
                address: 127.0.0.1\n  ports: 20000-29999\n  ng_listen: 0.0.0.0:2223\n";
    let tail = "trunks:\n  pbx: { address: 127.0.0.1:5080, transport: udp }\n\
                dialplan:\n  - route: [pbx]\n";
    let open = format!("{base}{tail}");
    let (ok, err, path) = check_config(&dir, "open.yaml", &open);
    assert!(
        !ok,
        "a non-loopback ng_listen without ng_allow must fail: {err}"
    );
    assert_eq!(
        located(&err, &path),
        Some(6),
        "FILE:LINE:COLUMN at ng_listen: {err}"
    );
    assert!(err.contains("ng_allow"), "{err}");

    let listed = format!("{base}  ng_allow: [192.0.2.10/32, 198.51.100.0/24]\n{tail}");
    let (ok, err, _) = check_config(&dir, "listed.yaml", &listed);
    assert!(ok, "{err}");

    let bad = format!("{base}  ng_allow:\n    - 192.0.2.10/32\n    - 192.0.2.300\n{tail}");
    let (ok, err, path) = check_config(&dir, "bad.yaml", &bad);
    assert!(!ok);
    assert_eq!(located(&err, &path), Some(9), "the bad entry's line: {err}");

    let lo = format!("{}{tail}", base.replace("0.0.0.0:2223", "127.0.0.1:2223"));
    let (ok, err, _) = check_config(&dir, "lo.yaml", &lo);
    assert!(ok, "loopback needs no list: {err}");
}

#[test]
fn ng_port_allow_list_and_stream_cap() {
    isolated("ng_port_allow_list_and_stream_cap", true, |net| {
        for a in ["10.99.0.1/32", "10.99.0.2/32"] {
            let st = std::process::Command::new("ip")
                .args(["addr", "add", a, "dev", "lo"])
                .status()
                .expect("run ip");
            assert!(st.success(), "ip addr add {a} dev lo");
        }
        let ng_port = net.spare(40);
        let y = yaml(net).replace(
            &format!("  ports: {}\n", net.media_range()),
            &format!(
                "  ports: {}\n  ng_listen: 0.0.0.0:{ng_port}\n  ng_allow: [10.99.0.2/32]\n  \
                 ng_max_streams: 3\n",
                net.media_range()
            ),
        );
        assert!(y.contains("ng_allow"), "{y}");
        let mut tl = Trunkline::start(net, &y);
        wait_udp_bound(ng_port, Duration::from_secs(10));
        let refused = UdpSocket::bind("10.99.0.1:0").expect("bind 10.99.0.1");
        let allowed = UdpSocket::bind("10.99.0.2:0").expect("bind 10.99.0.2");
        let lo = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let to = SocketAddr::from(([10, 99, 0, 2], ng_port));
        let ping = ng("p1", &[("command", "ping")]);
        // In this order: the server reads datagrams in turn, so once the allowed one is
        // answered the refused one has been handled (dropped).
        refused.send_to(&ping, to).expect("send");
        allowed.send_to(&ping, to).expect("send");
        let r = ng_reply(&allowed, Duration::from_secs(5)).expect("allowed source answered");
        assert!(r.contains("pong"), "{r}");
        assert_eq!(
            ng_reply(&refused, Duration::from_millis(200)),
            None,
            "a source outside ng_allow must get no answer"
        );
        lo.send_to(&ping, ("127.0.0.1", ng_port)).expect("send");
        let r = ng_reply(&lo, Duration::from_secs(5)).expect("loopback answered");
        assert!(r.contains("pong"), "{r}");

        let offer = |cookie: &str, call: &str| {
            let body = sdp(A_IP, 4000);
            ng(
                cookie,
                &[
                    ("command", "offer"),
                    ("call-id", call),
                    ("from-tag", "f"),
                    ("sdp", &body),
                ],
            )
        };
        for i in 0..3 {
            lo.send_to(
                &offer(&format!("o{i}"), &format!("c{i}")),
                ("127.0.0.1", ng_port),
            )
            .expect("send");
            let r = ng_reply(&lo, Duration::from_secs(5)).expect("offer answered");
            assert!(r.contains("6:result2:ok"), "offer {i}: {r}");
        }
        lo.send_to(&offer("o3", "c3"), ("127.0.0.1", ng_port))
            .expect("send");
        let r = ng_reply(&lo, Duration::from_secs(5)).expect("offer answered");
        assert!(
            r.contains("Too many sessions"),
            "the fourth stream is refused: {r}"
        );
        lo.send_to(
            &ng("d0", &[("command", "delete"), ("call-id", "c0")]),
            ("127.0.0.1", ng_port),
        )
        .expect("send");
        let r = ng_reply(&lo, Duration::from_secs(5)).expect("delete answered");
        assert!(r.contains("6:result2:ok"), "{r}");
        lo.send_to(&offer("o4", "c3"), ("127.0.0.1", ng_port))
            .expect("send");
        let r = ng_reply(&lo, Duration::from_secs(5)).expect("offer answered");
        assert!(r.contains("6:result2:ok"), "room after the delete: {r}");
        tl.assert_alive();
    });
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn ng_big_reoffers_keep_rss_bounded() {
    isolated("ng_big_reoffers_keep_rss_bounded", true, |net| {
        let ng_port = net.spare(40);
        let y = yaml(net).replace(
            &format!("  ports: {}\n", net.media_range()),
            &format!(
                "  ports: {}\n  ng_listen: 127.0.0.1:{ng_port}\n",
                net.media_range()
            ),
        );
        let mut tl = Trunkline::start(net, &y);
        wait_udp_bound(ng_port, Duration::from_secs(10));
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut body = sdp(A_IP, 4000);
        let mut i = 0;
        while body.len() < 63_000 {
            body += &format!("a=x-pad{i}:{}\r\n", "z".repeat(70));
            i += 1;
        }
        let to = ("127.0.0.1", ng_port);
        let offer = |cookie: &str| {
            ng(
                cookie,
                &[
                    ("command", "offer"),
                    ("call-id", "big"),
                    ("from-tag", "f"),
                    ("sdp", &body),
                ],
            )
        };
        // warm up (first call, allocator pools), then measure
        for k in 0..50 {
            sock.send_to(&offer(&format!("w{k}")), to).expect("send");
            let r = ng_reply(&sock, Duration::from_secs(5)).expect("answered");
            assert!(r.contains("6:result2:ok"), "{}", truncate(&r, 200));
        }
        let before = rss_kb(tl.pid());
        for k in 0..5000 {
            sock.send_to(&offer(&format!("fresh-{k}")), to)
                .expect("send");
            let r = ng_reply(&sock, Duration::from_secs(5)).expect("answered");
            assert!(r.len() > 60_000, "reply {k}: {}", truncate(&r, 200));
        }
        let after = rss_kb(tl.pid());
        let grown_mb = after.saturating_sub(before) / 1024;
        assert!(
            grown_mb < 150,
            "RSS grew {grown_mb} MB ({before} kB -> {after} kB) over 5000 big re-offers"
        );
        sock.send_to(&ng("q", &[("command", "query"), ("call-id", "big")]), to)
            .expect("send");
        let r = ng_reply(&sock, Duration::from_secs(5)).expect("query answered");
        assert_eq!(r.matches("10:local port").count(), 2, "one pair: {r}");
        eprintln!("RSS {before} kB -> {after} kB");
        tl.assert_alive();
    });
}
