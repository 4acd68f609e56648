//! Zero-copy parsing of the RTCP packets the relay forwards (RFC 3550 section 6.4, RFC 3611
//! section 4.7). The relay never changes RTCP; it only reads the reports passing through.
//!
//! Every accessor is bounds-checked; a malformed compound packet yields `None`/stops the iterator,
//! never a panic.

/// Is this datagram RTCP rather than RTP? RFC 5761 section 4: with RTP and RTCP multiplexed on one
/// port, "RTCP packet types in the ranges 192-223" are distinguished by the second octet
/// (payload types 64-95 are not used for RTP).
pub fn is_rtcp(b: &[u8]) -> bool {
    matches!(b.get(1), Some(pt) if (192..=223).contains(pt))
        && matches!(b.first(), Some(v) if v >> 6 == 2)
}

/// RFC 3550 section 6.4.1 report block (24 octets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// fraction lost, fixed point with the binary point at the left edge (x/256).
    pub fraction_lost: u8,
    /// cumulative number of packets lost: 24-bit signed.
    pub cumulative_lost: i32,
    pub ext_highest_seq: u32,
    /// interarrival jitter, timestamp units.
    pub jitter: u32,
    /// last SR timestamp: the middle 32 bits of the NTP timestamp of the last SR received.
    pub lsr: u32,
    /// delay since last SR, 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Option<ReportBlock> {
        let b = b.get(..24)?;
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let cum = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        // sign-extend the 24-bit value
        let cumulative_lost = ((cum << 8) as i32) >> 8;
        Some(ReportBlock {
            ssrc: w(0),
            fraction_lost: b[4],
            cumulative_lost,
            ext_highest_seq: w(8),
            jitter: w(12),
            lsr: w(16),
            dlsr: w(20),
        })
    }
}

/// RFC 3611 section 4.7 VoIP Metrics Report Block (block type 7), the fields the relay uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoipMetrics {
    pub ssrc: u32,
    /// loss rate, fraction x/256.
    pub loss_rate: u8,
    /// round trip delay in ms.
    pub round_trip_delay: u16,
    /// R factor; 127 = unavailable.
    pub r_factor: u8,
    /// MOS-LQ x10; 127 = unavailable.
    pub mos_lq: u8,
    /// MOS-CQ x10; 127 = unavailable.
    pub mos_cq: u8,
}

/// One packet of a compound RTCP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// Sender report (PT 200): sender SSRC, NTP timestamp, report blocks.
    Sr {
        ssrc: u32,
        ntp: u64,
        rtp_ts: u32,
        packets: u32,
        octets: u32,
        blocks: Blocks<'a>,
    },
    /// Receiver report (PT 201).
    Rr { ssrc: u32, blocks: Blocks<'a> },
    /// Extended report (PT 207) carrying a VoIP metrics block.
    XrVoip(VoipMetrics),
    /// Any other packet type (SDES, BYE, APP, feedback, XR without VoIP metrics).
    Other(u8),
}

/// The report blocks of an SR/RR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks<'a> {
    data: &'a [u8],
}

impl<'a> Blocks<'a> {
    pub fn first(&self) -> Option<ReportBlock> {
        self.iter().next()
    }
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        let d = self.data;
        d.chunks_exact(24).filter_map(ReportBlock::parse)
    }
    pub fn len(&self) -> usize {
        self.data.len() / 24
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Iterator over the packets of a compound RTCP datagram (RFC 3550 section 6.1). Stops at the
/// first malformed header (wrong version, length past the end).
pub struct Compound<'a> {
    rest: &'a [u8],
}

/// Iterate over a compound RTCP datagram.
pub fn packets(b: &[u8]) -> Compound<'_> {
    Compound { rest: b }
}

