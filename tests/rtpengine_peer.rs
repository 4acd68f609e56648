//! rtpengine as an independent SRTP peer: the test drives a real rtpengine over its ng port to
//! turn a plain A-law endpoint S into an SDES-SRTP caller of trunkline, whose trunk takes
//! PCMU only. S's 1 kHz tone is encrypted by rtpengine (its own SRTP stack and keys),
//! decrypted and transcoded A-law → mu-law by trunkline and reaches the trunk's endpoint R as
//! the same tone; R's 500 Hz in mu-law goes back transcoded and encrypted by trunkline,
//! decrypted by rtpengine, and reaches S as A-law. `scripts/install-deps.sh` installs
//! rtpengine (Debian's rtpengine-daemon); without it this test fails.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::rawsip::{reply, Uac, Uas};
use common::*;

/// The `sdp` value of an ng reply.
fn reply_sdp(text: &str) -> String {
    let at = text
        .find("3:sdp")
        .unwrap_or_else(|| panic!("no sdp in ng reply: {text}"));
    let rest = &text[at + 5..];
    let colon = rest.find(':').expect("length");
    let len: usize = rest[..colon].parse().expect("a length");
    rest[colon + 1..colon + 1 + len].to_string()
}

fn mline(body: &str) -> String {
    body.lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_else(|| panic!("no m=audio:\n{body}"))
        .trim()
        .to_string()
}

fn port_of(body: &str) -> u16 {
    mline(body)
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("m= port")
}

fn rtp(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x51, 0x52, 0x53, 0x54];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn collect(s: &UdpSocket, pt: u8, n: usize, decode: fn(&[u8], &mut [i16])) -> Vec<i16> {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..n {
        let Ok((len, _)) = s.recv_from(&mut buf) else {
            break;
        };
        if len <= 12 || buf[1] & 0x7f != pt {
            continue;
        }
        let mut w = vec![0i16; len - 12];
        decode(&buf[12..len], &mut w);
        out.extend(w);
    }
    out
}

/// rtpengine offers all its suites; trunkline takes its first choice (AEAD_AES_256_GCM).
#[test]
fn rtpengine_srtp_caller_through_trunkline_to_a_pcmu_trunk() {
    isolated(
        "rtpengine_srtp_caller_through_trunkline_to_a_pcmu_trunk",
        false,
        |net| call_through(net, None),
    );
}

#[test]
fn rtpengine_srtp_aes_cm_128_hmac_sha1_80() {
    isolated("rtpengine_srtp_aes_cm_128_hmac_sha1_80", false, |net| {
        call_through(net, Some("AES_CM_128_HMAC_SHA1_80"))
    });
}

#[test]
fn rtpengine_srtp_aes_cm_128_hmac_sha1_32() {
    isolated("rtpengine_srtp_aes_cm_128_hmac_sha1_32", false, |net| {
        call_through(net, Some("AES_CM_128_HMAC_SHA1_32"))
    });
}

#[test]
fn rtpengine_srtp_aead_aes_128_gcm() {
    isolated("rtpengine_srtp_aead_aes_128_gcm", false, |net| {
        call_through(net, Some("AEAD_AES_128_GCM"))
    });
}

