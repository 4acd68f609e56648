//! Per-leg session logic: symmetric-RTP latching with an RTP-bleed guard, and the per-leg quality
//! state fed by the RTP/RTCP passing through. Sans-IO: no sockets, no clock reads.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::quality::{self, QualityInput, RtpHeader, RtpReceiver};
use super::rtcp::{self, RtcpPacket};
use crate::dataplane::LegStats;

/// RTP or RTCP socket of a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rtp = 0,
    Rtcp = 1,
}

/// Why a received packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The leg has no `set_remote` yet, so no source can be trusted.
    NotReady,
    /// The source is neither the learned one nor one that may be learned (another IP than the
    /// signalled media address and the leg's signalling source): RTP-bleed guard / strict
    /// source.
    ForeignSource,
    /// A source from the leg's signalling IP that has not yet passed sequence probation.
    Probation,
}

/// How many consecutive in-sequence RTP packets (one SSRC, one source address) a source other
/// than the signalled address must send before it is learned (RFC 3550 A.1 probation; the RFC's
/// `MIN_SEQUENTIAL` is 2, one more here because a learned source receives the other leg's
/// media). Its packets are dropped until then.
pub const PROBATION: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No `set_remote` yet.
    Unarmed,
    /// Signalled; the media source is not learned (or a re-offer re-opened learning).
    Learning,
    /// The source is learned: only it is accepted until the next `set_remote`.
    Learned,
}

/// A source in sequence probation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    src: SocketAddr,
    ssrc: u32,
    seq: u16,
    count: u8,
}

/// What the latch may judge a packet from a not yet learned source by.
#[derive(Clone, Copy, Debug)]
pub enum Evidence<'a> {
    /// A packet on the RTP socket: its RTP header (sequence probation).
    Rtp(&'a [u8]),
    /// A packet on the RTCP socket, and the IP the leg's RTP source was learned from, if it
    /// was: RTCP is learned from that IP only (it has no sequence to probe).
    Rtcp(Option<IpAddr>),
}

/// Source learning ("latching", symmetric RTP for endpoints behind NAT, RFC 4961), safe by
/// default against RTP Bleed.
///
/// Rules, per socket (RTP and RTCP learn separately):
/// 1. Before the first `set_remote`, nothing is accepted (a port nobody signalled is not leaked).
/// 2. `strict`: only the signalled address is accepted.
/// 3. Otherwise a source is learned when it is exactly the signalled address (at once), or when
///    it comes from the IP address of the leg's *signalling* source (a NATed endpoint: same
///    public IP as its SIP, another port than its SDP says) and passes sequence probation
///    ([`PROBATION`] consecutive in-sequence RTP packets, one SSRC; RTCP: from the IP its RTP
///    was learned from). Packets in probation are dropped, and the other leg's media goes to
///    the signalled address until a source is learned: a source on any other IP never gets or
///    injects a packet.
/// 4. Learned: only that source is accepted; others are dropped and counted.
///    A new `set_remote` re-opens learning (re-offer): the old source keeps flowing meanwhile
///    and is learned again by probation, or a new one replaces it by the same rules.
#[derive(Clone, Debug)]
pub struct Latch {
    expected: Option<SocketAddr>,
    /// The IP the leg's endpoint signals from, when the control side knows it.
    signalling: Option<IpAddr>,
    latched: Option<SocketAddr>,
    state: State,
    cand: Option<Candidate>,
}

impl Default for Latch {
    fn default() -> Self {
        Latch {
            expected: None,
            signalling: None,
            latched: None,
            state: State::Unarmed,
            cand: None,
        }
    }
}

/// SSRC and sequence number of an RTP packet (version 2, not RTCP), if `data` is one.
fn rtp_seq(data: &[u8]) -> Option<(u32, u16)> {
    if data.len() < 12 || data[0] >> 6 != 2 || rtcp::is_rtcp(data) {
        return None;
    }
    let seq = u16::from_be_bytes([data[2], data[3]]);
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    Some((ssrc, seq))
}

