//! Streams the relay cannot or need not carry, through the ng control port (as Kamailio's
//! rtpengine module sends them): an MSRP session over TCP (RFC 4975) is never given a UDP
//! relay port, it is rejected with port 0 (`media.tcp_streams: reject`, the default) or
//! passed untouched (`pass`); a stream the offerer already rejected (`m=application 0 *`,
//! without formats) does not refuse the whole offer: the other streams are relayed.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

const OFFER: &str = "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=message 2855 TCP/MSRP *\r\na=path:msrp://10.0.0.1:2855/s1;tcp\r\n\
m=application 0 *\r\n";

/// trunkline with the ng port on, `tcp_streams` as given (`None`: the default); the SDP of
/// its answer to an offer of [`OFFER`].
fn offer_through_ng(net: &Net, tcp_streams: Option<&str>) -> String {
    let ng_port = net.spare(40);
    let t = [Trunk {
        name: "pbx",
        port: net.trunk(0),
    }];
    let y = config_yaml(net, &t, &["pbx"]);
    let old = format!("  ports: {}\n", net.media_range());
    let mut media = format!("{old}  ng_listen: 127.0.0.1:{ng_port}\n");
    if let Some(t) = tcp_streams {
        media += &format!("  tcp_streams: {t}\n");
    }
    let mut tl = Trunkline::start(net, &y.replace(&old, &media));
    wait_udp_bound(ng_port, Duration::from_secs(10));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let req = ng(
        "c1",
        &[
            ("command", "offer"),
            ("call-id", "msrp-1"),
            ("from-tag", "f"),
            ("sdp", OFFER),
        ],
    );
    sock.send_to(&req, ("127.0.0.1", ng_port)).expect("send");
    let r = ng_reply(&sock, Duration::from_secs(5)).expect("an ng reply");
    tl.assert_alive();
    assert!(r.contains("6:result2:ok"), "{r}");
    r
}

fn mline<'a>(sdp: &'a str, kind: &str) -> &'a str {
    sdp.split("\r\n")
        .find(|l| l.starts_with(&format!("m={kind} ")))
        .unwrap_or_else(|| panic!("no m={kind} in {sdp}"))
}

#[test]
fn an_msrp_stream_is_rejected_and_the_audio_relayed() {
    isolated(
        "an_msrp_stream_is_rejected_and_the_audio_relayed",
        false,
        |net| {
            let r = offer_through_ng(net, None);
            assert_eq!(mline(&r, "message"), "m=message 0 TCP/MSRP *", "{r}");
            assert!(
                mline(&r, "application").starts_with("m=application 0"),
                "{r}"
            );
            let audio = mline(&r, "audio");
            assert_ne!(audio, "m=audio 4000 RTP/AVP 0", "relayed: {r}");
            assert!(!r.contains("c=IN IP4 10.0.0.1"), "no caller address: {r}");
        },
    );
}

#[test]
fn an_msrp_stream_passes_untouched_when_configured() {
    isolated(
        "an_msrp_stream_passes_untouched_when_configured",
        false,
        |net| {
            let r = offer_through_ng(net, Some("pass"));
            let text = r.replace("\r\n", "\n");
            assert!(
                text.contains("m=message 2855 TCP/MSRP *\nc=IN IP4 10.0.0.1\n"),
                "{r}"
            );
            assert!(r.contains("a=path:msrp://10.0.0.1:2855/s1;tcp"), "{r}");
            assert_ne!(
                mline(&r, "audio"),
                "m=audio 4000 RTP/AVP 0",
                "audio relayed: {r}"
            );
        },
    );
}