/// One call: S → rtpengine → trunkline → R and back (see the module documentation); with
/// `only`, the offer trunkline sees keeps that suite's `a=crypto` line alone.
fn call_through(net: &Net, only: Option<&str>) {
    {
        {
            let ng_port = net.spare(30);
            let _rtpengine = Command::new("rtpengine")
                .args([
                    "--config-file=none",
                    "--interface=127.0.0.1",
                    "--foreground",
                ])
                .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
                .args(["--port-min=20000", "--port-max=20999", "--log-stderr"])
                .args([
                    "--log-level=5",
                    "--table=-1",
                    "--num-threads=1",
                    "--delete-delay=0",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(net.dir.join("rtpengine.log")).expect("log"))
                .spawn_group()
                .expect(
                    "rtpengine is not installed: run scripts/install-deps.sh (rtpengine-daemon)",
                );
            wait_udp_bound(ng_port, Duration::from_secs(10));
            let y = format!(
                "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
                 media:\n  address: 127.0.0.1\n  ports: {media}\n\
                 trunks:\n  carrier: {{ address: 127.0.0.1:{pbx}, codecs: [PCMU] }}\n\
                 dialplan:\n  - route: [carrier]\n",
                sip = net.sip(),
                media = net.media_range(),
                pbx = net.trunk(0),
            );
            let mut tl = Trunkline::start(net, &with_metrics(net, &y, ""));
            let ng_sock = UdpSocket::bind("127.0.0.1:0").expect("ng client");
            let ng_to = ("127.0.0.1", ng_port);
            let (s_port, r_port) = (net.spare(0), net.spare(10));
            let s_rtp = UdpSocket::bind(("127.0.0.1", s_port)).expect("S");
            let r_rtp = UdpSocket::bind(("127.0.0.1", r_port)).expect("R");

            // S offers plain PCMA to rtpengine, which makes it an SRTP offer
            let s_sdp = format!(
                "v=0\r\no=s 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {s_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
            );
            let req = ng(
                "c1",
                &[
                    ("call-id", "peer-1"),
                    ("command", "offer"),
                    ("from-tag", "s"),
                    ("sdp", &s_sdp),
                    ("transport-protocol", "RTP/SAVP"),
                ],
            );
            ng_sock.send_to(&req, ng_to).expect("ng offer");
            let offer = reply_sdp(&ng_reply(&ng_sock, Duration::from_secs(5)).expect("ng reply"));
            std::fs::write(net.dir.join("offer.sdp"), &offer).expect("write");
            assert!(mline(&offer).contains("RTP/SAVP"), "{offer}");
            assert!(offer.contains("a=crypto:"), "{offer}");

            // rtpengine's SRTP offer is trunkline's caller
            let uas = Uas {
                sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B"),
            };
            let mut uac = Uac::new(
                UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A"),
                net.sip_addr(),
                "peer",
            );
            let offer: String = offer
                .split("\r\n")
                .filter(|l| {
                    only.is_none_or(|o| {
                        !l.starts_with("a=crypto:") || l.contains(&format!(" {o} "))
                    })
                })
                .collect::<Vec<_>>()
                .join("\r\n");
            let cseq = uac.send("INVITE", Some(&offer));
            let inv = uas.recv_request("INVITE", Duration::from_secs(10));
            assert!(mline(inv.body()).contains("RTP/AVP 0"), "{}", inv.body());
            assert!(!inv.body().contains("a=crypto"), "{}", inv.body());
            let pb = port_of(inv.body());
            let r_sdp = format!(
                "v=0\r\no=r 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {r_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            );
            reply(&uas.sock, net.sip_addr(), &inv, 200, "r", Some(&r_sdp));
            let ok = uac.final_response("INVITE", cseq);
            assert_eq!(ok.code(), Some(200), "{}", ok.text);
            std::fs::write(net.dir.join("answer.sdp"), ok.body()).expect("write");
            assert!(mline(ok.body()).contains("RTP/SAVP 8"), "{}", ok.body());
            uas.recv_request("ACK", Duration::from_secs(5));

            // trunkline's SRTP answer goes back to rtpengine, which answers S in the clear
            let req = ng(
                "c2",
                &[
                    ("call-id", "peer-1"),
                    ("command", "answer"),
                    ("from-tag", "s"),
                    ("sdp", ok.body()),
                    ("to-tag", "t"),
                ],
            );
            ng_sock.send_to(&req, ng_to).expect("ng answer");
            let to_s = reply_sdp(&ng_reply(&ng_sock, Duration::from_secs(5)).expect("ng reply"));
            assert!(mline(&to_s).contains("RTP/AVP"), "{to_s}");
            let rs = port_of(&to_s);
            let relay: IpAddr = "127.0.0.1".parse().expect("ip");

            // S → rtpengine (SRTP) → trunkline → R: 1 kHz, A-law in, mu-law out
            for i in 0..50u16 {
                let mut a = [0u8; 160];
                codecs::g711::encode_alaw(&sine(1000.0, 8000.0, 160, usize::from(i) * 160), &mut a);
                s_rtp.send_to(&rtp(8, i, &a), (relay, rs)).expect("S sends");
                std::thread::sleep(Duration::from_millis(2));
            }
            let at_r = collect(&r_rtp, 0, 50, codecs::g711::decode_ulaw);
            let relay_metrics = || {
                scrape(net)
                    .lines()
                    .filter(|l| l.contains("relay") || l.contains("srtp"))
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert!(
                at_r.len() >= 160 * 40,
                "R got {} samples:\n{}\n{}",
                at_r.len(),
                tl.log_tail(20),
                relay_metrics()
            );
            let heard = share(&at_r[1600..], 1000.0, 8000.0);
            assert!(heard > 0.8, "R hears S's 1 kHz: {heard:.3}");

            // R → trunkline (SRTP) → rtpengine → S: 500 Hz, mu-law in, A-law out
            for i in 0..50u16 {
                let mut u = [0u8; 160];
                codecs::g711::encode_ulaw(&sine(500.0, 8000.0, 160, usize::from(i) * 160), &mut u);
                r_rtp
                    .send_to(&rtp(0, 900 + i, &u), (relay, pb))
                    .expect("R sends");
                std::thread::sleep(Duration::from_millis(2));
            }
            let at_s = collect(&s_rtp, 8, 50, codecs::g711::decode_alaw);
            assert!(at_s.len() >= 160 * 40, "S got {} samples", at_s.len());
            let heard = share(&at_s[1600..], 500.0, 8000.0);
            assert!(heard > 0.8, "S hears R's 500 Hz: {heard:.3}");
            let m = scrape(net);
            assert_eq!(
                metric(&m, "trunkline_srtp_auth_failures_total", &[]),
                Some(0.0),
                "{m}"
            );
            if let Some(o) = only {
                assert!(ok.body().contains(&format!(" {o} ")), "{}", ok.body());
            }
            tl.assert_alive();
        }
    }
}
