//! ITU-T G.722: 7 kHz audio at 64 kbit/s by sub-band ADPCM (SB-ADPCM), mode 1.
//!
//! Recommendation G.722 §1.1: "the frequency band is split into two sub-bands (higher and
//! lower) and the signals in each sub-band are encoded using ADPCM." A 24-tap quadrature
//! mirror filter (QMF) turns two 16 kHz input samples into one sample of each band; the lower
//! band is quantised with 6 bits (60 levels, §3.3), the higher band with 2 bits (§3.4), and the
//! two codes form one octet `IH IH IL IL IL IL IL IL`. The decoder inverts each band (the lower
//! band with the full 6-bit quantiser, mode 1) and the receive QMF gives two output samples.
//!
//! Both bands run the same adaptive predictor (§3.6: two poles, six zeros, sign-sign
//! adaptation) and a log-domain scale factor (§3.5). Arithmetic is the Recommendation's 16-bit
//! fixed point (saturating where it says so), so a conforming peer decodes bit for bit what
//! this encoder produced; `tests/codec_interop.rs` compares both directions with spandsp.
//!
//! RTP (RFC 3551 §4.5.2): payload type 9, "the RTP clock rate is 8,000 Hz" although the
//! sampling rate is 16,000 Hz: one octet per 125 µs, as G.711.

/// §3.3 Table 6/G.722: lower-band quantiser decision levels (÷ 2^12 of the scale factor).
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
/// The 6-bit code for an interval of a negative difference, and of a positive one.
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32, 0,
];
/// §3.5 Table 8: lower-band log scale factor multipliers, indexed through RL42.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// §3.5 Table 9: 2^(i/32) × 2048, the mantissa of the linear scale factor.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// §3.4 Table 7: the 4-bit inverse quantiser of the lower band (the predictor's input).
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// §4.2 Table 11: the 6-bit inverse quantiser of the lower band (mode 1 output).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// Higher band (§3.4, Tables 7 and 8): codes, inverse quantiser, log multipliers.
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [usize; 4] = [2, 1, 2, 1];
/// §3.2 Table 5: the QMF coefficients h0..h11 (h23-i = hi).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
/// The higher band's single decision level (Table 7: 564 ÷ 2^12).
const Q2: i32 = 564;

fn sat16(x: i32) -> i32 {
    x.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// One band's ADPCM state: scale factor and the two-pole six-zero predictor (§3.5, §3.6).
#[derive(Clone, Debug)]
struct Band {
    /// Predicted signal, its pole and zero parts.
    s: i32,
    sp: i32,
    sz: i32,
    /// Reconstructed signal r(n), r(n-1), r(n-2).
    r: [i32; 3],
    /// Pole coefficients a1, a2 (index 0 unused).
    a: [i32; 3],
    /// Zero coefficients b1..b6 (index 0 unused).
    b: [i32; 7],
    /// Quantised differences d(n)..d(n-6).
    d: [i32; 7],
    /// Partially reconstructed signal p(n), p(n-1), p(n-2).
    p: [i32; 3],
    /// Log and linear scale factors.
    nb: i32,
    det: i32,
}

impl Band {
    fn new(det: i32) -> Band {
        Band {
            s: 0,
            sp: 0,
            sz: 0,
            r: [0; 3],
            a: [0; 3],
            b: [0; 7],
            d: [0; 7],
            p: [0; 3],
            nb: 0,
            det,
        }
    }

    /// LOGSCL/LOGSCH then SCALEL/SCALEH (§3.5): leak the log scale factor, add the code's
    /// multiplier, clamp, and convert to linear (`shift` is 8 for the lower band, 10 for the
    /// higher).
    fn adapt_scale(&mut self, multiplier: i32, max: i32, shift: i32) {
        self.nb = (((self.nb * 127) >> 7) + multiplier).clamp(0, max);
        let mantissa = ILB[((self.nb >> 6) & 31) as usize];
        let exp = shift - (self.nb >> 11);
        let lin = if exp < 0 {
            mantissa << -exp
        } else {
            mantissa >> exp
        };
        self.det = lin << 2;
    }

    /// Block 4 (§3.6): reconstruct, adapt the pole and zero coefficients from the signs of
    /// the new difference `d`, shift the delay lines, and predict the next sample.
    fn predict(&mut self, d: i32) {
        // RECONS, PARREC
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);
        let sign = |x: i32| x < 0;
        let (s0, s1, s2) = (sign(self.p[0]), sign(self.p[1]), sign(self.p[2]));

        // UPPOL2: a2 leaks, moves by the sign agreement of p(n) with p(n-2), and by a1's
        // contribution f(a1) when p(n) and p(n-1) agree.
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = if s0 == s1 { -wd1 } else { wd1 }.min(32767);
        let mut a2 = if s0 == s2 { 128 } else { -128 };
        a2 += wd2 >> 7;
        a2 += (self.a[2] * 32512) >> 15;
        let a2 = a2.clamp(-12288, 12288);

        // UPPOL1: a1 leaks and moves by ±192, bounded by 1 - 2^-4 - a2.
        let step = if s0 == s1 { 192 } else { -192 };
        let a1 = sat16(step + ((self.a[1] * 32640) >> 15));
        let bound = sat16(15360 - a2);
        // DELAYA for the poles: the new coefficients replace the old
        self.a[1] = a1.clamp(-bound, bound);
        self.a[2] = a2;

        // UPZERO: each b_i leaks and moves by ±128 with the sign agreement of d(n) and
        // d(n-i) (not at all when d(n) is zero); the new coefficient replaces the old.
        let step = if d == 0 { 0 } else { 128 };
        let sd = sign(d);
        for i in 1..7 {
            let w = if sign(self.d[i]) == sd { step } else { -step };
            self.b[i] = sat16(w + ((self.b[i] * 32640) >> 15));
        }

        // DELAYA: the signals' delay lines
        self.d.copy_within(0..6, 1);
        self.r[2] = self.r[1];
        self.r[1] = self.r[0];
        self.p[2] = self.p[1];
        self.p[1] = self.p[0];

        // FILTEP, FILTEZ, PREDIC
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        self.sp = sat16(wd1 + wd2);
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);
        self.s = sat16(self.sp + self.sz);
    }
}

