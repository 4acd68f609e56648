//! Sample-rate conversion by two, 8 kHz ↔ 16 kHz (G.711 ↔ G.722 and wideband PCM).
//!
//! Both directions use one 63-tap half-band low-pass filter (cut-off at a quarter of the
//! 16 kHz rate, 4 kHz; Blackman-windowed sinc). A half-band filter's even taps other than the
//! centre are zero, so a 16 kHz → 8 kHz output costs 16 multiplications and an 8 kHz → 16 kHz
//! output pair 16 (one output is the delayed input itself). Fixed point (Q15), no allocation:
//! the state is a fixed delay line. The group delay is 31 samples at 16 kHz (1.94 ms).

/// Non-zero odd taps on each side of the centre (h[±1], h[±3], ..., h[±31]).
const HALF: usize = 16;
/// 16 kHz history the decimator needs (the filter's span less one).
const DOWN_HIST: usize = 4 * HALF - 2;
/// 8 kHz history the interpolator needs.
const UP_HIST: usize = 2 * HALF - 1;
/// Samples processed per internal block (longer inputs are cut into blocks).
const BLOCK: usize = 480;

/// The odd taps h[1], h[3], ... in Q15, normalised so that the filter's DC gain is one.
fn taps() -> [i32; HALF] {
    let span = (4 * HALF - 2) as f64; // N - 1 of the 63-tap window
    let mut c = [0f64; HALF];
    for (i, v) in c.iter_mut().enumerate() {
        let k = (2 * i + 1) as f64;
        let sinc = if i % 2 == 0 { 1.0 } else { -1.0 } / (std::f64::consts::PI * k);
        let x = 2.0 * std::f64::consts::PI * k / span;
        let w = 0.42 + 0.5 * x.cos() + 0.08 * (2.0 * x).cos();
        *v = sinc * w;
    }
    // h[0] = 1/2; the odd taps of both sides sum to the other half.
    let sum: f64 = c.iter().sum::<f64>() * 2.0;
    let mut q = [0i32; HALF];
    for (o, v) in q.iter_mut().zip(c) {
        *o = (v / sum * 0.5 * 32768.0).round() as i32;
    }
    q
}

fn sat(acc: i32) -> i16 {
    ((acc + (1 << 14)) >> 15).clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

/// 16 kHz → 8 kHz.
#[derive(Clone, Debug)]
pub struct Downsampler {
    taps: [i32; HALF],
    line: Box<[i32; DOWN_HIST + BLOCK]>,
    /// A sample of an odd-length input waiting for its pair.
    odd: Option<i16>,
}

impl Default for Downsampler {
    fn default() -> Self {
        Downsampler::new()
    }
}

impl Downsampler {
    pub fn new() -> Downsampler {
        Downsampler {
            taps: taps(),
            line: Box::new([0; DOWN_HIST + BLOCK]),
            odd: None,
        }
    }

    /// Filter and decimate `input`, appending one output per two inputs to `out`. Returns the
    /// samples appended (an odd sample left over is kept for the next call).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> usize {
        let start = out.len();
        let mut rest = input;
        if let Some(first) = self.odd.take() {
            match rest.split_first() {
                Some((&second, tail)) => {
                    self.block(&[first, second], out);
                    rest = tail;
                }
                None => {
                    self.odd = Some(first);
                    return 0;
                }
            }
        }
        let even = rest.len() & !1;
        for chunk in rest[..even].chunks(BLOCK) {
            self.block(chunk, out);
        }
        if even < rest.len() {
            self.odd = rest.last().copied();
        }
        out.len() - start
    }

    /// One block of an even number of samples (at most BLOCK).
    fn block(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let n = input.len();
        for (d, &s) in self.line[DOWN_HIST..DOWN_HIST + n].iter_mut().zip(input) {
            *d = s as i32;
        }
        // Output for the input pair ending at line index t: centred on t - (2·HALF - 1).
        for t in (DOWN_HIST + 1..DOWN_HIST + n).step_by(2) {
            let c = t - (2 * HALF - 1);
            let mut acc = self.line[c] << 14;
            for (i, &h) in self.taps.iter().enumerate() {
                let k = 2 * i + 1;
                acc += h * (self.line[c - k] + self.line[c + k]);
            }
            out.push(sat(acc));
        }
        self.line.copy_within(n..n + DOWN_HIST, 0);
    }
}

/// 8 kHz → 16 kHz.
#[derive(Clone, Debug)]
pub struct Upsampler {
    taps: [i32; HALF],
    line: Box<[i32; UP_HIST + BLOCK]>,
}

impl Default for Upsampler {
    fn default() -> Self {
        Upsampler::new()
    }
}

impl Upsampler {
    pub fn new() -> Upsampler {
        Upsampler {
            taps: taps(),
            line: Box::new([0; UP_HIST + BLOCK]),
        }
    }

