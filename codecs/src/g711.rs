//! ITU-T G.711: 8-bit logarithmic companding of 13/14-bit linear PCM, mu-law (North America,
//! Japan; RTP payload type 0, PCMU) and A-law (elsewhere; payload type 8, PCMA).
//!
//! Linear samples are 16-bit signed as in every audio API; mu-law uses the top 14 bits, A-law
//! the top 13. Each 8-bit code is a sign bit, a 3-bit segment (exponent) and a 4-bit step
//! within the segment; codes are transmitted inverted (mu-law: all bits; A-law: even bits,
//! `^ 0x55`), as the Recommendation specifies.

/// mu-law encoding bias (33 in 14-bit units, 0x84 at 16-bit scale) and clip level.
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// 16-bit linear sample to mu-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let x = sample as i32;
    let sign: u8 = if x < 0 { 0x80 } else { 0 };
    let mag = x.unsigned_abs().min(ULAW_CLIP as u32) as i32 + ULAW_BIAS;
    // segment: position of the highest set bit above bit 7 (0..=7)
    let seg = (31 - (mag >> 7).max(1).leading_zeros()) as i32;
    let mantissa = ((mag >> (seg + 3)) & 0x0f) as u8;
    !(sign | ((seg as u8) << 4) | mantissa)
}

/// mu-law to 16-bit linear (the segment's midpoint).
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let seg = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let t = ((mantissa << 3) + ULAW_BIAS) << seg;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// 16-bit linear sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut x = (sample as i32) >> 3; // 13 bits
    let mask: u8 = if x >= 0 {
        0xd5
    } else {
        x = -x - 1;
        0x55
    };
    // segments end at 13-bit magnitudes 0x1f, 0x3f, 0x7f, ..., 0xfff
    let seg = (0..8).find(|&s| x < (0x20 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let step = if seg < 2 {
        (x >> 1) & 0x0f
    } else {
        (x >> seg) & 0x0f
    };
    (((seg as u8) << 4) | step as u8) ^ mask
}

/// A-law to 16-bit linear (the segment's midpoint).
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let seg = ((a & 0x70) >> 4) as i32;
    let mut t = ((a & 0x0f) as i32) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        s => (t + 0x108) << (s - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// mu-law to A-law through linear (G.711 also tabulates this conversion; through linear the
/// result is the A-law code nearest to the mu-law value).
pub fn ulaw_to_alaw(code: u8) -> u8 {
    linear_to_alaw(ulaw_to_linear(code))
}

/// A-law to mu-law through linear.
pub fn alaw_to_ulaw(code: u8) -> u8 {
    linear_to_ulaw(alaw_to_linear(code))
}

/// Encode a block of samples (one RTP packet's worth, e.g. 160 for 20 ms) into `out`.
pub fn encode_ulaw(samples: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = linear_to_ulaw(s);
    }
}

/// Decode a block of mu-law codes into `out`.
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_to_linear(c);
    }
}

/// Encode a block of samples into A-law.
pub fn encode_alaw(samples: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = linear_to_alaw(s);
    }
}

/// Decode a block of A-law codes.
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_to_linear(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values every G.711 implementation agrees on.
    #[test]
    fn reference_codes() {
        // silence
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0, "mu-law's negative zero");
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        // full scale
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_alaw(-1), 0x55);
    }

    /// Every code decodes to a value that encodes back to the same code (mu-law's negative
    /// zero comes back as positive zero).
    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            let u = linear_to_ulaw(ulaw_to_linear(c));
            if c == 0x7f {
                assert_eq!(u, 0xff);
            } else {
                assert_eq!(u, c, "mu-law {c:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A-law {c:#04x}");
        }
    }

    /// Companding error stays within half a quantization step of the segment (plus clipping
    /// at full scale), and decoding is monotonic.
    #[test]
    fn error_is_bounded_and_order_kept() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let xi = x as i32;
            let du = ulaw_to_linear(linear_to_ulaw(x)) as i32;
            let da = alaw_to_linear(linear_to_alaw(x)) as i32;
            let bound = |step_shift: i32| (xi.abs() >> step_shift) + 16;
            if xi.abs() < 32000 {
                assert!((du - xi).abs() <= bound(4), "mu-law {x} -> {du}");
                assert!((da - xi).abs() <= bound(4), "A-law {x} -> {da}");
            }
            assert!(du as i16 >= prev_u || x == 0, "mu-law monotonic at {x}");
            assert!(da as i16 >= prev_a, "A-law monotonic at {x}");
            prev_u = du as i16;
            prev_a = da as i16;
        }
    }

    #[test]
    fn law_conversion_keeps_silence_and_sign() {
        assert_eq!(ulaw_to_alaw(0xff), 0xd5);
        assert!(
            ulaw_to_linear(alaw_to_ulaw(0xd5)).abs() <= 8,
            "A-law silence (+8) stays near 0"
        );
        for c in 0..=255u8 {
            let l = ulaw_to_linear(c) as i32;
            let back = alaw_to_linear(ulaw_to_alaw(c)) as i32;
            assert!(l.signum() * back.signum() >= 0, "sign kept for {c:#04x}");
            assert!(
                (l - back).abs() <= (l.abs() >> 4) + 16,
                "{c:#04x}: {l} vs {back}"
            );
        }
    }

    #[test]
    fn blocks() {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 200 - 16000) as i16).collect();
        let mut u = [0u8; 160];
        let mut back = [0i16; 160];
        encode_ulaw(&pcm, &mut u);
        decode_ulaw(&u, &mut back);
        for (a, b) in pcm.iter().zip(back.iter()) {
            assert!((*a as i32 - *b as i32).abs() <= 1100);
        }
        let mut a = [0u8; 160];
        encode_alaw(&pcm, &mut a);
        decode_alaw(&a, &mut back);
        assert!(back
            .iter()
            .zip(pcm.iter())
            .all(|(x, y)| (*x as i32 - *y as i32).abs() <= 1100));
    }
}
