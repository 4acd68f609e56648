use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
const SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";

#[test]
fn rfc3711_b3_key_derivation() {
    let (k, s) = (hex(KEY), hex(SALT));
    assert_eq!(
        kdf::derive(&k, &s, 0, 16),
        hex("C61E7A93744F39EE10734AFE3FF7A087")
    );
    assert_eq!(
        kdf::derive(&k, &s, 2, 14),
        hex("30CBBC08863D8C85D49DB34A9AE1")
    );
    assert_eq!(
        kdf::derive(&k, &s, 1, 20),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    // Session key and salt given directly: IV = salt * 2^16 with SSRC = 0 and index 0.
    let key = hex("2B7E151628AED2A6ABF7158809CF4F3C");
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let iv = cm_iv(&salt, 0, 0);
    let mut ks = [0u8; 48];
    Aes128Ctr::new(key.as_slice().into(), &iv.into()).apply_keystream(&mut ks);
    assert_eq!(
        ks.to_vec(),
        hex("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0")
    );
}

fn material(suite: Suite) -> MasterKey {
    let mut m = hex(KEY);
    m.resize(suite.key_len(), 0x42);
    let mut s = hex(SALT);
    s.truncate(suite.salt_len());
    m.extend(s);
    MasterKey::new(suite, &m).unwrap()
}

/// libsrtp's reference packet for AES_CM_128_HMAC_SHA1_80 (srtp_driver.c), an independent
/// implementation's output.
#[test]
fn libsrtp_reference_packet() {
    let key = material(Suite::AesCm128HmacSha1_80);
    let plain = hex("800f1234decafbadcafebabeabababababababababababababababab");
    let mut buf = plain.clone();
    buf.resize(plain.len() + 10, 0);
    let mut tx = Context::new(&key);
    let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
    assert_eq!(
        buf[..n].to_vec(),
        hex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb")
    );
    let mut rx = Context::new(&key);
    assert_eq!(rx.unprotect_rtp(&mut buf, n), Ok(plain.len()));
    assert_eq!(buf[..plain.len()].to_vec(), plain);
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i * 7 + u32::from(seq)) as u8));
    p
}

fn roundtrip(suite: Suite) {
    let key = material(suite);
    let (mut tx, mut rx) = (Context::new(&key), Context::new(&key));
    // across a sequence wrap: the ROC must follow on both sides
    for k in 0..200u32 {
        let seq = (65_500u32 + k) as u16;
        let plain = rtp(seq, 0x1234_5678);
        let mut buf = plain.clone();
        buf.resize(plain.len() + Suite::MAX_OVERHEAD, 0);
        let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
        assert_eq!(n, plain.len() + suite.rtp_overhead());
        assert_ne!(buf[12..plain.len()], plain[12..], "payload not encrypted");
        let mut copy = buf.clone();
        assert_eq!(
            rx.unprotect_rtp(&mut buf, n),
            Ok(plain.len()),
            "{suite:?} seq {seq}"
        );
        assert_eq!(buf[..plain.len()], plain[..]);
        // the same packet again is a replay
        assert_eq!(rx.unprotect_rtp(&mut copy, n), Err(SrtpError::Replay));
    }
    assert_eq!(tx.roc, 1);
    assert_eq!(rx.roc, 1);
    // a forged packet (one bit flipped) is refused and changes nothing
    let plain = rtp(300, 0x1234_5678);
    let mut buf = plain.clone();
    buf.resize(plain.len() + Suite::MAX_OVERHEAD, 0);
    let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
    let mut forged = buf.clone();
    forged[20] ^= 1;
    assert_eq!(rx.unprotect_rtp(&mut forged, n), Err(SrtpError::Auth));
    assert_eq!(rx.unprotect_rtp(&mut buf, n), Ok(plain.len()));
    // RTCP both ways, index and replay
    for i in 0..3u8 {
        let plain: Vec<u8> = [0x80, 200, 0, 6, 0x12, 0x34, 0x56, 0x78]
            .into_iter()
            .chain((0..20).map(|k| k ^ i))
            .collect();
        let mut buf = plain.clone();
        buf.resize(plain.len() + Suite::MAX_OVERHEAD, 0);
        let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
        assert_eq!(n, plain.len() + suite.rtcp_overhead());
        let mut copy = buf.clone();
        let mut forged = buf.clone();
        forged[10] ^= 0x80;
        assert_eq!(rx.unprotect_rtcp(&mut forged, n), Err(SrtpError::Auth));
        assert_eq!(rx.unprotect_rtcp(&mut buf, n), Ok(plain.len()));
        assert_eq!(buf[..plain.len()], plain[..]);
        assert_eq!(rx.unprotect_rtcp(&mut copy, n), Err(SrtpError::Replay));
    }
}

#[test]
fn every_suite_round_trips_across_a_wrap_and_refuses_forgeries_and_replays() {
    for s in Suite::ALL {
        roundtrip(s);
    }
}

#[test]
fn the_wrong_key_fails_authentication() {
    let a = material(Suite::AeadAes128Gcm);
    let mut other = a.material();
    other[0] ^= 1;
    let b = MasterKey::new(Suite::AeadAes128Gcm, &other).unwrap();
    let plain = rtp(1, 7);
    let mut buf = plain.clone();
    buf.resize(plain.len() + 16, 0);
    let n = Context::new(&a).protect_rtp(&mut buf, plain.len()).unwrap();
    assert_eq!(
        Context::new(&b).unprotect_rtp(&mut buf, n),
        Err(SrtpError::Auth)
    );
}

#[test]
fn garbage_never_panics() {
    let key = material(Suite::AesCm128HmacSha1_80);
    let mut rx = Context::new(&key);
    for len in 0..64usize {
        let mut buf: Vec<u8> = (0..len).map(|i| (i * 37) as u8 | 0x80).collect();
        buf.resize(len + 20, 0);
        let _ = rx.unprotect_rtp(&mut buf, len);
        let _ = rx.unprotect_rtcp(&mut buf, len);
        let _ = rx.protect_rtp(&mut buf, len);
        let _ = rx.protect_rtcp(&mut buf, len);
    }
    let mut small = [0x80u8; 12];
    assert_eq!(rx.protect_rtp(&mut small, 12), Err(SrtpError::NoRoom));
}

#[test]
fn sdes_lines() {
    let key = material(Suite::AesCm128HmacSha1_80);
    let line = sdes::format(1, &key);
    assert!(
        line.starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{line}"
    );
    assert_eq!(sdes::parse(&line).unwrap().key, key);
    let ok = sdes::parse(
        "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^31",
    )
    .unwrap();
    assert_eq!((ok.tag, ok.key.suite), (2, Suite::AesCm128HmacSha1_32));
    use sdes::CryptoError::*;
    for (bad, why) in [
        ("1 AES_CM_256_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj", UnknownSuite),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6", KeyLength),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:4", Unsupported),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|1:4", Unsupported),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj UNENCRYPTED_SRTP", Unsupported),
        ("x AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj", Syntax),
        ("1 AES_CM_128_HMAC_SHA1_80 NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj", Syntax),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", Syntax),
        ("", Syntax),
    ] {
        assert_eq!(sdes::parse(bad).err(), Some(why), "{bad}");
    }
}
