//! Per-leg session logic: symmetric-RTP latching with an RTP-bleed guard, and the per-leg quality
//! state fed by the RTP/RTCP passing through. Sans-IO: no sockets, no clock reads.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::quality::{self, QualityInput, RtpHeader, RtpReceiver};
use super::rtcp::{self, RtcpPacket};
use crate::dataplane::LegStats;

/// RTP or RTCP socket of a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Rtp = 0,
    Rtcp = 1,
}

/// Why a received packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The leg has no `set_remote` yet, so no source can be trusted.
    NotReady,
    /// The source is neither the latched nor (in the latch window) an acceptable new one:
    /// RTP-bleed guard / strict source.
    ForeignSource,
}

/// How many packets after the first one may still move the latch (the "learning" window).
pub(crate) const LATCH_PACKETS: u32 = 10;
/// How long after the first packet the latch may still move.
pub(crate) const LATCH_TIME: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    /// No `set_remote` yet.
    Unarmed,
    /// Open: the next packets may set the latch. `first` is when the first packet came.
    Open {
        first: Option<Instant>,
        left: u32,
    },
    Closed,
}

/// Symmetric RTP latching (the "comedia" behaviour of RFC 4961 symmetric RTP, applied by the
/// relay to endpoints behind NAT), guarded against RTP Bleed.
///
/// Rules, per socket (RTP and RTCP latch separately):
/// 1. Before the first `set_remote`, nothing is accepted (a port nobody signalled is not leaked).
/// 2. `strict`: only the signalled address is accepted.
/// 3. After `set_remote` the window is open: the latch follows the source of the packets that
///    arrive, until `LATCH_PACKETS` packets or `LATCH_TIME` after the first one. Once media came
///    from the exact signalled address the latch sticks to it (a third party cannot steal it even
///    inside the window).
/// 4. Window closed: only the latched source is accepted; others are dropped and counted.
///    A new `set_remote` re-opens the window (re-offer).
#[derive(Clone, Debug)]
pub(crate) struct Latch {
    expected: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    window: Window,
}

impl Default for Latch {
    fn default() -> Self {
        Latch {
            expected: None,
            latched: None,
            window: Window::Unarmed,
        }
    }
}

impl Latch {
    /// New signalled address (SDP): re-opens the latch window. If the address changed, the old
    /// latch is forgotten so media goes to the new address until the new source latches.
    pub fn set_expected(&mut self, addr: SocketAddr) {
        if self.expected != Some(addr) {
            self.latched = None;
        }
        self.expected = Some(addr);
        self.window = Window::Open {
            first: None,
            left: LATCH_PACKETS,
        };
    }

    /// Decide whether a packet from `src` is accepted, updating the latch.
    pub fn accept(
        &mut self,
        src: SocketAddr,
        now: Instant,
        strict: bool,
    ) -> Result<(), DropReason> {
        if self.window == Window::Unarmed {
            return Err(DropReason::NotReady);
        }
        if strict {
            if self.expected == Some(src) {
                self.latched = Some(src);
                return Ok(());
            }
            return Err(DropReason::ForeignSource);
        }
        if let Window::Open { first, left } = &mut self.window {
            let f = *first.get_or_insert(now);
            if *left == 0 || now.saturating_duration_since(f) > LATCH_TIME {
                self.window = Window::Closed;
            } else {
                *left -= 1;
                let sticky = self.latched.is_some() && self.latched == self.expected;
                if !sticky {
                    self.latched = Some(src);
                }
                return if self.latched == Some(src) {
                    Ok(())
                } else {
                    Err(DropReason::ForeignSource)
                };
            }
        }
        match self.latched {
            Some(l) if l == src => Ok(()),
            None if self.expected == Some(src) => {
                self.latched = Some(src);
                Ok(())
            }
            _ => Err(DropReason::ForeignSource),
        }
    }

    /// Where media for this leg's peer goes: the latched source, else the signalled address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.expected)
    }

    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// The source this latch accepts once it can no longer move: latched and the learning
    /// window closed, or latched to the signalled address (sticky; the only one in strict
    /// mode). `None` while the latch may still follow another source.
    pub fn settled(&self, strict: bool) -> Option<SocketAddr> {
        let l = self.latched?;
        let sticky = Some(l) == self.expected && self.window != Window::Unarmed;
        let fixed = if strict {
            sticky
        } else {
            sticky || self.window == Window::Closed
        };
        fixed.then_some(l)
    }
}