impl<'a> Iterator for Compound<'a> {
    type Item = RtcpPacket<'a>;
    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        let b = self.rest;
        let hdr = b.get(..4)?;
        if hdr[0] >> 6 != 2 {
            self.rest = &[];
            return None;
        }
        let count = (hdr[0] & 0x1f) as usize;
        let pt = hdr[1];
        // "length: 16 bits. The length of this RTCP packet in 32-bit words minus one, including
        // the header and any padding."
        let len = (u16::from_be_bytes([hdr[2], hdr[3]]) as usize + 1) * 4;
        let Some(pkt) = b.get(..len) else {
            self.rest = &[];
            return None;
        };
        self.rest = &b[len..];
        let w = |i: usize| -> Option<u32> {
            let s = pkt.get(i..i + 4)?;
            Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        };
        let item = match pt {
            200 => {
                let blocks = pkt.get(28..28 + 24 * count);
                match (w(4), w(8), w(12), w(16), w(20), w(24), blocks) {
                    (
                        Some(ssrc),
                        Some(hi),
                        Some(lo),
                        Some(rtp_ts),
                        Some(packets),
                        Some(octets),
                        Some(data),
                    ) => RtcpPacket::Sr {
                        ssrc,
                        ntp: (hi as u64) << 32 | lo as u64,
                        rtp_ts,
                        packets,
                        octets,
                        blocks: Blocks { data },
                    },
                    _ => {
                        self.rest = &[];
                        return None;
                    }
                }
            }
            201 => match (w(4), pkt.get(8..8 + 24 * count)) {
                (Some(ssrc), Some(data)) => RtcpPacket::Rr {
                    ssrc,
                    blocks: Blocks { data },
                },
                _ => {
                    self.rest = &[];
                    return None;
                }
            },
            207 => parse_xr_voip(pkt).map_or(RtcpPacket::Other(207), RtcpPacket::XrVoip),
            other => RtcpPacket::Other(other),
        };
        Some(item)
    }
}

/// RFC 3611 section 3: XR packet = header, SSRC, then report blocks each `BT(8) type-specific(8)
/// block length(16, 32-bit words minus... not including the header word)`. Finds block type 7.
fn parse_xr_voip(pkt: &[u8]) -> Option<VoipMetrics> {
    let mut rest = pkt.get(8..)?;
    while rest.len() >= 4 {
        let bt = rest[0];
        let words = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let blk = rest.get(..4 + words * 4)?;
        if bt == 7 && blk.len() >= 36 {
            // RFC 3611 section 4.7 layout (offsets from block start):
            // 4 SSRC, 8 loss rate, 9 discard rate, 10 burst density, 11 gap density,
            // 12 burst duration(16), 14 gap duration(16), 16 round trip delay(16),
            // 18 end system delay(16), 20 signal level, 21 noise level, 22 RERL, 23 Gmin,
            // 24 R factor, 25 ext. R factor, 26 MOS-LQ, 27 MOS-CQ, ...
            return Some(VoipMetrics {
                ssrc: u32::from_be_bytes([blk[4], blk[5], blk[6], blk[7]]),
                loss_rate: blk[8],
                round_trip_delay: u16::from_be_bytes([blk[16], blk[17]]),
                r_factor: blk[24],
                mos_lq: blk[26],
                mos_cq: blk[27],
            });
        }
        rest = &rest[blk.len()..];
    }
    None
}

