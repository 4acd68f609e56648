//! Transcoding through trunkline, end to end over loopback: a G.722-only caller (with
//! telephone-event) to a trunk with `codecs: [PCMA, telephone-event]`. The trunk is offered
//! PCMA only; its answer makes trunkline answer the caller with G.722; the tone the caller
//! sends in G.722 (20 ms) reaches the trunk as A-law in the 30 ms packets it asked for, at the
//! same frequency, and the trunk's A-law (30 ms) reaches the caller as G.722 in 20 ms packets. A DTMF event crosses
//! with the trunk's payload type, comfort noise does not. A caller with only G.729 gets 488.
//! A caller with telephone-event and a trunk without it (same codec): the caller's events reach
//! the trunk as Q.23 tones, the trunk's tones reach the caller as events. With `dtmf: info` on
//! the trunk, the caller's events reach it as SIP INFO and its INFO reach the caller as events.
//!
//! The audio is made and checked with the project's own codecs (`codecs`, bit-exact against
//! spandsp in `codec_interop.rs`); the frequency check is a Goertzel filter.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::rawsip::{reply, Uac, Uas};
use common::*;

const A_IP: &str = "127.0.0.11";
const B_IP: &str = "127.0.0.12";

fn yaml(net: &Net) -> String {
    yaml_with(net, "[PCMA, telephone-event]")
}

fn yaml_with(net: &Net, codecs: &str) -> String {
    yaml_extra(net, codecs, "")
}

fn yaml_extra(net: &Net, codecs: &str, extra: &str) -> String {
    let y = format!(
        "listen:\n  - {{ transport: udp, address: 127.0.0.1:{sip} }}\n\
         media:\n  address: 127.0.0.1\n  ports: {media}\n\
         trunks:\n  carrier: {{ address: 127.0.0.1:{pbx}, codecs: {codecs} }}\n\
         dialplan:\n  - route: [carrier]\n",
        sip = net.sip(),
        media = net.media_range(),
        pbx = net.trunk(0),
    );
    with_metrics(net, &y, extra)
}

