use super::*;
use std::net::Ipv4Addr;

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));

fn sdp(s: &str) -> Sdp {
    Sdp::parse(s.as_bytes()).expect("valid SDP")
}

const BASIC: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\n\
    c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";

#[test]
fn reads_media() {
    let s = sdp(BASIC);
    let m = &s.media()[0];
    assert_eq!(m.kind, "audio");
    assert_eq!(m.port, 49170);
    assert_eq!(m.proto, "RTP/AVP");
    assert_eq!(m.formats, vec!["0", "8"]);
    assert_eq!(m.direction, Direction::SendRecv);
    assert_eq!(m.rtp_addr(), Some("198.51.100.7:49170".parse().unwrap()));
    assert_eq!(m.rtcp_addr(), Some("198.51.100.7:49171".parse().unwrap()));
    assert_eq!(m.clock_rates(), vec![(0, 8000)]);
}

#[test]
fn rtpmaps() {
    let s = sdp(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
        m=audio 4000 RTP/AVP 111 101 9\na=rtpmap:111 opus/48000/2\n\
        a=rtpmap:101 telephone-event/8000\na=rtpmap:9 G722/8000\n\
        a=rtpmap:200 bad/8000\na=rtpmap:x y\na=rtpmap:96 H264/0\n",
    );
    let m = &s.media()[0];
    assert_eq!(m.clock_rates(), vec![(111, 48000), (101, 8000), (9, 8000)]);
    assert_eq!(m.rtpmaps[0].encoding, "opus");
    assert_eq!(m.rtpmaps[0].params.as_deref(), Some("2"));
}

#[test]
fn rtcp_attr_and_mux() {
    let s = sdp(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
        m=audio 4000 RTP/AVP 0\na=rtcp:5001 IN IP4 10.0.0.9\n\
        m=audio 4002 RTP/AVP 0\na=rtcp:5003\n\
        m=audio 4004 RTP/AVP 0\na=rtcp-mux\n",
    );
    let m = s.media();
    assert_eq!(m[0].rtcp_addr(), Some("10.0.0.9:5001".parse().unwrap()));
    assert_eq!(m[1].rtcp_addr(), Some("10.0.0.1:5003".parse().unwrap()));
    assert_eq!(m[2].rtcp_addr(), Some("10.0.0.1:4004".parse().unwrap()));
}

#[test]
fn media_level_connection_overrides_session() {
    let s = sdp(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
        m=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::5\nm=video 4002 RTP/AVP 96\n",
    );
    assert_eq!(
        s.media()[0].rtp_addr(),
        Some("[2001:db8::5]:4000".parse().unwrap())
    );
    assert_eq!(
        s.media()[1].rtp_addr(),
        Some("10.0.0.1:4002".parse().unwrap())
    );
}

#[test]
fn directions_session_and_media_level() {
    let s = sdp(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=sendonly\n\
        m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\na=inactive\n",
    );
    assert_eq!(s.media()[0].direction, Direction::SendOnly);
    assert_eq!(s.media()[1].direction, Direction::Inactive);
}

#[test]
fn hold_address_gives_no_remote() {
    let s = sdp(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
        m=audio 4000 RTP/AVP 0\n",
    );
    assert!(s.media()[0].is_hold_address());
    assert_eq!(s.media()[0].rtp_addr(), None);
    assert_eq!(s.media()[0].rtcp_addr(), None);
}

#[test]
fn rejects_garbage() {
    for bad in [
        &b""[..],
        b"hello",
        b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4.5.6 7\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 ::1\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp:x\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nnot a line\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 \xff\r\n",
    ] {
        assert!(
            Sdp::parse(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let big = vec![b'a'; MAX_SDP_LEN + 1];
    assert_eq!(Sdp::parse(&big), Err(SdpError::TooLarge));
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let alphabet = b"vocmast=0123456789 .:/\r\nIPN4A-";
    for _ in 0..20_000 {
        let mut buf = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n".to_vec();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 120) as usize;
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        if let Ok(s) = Sdp::parse(&buf) {
            let ports = vec![1000; s.media().len()];
            let _ = s.rewrite(RELAY, &ports, None);
        }
    }
}

#[test]
fn port_count_must_match() {
    let s = sdp(BASIC);
    assert_eq!(
        s.rewrite(RELAY, &[], None),
        Err(SdpError::PortCount { media: 1, ports: 0 })
    );
}

fn origin_line(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .lines()
        .find(|l| l.starts_with("o="))
        .unwrap()
        .to_string()
}

#[test]
fn origin_version_increments_only_on_change() {
    let mut st = OriginState::new(77, 1);
    let s1 = sdp(BASIC);
    let out1 = s1.rewrite(RELAY, &[30000], Some(&mut st)).unwrap();
    assert_eq!(origin_line(&out1), "o=alice 77 1 IN IP4 203.0.113.1");
    // Same SDP again (e.g. a session refresh re-INVITE): version unchanged.
    let out2 = s1.rewrite(RELAY, &[30000], Some(&mut st)).unwrap();
    assert_eq!(out1, out2);
    // The peer's own o= version bump alone does not change what we send.
    let s1b = sdp(&BASIC.replace("2890844526 IN", "2890844527 IN"));
    let out2b = s1b.rewrite(RELAY, &[30000], Some(&mut st)).unwrap();
    assert_eq!(origin_line(&out2b), "o=alice 77 1 IN IP4 203.0.113.1");
    // Hold: the body changes, the version goes up by one.
    let held = sdp(&format!("{BASIC}a=sendonly\r\n"));
    let out3 = held.rewrite(RELAY, &[30000], Some(&mut st)).unwrap();
    assert_eq!(origin_line(&out3), "o=alice 77 2 IN IP4 203.0.113.1");
    let out4 = s1.rewrite(RELAY, &[30000], Some(&mut st)).unwrap();
    assert_eq!(origin_line(&out4), "o=alice 77 3 IN IP4 203.0.113.1");
}