impl Latch {
    /// New signalled address (SDP) and the leg's signalling source IP (`None`: unknown; only
    /// the signalled address can then be learned). Re-opens learning; if the address changed,
    /// the old source is forgotten so media goes to the new address until a source is learned.
    pub fn set_expected(&mut self, addr: SocketAddr, signalling: Option<IpAddr>) {
        if self.expected != Some(addr) {
            self.latched = None;
        }
        self.expected = Some(addr);
        // an IPv4-mapped IPv6 address is the IPv4 address it maps
        self.signalling = signalling.map(|ip| ip.to_canonical());
        self.cand = None;
        self.state = if self.latched.is_some() && self.latched == self.expected {
            State::Learned
        } else {
            State::Learning
        };
    }

    fn learn(&mut self, src: SocketAddr) -> Result<(), DropReason> {
        self.latched = Some(src);
        self.state = State::Learned;
        self.cand = None;
        Ok(())
    }

    /// Decide whether a packet from `src` is accepted, updating what is learned.
    #[inline]
    pub fn accept(
        &mut self,
        src: SocketAddr,
        ev: Evidence<'_>,
        strict: bool,
    ) -> Result<(), DropReason> {
        // Every packet of a call in progress: its learned source (also in strict mode, where
        // only the signalled address is ever learned).
        if self.state == State::Learned && self.latched == Some(src) {
            return Ok(());
        }
        self.judge(src, ev, strict)
    }

    fn judge(&mut self, src: SocketAddr, ev: Evidence<'_>, strict: bool) -> Result<(), DropReason> {
        match self.state {
            State::Unarmed => return Err(DropReason::NotReady),
            _ if strict => {
                return if self.expected == Some(src) {
                    self.learn(src)
                } else {
                    Err(DropReason::ForeignSource)
                };
            }
            State::Learned => {
                return if self.latched == Some(src) {
                    Ok(())
                } else {
                    Err(DropReason::ForeignSource)
                };
            }
            State::Learning => {}
        }
        if self.expected == Some(src) {
            return self.learn(src);
        }
        // The source learned before a re-offer keeps flowing while it is probed again.
        let old = self.latched == Some(src);
        let pending = if old {
            Ok(())
        } else {
            Err(DropReason::Probation)
        };
        match ev {
            Evidence::Rtcp(rtp_ip) => {
                if rtp_ip == Some(src.ip()) {
                    self.learn(src)
                } else if old {
                    Ok(())
                } else if self.signalling == Some(src.ip().to_canonical()) {
                    Err(DropReason::Probation)
                } else {
                    Err(DropReason::ForeignSource)
                }
            }
            Evidence::Rtp(data) => {
                if !old && self.signalling != Some(src.ip().to_canonical()) {
                    return Err(DropReason::ForeignSource);
                }
                let Some((ssrc, seq)) = rtp_seq(data) else {
                    return pending;
                };
                let next = match self.cand {
                    Some(c) if c.src == src && c.ssrc == ssrc && seq == c.seq.wrapping_add(1) => {
                        Candidate {
                            seq,
                            count: c.count.saturating_add(1),
                            ..c
                        }
                    }
                    _ => Candidate {
                        src,
                        ssrc,
                        seq,
                        count: 1,
                    },
                };
                if next.count >= PROBATION {
                    return self.learn(src);
                }
                self.cand = Some(next);
                pending
            }
        }
    }

    /// Where media for this leg's peer goes: the learned source, else the signalled address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.expected)
    }

    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// The source this latch accepts once it can no longer move: learned (in strict mode, the
    /// signalled address). `None` while learning.
    pub fn settled(&self, strict: bool) -> Option<SocketAddr> {
        let l = self.latched?;
        let fixed = self.state == State::Learned && (!strict || Some(l) == self.expected);
        fixed.then_some(l)
    }
}

/// What the far end reported about the media it receives from the relay on this leg.
#[derive(Clone, Copy, Debug, Default)]
pub struct RemoteReport {
    fraction_lost: Option<f64>,
    cumulative_lost: Option<i64>,
    jitter_units: Option<u32>,
    rtt: Option<Duration>,
    xr_mos: Option<f64>,
}

const SR_RING: usize = 4;

/// Per-leg counters and quality.
#[derive(Clone, Debug)]
pub struct LegState {
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