/// Higher band, common to encoder and decoder: inverse quantise `ih` (2 bits), adapt, predict.
/// Returns the quantised difference.
fn high_band(band: &mut Band, ih: usize) -> i32 {
    let dh = (band.det * QM2[ih]) >> 15;
    band.adapt_scale(WH[RH2[ih]], 22528, 10);
    band.predict(dh);
    dh
}

/// Lower band's predictor path, common to encoder and decoder: the 4-bit inverse quantiser of
/// the code's top bits, the scale factor, the predictor.
fn low_band(band: &mut Band, il: usize) -> i32 {
    let il4 = il >> 2;
    let dl = (band.det * QM4[il4]) >> 15;
    band.adapt_scale(WL[RL42[il4]], 18432, 8);
    band.predict(dl);
    dl
}

/// The QMF delay line: the last 24 samples (transmit: input; receive: the band sums).
#[derive(Clone, Debug, Default)]
struct Qmf {
    x: [i32; 24],
}

impl Qmf {
    /// Push two samples and return the two filter sums (odd-indexed taps × h, even × reversed h).
    fn push(&mut self, first: i32, second: i32) -> (i32, i32) {
        self.x.copy_within(2.., 0);
        self.x[22] = first;
        self.x[23] = second;
        let (mut odd, mut even) = (0i32, 0i32);
        for (i, &h) in QMF.iter().enumerate() {
            odd += self.x[2 * i] * h;
            even += self.x[2 * i + 1] * QMF[11 - i];
        }
        (odd, even)
    }
}

/// A G.722 encoder (64 kbit/s, 16 kHz 16-bit input).
#[derive(Clone, Debug)]
pub struct Encoder {
    qmf: Qmf,
    band: [Band; 2],
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            qmf: Qmf::default(),
            band: [Band::new(32), Band::new(8)],
        }
    }

    /// Encode `pcm` (16 kHz; an even count: two samples make one octet) into `out`. Returns
    /// the octets written: `min(pcm.len() / 2, out.len())`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let mut n = 0;
        for (pair, o) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *o = self.encode_pair(pair[0], pair[1]);
            n += 1;
        }
        n
    }

    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        // Transmit QMF (§3.2): the two bands at 8 kHz.
        let (odd, even) = self.qmf.push(first as i32, second as i32);
        let xl = (even + odd) >> 14;
        let xh = (even - odd) >> 14;

        // Lower band (§3.3): the difference from the prediction, quantised in 6 bits.
        let lo = &mut self.band[0];
        let el = sat16(xl - lo.s);
        let mag = if el >= 0 { el } else { -(el + 1) };
        // the first decision level above the magnitude (the levels grow with i)
        let det = lo.det;
        let i = 1 + Q6[1..30].partition_point(|&q| (q * det) >> 12 <= mag);
        let il = if el < 0 { ILN[i] } else { ILP[i] } as usize;
        low_band(lo, il);

        // Higher band (§3.4): 2 bits.
        let hi = &mut self.band[1];
        let eh = sat16(xh - hi.s);
        let mag = if eh >= 0 { eh } else { -(eh + 1) };
        let level = if mag >= (Q2 * hi.det) >> 12 { 2 } else { 1 };
        let ih = if eh < 0 { IHN[level] } else { IHP[level] } as usize;
        high_band(hi, ih);

        ((ih << 6) | il) as u8
    }
}