fn sdp(ip: &str, port: u16, formats: &str, attrs: &str) -> String {
    format!(
        "v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n{attrs}"
    )
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

fn formats(body: &str) -> Vec<String> {
    mline(body).split(' ').skip(3).map(str::to_string).collect()
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 1];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn recv(s: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut b = [0u8; 2048];
    s.set_read_timeout(Some(wait)).ok()?;
    let (n, _) = s.recv_from(&mut b).ok()?;
    Some(b[..n].to_vec())
}

#[test]
fn g722_caller_to_a_pcma_trunk_both_ways() {
    isolated("g722_caller_to_a_pcma_trunk_both_ways", false, |net| {
        let tl = Trunkline::start(net, &yaml(net));
        let uas = Uas {
            sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B"),
        };
        let mut uac = Uac::new(
            UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A"),
            net.sip_addr(),
            "g722",
        );
        let (a_port, b_port) = (net.spare(0), net.spare(10));
        let a_rtp = UdpSocket::bind((A_IP, a_port)).expect("A RTP");
        let b_rtp = UdpSocket::bind((B_IP, b_port)).expect("B RTP");

        let offer = sdp(
            A_IP,
            a_port,
            "9 101",
            "a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\na=ptime:20\r\n",
        );
        let cseq = uac.send("INVITE", Some(&offer));
        let inv = uas.recv_request("INVITE", Duration::from_secs(10));
        assert_eq!(formats(inv.body()), ["8", "101"], "{}", inv.body());
        assert!(!inv.body().contains("G722"), "{}", inv.body());
        let pb = port_of(inv.body());
        let answer = sdp(
            B_IP,
            b_port,
            "8 96",
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:30\r\n",
        );
        reply(&uas.sock, net.sip_addr(), &inv, 200, "b", Some(&answer));
        let ok = uac.final_response("INVITE", cseq);
        assert_eq!(ok.code(), Some(200), "{}", ok.text);
        assert_eq!(formats(ok.body()), ["9", "101"], "{}", ok.body());
        assert!(ok.body().contains("a=ptime:20"), "{}", ok.body());
        assert!(!ok.body().contains("PCMA"), "{}", ok.body());
        let pa = port_of(ok.body());
        uas.recv_request("ACK", Duration::from_secs(5));
        let relay: IpAddr = "127.0.0.1".parse().expect("ip");

        // A → B: a 1 kHz tone in G.722, 20 ms per packet, 1.2 s; the trunk asked for 30 ms
        let mut enc = codecs::g722::Encoder::new();
        let mut heard_b = Vec::new();
        for i in 0..60u16 {
            let pcm = sine(1000.0, 16000.0, 320, usize::from(i) * 320);
            let mut g = [0u8; 160];
            enc.encode(&pcm, &mut g);
            a_rtp
                .send_to(&rtp(9, i, 160 * u32::from(i), &g), (relay, pa))
                .expect("A sends");
            if i % 3 == 0 {
                continue;
            }
            let got = recv(&b_rtp, Duration::from_millis(500))
                .unwrap_or_else(|| panic!("B got nothing after {i}:\n{}", tl.log_tail(20)));
            assert_eq!(got[1] & 0x7f, 8, "A-law towards the trunk");
            assert_eq!(got.len(), 12 + 240, "30 ms packets");
            let mut lin = [0i16; 240];
            codecs::g711::decode_alaw(&got[12..], &mut lin);
            heard_b.extend(lin);
        }
        let s = share(&heard_b[800..], 1000.0, 8000.0);
        assert!(s > 0.9, "the trunk hears 1 kHz: {s:.3}");

        // B → A: 500 Hz in A-law, 30 ms per packet; A gets G.722 in 20 ms packets
        let mut dec = codecs::g722::Decoder::new();
        let mut heard_a = Vec::new();
        let mut seqs = Vec::new();
        for i in 0..30u16 {
            let pcm = sine(500.0, 8000.0, 240, usize::from(i) * 240);
            let mut a = [0u8; 240];
            codecs::g711::encode_alaw(&pcm, &mut a);
            b_rtp
                .send_to(&rtp(8, 7000 + i, 240 * u32::from(i), &a), (relay, pb))
                .expect("B sends");
        }
        while let Some(got) = recv(&a_rtp, Duration::from_millis(500)) {
            assert_eq!((got[1] & 0x7f, got.len()), (9, 12 + 160), "G.722, 20 ms");
            seqs.push(u16::from_be_bytes([got[2], got[3]]));
            let mut w = [0i16; 320];
            dec.decode(&got[12..], &mut w);
            heard_a.extend(w);
            if seqs.len() == 45 {
                break;
            }
        }
        assert_eq!(seqs.len(), 45, "30 × 30 ms = 45 × 20 ms");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{seqs:?}"
        );
        let s = share(&heard_a[1600..], 500.0, 16000.0);
        assert!(s > 0.9, "the caller hears 500 Hz: {s:.3}");

        // a DTMF event crosses with the trunk's payload type; comfort noise does not
        let ev = codecs::dtmf::TelephoneEvent {
            event: 5,
            end: false,
            volume: 10,
            duration: 160,
        }
        .encode();
        a_rtp
            .send_to(&rtp(101, 50, 8000, &ev), (relay, pa))
            .expect("A sends");
        let got = recv(&b_rtp, Duration::from_millis(500)).expect("B gets the event");
        assert_eq!((got[1] & 0x7f, &got[12..]), (96, &ev[..]));
        a_rtp
            .send_to(&rtp(13, 51, 8160, &[40]), (relay, pa))
            .expect("A sends");
        assert!(recv(&b_rtp, Duration::from_millis(300)).is_none());

        let m = scrape(net);
        let pairs = metric(
            &m,
            "trunkline_media_processed_pairs",
            &[("kind", "transcode")],
        );
        assert_eq!(pairs, Some(1.0), "{m}");
        let ok = poll_until(
            Instant::now() + Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                let m = scrape(net);
                let f = |from, to| {
                    metric(
                        &m,
                        "trunkline_transcode_frames_total",
                        &[("from", from), ("to", to)],
                    )
                };
                f("G722", "PCMA") == Some(40.0) && f("PCMA", "G722") == Some(45.0)
            },
        );
        assert!(ok, "{}", scrape(net));
    });
}