    pub fn clock_rate(&self, pt: u8) -> u32 {
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

    fn pkt(seq: u16, ssrc: u32) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn rtp(l: &mut Latch, src: SocketAddr, seq: u16, ssrc: u32) -> Result<(), DropReason> {
        l.accept(src, Evidence::Rtp(&pkt(seq, ssrc)), false)
    }

    const SIG: &str = "203.0.113.7";

    fn sig() -> Option<IpAddr> {
        Some(SIG.parse().unwrap())
    }

    #[test]
    fn unarmed_drops() {
        let mut l = Latch::default();
        assert_eq!(rtp(&mut l, a("1.1.1.1:5"), 1, 1), Err(DropReason::NotReady));
        assert_eq!(l.destination(), None);
    }

    /// What the kernel fast path may take over: only a source that can no longer move.
    #[test]
    fn settled_only_when_learned() {
        let sdp = a("10.0.0.5:4000");
        let nat = a("203.0.113.7:31000");
        let mut l = Latch::default();
        assert_eq!(l.settled(false), None, "unarmed");
        l.set_expected(sdp, sig());
        assert_eq!(l.settled(false), None, "nothing received yet");
        for i in 0..PROBATION as u16 - 1 {
            assert_eq!(rtp(&mut l, nat, i, 7), Err(DropReason::Probation));
            assert_eq!(l.settled(false), None, "in probation");
        }
        rtp(&mut l, nat, PROBATION as u16 - 1, 7).unwrap();
        assert_eq!(l.settled(false), Some(nat), "probation passed");
        // a re-offer re-opens learning: not settled until the source passes probation again
        l.set_expected(sdp, sig());
        assert_eq!(l.settled(false), None);
        // ... while its packets keep flowing
        assert_eq!(rtp(&mut l, nat, 10, 7), Ok(()));
        assert_eq!(rtp(&mut l, nat, 11, 7), Ok(()));
        assert_eq!(rtp(&mut l, nat, 12, 7), Ok(()));
        assert_eq!(l.settled(false), Some(nat));
        // media from the exact signalled address is learned at once
        let mut s = Latch::default();
        s.set_expected(sdp, None);
        rtp(&mut s, sdp, 1, 1).unwrap();
        assert_eq!(s.settled(false), Some(sdp));
        // strict: only the signalled address, once it sent
        let mut st = Latch::default();
        st.set_expected(sdp, sig());
        assert_eq!(
            st.accept(nat, Evidence::Rtp(&pkt(1, 1)), true),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(st.settled(true), None);
        st.accept(sdp, Evidence::Rtp(&pkt(1, 1)), true).unwrap();
        assert_eq!(st.settled(true), Some(sdp));
    }

    /// RTP Bleed: a sprayer on another IP than the leg's SDP and signalling is never learned,
    /// however many in-sequence packets it sends, and media keeps going to the SDP address.
    #[test]
    fn sprayer_from_another_ip_is_never_learned() {
        let sdp = a("10.0.0.5:4000");
        let evil = a("198.51.100.9:1234");
        let mut l = Latch::default();
        l.set_expected(sdp, sig());
        for i in 0..100u16 {
            assert_eq!(rtp(&mut l, evil, i, 66), Err(DropReason::ForeignSource));
        }
        assert_eq!(
            l.accept(evil, Evidence::Rtcp(None), false),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(l.latched(), None);
        assert_eq!(l.destination(), Some(sdp));
        // no signalling IP known: only the SDP address is learned
        let mut n = Latch::default();
        n.set_expected(sdp, None);
        for i in 0..10u16 {
            assert_eq!(
                rtp(&mut n, a("203.0.113.7:31000"), i, 1),
                Err(DropReason::ForeignSource)
            );
        }
        assert_eq!(rtp(&mut n, sdp, 1, 1), Ok(()));
    }

    #[test]
    fn nat_source_learned_after_probation_then_guarded() {
        let mut l = Latch::default();
        l.set_expected(a("10.0.0.5:4000"), sig());
        assert_eq!(l.destination(), Some(a("10.0.0.5:4000")));
        let nat = a("203.0.113.7:31000");
        // out of sequence, another SSRC, a non-RTP packet: probation restarts / no progress
        assert_eq!(rtp(&mut l, nat, 100, 9), Err(DropReason::Probation));
        assert_eq!(rtp(&mut l, nat, 102, 9), Err(DropReason::Probation));
        assert_eq!(rtp(&mut l, nat, 103, 8), Err(DropReason::Probation));
        assert_eq!(
            l.accept(nat, Evidence::Rtp(b"junk"), false),
            Err(DropReason::Probation)
        );
        assert_eq!(rtp(&mut l, nat, 104, 8), Err(DropReason::Probation));
        assert_eq!(l.latched(), None);
        assert_eq!(rtp(&mut l, nat, 105, 8), Ok(()), "third in sequence");
        assert_eq!(l.destination(), Some(nat));
        // learned: another port of the same IP and a third party are dropped
        assert_eq!(
            rtp(&mut l, a("203.0.113.7:31002"), 1, 8),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(
            rtp(&mut l, a("198.51.100.9:1234"), 106, 8),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(rtp(&mut l, nat, 106, 8), Ok(()));
        // a re-offer with the same address: a moved endpoint (new NAT port) may be learned
        l.set_expected(a("10.0.0.5:4000"), sig());
        let moved = a("203.0.113.7:31002");
        for i in 0..PROBATION as u16 - 1 {
            assert_eq!(rtp(&mut l, moved, i, 5), Err(DropReason::Probation));
        }
        assert_eq!(rtp(&mut l, moved, PROBATION as u16 - 1, 5), Ok(()));
        assert_eq!(l.destination(), Some(moved));
        assert_eq!(rtp(&mut l, nat, 107, 8), Err(DropReason::ForeignSource));
    }

    #[test]
    fn rtcp_learned_from_the_ip_rtp_was_learned_from() {
        let mut l = Latch::default();
        l.set_expected(a("10.0.0.5:4001"), sig());
        let nat = a("203.0.113.7:31001");
        assert_eq!(
            l.accept(nat, Evidence::Rtcp(None), false),
            Err(DropReason::Probation),
            "RTP not learned yet"
        );
        assert_eq!(
            l.accept(
                nat,
                Evidence::Rtcp(Some("192.0.2.1".parse().unwrap())),
                false
            ),
            Err(DropReason::Probation)
        );
        assert_eq!(l.accept(nat, Evidence::Rtcp(sig()), false), Ok(()));
        assert_eq!(l.settled(false), Some(nat));
    }

    #[test]
    fn mapped_signalling_address_is_its_ipv4() {
        let mut l = Latch::default();
        l.set_expected(
            a("10.0.0.5:4000"),
            Some("::ffff:203.0.113.7".parse().unwrap()),
        );
        let nat = a("203.0.113.7:31000");
        for i in 0..PROBATION as u16 - 1 {
            assert_eq!(rtp(&mut l, nat, i, 1), Err(DropReason::Probation));
        }
        assert_eq!(rtp(&mut l, nat, PROBATION as u16 - 1, 1), Ok(()));
    }

    #[test]
    fn sdp_address_is_learned_at_once() {
        let mut l = Latch::default();
        let sdp = a("192.0.2.1:4000");
        l.set_expected(sdp, sig());
        assert_eq!(rtp(&mut l, sdp, 1, 1), Ok(()));
        assert_eq!(
            rtp(&mut l, a("6.6.6.6:1"), 2, 1),
            Err(DropReason::ForeignSource)
        );
        assert_eq!(l.destination(), Some(sdp));
    }

    #[test]
    fn strict_only_accepts_sdp() {
        let mut l = Latch::default();
        let sdp = a("192.0.2.1:4000");
        l.set_expected(sdp, Some(sdp.ip()));
        for i in 0..10 {
            assert_eq!(
                l.accept(a("192.0.2.1:4002"), Evidence::Rtp(&pkt(i, 1)), true),
                Err(DropReason::ForeignSource)
            );
        }
        assert_eq!(l.accept(sdp, Evidence::Rtp(&pkt(10, 1)), true), Ok(()));
    }

    #[test]
    fn new_address_forgets_latch() {
        let mut l = Latch::default();
        l.set_expected(a("10.0.0.5:4000"), sig());
        for i in 0..PROBATION as u16 {
            let _ = rtp(&mut l, a("203.0.113.7:31000"), i, 1);
        }
        assert_eq!(l.latched(), Some(a("203.0.113.7:31000")));
        l.set_expected(a("10.0.0.6:4000"), sig());
        assert_eq!(l.destination(), Some(a("10.0.0.6:4000")));
        assert_eq!(
            rtp(&mut l, a("203.0.113.7:31000"), 10, 1),
            Err(DropReason::Probation)
        );
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
