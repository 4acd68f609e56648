//! DTMF in band: the dual tones of ITU-T Q.23 generated from RFC 4733 events, and detected in
//! linear PCM (Q.24) to become events again.
//!
//! Q.23 §2: each digit is one frequency of the low group (697, 770, 852, 941 Hz) and one of
//! the high group (1209, 1336, 1477, 1633 Hz) sent together. RFC 4733 §3.2 numbers the events:
//! 0-9 the digits, 10 `*`, 11 `#`, 12-15 A-D.
//!
//! The detector runs the Goertzel algorithm for the eight frequencies over blocks of 205
//! samples at 8 kHz (25.6 ms; 410 at 16 kHz) and takes a block as a digit when the strongest
//! frequency of each group stands out: together at least 60 % of the block's power, each
//! group's runner-up 8 dB below it, and the twist (high group against low) between -8 dB and
//! +4 dB (Q.24 Table 1's common limits). A digit starts after two blocks agree and ends after
//! two blocks without it (Q.24 §4: tones of 40 ms and more are recognised; pauses of 40 ms
//! separate digits).

const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad layout: `[low][high]` → RFC 4733 event code.
const KEYS: [[u8; 4]; 4] = [[1, 2, 3, 12], [4, 5, 6, 13], [7, 8, 9, 14], [10, 0, 11, 15]];
/// Amplitude of a sine at 0 dBm0 in 16-bit PCM (G.711's 0 dBm0 is 3.17 dB below full scale).
const ZERO_DBM0: f64 = 22_670.0;

/// The two frequencies of DTMF event `event` (0-15), `None` for other events.
pub fn frequencies(event: u8) -> Option<(f64, f64)> {
    for (r, row) in KEYS.iter().enumerate() {
        if let Some(c) = row.iter().position(|&k| k == event) {
            return Some((LOW[r], HIGH[c]));
        }
    }
    None
}

/// Append `n` samples at `rate` Hz of event `event`'s dual tone, each frequency at `-volume`
/// dBm0 (RFC 4733 §2.3.4; 0-63), starting `start` samples into the tone (phase-continuous
/// across calls). Events without a tone append silence.
pub fn generate(event: u8, volume: u8, rate: u32, start: u64, n: usize, out: &mut Vec<i16>) {
    let Some((f1, f2)) = frequencies(event) else {
        out.extend(std::iter::repeat_n(0, n));
        return;
    };
    let a = ZERO_DBM0 * 10f64.powf(-f64::from(volume.min(63)) / 20.0);
    let (w1, w2) = (
        2.0 * std::f64::consts::PI * f1 / f64::from(rate),
        2.0 * std::f64::consts::PI * f2 / f64::from(rate),
    );
    out.extend((0..n as u64).map(|i| {
        let t = (start + i) as f64;
        (a * ((w1 * t).sin() + (w2 * t).sin())).clamp(-32768.0, 32767.0) as i16
    }));
}

/// What [`Detector::process`] saw change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A digit (RFC 4733 event code) began.
    Start(u8),
    /// The digit that was on ended.
    Stop(u8),
}

/// Q.24 DTMF detection over a stream of linear PCM. See the module documentation.
#[derive(Clone, Debug)]
pub struct Detector {
    block: usize,
    coef: [f64; 8],
    s: [(f64, f64); 8],
    energy: f64,
    n: usize,
    /// The last block's digit, the digit on now, blocks without it.
    last: Option<u8>,
    on: Option<u8>,
    misses: u8,
}

impl Detector {
    /// A detector for PCM at `rate` Hz (8000 or 16000).
    pub fn new(rate: u32) -> Detector {
        let block = (205 * rate as usize / 8000).max(1);
        let mut coef = [0f64; 8];
        for (c, f) in coef.iter_mut().zip(LOW.iter().chain(&HIGH)) {
            *c = 2.0 * (2.0 * std::f64::consts::PI * f / f64::from(rate)).cos();
        }
        Detector {
            block,
            coef,
            s: [(0.0, 0.0); 8],
            energy: 0.0,
            n: 0,
            last: None,
            on: None,
            misses: 0,
        }
    }

    /// The digit on now.
    pub fn current(&self) -> Option<u8> {
        self.on
    }

    /// Feed `pcm`; calls `change` for every start and stop found in it, in order.
    pub fn process(&mut self, pcm: &[i16], mut change: impl FnMut(Change)) {
        for &x in pcm {
            let x = f64::from(x);
            self.energy += x * x;
            for (s, c) in self.s.iter_mut().zip(&self.coef) {
                let v = x + c * s.0 - s.1;
                s.1 = s.0;
                s.0 = v;
            }
            self.n += 1;
            if self.n == self.block {
                let d = self.decide();
                self.step(d, &mut change);
                self.s = [(0.0, 0.0); 8];
                self.energy = 0.0;
                self.n = 0;
            }
        }
    }