/// What the far end reported about the media it receives from the relay on this leg.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RemoteReport {
    fraction_lost: Option<f64>,
    cumulative_lost: Option<i64>,
    jitter_units: Option<u32>,
    rtt: Option<Duration>,
    xr_mos: Option<f64>,
}

const SR_RING: usize = 4;

/// Per-leg counters and quality.
#[derive(Clone, Debug)]
pub(crate) struct LegState {
    pub latch: [Latch; 2],
    pub rx: RtpReceiver,
    pub rtp_in: u64,
    pub rtp_bytes_in: u64,
    pub rtp_out: u64,
    pub rtp_bytes_out: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    pub dropped: u64,
    pub last_pt: u8,
    pub remote: RemoteReport,
    /// SRs forwarded out of this leg: (NTP middle 32 bits, when). An RR coming back on this leg
    /// that echoes one as LSR gives the relay<->endpoint round-trip time.
    sent_srs: [(u32, Option<Instant>); SR_RING],
    sr_next: u8,
    /// Clock-rate overrides for dynamic payload types (set by control from SDP rtpmap).
    rates: [(u8, u32); 4],
}

impl Default for LegState {
    fn default() -> Self {
        LegState {
            latch: [Latch::default(), Latch::default()],
            rx: RtpReceiver::default(),
            rtp_in: 0,
            rtp_bytes_in: 0,
            rtp_out: 0,
            rtp_bytes_out: 0,
            rtcp_in: 0,
            rtcp_out: 0,
            dropped: 0,
            last_pt: 0,
            remote: RemoteReport::default(),
            sent_srs: [(0, None); SR_RING],
            sr_next: 0,
            rates: [(255, 0); 4],
        }
    }
}

impl LegState {
    /// Set clock rates for payload types (up to 4 are kept; later ones replace older).
    pub fn set_clock_rates(&mut self, rates: &[(u8, u32)]) {
        self.rates = [(255, 0); 4];
        for (slot, &(pt, r)) in self.rates.iter_mut().zip(rates.iter()) {
            *slot = (pt & 0x7f, r);
        }
    }

    pub(crate) fn clock_rate(&self, pt: u8) -> u32 {
        for &(p, r) in &self.rates {
            if p == pt && r > 0 {
                return r;
            }
        }
        quality::static_clock_rate(pt)
    }

    /// An RTP packet received on this leg (from its endpoint).
    pub fn on_rtp_in(&mut self, data: &[u8], now: Instant) {
        self.rtp_in += 1;
        self.rtp_bytes_in += data.len() as u64;
        if let Some(h) = RtpHeader::parse(data) {
            self.last_pt = h.payload_type;
            let rate = self.clock_rate(h.payload_type);
            self.rx.on_packet(&h, rate, now);
        }
    }

    /// An RTCP packet received on this leg. Returns the NTP middle word of a sender report in it,
    /// which the caller records on the leg the packet leaves from.
    pub fn on_rtcp_in(&mut self, data: &[u8], now: Instant) -> Option<u32> {
        self.rtcp_in += 1;
        let mut sr_mid = None;
        for p in rtcp::packets(data) {
            let blocks = match p {
                RtcpPacket::Sr { ntp, blocks, .. } => {
                    sr_mid = Some(rtcp::ntp_middle(ntp));
                    blocks
                }
                RtcpPacket::Rr { blocks, .. } => blocks,
                RtcpPacket::XrVoip(m) => {
                    if m.mos_lq != 127 && m.mos_lq >= 10 {
                        self.remote.xr_mos = Some(m.mos_lq as f64 / 10.0);
                    }
                    continue;
                }
                RtcpPacket::Other(_) => continue,
            };
            if let Some(b) = blocks.first() {
                self.remote.fraction_lost = Some(b.fraction_lost as f64 / 256.0);
                self.remote.cumulative_lost = Some(b.cumulative_lost as i64);
                self.remote.jitter_units = Some(b.jitter);
                // RFC 3550 section 6.4.1: RTT = A - LSR - DLSR. Here A - LSR is measured by the
                // relay's own clock between forwarding the SR and receiving this report.
                if b.lsr != 0 {
                    if let Some((_, Some(at))) = self
                        .sent_srs
                        .iter()
                        .find(|(m, t)| *m == b.lsr && t.is_some())
                    {
                        let held = quality::dlsr_duration(b.dlsr);
                        if let Some(rtt) = now.saturating_duration_since(*at).checked_sub(held) {
                            self.remote.rtt = Some(rtt);
                        }
                    }
                }
            }
        }
        sr_mid
    }

