//! Passive media quality: RTP sequence loss and interarrival jitter computed from the RTP packets
//! themselves (RFC 3550 Appendix A.1, A.3, A.8), and a MOS estimate from a simplified ITU-T G.107
//! E-model. Pure functions and state; time is always an argument.

use std::time::{Duration, Instant};

/// RFC 3550 A.1: "a source is declared valid only after MIN_SEQUENTIAL packets have been received
/// in sequence", and the dropout/misorder limits used to detect restarts.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u8 = 2;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// RTP clock rate of a payload type.
///
/// RFC 3551 section 6, table 4/5: the static audio payload types and their clock rates. Note that
/// G.722 (PT 9) uses an 8000 Hz RTP clock although it samples at 16 kHz ("for historical reasons",
/// RFC 3551 section 4.5.2). Video types use 90 kHz. Dynamic types (96..=127) default to 8000 unless
/// the control side says otherwise.
pub fn static_clock_rate(pt: u8) -> u32 {
    codecs::payload::clock_rate(pt)
}

/// Per-source reception state: RFC 3550 A.1 (`source` struct, `update_seq`) plus the jitter
/// estimator of A.8.
#[derive(Clone, Debug)]
pub struct RtpReceiver {
    ssrc: u32,
    started: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u8,
    received: u64,
    /// A.8: relative transit time of the previous packet, in timestamp units.
    transit: Option<i32>,
    /// A.8 jitter estimate in timestamp units.
    jitter: f64,
    clock_rate: u32,
    /// Reference for converting arrival instants into RTP timestamp units.
    epoch: Option<Instant>,
}

impl Default for RtpReceiver {
    fn default() -> Self {
        RtpReceiver {
            ssrc: 0,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            transit: None,
            jitter: 0.0,
            clock_rate: 8000,
            epoch: None,
        }
    }
}