    /// The digit of the block just complete, if it is one.
    fn decide(&self) -> Option<u8> {
        // a block quieter than about -40 dBm0 is silence
        let floor = (ZERO_DBM0 / 100.0).powi(2) / 2.0 * self.block as f64;
        if self.energy < floor {
            return None;
        }
        let mut p = [0f64; 8];
        for ((o, s), c) in p.iter_mut().zip(&self.s).zip(&self.coef) {
            // |X(k)|² of the Goertzel filter, normalised to the block's power: a lone sine
            // at the frequency gives 1.0
            let m = s.0 * s.0 + s.1 * s.1 - c * s.0 * s.1;
            *o = 2.0 * m / (self.energy * self.block as f64);
        }
        let best = |g: &[f64]| {
            let (i, &v) = g
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((0, &0.0));
            let second = g
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, &x)| x)
                .fold(0.0, f64::max);
            (i, v, second)
        };
        let (r, pr, r2) = best(&p[..4]);
        let (c, pc, c2) = best(&p[4..]);
        let db8 = 10f64.powf(0.8);
        let strong = pr + pc > 0.6;
        let alone = r2 * db8 < pr && c2 * db8 < pc;
        // twist: high group at most 4 dB above the low one, at most 8 dB below it
        let twist = pc <= pr * 10f64.powf(0.4) && pc * db8 >= pr;
        (strong && alone && twist).then(|| KEYS[r][c])
    }

    fn step(&mut self, d: Option<u8>, change: &mut impl FnMut(Change)) {
        match self.on {
            Some(on) if d == Some(on) => self.misses = 0,
            Some(on) => {
                self.misses += 1;
                if self.misses >= 2 {
                    change(Change::Stop(on));
                    self.on = None;
                    self.misses = 0;
                }
            }
            None => {
                if d.is_some() && d == self.last {
                    self.on = d;
                    self.misses = 0;
                    if let Some(k) = d {
                        change(Change::Start(k));
                    }
                }
            }
        }
        self.last = d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(pcm: &[i16], rate: u32) -> Vec<Change> {
        let mut d = Detector::new(rate);
        let mut v = Vec::new();
        for chunk in pcm.chunks(160) {
            d.process(chunk, |c| v.push(c));
        }
        v
    }

    fn digits(seq: &[u8], rate: u32, on_ms: usize, off_ms: usize, volume: u8) -> Vec<i16> {
        let per_ms = rate as usize / 1000;
        let mut pcm = vec![0i16; off_ms * per_ms];
        for &e in seq {
            generate(e, volume, rate, 0, on_ms * per_ms, &mut pcm);
            pcm.extend(std::iter::repeat_n(0, off_ms * per_ms));
        }
        pcm
    }

    #[test]
    fn every_digit_is_found_at_8k_and_16k() {
        let all: Vec<u8> = (0..16).collect();
        for rate in [8000, 16000] {
            let got = detect(&digits(&all, rate, 100, 60, 10), rate);
            let starts: Vec<u8> = got
                .iter()
                .filter_map(|c| match c {
                    Change::Start(k) => Some(*k),
                    _ => None,
                })
                .collect();
            assert_eq!(starts, all, "{rate} Hz: {got:?}");
            assert_eq!(got.len(), 32, "each digit starts and stops: {got:?}");
        }
    }

    #[test]
    fn short_quiet_and_non_dtmf_sounds_are_not_digits() {
        // 20 ms is shorter than two blocks
        assert!(detect(&digits(&[5], 8000, 20, 60, 10), 8000).is_empty());
        // far too quiet
        assert!(detect(&digits(&[5], 8000, 100, 60, 50), 8000).is_empty());
        // a single 1 kHz tone, speech-like noise, silence
        let tone: Vec<i16> = (0..8000)
            .map(|i| {
                (9000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        assert!(detect(&tone, 8000).is_empty());
        let mut x: u32 = 7;
        let noise: Vec<i16> = (0..16000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 4
            })
            .collect();
        assert!(detect(&noise, 8000).is_empty());
        assert!(detect(&[0; 8000], 8000).is_empty());
    }

    #[test]
    fn digits_survive_g711() {
        let pcm = digits(&[1, 9, 11], 8000, 80, 50, 10);
        let mut coded = vec![0u8; pcm.len()];
        crate::g711::encode_alaw(&pcm, &mut coded);
        let mut back = vec![0i16; pcm.len()];
        crate::g711::decode_alaw(&coded, &mut back);
        let got = detect(&back, 8000);
        assert_eq!(got[0], Change::Start(1));
        assert_eq!(got[2], Change::Start(9));
        assert_eq!(got[4], Change::Start(11));
    }

    #[test]
    fn generation_is_phase_continuous_and_events_without_tone_are_silent() {
        let mut whole = Vec::new();
        generate(3, 10, 8000, 0, 320, &mut whole);
        let mut parts = Vec::new();
        generate(3, 10, 8000, 0, 160, &mut parts);
        generate(3, 10, 8000, 160, 160, &mut parts);
        assert_eq!(whole, parts);
        let mut flash = Vec::new();
        generate(16, 10, 8000, 0, 80, &mut flash);
        assert!(flash.iter().all(|&s| s == 0));
        assert_eq!(frequencies(0), Some((941.0, 1336.0)));
        assert_eq!(frequencies(12), Some((697.0, 1633.0)));
    }
}
