//! SRTP (SDES) through trunkline, end to end over loopback: an SRTP caller (RTP/SAVP with
//! a=crypto) to a plain-RTP trunk. Leg B sees RTP/AVP and no key; the caller's 200 carries
//! trunkline's own key; media is decrypted towards the trunk and encrypted towards the caller;
//! a forged packet is dropped and counted. A plain caller to a `srtp: mandatory` trunk makes
//! trunkline offer SRTP itself; unusable crypto gets 488.
//!
//! The caller's SRTP is made with `media_relay::srtp` (checked against RFC 3711's and libsrtp's
//! vectors in its unit tests).

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::rawsip::{reply, Uac, Uas};
use common::*;
use media_relay::srtp::{sdes, Context, MasterKey, Suite};

const A_IP: &str = "127.0.0.11";
const B_IP: &str = "127.0.0.12";

fn yaml(net: &Net, trunk_extra: &str) -> String {
    let y = format!(
        "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
         media:\n  address: 127.0.0.1\n  ports: {media}\n\
         trunks:\n  pbx: {{ address: 127.0.0.1:{pbx}{trunk_extra} }}\n\
         dialplan:\n  - route: [pbx]\n",
        sip = net.sip(),
        media = net.media_range(),
        pbx = net.trunk(0),
    );
    with_metrics(net, &y, "")
}

fn sdp(ip: &str, port: u16, proto: &str, crypto: Option<&str>) -> String {
    let mut s = format!(
        "v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    if let Some(c) = crypto {
        s += &format!("a=crypto:{c}\r\n");
    }
    s
}

fn mline(body: &str) -> String {
    body.lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_else(|| panic!("no m=audio:\n{body}"))
        .to_string()
}

fn port_of(body: &str) -> u16 {
    mline(body)
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("m= port")
}

fn crypto_lines(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:"))
        .map(str::to_string)
        .collect()
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i as u8) ^ (seq as u8)));
    p
}

fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut b = [0u8; 2048];
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let (n, _) = s.recv_from(&mut b).ok()?;
    Some(b[..n].to_vec())
}