#[test]
fn a_caller_with_no_codec_the_trunk_can_get_is_refused_with_488() {
    isolated(
        "a_caller_with_no_codec_the_trunk_can_get_is_refused_with_488",
        false,
        |net| {
            let _tl = Trunkline::start(net, &yaml(net));
            let uas = Uas {
                sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B"),
            };
            let mut uac = Uac::new(
                UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A"),
                net.sip_addr(),
                "g729",
            );
            let offer = sdp(A_IP, net.spare(0), "18", "a=rtpmap:18 G729/8000\r\n");
            let cseq = uac.send("INVITE", Some(&offer));
            let r = uac.final_response("INVITE", cseq);
            assert_eq!(r.code(), Some(488), "{}", r.text);
            assert!(
                uas.sock
                    .set_read_timeout(Some(Duration::from_millis(300)))
                    .is_ok()
                    && uas.sock.recv_from(&mut [0u8; 64]).is_err(),
                "the trunk was offered nothing"
            );
        },
    );
}

/// A PCMU caller with telephone-event 101 calls the trunk, which answers PCMU alone: the trunk
/// is offered PCMU only, the caller keeps its events in the answer. What the DTMF tests go on
/// with.
struct EventCall {
    uas: Uas,
    uac: Uac,
    a_rtp: UdpSocket,
    b_rtp: UdpSocket,
    /// The INVITE the trunk got.
    inv: common::rawsip::Msg,
    /// The relay ports facing the caller and the trunk.
    pa: u16,
    pb: u16,
}

fn event_call(net: &Net, name: &str, offered_to_trunk: &str) -> EventCall {
    let uas = Uas {
        sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B"),
    };
    let mut uac = Uac::new(
        UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A"),
        net.sip_addr(),
        name,
    );
    let (a_port, b_port) = (net.spare(0), net.spare(10));
    let a_rtp = UdpSocket::bind((A_IP, a_port)).expect("A RTP");
    let b_rtp = UdpSocket::bind((B_IP, b_port)).expect("B RTP");
    let offer = sdp(
        A_IP,
        a_port,
        "0 101",
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
    );
    let cseq = uac.send("INVITE", Some(&offer));
    let inv = uas.recv_request("INVITE", Duration::from_secs(10));
    assert_eq!(
        formats(inv.body()),
        ["0"],
        "{offered_to_trunk}: {}",
        inv.body()
    );
    let pb = port_of(inv.body());
    let answer = sdp(B_IP, b_port, "0", "");
    reply(&uas.sock, net.sip_addr(), &inv, 200, "b", Some(&answer));
    let ok = uac.final_response("INVITE", cseq);
    assert_eq!(ok.code(), Some(200), "{}", ok.text);
    assert_eq!(formats(ok.body()), ["0", "101"], "{}", ok.body());
    let pa = port_of(ok.body());
    uas.recv_request("ACK", Duration::from_secs(5));
    EventCall {
        uas,
        uac,
        a_rtp,
        b_rtp,
        inv,
        pa,
        pb,
    }
}

