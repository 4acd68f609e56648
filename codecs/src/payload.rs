//! Static RTP payload types (RFC 3551 section 6, tables 4 and 5).

/// A static payload type's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticType {
    pub pt: u8,
    /// Encoding name as in SDP `a=rtpmap` (case-insensitive there).
    pub name: &'static str,
    /// RTP clock rate, Hz. G.722 (9) has 8000 "for historical reasons" (section 4.5.2) though
    /// it samples at 16 kHz.
    pub clock_rate: u32,
    /// Audio channels; 0 for video.
    pub channels: u8,
}

const fn t(pt: u8, name: &'static str, clock_rate: u32, channels: u8) -> StaticType {
    StaticType {
        pt,
        name,
        clock_rate,
        channels,
    }
}

/// Every static type RFC 3551 assigns.
pub const STATIC: &[StaticType] = &[
    t(0, "PCMU", 8000, 1),
    t(3, "GSM", 8000, 1),
    t(4, "G723", 8000, 1),
    t(5, "DVI4", 8000, 1),
    t(6, "DVI4", 16000, 1),
    t(7, "LPC", 8000, 1),
    t(8, "PCMA", 8000, 1),
    t(9, "G722", 8000, 1),
    t(10, "L16", 44100, 2),
    t(11, "L16", 44100, 1),
    t(12, "QCELP", 8000, 1),
    t(13, "CN", 8000, 1),
    t(14, "MPA", 90000, 0),
    t(15, "G728", 8000, 1),
    t(16, "DVI4", 11025, 1),
    t(17, "DVI4", 22050, 1),
    t(18, "G729", 8000, 1),
    t(25, "CelB", 90000, 0),
    t(26, "JPEG", 90000, 0),
    t(28, "nv", 90000, 0),
    t(31, "H261", 90000, 0),
    t(32, "MPV", 90000, 0),
    t(33, "MP2T", 90000, 0),
    t(34, "H263", 90000, 0),
];

/// The static type `pt`, if RFC 3551 assigns it.
pub fn lookup(pt: u8) -> Option<&'static StaticType> {
    STATIC.iter().find(|s| s.pt == pt)
}

/// RTP clock rate of payload type `pt`: the static one, else 8000 (the usual rate of the
/// dynamic audio types, 96-127, until SDP says otherwise).
pub fn clock_rate(pt: u8) -> u32 {
    lookup(pt).map_or(8000, |s| s.clock_rate)
}

/// Whether `pt` is in the dynamic range (RFC 3551 section 3).
pub fn is_dynamic(pt: u8) -> bool {
    (96..=127).contains(&pt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(lookup(0).unwrap().name, "PCMU");
        assert_eq!(lookup(8).unwrap().name, "PCMA");
        assert_eq!(clock_rate(9), 8000, "G.722's RTP clock");
        assert_eq!(clock_rate(6), 16000);
        assert_eq!(clock_rate(10), 44100);
        assert_eq!(clock_rate(31), 90000);
        assert_eq!(clock_rate(101), 8000, "dynamic default");
        assert!(lookup(2).is_none() && lookup(19).is_none() && lookup(96).is_none());
        assert!(is_dynamic(96) && is_dynamic(127) && !is_dynamic(95) && !is_dynamic(128));
        let mut pts: Vec<u8> = STATIC.iter().map(|s| s.pt).collect();
        pts.dedup();
        assert_eq!(pts.len(), STATIC.len(), "sorted, unique");
    }
}