#[test]
fn srtp_caller_to_plain_trunk_both_ways() {
    isolated("srtp_caller_to_plain_trunk_both_ways", false, |net| {
        let tl = Trunkline::start(net, &yaml(net, ""));
        let uas = Uas {
            sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B"),
        };
        let mut uac = Uac::new(
            UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A"),
            net.sip_addr(),
            "srtp",
        );
        let (a_port, b_port) = (net.spare(0), net.spare(10));
        let a_rtp = UdpSocket::bind((A_IP, a_port)).expect("A RTP");
        let b_rtp = UdpSocket::bind((B_IP, b_port)).expect("B RTP");
        let suite = Suite::AesCm128HmacSha1_80;
        let a_key = MasterKey::new(suite, &[0x5a; 30]).expect("key");
        let a_line = sdes::format(1, &a_key);

        let cseq = uac.send(
            "INVITE",
            Some(&sdp(A_IP, a_port, "RTP/SAVP", Some(&a_line))),
        );
        let inv = uas.recv_request("INVITE", Duration::from_secs(10));
        assert!(mline(inv.body()).contains(" RTP/AVP "), "{}", inv.body());
        assert!(
            crypto_lines(inv.body()).is_empty(),
            "a=crypto crossed:\n{}",
            inv.body()
        );
        let pb = port_of(inv.body());
        reply(
            &uas.sock,
            net.sip_addr(),
            &inv,
            200,
            "b",
            Some(&sdp(B_IP, b_port, "RTP/AVP", None)),
        );
        let ok = uac.final_response("INVITE", cseq);
        assert_eq!(ok.code(), Some(200), "{}", ok.text);
        assert!(mline(ok.body()).contains(" RTP/SAVP "), "{}", ok.body());
        let lines = crypto_lines(ok.body());
        assert_eq!(lines.len(), 1, "{}", ok.body());
        let relay_key = sdes::parse(&lines[0]).expect("trunkline's a=crypto").key;
        assert_ne!(relay_key, a_key, "the caller's key came back");
        let pa = port_of(ok.body());
        uas.recv_request("ACK", Duration::from_secs(5));

        let relay: IpAddr = "127.0.0.1".parse().expect("ip");
        let (mut a_tx, mut a_rx) = (Context::new(&a_key), Context::new(&relay_key));
        for i in 0..20u16 {
            let plain = rtp(1000 + i, 0xa0a0);
            let mut buf = plain.clone();
            buf.resize(plain.len() + 10, 0);
            let n = a_tx.protect_rtp(&mut buf, plain.len()).expect("protect");
            a_rtp.send_to(&buf[..n], (relay, pa)).expect("A sends");
            let got = recv(&b_rtp).unwrap_or_else(|| panic!("B got nothing:\n{}", tl.log_tail(20)));
            assert_eq!(got, plain, "B gets the caller's RTP decrypted");

            let q = rtp(5000 + i, 0xb0b0);
            b_rtp.send_to(&q, (relay, pb)).expect("B sends");
            let mut got = recv(&a_rtp).expect("A gets SRTP");
            assert_eq!(got.len(), q.len() + 10);
            let n = got.len();
            let n = a_rx
                .unprotect_rtp(&mut got, n)
                .expect("trunkline's key decrypts");
            assert_eq!(got[..n], q[..]);
        }
        // A forged packet (a new index, payload flipped) goes nowhere and is counted.
        let plain = rtp(2000, 0xa0a0);
        let mut buf = plain.clone();
        buf.resize(plain.len() + 10, 0);
        let n = a_tx.protect_rtp(&mut buf, plain.len()).expect("protect");
        buf[40] ^= 0x01;
        a_rtp.send_to(&buf[..n], (relay, pa)).expect("A sends");
        assert!(recv(&b_rtp).is_none(), "a forged packet was forwarded");
        let counted = poll_until(
            Instant::now() + Duration::from_secs(5),
            Duration::from_millis(100),
            || metric(&scrape(net), "trunkline_srtp_auth_failures_total", &[]) == Some(1.0),
        );
        assert!(counted, "{}", scrape(net));
        assert!(
            !tl.log_text().contains(&a_line[a_line.len() - 20..]),
            "a key was logged"
        );
    });
}

#[test]
fn plain_caller_to_a_mandatory_trunk_and_unusable_crypto() {
    isolated(
        "plain_caller_to_a_mandatory_trunk_and_unusable_crypto",
        false,
        |net| {
            let _tl = Trunkline::start(net, &yaml(net, ", srtp: mandatory"));
            let uas = Uas {
                sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B"),
            };
            let mut uac = Uac::new(
                UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A"),
                net.sip_addr(),
                "mand",
            );
            let cseq = uac.send("INVITE", Some(&sdp(A_IP, net.spare(0), "RTP/AVP", None)));
            let inv = uas.recv_request("INVITE", Duration::from_secs(10));
            assert!(mline(inv.body()).contains(" RTP/SAVP "), "{}", inv.body());
            let offered = crypto_lines(inv.body());
            assert_eq!(offered.len(), 1, "{}", inv.body());
            assert!(sdes::parse(&offered[0]).is_ok(), "{}", offered[0]);
            // the trunk answers without crypto: against its mandatory policy, the call fails
            reply(
                &uas.sock,
                net.sip_addr(),
                &inv,
                200,
                "b",
                Some(&sdp(B_IP, net.spare(10), "RTP/SAVP", None)),
            );
            let fin = uac.final_response("INVITE", cseq);
            assert_ne!(fin.code(), Some(200), "{}", fin.text);

            // An SRTP offer whose only line is an unknown suite: 488.
            let mut uac = Uac::new(
                UdpSocket::bind(("127.0.0.1", net.spare(20))).expect("bind A2"),
                net.sip_addr(),
                "bad",
            );
            let bad = "1 F8_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";
            let cseq = uac.send(
                "INVITE",
                Some(&sdp(A_IP, net.spare(30), "RTP/SAVP", Some(bad))),
            );
            let fin = uac.final_response("INVITE", cseq);
            assert_eq!(fin.code(), Some(488), "{}", fin.text);
        },
    );
}