#[test]
fn dtmf_events_and_tones_interwork_with_a_trunk_without_events() {
    isolated(
        "dtmf_events_and_tones_interwork_with_a_trunk_without_events",
        false,
        |net| {
            let _tl = Trunkline::start(net, &yaml_with(net, "[PCMU]"));
            let EventCall {
                a_rtp,
                b_rtp,
                pa,
                pb,
                ..
            } = event_call(net, "dtmf", "the trunk has no events");
            let relay: IpAddr = "127.0.0.1".parse().expect("ip");
            let silence = [0xffu8; 160];

            // A: 100 ms of audio, then digit 8 as events (80 ms, updates every 20 ms)
            for i in 0..5u16 {
                a_rtp
                    .send_to(&rtp(0, i, 160 * u32::from(i), &silence), (relay, pa))
                    .expect("A sends");
            }
            for k in 1..=4u16 {
                let ev = codecs::dtmf::TelephoneEvent {
                    event: 8,
                    end: k == 4,
                    volume: 10,
                    duration: 160 * k,
                }
                .encode();
                a_rtp
                    .send_to(&rtp(101, 4 + k, 800, &ev), (relay, pa))
                    .expect("A sends");
            }
            let mut heard = Vec::new();
            while let Some(p) = recv(&b_rtp, Duration::from_millis(400)) {
                assert_eq!(p[1] & 0x7f, 0, "the trunk gets PCMU only");
                let mut lin = vec![0i16; p.len() - 12];
                codecs::g711::decode_ulaw(&p[12..], &mut lin);
                heard.extend(lin);
            }
            heard.extend([0i16; 800]);
            let mut found = Vec::new();
            codecs::tones::Detector::new(8000).process(&heard, |c| found.push(c));
            use codecs::tones::Change;
            assert_eq!(
                found,
                [Change::Start(8), Change::Stop(8)],
                "the trunk hears 8"
            );

            // B: digit 4 in band, 100 ms, then silence
            let mut tone = Vec::new();
            codecs::tones::generate(4, 10, 8000, 0, 800, &mut tone);
            tone.extend([0i16; 1600]);
            for (i, chunk) in tone.chunks(160).enumerate() {
                let mut u = [0u8; 160];
                codecs::g711::encode_ulaw(chunk, &mut u);
                b_rtp
                    .send_to(&rtp(0, 100 + i as u16, 160 * i as u32, &u), (relay, pb))
                    .expect("B sends");
            }
            let mut events = Vec::new();
            while let Some(p) = recv(&a_rtp, Duration::from_millis(400)) {
                if p[1] & 0x7f == 101 {
                    events.push(codecs::dtmf::TelephoneEvent::parse(&p[12..]).expect("event"));
                }
            }
            assert!(!events.is_empty(), "the caller gets events");
            assert!(events.iter().all(|e| e.event == 4), "{events:?}");
            assert_eq!(events.iter().filter(|e| e.end).count(), 3, "{events:?}");
        },
    );
}