/// A G.722 decoder (64 kbit/s, mode 1; 16 kHz 16-bit output).
#[derive(Clone, Debug)]
pub struct Decoder {
    qmf: Qmf,
    band: [Band; 2],
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            qmf: Qmf::default(),
            band: [Band::new(32), Band::new(8)],
        }
    }

    /// Decode `data` into `out` (two samples per octet). Returns the samples written: twice
    /// the octets that fit.
    pub fn decode(&mut self, data: &[u8], out: &mut [i16]) -> usize {
        let mut n = 0;
        for (&code, o) in data.iter().zip(out.chunks_exact_mut(2)) {
            let (a, b) = self.decode_octet(code);
            o[0] = a;
            o[1] = b;
            n += 2;
        }
        n
    }

    fn decode_octet(&mut self, code: u8) -> (i16, i16) {
        let il = (code & 0x3f) as usize;
        let ih = (code >> 6) as usize;

        // Lower band (§4.2, block 5L): the output uses the 6-bit inverse quantiser; the
        // predictor the 4-bit one (block 2L), as in the encoder.
        let lo = &mut self.band[0];
        let rl = (lo.s + ((lo.det * QM6[il]) >> 15)).clamp(-16384, 16383);
        low_band(lo, il);

        // Higher band.
        let hi = &mut self.band[1];
        let s = hi.s;
        let dh = high_band(hi, ih);
        let rh = (dh + s).clamp(-16384, 16383);

        // Receive QMF (§4.4).
        let (odd, even) = self.qmf.push(rl + rh, rl - rh);
        (sat16(even >> 11) as i16, sat16(odd >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as i16)
            .collect()
    }

    /// Signal-to-noise ratio of `got` against `want` delayed by `delay` samples, in dB.
    fn snr(want: &[i16], got: &[i16], delay: usize) -> f64 {
        let (mut sig, mut noise) = (0f64, 0f64);
        for (w, g) in want.iter().zip(&got[delay..]) {
            sig += (*w as f64).powi(2);
            noise += (*w as f64 - *g as f64).powi(2);
        }
        10.0 * (sig / noise.max(1.0)).log10()
    }

    fn round_trip(pcm: &[i16]) -> Vec<i16> {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new();
        let mut bytes = vec![0u8; pcm.len() / 2];
        assert_eq!(enc.encode(pcm, &mut bytes), pcm.len() / 2);
        let mut out = vec![0i16; pcm.len()];
        assert_eq!(dec.decode(&bytes, &mut out), pcm.len());
        out
    }

    #[test]
    fn tones_across_the_band_come_back() {
        for freq in [300.0, 1000.0, 3400.0, 5000.0, 6500.0] {
            let pcm = tone(freq, 16000, 8000.0);
            let out = round_trip(&pcm);
            // skip the adaptation's first 50 ms; the two QMFs delay the signal by ~22 samples
            let best = (20..26)
                .map(|d| snr(&pcm[800..15000], &out[800..], d))
                .fold(f64::MIN, f64::max);
            assert!(best > 20.0, "{freq} Hz: SNR {best:.1} dB");
        }
    }

    #[test]
    fn silence_stays_quiet_and_extremes_do_not_overflow() {
        let out = round_trip(&[0i16; 3200]);
        assert!(out.iter().all(|s| s.abs() < 16), "{:?}", &out[..32]);
        // full-scale square waves and alternating extremes: saturating, never panicking
        let mut pcm: Vec<i16> = (0..3200)
            .map(|i| if (i / 8) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        pcm.extend((0..3200).map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }));
        let out = round_trip(&pcm);
        assert_eq!(out.len(), pcm.len());
        // every code decodes
        let mut dec = Decoder::new();
        let all: Vec<u8> = (0..=255).cycle().take(4096).collect();
        let mut out = vec![0i16; all.len() * 2];
        assert_eq!(dec.decode(&all, &mut out), 8192);
    }

    #[test]
    fn short_buffers_write_what_fits() {
        let mut enc = Encoder::new();
        let mut out = [0u8; 3];
        assert_eq!(enc.encode(&[1i16; 11], &mut out), 3);
        let mut dec = Decoder::new();
        let mut pcm = [0i16; 5];
        assert_eq!(dec.decode(&[0x55; 4], &mut pcm), 4);
    }
}