/// A validated view of the fixed RTP header fields the relay looks at (RFC 3550 section 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Parse the 12-byte fixed header; `None` unless version is 2 and 12 bytes are present.
    pub fn parse(b: &[u8]) -> Option<RtpHeader> {
        let h = b.get(..12)?;
        if h[0] >> 6 != 2 {
            return None;
        }
        Some(RtpHeader {
            payload_type: h[1] & 0x7f,
            seq: u16::from_be_bytes([h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        })
    }
}

impl RtpReceiver {
    /// RFC 3550 A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
    }

    /// Account one RTP packet that arrived at `now` with clock rate `clock_rate`.
    pub fn on_packet(&mut self, h: &RtpHeader, clock_rate: u32, now: Instant) {
        if !self.started || h.ssrc != self.ssrc {
            // A new (or first) synchronization source: start over (RFC 3550 A.1: "a new source
            // ... is placed on probation").
            *self = RtpReceiver {
                ssrc: h.ssrc,
                started: true,
                ..RtpReceiver::default()
            };
            self.init_seq(h.seq);
            self.max_seq = h.seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        if self.update_seq(h.seq) {
            self.update_jitter(h.timestamp, clock_rate, now);
        }
    }

    /// RFC 3550 A.1 `update_seq`; returns whether the packet counts as valid.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            // "packet is in sequence"
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            // "in order, with permissible gap"
            if seq < self.max_seq {
                // "Sequence number wrapped - count another 64K cycle."
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            // "the sequence number made a very large jump"
            if seq as u32 == self.bad_seq {
                // "Two sequential packets -- assume that the other side restarted without
                // telling us so just re-sync"
                self.init_seq(seq);
            } else {
                self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        } else {
            // "duplicate or reordered packet"
        }
        self.received += 1;
        true
    }

    /// RFC 3550 A.8: `D(i-1,i) = (Rj - Ri) - (Sj - Si)`, `J += (|D| - J) / 16`, with the arrival
    /// time `R` expressed in the same units as the RTP timestamp `S`.
    fn update_jitter(&mut self, ts: u32, clock_rate: u32, now: Instant) {
        if clock_rate != self.clock_rate {
            self.clock_rate = clock_rate.max(1);
            self.transit = None;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let since = now.saturating_duration_since(epoch);
        // u64 arithmetic (no 128-bit division): whole seconds, then the sub-second part.
        let rate = self.clock_rate as u64;
        let arrival = (since.as_secs().wrapping_mul(rate)
            + since.subsec_nanos() as u64 * rate / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(ts) as i32;
        if let Some(prev) = self.transit {
            let d = transit.wrapping_sub(prev).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// The synchronization source being received (0 before the first packet).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// What the kernel fast path continues from: (extended highest sequence number, jitter x 16
    /// in timestamp units, clock rate), or `None` before the source is validated.
    pub fn kernel_seed(&self) -> Option<(u32, u32, u32)> {
        if !self.started || self.probation > 0 {
            return None;
        }
        let ext = self.cycles.wrapping_add(self.max_seq as u32);
        Some((ext, (self.jitter * 16.0) as u32, self.clock_rate))
    }

    /// Fold in what the kernel fast path saw since the last call: `received` more packets, the
    /// extended highest sequence number and jitter (x 16) it keeps (see `kernel_seed`).
    pub fn kernel_update(&mut self, ext_max: u32, received: u64, jitter16: u32) {
        self.received += received;
        if !self.started || self.probation > 0 {
            return;
        }
        self.cycles = ext_max & 0xffff_0000;
        self.max_seq = ext_max as u16;
        self.jitter = jitter16 as f64 / 16.0;
        // the kernel measured transit against its own clock: start over on the next packet
        self.transit = None;
    }

    /// RFC 3550 A.3: `extended_max = cycles + max_seq; expected = extended_max - base_seq + 1`.
    pub fn expected(&self) -> u64 {
        if !self.started || self.probation > 0 {
            return 0;
        }
        let ext_max = self.cycles as u64 + self.max_seq as u64;
        (ext_max + 1).saturating_sub(self.base_seq as u64)
    }

    /// RFC 3550 A.3: `lost = expected - received` (negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Cumulative fraction lost over the whole stream, clamped to 0.0..=1.0.
    pub fn fraction_lost(&self) -> f64 {
        let e = self.expected();
        if e == 0 {
            return 0.0;
        }
        (self.lost() as f64 / e as f64).clamp(0.0, 1.0)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / self.clock_rate.max(1) as f64
    }

    /// Jitter in timestamp units, as carried in RTCP report blocks.
    pub fn jitter_units(&self) -> u32 {
        self.jitter as u32
    }
}

/// Inputs of the simplified E-model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QualityInput {
    /// Packet loss, 0.0..=1.0.
    pub loss: f64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Round-trip time, ms, when known.
    pub rtt_ms: Option<f64>,
}

/// ITU-T G.107 default basic signal-to-noise ratio minus the default simultaneous impairment
/// (Ro - Is with all defaults) gives R = 93.2 for a perfect connection.
const R_DEFAULT: f64 = 93.2;
/// G.113 Appendix I: packet-loss robustness factor of G.711 with packet loss concealment.
const BPL_G711_PLC: f64 = 25.1;
/// Equipment impairment of G.711 (G.113): 0.
const IE_G711: f64 = 0.0;
/// Assumed fixed one-way delay when no RTT is known: packetization (20 ms) plus a small network
/// share, in ms.
const BASE_DELAY_MS: f64 = 20.0;

/// R factor from a simplified ITU-T G.107 E-model: `R = 93.2 - Id - Ie_eff`.
///
/// * `Id` (delay impairment) uses the common simplification of G.107's delay terms
///   (Cole & Rosenbluth): `Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)` where `d` is the
///   one-way mouth-to-ear delay in ms, estimated as RTT/2 + 2 x jitter (jitter buffer) +
///   20 ms packetization.
/// * `Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)` (G.107 section 7.4, equation 7-29) with
///   G.711+PLC values `Ie = 0`, `Bpl = 25.1`, random loss (`BurstR = 1`), `Ppl` in percent.
pub fn r_factor(q: &QualityInput) -> f64 {
    let d = q.rtt_ms.unwrap_or(0.0).max(0.0) / 2.0 + 2.0 * q.jitter_ms.max(0.0) + BASE_DELAY_MS;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = (q.loss.clamp(0.0, 1.0)) * 100.0;
    let ie_eff = IE_G711 + (95.0 - IE_G711) * ppl / (ppl + BPL_G711_PLC);
    R_DEFAULT - id - ie_eff
}

/// G.107 Annex B (equation B-4): MOS_CQE from R.
/// `MOS = 1` for R < 0, `4.5` for R > 100, else `1 + 0.035 R + R (R - 60)(100 - R) 7e-6`.
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6).clamp(1.0, 4.5)
    }
}

/// MOS estimate for the given loss/jitter/RTT.
pub fn mos(q: &QualityInput) -> f64 {
    mos_from_r(r_factor(q))
}

/// Convert an RTCP "delay since last SR" (units of 1/65536 s, RFC 3550 section 6.4.1) to a
/// duration.
pub fn dlsr_duration(dlsr: u32) -> Duration {
    Duration::from_nanos((dlsr as u64 * 1_000_000_000) >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            payload_type: 0,
            seq,
            timestamp: ts,
            ssrc: 0x1234,
        }
    }

    #[test]
    fn parse_header() {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = 0x88; // marker + PT 8
        p[2..4].copy_from_slice(&513u16.to_be_bytes());
        p[4..8].copy_from_slice(&7u32.to_be_bytes());
        p[8..12].copy_from_slice(&9u32.to_be_bytes());
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!((h.payload_type, h.seq, h.timestamp, h.ssrc), (8, 513, 7, 9));
        assert!(RtpHeader::parse(&p[..11]).is_none());
        p[0] = 0x40;
        assert!(RtpHeader::parse(&p).is_none());
    }

    #[test]
    fn loss_counts_gaps() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::default();
        let mut n = 0;
        for seq in 0u16..100 {
            if seq % 10 == 5 {
                continue; // 10 gaps
            }
            n += 1;
            r.on_packet(
                &hdr(seq, seq as u32 * 160),
                8000,
                t0 + Duration::from_millis(20 * seq as u64),
            );
        }
        assert_eq!(n, 90);
        // Probation swallows the first packet: base is seq 1, max 99 => 99 expected.
        assert_eq!(r.expected(), 99);
        assert_eq!(r.received(), 89);
        assert_eq!(r.lost(), 10);
        assert!((r.fraction_lost() - 10.0 / 99.0).abs() < 1e-9);
        // Perfectly paced: no jitter.
        assert!(r.jitter_ms() < 0.01, "jitter {}", r.jitter_ms());
    }

    #[test]
    fn sequence_wrap_is_not_loss() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::default();
        for i in 0u32..200 {
            let seq = (65500 + i) as u16;
            r.on_packet(
                &hdr(seq, i * 160),
                8000,
                t0 + Duration::from_millis(20 * i as u64),
            );
        }
        assert_eq!(r.lost(), 0);
        assert_eq!(r.expected(), 199);
    }

    #[test]
    fn duplicates_make_loss_negative_and_fraction_zero() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::default();
        for i in 0u16..10 {
            r.on_packet(&hdr(i, i as u32 * 160), 8000, t0);
            r.on_packet(&hdr(i, i as u32 * 160), 8000, t0);
        }
        assert!(r.lost() < 0);
        assert_eq!(r.fraction_lost(), 0.0);
    }

    #[test]
    fn ssrc_change_restarts() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::default();
        for i in 0u16..50 {
            r.on_packet(&hdr(i, 0), 8000, t0);
        }
        let mut h = hdr(40000, 0);
        h.ssrc = 99;
        r.on_packet(&h, 8000, t0);
        h.seq = 40001;
        r.on_packet(&h, 8000, t0);
        assert_eq!(r.received(), 1);
        assert_eq!(r.lost(), 0);
    }

    #[test]
    fn jitter_converges_to_arrival_variation() {
        // Timestamps advance 20 ms per packet; arrivals alternate 15 ms and 25 ms apart, so every
        // |D| is 5 ms = 40 units; the A.8 estimator converges to 5 ms.
        let t0 = Instant::now();
        let mut r = RtpReceiver::default();
        let mut at = t0;
        for i in 0u32..400 {
            r.on_packet(&hdr(i as u16, i * 160), 8000, at);
            at += Duration::from_millis(if i % 2 == 0 { 15 } else { 25 });
        }
        assert!(
            (r.jitter_ms() - 5.0).abs() < 0.05,
            "jitter {}",
            r.jitter_ms()
        );
        assert!((r.jitter_units() as i64 - 40).abs() <= 1);
    }

    #[test]
    fn jitter_uses_clock_rate() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::default();
        // 90 kHz video clock, burst arrival (all at once) with 3000-unit timestamp steps:
        // |D| = 3000 units = 33.3 ms each.
        for i in 0u32..300 {
            r.on_packet(&hdr(i as u16, i * 3000), 90000, t0);
        }
        assert!((r.jitter_ms() - 33.333).abs() < 0.1, "{}", r.jitter_ms());
    }

    #[test]
    fn static_rates() {
        assert_eq!(static_clock_rate(0), 8000);
        assert_eq!(static_clock_rate(8), 8000);
        assert_eq!(static_clock_rate(9), 8000);
        assert_eq!(static_clock_rate(18), 8000);
        assert_eq!(static_clock_rate(6), 16000);
        assert_eq!(static_clock_rate(26), 90000);
        assert_eq!(static_clock_rate(101), 8000);
    }

    #[test]
    fn mos_perfect_and_degraded() {
        let perfect = mos(&QualityInput::default());
        assert!(perfect > 4.3 && perfect <= 4.5, "{perfect}");
        let m1 = mos(&QualityInput {
            loss: 0.01,
            ..Default::default()
        });
        let m5 = mos(&QualityInput {
            loss: 0.05,
            ..Default::default()
        });
        let m20 = mos(&QualityInput {
            loss: 0.20,
            ..Default::default()
        });
        assert!(
            perfect > m1 && m1 > m5 && m5 > m20,
            "{perfect} {m1} {m5} {m20}"
        );
        // G.711+PLC at 5 % random loss: Ie_eff = 95*5/(5+25.1) = 15.8 => R ~ 77 => MOS ~ 3.9.
        assert!((m5 - 3.9).abs() < 0.1, "{m5}");
        let slow = mos(&QualityInput {
            rtt_ms: Some(600.0),
            ..Default::default()
        });
        assert!(slow < 4.0, "{slow}");
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
    }

    #[test]
    fn dlsr_units() {
        assert_eq!(dlsr_duration(65536), Duration::from_secs(1));
        assert_eq!(dlsr_duration(32768), Duration::from_millis(500));
    }
}