/// `dtmf: info` on the trunk: offered no telephone-event; the caller's digit (RFC 4733 events)
/// reaches the trunk as an INFO `application/dtmf-relay` in its dialog and not in its RTP; the
/// trunk's INFO is answered 200 by trunkline and reaches the caller as events (marker, updates,
/// three ends) paced with the trunk's audio.
#[test]
fn dtmf_info_trunk_and_an_rfc4733_caller() {
    isolated("dtmf_info_trunk_and_an_rfc4733_caller", false, |net| {
        let _tl = Trunkline::start(net, &yaml_with(net, "[PCMU], dtmf: info"));
        let EventCall {
            uas,
            mut uac,
            a_rtp,
            b_rtp,
            inv,
            pa,
            pb,
        } = event_call(net, "info", "no events to an INFO trunk");
        let relay: IpAddr = "127.0.0.1".parse().expect("ip");
        let silence = [0xffu8; 160];

        // A: audio, then digit 3 as events, 80 ms, the end three times
        for i in 0..5u16 {
            a_rtp
                .send_to(&rtp(0, i, 160 * u32::from(i), &silence), (relay, pa))
                .expect("A sends");
        }
        for k in 1..=6u16 {
            let ev = codecs::dtmf::TelephoneEvent {
                event: 3,
                end: k >= 4,
                volume: 10,
                duration: 160 * k.min(4),
            }
            .encode();
            a_rtp
                .send_to(&rtp(101, 4 + k, 800, &ev), (relay, pa))
                .expect("A sends");
        }
        let info = uas.recv_request("INFO", Duration::from_secs(5));
        assert!(
            header(&info.text, "Content-Type", Some("c"))
                .is_some_and(|c| c.eq_ignore_ascii_case("application/dtmf-relay")),
            "{}",
            info.text
        );
        assert!(info.body().contains("Signal=3"), "{}", info.text);
        assert!(info.body().contains("Duration=80"), "{}", info.text);
        assert_eq!(
            header(&info.text, "Call-ID", Some("i")),
            header(&inv.text, "Call-ID", Some("i"))
        );
        reply(&uas.sock, net.sip_addr(), &info, 200, "b", None);
        while let Some(p) = recv(&b_rtp, Duration::from_millis(300)) {
            assert_eq!(p[1] & 0x7f, 0, "no events in the trunk's RTP");
        }

        // B: INFO with digit #, 100 ms, then its audio
        let me = uas.sock.local_addr().expect("local");
        let from = header(&inv.text, "To", Some("t")).expect("To");
        let to = header(&inv.text, "From", Some("f")).expect("From");
        let cid = header(&inv.text, "Call-ID", Some("i")).expect("Call-ID");
        let contact = header(&inv.text, "Contact", Some("m")).expect("Contact");
        let target = contact
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or(contact);
        let body = "Signal=#\r\nDuration=100\r\n";
        let b_info = format!(
            "INFO {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbinfo1\r\n\
             Max-Forwards: 70\r\nFrom: {from};tag=b\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
             CSeq: 1 INFO\r\nContact: <sip:pbx@{me}>\r\n\
             Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        uas.sock
            .send_to(b_info.as_bytes(), net.sip_addr())
            .expect("INFO");
        let answer =
            common::rawsip::recv_until(&uas.sock, Duration::from_secs(5), "INFO's 200", |m| {
                m.cseq_method() == "INFO" && m.code().is_some()
            });
        assert_eq!(answer.code(), Some(200), "{}", answer.text);
        for i in 0..12u16 {
            b_rtp
                .send_to(&rtp(0, 100 + i, 160 * u32::from(i), &silence), (relay, pb))
                .expect("B sends");
        }
        let mut events = Vec::new();
        let mut first_marker = None;
        while let Some(p) = recv(&a_rtp, Duration::from_millis(400)) {
            if p[1] & 0x7f == 101 {
                first_marker.get_or_insert(p[1] & 0x80 != 0);
                events.push(codecs::dtmf::TelephoneEvent::parse(&p[12..]).expect("event"));
            }
        }
        assert_eq!(first_marker, Some(true), "the start carries the marker");
        assert!(events.iter().all(|e| e.event == 11), "{events:?}");
        let ends: Vec<_> = events.iter().filter(|e| e.end).collect();
        assert_eq!(ends.len(), 3, "{events:?}");
        assert!(ends.iter().all(|e| e.duration == 800), "100 ms: {events:?}");
        assert!(
            uac_got_no_info(&mut uac),
            "the trunk's INFO is not relayed to the caller"
        );
    });
}

/// Nothing but RTP reached the caller's SIP socket (no INFO relayed to it).
fn uac_got_no_info(uac: &mut Uac) -> bool {
    uac.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok();
    let mut b = [0u8; 4096];
    while let Ok((n, _)) = uac.sock.recv_from(&mut b) {
        if b[..n].starts_with(b"INFO ") {
            return false;
        }
    }
    true
}

/// A codec switch mid-call: G.722 (transcoded to the trunk's A-law), then a re-INVITE to A-law
/// (the trunk's own: forwarded byte for byte, no transcoder left), then back to G.722.
#[test]
fn a_codec_switch_mid_call_moves_between_transcoding_and_forwarding() {
    isolated(
        "a_codec_switch_mid_call_moves_between_transcoding_and_forwarding",
        false,
        |net| {
            let cdr = net.dir.join("cdr.jsonl");
            let extra = format!("cdr: {{ file: {} }}\n", cdr.display());
            let _tl = Trunkline::start(net, &yaml_extra(net, "[PCMA]", &extra));
            let uas = Uas {
                sock: UdpSocket::bind(("127.0.0.1", net.trunk(0))).expect("bind B"),
            };
            let mut uac = Uac::new(
                UdpSocket::bind(("127.0.0.1", net.uac())).expect("bind A"),
                net.sip_addr(),
                "switch",
            );
            let (a_port, b_port) = (net.spare(0), net.spare(10));
            let a_rtp = UdpSocket::bind((A_IP, a_port)).expect("A RTP");
            let b_rtp = UdpSocket::bind((B_IP, b_port)).expect("B RTP");
            let relay: IpAddr = "127.0.0.1".parse().expect("ip");
            let answer = sdp(B_IP, b_port, "8", "a=rtpmap:8 PCMA/8000\r\n");
            let mut pa = 0;
            let mut seq = 0u16;
            let pairs = |net: &Net| {
                metric(
                    &scrape(net),
                    "trunkline_media_processed_pairs",
                    &[("kind", "transcode")],
                )
            };
            for (round, (fmt, attrs)) in [
                ("9", "a=rtpmap:9 G722/8000\r\n"),
                ("8", "a=rtpmap:8 PCMA/8000\r\n"),
                ("9", "a=rtpmap:9 G722/8000\r\n"),
            ]
            .into_iter()
            .enumerate()
            {
                let offer = sdp(A_IP, a_port, fmt, attrs);
                let cseq = uac.send("INVITE", Some(&offer));
                let inv = uas.recv_request("INVITE", Duration::from_secs(10));
                assert_eq!(formats(inv.body()), ["8"], "round {round}: {}", inv.body());
                reply(&uas.sock, net.sip_addr(), &inv, 200, "b", Some(&answer));
                let ok = uac.final_response("INVITE", cseq);
                assert_eq!(ok.code(), Some(200), "{}", ok.text);
                assert_eq!(formats(ok.body()), [fmt], "round {round}: {}", ok.body());
                pa = port_of(ok.body());
                uas.recv_request("ACK", Duration::from_secs(5));
                let transcoding = fmt == "9";
                let want = if transcoding { 1.0 } else { 0.0 };
                let settled = poll_until(
                    Instant::now() + Duration::from_secs(5),
                    Duration::from_millis(50),
                    || pairs(net) == Some(want),
                );
                assert!(settled, "round {round}: {:?}", pairs(net));
                for _ in 0..10 {
                    let payload: Vec<u8> = (0..160).map(|i| (i as u8) ^ (seq as u8)).collect();
                    let p = rtp(
                        if transcoding { 9 } else { 8 },
                        seq,
                        160 * u32::from(seq),
                        &payload,
                    );
                    seq += 1;
                    a_rtp.send_to(&p, (relay, pa)).expect("A sends");
                    let got = recv(&b_rtp, Duration::from_millis(500))
                        .unwrap_or_else(|| panic!("round {round}: B got nothing"));
                    assert_eq!(got[1] & 0x7f, 8, "round {round}");
                    if transcoding {
                        assert_ne!(got[12..], payload[..], "round {round}: re-encoded");
                    } else {
                        assert_eq!(got, p, "round {round}: forwarded as it is");
                    }
                }
            }
            assert!(pa != 0);
            // the call ends; its CDR says it was transcoded
            let cseq = uac.send("BYE", None);
            let bye = uas.recv_request("BYE", Duration::from_secs(5));
            reply(&uas.sock, net.sip_addr(), &bye, 200, "b", None);
            assert_eq!(uac.final_response("BYE", cseq).code(), Some(200));
            let written = poll_until(
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(100),
                || std::fs::read_to_string(&cdr).is_ok_and(|t| t.contains("\"transcoding\":true")),
            );
            assert!(written, "{:?}", std::fs::read_to_string(&cdr));
        },
    );
}