/// The middle 32 bits of a 64-bit NTP timestamp: what an RR echoes as LSR (RFC 3550 section
/// 6.4.1).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn block(
        ssrc: u32,
        frac: u8,
        cum: i32,
        jitter: u32,
        lsr: u32,
        dlsr: u32,
    ) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.push(frac);
        v.extend_from_slice(&(cum as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&1000u32.to_be_bytes());
        v.extend_from_slice(&jitter.to_be_bytes());
        v.extend_from_slice(&lsr.to_be_bytes());
        v.extend_from_slice(&dlsr.to_be_bytes());
        v
    }

    pub(crate) fn sr(ssrc: u32, ntp: u64, blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0x80 | blocks.len() as u8, 200, 0, 0];
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&ntp.to_be_bytes());
        v.extend_from_slice(&160u32.to_be_bytes());
        v.extend_from_slice(&10u32.to_be_bytes());
        v.extend_from_slice(&1600u32.to_be_bytes());
        for b in blocks {
            v.extend_from_slice(b);
        }
        let words = (v.len() / 4 - 1) as u16;
        v[2..4].copy_from_slice(&words.to_be_bytes());
        v
    }

    pub(crate) fn rr(ssrc: u32, blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0x80 | blocks.len() as u8, 201, 0, 0];
        v.extend_from_slice(&ssrc.to_be_bytes());
        for b in blocks {
            v.extend_from_slice(b);
        }
        let words = (v.len() / 4 - 1) as u16;
        v[2..4].copy_from_slice(&words.to_be_bytes());
        v
    }

    fn sdes() -> Vec<u8> {
        // SDES with one chunk: SSRC, CNAME "ab", end, padding to 4.
        vec![0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b']
    }

    #[test]
    fn compound_sr_sdes() {
        let mut d = sr(
            7,
            0x0102_0304_0506_0708,
            &[block(9, 64, -3, 80, 0x1111, 0x2222)],
        );
        d.extend_from_slice(&sdes());
        assert!(is_rtcp(&d));
        let v: Vec<_> = packets(&d).collect();
        assert_eq!(v.len(), 2);
        match v[0] {
            RtcpPacket::Sr {
                ssrc, ntp, blocks, ..
            } => {
                assert_eq!(ssrc, 7);
                assert_eq!(ntp_middle(ntp), 0x0304_0506);
                let b = blocks.first().unwrap();
                assert_eq!(
                    b,
                    ReportBlock {
                        ssrc: 9,
                        fraction_lost: 64,
                        cumulative_lost: -3,
                        ext_highest_seq: 1000,
                        jitter: 80,
                        lsr: 0x1111,
                        dlsr: 0x2222
                    }
                );
            }
            ref o => panic!("{o:?}"),
        }
        assert_eq!(v[1], RtcpPacket::Other(202));
    }

    #[test]
    fn rr_and_truncation() {
        let d = rr(5, &[block(1, 0, 100, 1, 2, 3), block(2, 1, 1, 1, 1, 1)]);
        match packets(&d).next() {
            Some(RtcpPacket::Rr { ssrc: 5, blocks }) => {
                assert_eq!(blocks.len(), 2);
                assert_eq!(blocks.first().unwrap().cumulative_lost, 100);
            }
            o => panic!("{o:?}"),
        }
        // Every truncation is rejected without panic.
        for n in 0..d.len() {
            let _ = packets(&d[..n]).count();
        }
        // count claims more blocks than the length holds
        let mut bad = d.clone();
        bad[0] = 0x80 | 5;
        assert_eq!(packets(&bad).count(), 0);
        // RTP is not RTCP
        assert!(!is_rtcp(&[0x80, 0, 0, 1]));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn xr_voip_metrics() {
        let mut blk = vec![7u8, 0, 0, 8];
        blk.extend_from_slice(&3u32.to_be_bytes());
        let mut body = [0u8; 28];
        body[0] = 13; // loss rate
        body[8..10].copy_from_slice(&150u16.to_be_bytes()); // rtt
        body[16] = 80; // R
        body[18] = 41; // MOS-LQ 4.1
        body[19] = 39;
        blk.extend_from_slice(&body);
        // a preceding unknown block (type 4, 2 words) that must be skipped
        let mut d = vec![
            0x80, 207, 0, 0, 0, 0, 0, 9, 4, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        d.extend_from_slice(&blk);
        let words = (d.len() / 4 - 1) as u16;
        d[2..4].copy_from_slice(&words.to_be_bytes());
        match packets(&d).next() {
            Some(RtcpPacket::XrVoip(m)) => {
                assert_eq!(m.ssrc, 3);
                assert_eq!(m.loss_rate, 13);
                assert_eq!(m.round_trip_delay, 150);
                assert_eq!((m.r_factor, m.mos_lq, m.mos_cq), (80, 41, 39));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let n = (x % 80) as usize;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
            if let Some(b) = v.first_mut() {
                *b = 0x80 | (*b & 0x3f);
            }
            for p in packets(&v) {
                if let RtcpPacket::Sr { blocks, .. } | RtcpPacket::Rr { blocks, .. } = p {
                    let _ = blocks.iter().count();
                }
            }
        }
    }
}
