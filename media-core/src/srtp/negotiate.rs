//! SDES negotiation per leg (RFC 4568 §5–7): which leg speaks SRTP with which keys, decided
//! one m-line at a time as offers and answers cross the relay. Each leg has its own keys: the
//! key a leg's endpoint offers is what it sends with (the relay decrypts with it), and the
//! relay sends to it with a key of its own, generated per leg and per offer; no key and no
//! `a=crypto` line ever crosses from one leg to the other.

use super::sdes;
use super::{MasterKey, Suite};
use crate::sdp::{Media, StreamOut};

/// A leg's SRTP policy (`srtp:` on a trunk, in `media:` for other callers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SrtpMode {
    /// Plain RTP on this leg: an SRTP-only offer from it is refused.
    Off,
    /// SRTP when the endpoint offers or accepts it, else RTP (offers to it carry `a=crypto`
    /// on `RTP/AVP`, the best-effort form).
    #[default]
    Optional,
    /// SRTP or nothing (`RTP/SAVP` offers; no acceptable crypto: 488).
    Mandatory,
}

/// Why an m-line cannot be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegotiateError {
    /// The leg must use SRTP and offered or answered no usable `a=crypto`.
    Required,
    /// `RTP/SAVP` from a leg whose policy is `off`, or with no usable `a=crypto` line.
    NotAcceptable,
}

impl std::fmt::Display for NegotiateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NegotiateError::Required => "SRTP is mandatory on this leg and no usable crypto",
            NegotiateError::NotAcceptable => "SRTP offered where it is off, or no usable crypto",
        })
    }
}

impl std::error::Error for NegotiateError {}

/// One leg of one m-line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegKeys {
    /// The endpoint's key (what it sends with).
    pub rx: Option<MasterKey>,
    /// The relay's key towards the endpoint, with the crypto tag it was offered/answered under.
    pub tx: Option<(u32, MasterKey)>,
    /// The transport the endpoint offered (the answer to it must use the same).
    offered_proto: Option<String>,
}

impl LegKeys {
    /// Whether the leg speaks SRTP now (both keys known).
    pub fn is_srtp(&self) -> bool {
        self.rx.is_some() && self.tx.is_some()
    }

    /// The keys the relay leg facing this endpoint uses: (decrypt with, encrypt with).
    pub fn relay_keys(&self) -> (Option<MasterKey>, Option<MasterKey>) {
        if self.is_srtp() {
            (self.rx.clone(), self.tx.as_ref().map(|(_, k)| k.clone()))
        } else {
            (None, None)
        }
    }
}

/// Both legs of one m-line (index 0 faces A, 1 faces B).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamKeys {
    pub legs: [LegKeys; 2],
}

/// Whether the m-line is RTP (the only media SRTP applies to).
pub fn is_rtp(m: &Media) -> bool {
    m.proto.starts_with("RTP/")
}

fn plain_proto(p: &str) -> String {
    p.replace("SAVP", "AVP")
}

fn secure_proto(p: &str) -> String {
    if p.contains("SAVP") {
        p.to_string()
    } else {
        p.replace("AVP", "SAVP")
    }
}

fn first_usable(m: &Media) -> Option<sdes::Crypto> {
    m.crypto.iter().find_map(|c| sdes::parse(c).ok())
}