    /// A sender report with NTP middle word `mid` is being sent out of this leg at `now`.
    pub fn on_sr_out(&mut self, mid: u32, now: Instant) {
        let i = self.sr_next as usize % SR_RING;
        self.sent_srs[i] = (mid, Some(now));
        self.sr_next = ((i + 1) % SR_RING) as u8;
    }

    /// Snapshot for `DataPlane::stats`.
    pub fn snapshot(&self) -> LegStats {
        let rate = self.clock_rate(self.last_pt).max(1) as f64;
        let rtt_ms = self.remote.rtt.map(|d| d.as_secs_f64() * 1000.0);
        let jitter_ms = self.rx.jitter_ms();
        let fraction = self.rx.fraction_lost();
        let mos = (self.rtp_in > 0).then(|| {
            quality::mos(&QualityInput {
                loss: fraction,
                jitter_ms,
                rtt_ms,
            })
        });
        LegStats {
            rtp_packets_in: self.rtp_in,
            rtp_bytes_in: self.rtp_bytes_in,
            rtp_packets_out: self.rtp_out,
            rtp_bytes_out: self.rtp_bytes_out,
            rtcp_packets_in: self.rtcp_in,
            rtcp_packets_out: self.rtcp_out,
            packets_lost: self.rx.lost(),
            fraction_lost: fraction,
            jitter_ms,
            rtt_ms,
            mos,
            latched: self.latch[0].latched(),
            packets_dropped: self.dropped,
            remote_fraction_lost: self.remote.fraction_lost,
            remote_packets_lost: self.remote.cumulative_lost,
            remote_jitter_ms: self.remote.jitter_units.map(|j| j as f64 * 1000.0 / rate),
            remote_mos: self.remote.xr_mos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rtcp::tests::{block, rr, sr};
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unarmed_drops() {
        let mut l = Latch::default();
        let now = Instant::now();
        assert_eq!(
            l.accept(a("1.1.1.1:5"), now, false),
            Err(DropReason::NotReady)
        );
        assert_eq!(l.destination(), None);
    }

    /// What the kernel fast path may take over: only a source that can no longer move.
    #[test]
    fn settled_only_when_the_latch_cannot_move() {
        let t = Instant::now();
        let sdp = a("10.0.0.5:4000");
        let nat = a("203.0.113.7:31000");
        let mut l = Latch::default();
        assert_eq!(l.settled(false), None, "unarmed");
        l.set_expected(sdp);
        assert_eq!(l.settled(false), None, "nothing received yet");
        // NAT source: latched, but may still move while the window is open
        for i in 0..LATCH_PACKETS {
            l.accept(nat, t + Duration::from_millis(20 * i as u64), false)
                .unwrap();
            assert_eq!(
                l.settled(false),
                None,
                "window open after {} packets",
                i + 1
            );
        }
        l.accept(nat, t + Duration::from_millis(220), false)
            .unwrap();
        assert_eq!(l.settled(false), Some(nat), "window closed");
        // a re-offer re-opens the window: not settled until it closes again
        l.set_expected(sdp);
        assert_eq!(l.settled(false), None);
        // media from the exact signalled address sticks at once (cannot be stolen)
        let mut s = Latch::default();
        s.set_expected(sdp);
        s.accept(sdp, t, false).unwrap();
        assert_eq!(s.settled(false), Some(sdp));
        // strict: only the signalled address, once it sent
        let mut st = Latch::default();
        st.set_expected(sdp);
        assert_eq!(st.accept(nat, t, true), Err(DropReason::ForeignSource));
        assert_eq!(st.settled(true), None);
        st.accept(sdp, t, true).unwrap();
        assert_eq!(st.settled(true), Some(sdp));
    }

    #[test]
    fn latches_to_nat_source_then_guards() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_expected(a("10.0.0.5:4000"));
        assert_eq!(l.destination(), Some(a("10.0.0.5:4000")));
        let nat = a("203.0.113.7:31000");
        for i in 0..LATCH_PACKETS {
            assert_eq!(
                l.accept(nat, t + Duration::from_millis(20 * i as u64), false),
                Ok(())
            );
        }
        assert_eq!(l.destination(), Some(nat));
        // Window over (packet budget used): an attacker is dropped, the latch holds.
        let evil = a("198.51.100.9:1234");
        assert_eq!(
            l.accept(evil, t + Duration::from_millis(300), false),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(l.accept(nat, t + Duration::from_millis(320), false), Ok(()));
        assert_eq!(l.destination(), Some(nat));
        // Re-offer with the same address re-opens the window: a new source may latch.
        l.set_expected(a("10.0.0.5:4000"));
        let moved = a("203.0.113.7:31002");
        assert_eq!(l.accept(moved, t + Duration::from_secs(10), false), Ok(()));
        assert_eq!(l.destination(), Some(moved));
    }

    #[test]
    fn window_closes_by_time() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_expected(a("10.0.0.5:4000"));
        let src = a("203.0.113.7:31000");
        assert_eq!(l.accept(src, t, false), Ok(()));
        let other = a("203.0.113.8:31000");
        assert_eq!(
            l.accept(other, t + LATCH_TIME + Duration::from_millis(1), false),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(l.destination(), Some(src));
    }

    #[test]
    fn sdp_address_is_sticky_in_window() {
        let t = Instant::now();
        let mut l = Latch::default();
        let sdp = a("192.0.2.1:4000");
        l.set_expected(sdp);
        assert_eq!(l.accept(sdp, t, false), Ok(()));
        assert_eq!(
            l.accept(a("6.6.6.6:1"), t, false),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(l.destination(), Some(sdp));
    }

    #[test]
    fn strict_only_accepts_sdp() {
        let t = Instant::now();
        let mut l = Latch::default();
        let sdp = a("192.0.2.1:4000");
        l.set_expected(sdp);
        assert_eq!(
            l.accept(a("192.0.2.1:4002"), t, true),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(l.accept(sdp, t, true), Ok(()));
    }

    #[test]
    fn new_address_forgets_latch() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_expected(a("10.0.0.5:4000"));
        l.accept(a("203.0.113.7:31000"), t, false).unwrap();
        l.set_expected(a("10.0.0.6:4000"));
        assert_eq!(l.destination(), Some(a("10.0.0.6:4000")));
    }

    #[test]
    fn rtcp_rr_rtt_and_remote_loss() {
        let t = Instant::now();
        let mut out_leg = LegState::default();
        let mut in_leg = LegState::default();
        // An SR arrives on in_leg and leaves via out_leg.
        let ntp = 0xAAAA_BBBB_CCCC_DDDDu64;
        let mid = in_leg.on_rtcp_in(&sr(1, ntp, &[]), t).unwrap();
        assert_eq!(mid, 0xBBBB_CCCC);
        out_leg.on_sr_out(mid, t);
        // The endpoint answers 130 ms later with an RR: held the SR 50 ms (DLSR), lost 1/4.
        let dlsr = 65536 / 20; // 50 ms
        let report = rr(2, &[block(1, 64, 12, 160, mid, dlsr)]);
        assert_eq!(
            out_leg.on_rtcp_in(&report, t + Duration::from_millis(130)),
            None
        );
        let s = out_leg.snapshot();
        let rtt = s.rtt_ms.unwrap();
        assert!((rtt - 80.0).abs() < 0.1, "{rtt}");
        assert_eq!(s.remote_fraction_lost, Some(0.25));
        assert_eq!(s.remote_packets_lost, Some(12));
        assert_eq!(s.remote_jitter_ms, Some(20.0));
        assert_eq!(s.rtcp_packets_in, 1);
        // No media yet: no MOS.
        assert_eq!(s.mos, None);
    }

    #[test]
    fn mos_present_after_media() {
        let t = Instant::now();
        let mut l = LegState::default();
        let mut p = [0u8; 172];
        p[0] = 0x80;
        for i in 0u16..50 {
            p[2..4].copy_from_slice(&i.to_be_bytes());
            p[4..8].copy_from_slice(&(i as u32 * 160).to_be_bytes());
            l.on_rtp_in(&p, t + Duration::from_millis(20 * i as u64));
        }
        let s = l.snapshot();
        assert_eq!(s.rtp_packets_in, 50);
        assert_eq!(s.rtp_bytes_in, 50 * 172);
        assert_eq!(s.packets_lost, 0);
        assert!(s.mos.unwrap() > 4.3);
    }

    #[test]
    fn dynamic_clock_rate() {
        let t = Instant::now();
        let mut l = LegState::default();
        l.set_clock_rates(&[(111, 48000)]);
        let mut p = [0u8; 60];
        p[0] = 0x80;
        p[1] = 111;
        // 20 ms frames at 48 kHz, all arriving at once: jitter -> 20 ms only if 48 kHz is used.
        for i in 0u16..300 {
            p[2..4].copy_from_slice(&i.to_be_bytes());
            p[4..8].copy_from_slice(&(i as u32 * 960).to_be_bytes());
            l.on_rtp_in(&p, t);
        }
        let j = l.snapshot().jitter_ms;
        assert!((j - 20.0).abs() < 0.1, "{j}");
    }
}
