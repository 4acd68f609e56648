//! SRTP through call control: an SDES offer from an SRTP caller reaches a plain trunk as RTP
//! (no `a=crypto` crosses), the caller's answer carries the relay's own key, and the relay leg
//! facing the caller gets both keys; a mandatory leg without crypto is refused.

use std::sync::Arc;

use media_core::control::fake::{FakeDataPlane, Op};
use media_core::control::{MediaCalls, MediaError, Peers, Side};
use media_core::srtp::negotiate::{NegotiateError, SrtpMode};
use media_core::srtp::{sdes, MasterKey, Suite};

fn calls() -> (MediaCalls, Arc<FakeDataPlane>) {
    let dp = Arc::new(FakeDataPlane::new("203.0.113.1".parse().unwrap(), 30000, 8));
    let mut n = 0u8;
    let m = MediaCalls::new(dp.clone()).with_key_source(Box::new(move |b: &mut [u8]| {
        n = n.wrapping_add(1);
        b.iter_mut().enumerate().for_each(|(i, x)| *x = n ^ i as u8);
    }));
    (m, dp)
}

fn sdp(proto: &str, crypto: Option<&str>) -> Vec<u8> {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
         m=audio 4000 {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    if let Some(c) = crypto {
        s += &format!("a=crypto:{c}\r\n");
    }
    s.into_bytes()
}

#[test]
fn srtp_caller_plain_trunk() {
    let (mut m, dp) = calls();
    let a_key = MasterKey::new(Suite::AesCm128HmacSha1_80, &[7; 30]).unwrap();
    let a_line = sdes::format(1, &a_key);
    let offer = sdp("RTP/SAVP", Some(&a_line));
    let to_b = m
        .offer_srtp(
            Side::A,
            "c1",
            "ta",
            &offer,
            Peers::default(),
            [SrtpMode::Optional, SrtpMode::Off],
        )
        .unwrap();
    let to_b = String::from_utf8(to_b).unwrap();
    assert!(to_b.contains("m=audio 30002 RTP/AVP 0 101\r\n"), "{to_b}");
    assert!(!to_b.contains("crypto"), "a=crypto crossed: {to_b}");
    let to_a = m
        .answer_from_peer(Side::B, "c1", "ta", Some("tb"), &sdp("RTP/AVP", None), None)
        .unwrap();
    let to_a = String::from_utf8(to_a).unwrap();
    assert!(to_a.contains("m=audio 30000 RTP/SAVP 0 101\r\n"), "{to_a}");
    let line = to_a
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:"))
        .expect("crypto in the answer");
    let ours = sdes::parse(line).unwrap();
    assert_eq!(ours.tag, 1);
    assert_ne!(ours.key, a_key);
    assert!(!to_a.contains(&a_line), "the caller's own key went back");
    let ops = dp.ops();
    assert!(
        ops.contains(&Op::SetSrtp {
            port: 30000,
            rx: true,
            tx: true
        }),
        "{ops:?}"
    );
    assert!(
        ops.contains(&Op::SetSrtp {
            port: 30002,
            rx: false,
            tx: false
        }),
        "{ops:?}"
    );
}

#[test]
fn mandatory_without_crypto_is_refused_and_nothing_stays_open() {
    let (mut m, dp) = calls();
    let r = m.offer_srtp(
        Side::A,
        "c2",
        "ta",
        &sdp("RTP/AVP", None),
        Peers::default(),
        [SrtpMode::Mandatory, SrtpMode::Off],
    );
    assert_eq!(r, Err(MediaError::Srtp(NegotiateError::Required)));
    assert_eq!(dp.open_pairs(), 0);
}

#[test]
fn no_key_source_no_srtp() {
    let dp = Arc::new(FakeDataPlane::new("203.0.113.1".parse().unwrap(), 30000, 8));
    let mut m = MediaCalls::new(dp);
    let r = m.offer_srtp(
        Side::A,
        "c3",
        "ta",
        &sdp("RTP/AVP", None),
        Peers::default(),
        [SrtpMode::Off; 2],
    );
    assert_eq!(r, Err(MediaError::NoKeySource));
}

/// Unusable `a=crypto` lines are skipped, never fatal by themselves: an unknown suite, a key of
/// the wrong length, MKI; past the first 16 lines nothing is read (a flood of 200 lines costs
/// nothing and, with no usable line among the first 16, a mandatory leg gets 488).
#[test]
fn bad_and_too_many_crypto_lines() {
    let good = sdes::format(
        1,
        &MasterKey::new(Suite::AesCm128HmacSha1_80, &[7; 30]).unwrap(),
    );
    let bad = [
        "1 AES_CM_256_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        "2 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6",
        "3 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:4",
        "4 NOT_A_SUITE inline:x",
    ];
    let with = |lines: &[String]| {
        let mut s = String::from_utf8(sdp("RTP/SAVP", None)).unwrap();
        for l in lines {
            s += &format!("a=crypto:{l}\r\n");
        }
        s.into_bytes()
    };
    let modes = [SrtpMode::Mandatory, SrtpMode::Off];
    // the bad ones first, then a good one: the good one is taken
    let mut lines: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
    lines.push(good.replacen("1 ", "9 ", 1));
    let (mut m, _) = calls();
    let out = m
        .offer_srtp(Side::A, "c1", "ta", &with(&lines), Peers::default(), modes)
        .expect("the usable line is found");
    assert!(!String::from_utf8_lossy(&out).contains("a=crypto"));
    // 200 unusable lines, the good one last: beyond what is read, so refused
    let mut lines: Vec<String> = (0..200).map(|i| bad[i % bad.len()].to_string()).collect();
    lines.push(good.clone());
    let (mut m, dp) = calls();
    let r = m.offer_srtp(Side::A, "c2", "ta", &with(&lines), Peers::default(), modes);
    assert!(matches!(r, Err(MediaError::Srtp(_))), "{r:?}");
    assert_eq!(dp.open_pairs(), 0);
}