/// An offer from leg `s` for this m-line: records leg `s`'s keys and says how the m-line goes
/// to the other leg. `gen` makes a fresh key of a suite (from a CSPRNG).
pub fn on_offer(
    keys: &mut StreamKeys,
    s: usize,
    m: &Media,
    modes: [SrtpMode; 2],
    gen: &mut dyn FnMut(Suite) -> MasterKey,
) -> Result<StreamOut, NegotiateError> {
    let t = 1 - s;
    let secure = m.proto.contains("SAVP");
    let usable = first_usable(m);
    let from = &mut keys.legs[s];
    from.offered_proto = Some(m.proto.clone());
    match (modes[s], usable) {
        (SrtpMode::Off, _) if secure => return Err(NegotiateError::NotAcceptable),
        (SrtpMode::Off, _) => {
            from.rx = None;
            from.tx = None;
        }
        (_, Some(c)) => {
            // a re-offer with the same suite keeps the relay's key (RFC 4568 §7.1.4 allows
            // either; keeping it avoids a gap)
            let keep = from
                .tx
                .as_ref()
                .filter(|(_, k)| k.suite == c.key.suite)
                .map(|(_, k)| k.clone());
            let tx = keep.unwrap_or_else(|| gen(c.key.suite));
            from.rx = Some(c.key);
            from.tx = Some((c.tag, tx));
        }
        (SrtpMode::Mandatory, None) => return Err(NegotiateError::Required),
        (SrtpMode::Optional, None) if secure => return Err(NegotiateError::NotAcceptable),
        (SrtpMode::Optional, None) => {
            from.rx = None;
            from.tx = None;
        }
    }
    let suite = keys.legs[s]
        .rx
        .as_ref()
        .map_or(Suite::AesCm128HmacSha1_80, |k| k.suite);
    let to = &mut keys.legs[t];
    // what leg t sent before is no longer agreed until it answers
    to.rx = None;
    Ok(match modes[t] {
        SrtpMode::Off => {
            to.tx = None;
            StreamOut {
                replace: true,
                proto: plain_proto(&m.proto),
                crypto: Vec::new(),
                keep: false,
                formats: None,
            }
        }
        mode => {
            let key = match to.tx.take() {
                Some((_, k)) if k.suite == suite => k,
                _ => gen(suite),
            };
            let line = sdes::format(1, &key);
            to.tx = Some((1, key));
            StreamOut {
                replace: true,
                proto: if mode == SrtpMode::Mandatory {
                    secure_proto(&m.proto)
                } else {
                    plain_proto(&m.proto)
                },
                crypto: vec![line],
                keep: false,
                formats: None,
            }
        }
    })
}