    /// Interpolate `input`, appending two outputs per input to `out`. Returns the samples
    /// appended.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> usize {
        let start = out.len();
        for chunk in input.chunks(BLOCK) {
            self.block(chunk, out);
        }
        out.len() - start
    }

    fn block(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let n = input.len();
        for (d, &s) in self.line[UP_HIST..UP_HIST + n].iter_mut().zip(input) {
            *d = s as i32;
        }
        // For the input at line index t: the sample at t - HALF itself (the centre tap, gain
        // 2 × 1/2), then the one half-way to the next, from the odd taps (gain 2).
        for t in UP_HIST..UP_HIST + n {
            let c = t - HALF;
            out.push(self.line[c].clamp(i16::MIN as i32, i16::MAX as i32) as i16);
            let mut acc = 0;
            for (i, &h) in self.taps.iter().enumerate() {
                acc += h * (self.line[c - i] + self.line[c + 1 + i]);
            }
            out.push(sat(acc << 1));
        }
        self.line.copy_within(n..n + UP_HIST, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Best SNR of `got` against `want` over a few alignments, in dB.
    fn snr(want: &[i16], got: &[i16], delays: std::ops::Range<usize>) -> f64 {
        delays
            .map(|d| {
                let (mut s, mut e) = (0f64, 0f64);
                for (w, g) in want.iter().zip(&got[d..]) {
                    s += (*w as f64).powi(2);
                    e += (*w as f64 - *g as f64).powi(2);
                }
                10.0 * (s / e.max(1.0)).log10()
            })
            .fold(f64::MIN, f64::max)
    }

    #[test]
    fn coefficients_are_a_unit_gain_half_band() {
        let t = taps();
        let dc: i32 = 16384 + 2 * t.iter().sum::<i32>();
        assert!((dc - 32768).abs() <= 16, "DC gain {dc}");
        assert!(t[0] > 10000 && t[1] < 0 && t[HALF - 1].abs() < 20, "{t:?}");
    }

    #[test]
    fn voice_band_tones_pass_down_and_up() {
        for f in [300.0, 1000.0, 3000.0] {
            let x = tone(f, 16000.0, 3200, 10000.0);
            let mut d = Downsampler::new();
            let mut y = Vec::new();
            assert_eq!(d.process(&x, &mut y), 1600);
            let want = tone(f, 8000.0, 1600, 10000.0);
            let s = snr(&want[100..1500], &y[100..], 0..40);
            assert!(s > 30.0, "down {f} Hz: {s:.1} dB");

            let mut u = Upsampler::new();
            let mut z = Vec::new();
            assert_eq!(u.process(&want, &mut z), 3200);
            let s = snr(&x[200..3000], &z[200..], 0..80);
            assert!(s > 30.0, "up {f} Hz: {s:.1} dB");
        }
    }

    #[test]
    fn above_4k_is_rejected_not_aliased() {
        // 6 kHz at 16 kHz would alias to 2 kHz at 8 kHz without the filter.
        let x = tone(6000.0, 16000.0, 3200, 20000.0);
        let mut d = Downsampler::new();
        let mut y = Vec::new();
        d.process(&x, &mut y);
        let ratio = rms(&y[100..]) / rms(&x);
        assert!(ratio < 0.003, "6 kHz leaks at {ratio}");
        // the images of an 8 kHz tone of 1 kHz (7 kHz at 16 kHz) are removed too
        let mut u = Upsampler::new();
        let mut z = Vec::new();
        u.process(&tone(1000.0, 8000.0, 1600, 20000.0), &mut z);
        let clean = tone(1000.0, 16000.0, 3200, 20000.0);
        assert!(snr(&clean[200..3000], &z[200..], 0..80) > 30.0);
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_output() {
        let x = tone(1234.0, 16000.0, 2001, 12000.0);
        let mut whole = Vec::new();
        Downsampler::new().process(&x, &mut whole);
        let mut d = Downsampler::new();
        let mut parts = Vec::new();
        for c in x.chunks(7) {
            d.process(c, &mut parts);
        }
        assert_eq!(whole, parts);
        assert_eq!(whole.len(), 1000);

        let mut whole = Vec::new();
        Upsampler::new().process(&x[..999], &mut whole);
        let mut u = Upsampler::new();
        let mut parts = Vec::new();
        for c in x[..999].chunks(500) {
            u.process(c, &mut parts);
        }
        assert_eq!(whole, parts);
    }

    #[test]
    fn full_scale_saturates() {
        let x: Vec<i16> = (0..2000)
            .map(|i| if (i / 3) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let mut y = Vec::new();
        Downsampler::new().process(&x, &mut y);
        let mut z = Vec::new();
        Upsampler::new().process(&x, &mut z);
        assert_eq!(z.len(), 4000);
    }
}