/// An answer from leg `s` to the other leg's offer (as the relay rewrote it): records leg
/// `s`'s keys and says how the m-line goes back to the offerer.
pub fn on_answer(
    keys: &mut StreamKeys,
    s: usize,
    m: &Media,
    modes: [SrtpMode; 2],
) -> Result<StreamOut, NegotiateError> {
    let t = 1 - s;
    let ans = &mut keys.legs[s];
    let accepted = ans.tx.as_ref().and_then(|(tag, ours)| {
        m.crypto
            .iter()
            .filter_map(|c| sdes::parse(c).ok())
            .find(|c| c.tag == *tag && c.key.suite == ours.suite)
    });
    match accepted {
        Some(c) => ans.rx = Some(c.key),
        None if modes[s] == SrtpMode::Mandatory => return Err(NegotiateError::Required),
        None => {
            ans.rx = None;
            ans.tx = None;
        }
    }
    let off = &keys.legs[t];
    let proto = off.offered_proto.clone().unwrap_or_else(|| m.proto.clone());
    Ok(match (&off.tx, off.is_srtp()) {
        (Some((tag, key)), true) => StreamOut {
            replace: true,
            proto,
            crypto: vec![sdes::format(*tag, key)],
            keep: false,
            formats: None,
        },
        _ => StreamOut {
            replace: true,
            proto: plain_proto(&proto),
            crypto: Vec::new(),
            keep: false,
            formats: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Sdp;

    fn media(proto: &str, crypto: &[String]) -> Media {
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 {proto} 0\r\n"
        );
        for c in crypto {
            s += &format!("a=crypto:{c}\r\n");
        }
        Sdp::parse(s.as_bytes()).unwrap().media()[0].clone()
    }

    fn gen_fn() -> impl FnMut(Suite) -> MasterKey {
        let mut n = 0u8;
        move |s| {
            n += 1;
            MasterKey::new(s, &vec![n; s.key_len() + s.salt_len()]).unwrap()
        }
    }

    fn key(n: u8) -> MasterKey {
        MasterKey::new(Suite::AesCm128HmacSha1_80, &[n; 30]).unwrap()
    }

    use SrtpMode::*;

    #[test]
    fn srtp_caller_to_plain_trunk_and_back() {
        let mut k = StreamKeys::default();
        let mut g = gen_fn();
        let a_key = key(0xaa);
        let offer = media("RTP/SAVP", &[sdes::format(7, &a_key)]);
        let out = on_offer(&mut k, 0, &offer, [Optional, Off], &mut g).unwrap();
        assert_eq!(out.proto, "RTP/AVP");
        assert!(out.crypto.is_empty(), "a=crypto crossed to the plain leg");
        assert_eq!(k.legs[0].rx, Some(a_key.clone()));
        let answer = media("RTP/AVP", &[]);
        let back = on_answer(&mut k, 1, &answer, [Optional, Off]).unwrap();
        assert_eq!(back.proto, "RTP/SAVP");
        assert_eq!(back.crypto.len(), 1);
        let ours = sdes::parse(&back.crypto[0]).unwrap();
        assert_eq!(ours.tag, 7);
        assert_ne!(ours.key, a_key, "the caller's key was sent back");
        assert!(k.legs[0].is_srtp());
        assert!(!k.legs[1].is_srtp());
    }

    #[test]
    fn plain_caller_to_mandatory_trunk() {
        let mut k = StreamKeys::default();
        let mut g = gen_fn();
        let out = on_offer(
            &mut k,
            0,
            &media("RTP/AVP", &[]),
            [Optional, Mandatory],
            &mut g,
        )
        .unwrap();
        assert_eq!(out.proto, "RTP/SAVP");
        let offered = sdes::parse(&out.crypto[0]).unwrap();
        // the trunk answers with its own key under our tag
        let b_key = key(0xbb);
        let ans = media("RTP/SAVP", &[sdes::format(offered.tag, &b_key)]);
        let back = on_answer(&mut k, 1, &ans, [Optional, Mandatory]).unwrap();
        assert_eq!(back.proto, "RTP/AVP");
        assert!(back.crypto.is_empty());
        assert_eq!(k.legs[1].relay_keys(), (Some(b_key), Some(offered.key)));
        // a trunk that answers without crypto breaks its mandatory policy
        let mut k = StreamKeys::default();
        on_offer(
            &mut k,
            0,
            &media("RTP/AVP", &[]),
            [Optional, Mandatory],
            &mut g,
        )
        .unwrap();
        assert_eq!(
            on_answer(&mut k, 1, &media("RTP/SAVP", &[]), [Optional, Mandatory]),
            Err(NegotiateError::Required)
        );
    }

    #[test]
    fn srtp_both_legs_each_its_own_keys() {
        let mut k = StreamKeys::default();
        let mut g = gen_fn();
        let a_key = key(0xa1);
        let out = on_offer(
            &mut k,
            0,
            &media("RTP/SAVP", &[sdes::format(1, &a_key)]),
            [Mandatory, Mandatory],
            &mut g,
        )
        .unwrap();
        let to_b = sdes::parse(&out.crypto[0]).unwrap();
        assert_ne!(to_b.key, a_key);
        let b_key = key(0xb2);
        let back = on_answer(
            &mut k,
            1,
            &media("RTP/SAVP", &[sdes::format(1, &b_key)]),
            [Mandatory, Mandatory],
        )
        .unwrap();
        let to_a = sdes::parse(&back.crypto[0]).unwrap();
        assert!(to_a.key != b_key && to_a.key != a_key && to_a.key != to_b.key);
    }

    #[test]
    fn refusals() {
        let mut g = gen_fn();
        let mut k = StreamKeys::default();
        // SAVP where SRTP is off
        assert_eq!(
            on_offer(
                &mut k,
                0,
                &media("RTP/SAVP", &[sdes::format(1, &key(1))]),
                [Off, Off],
                &mut g
            ),
            Err(NegotiateError::NotAcceptable)
        );
        // mandatory without crypto
        assert_eq!(
            on_offer(&mut k, 0, &media("RTP/AVP", &[]), [Mandatory, Off], &mut g),
            Err(NegotiateError::Required)
        );
        // SAVP with only unusable lines (unknown suite, MKI)
        let bad = vec![
            "1 F8_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj".to_string(),
            "2 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:4"
                .to_string(),
        ];
        assert_eq!(
            on_offer(&mut k, 0, &media("RTP/SAVP", &bad), [Optional, Off], &mut g),
            Err(NegotiateError::NotAcceptable)
        );
        // ...but a usable line after them is taken
        let mut ok = bad.clone();
        ok.push(sdes::format(3, &key(3)));
        on_offer(&mut k, 0, &media("RTP/SAVP", &ok), [Optional, Off], &mut g).unwrap();
        assert_eq!(k.legs[0].tx.as_ref().map(|t| t.0), Some(3));
    }
}
