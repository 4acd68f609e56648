//! Audio checks for the media tests: test tones, the Goertzel measure of one frequency's share
//! of a signal, and the RTP payloads a capture holds (tshark).
// Only the media test binaries use this.
#![allow(dead_code)]

/// `n` samples at `rate` Hz of a `freq` Hz sine at amplitude 8000, from sample `start` on.
pub fn sine(freq: f64, rate: f64, n: usize, start: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
        .collect()
}

/// The share of `x`'s power at `freq` (Goertzel): near 1.0 for a pure tone at `freq`, near 0
/// for anything else (noise, other tones, encrypted bytes read as audio).
pub fn share(x: &[i16], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s = v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let p = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let e: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    2.0 * p / (e * x.len() as f64).max(1.0)
}

/// Every UDP datagram of a capture: (destination port, payload).
pub fn udp_payloads(pcap: &std::path::Path) -> Vec<(u16, Vec<u8>)> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-e", "udp.dstport", "-e", "udp.payload"])
        .output()
        .expect("tshark -r");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = |h: &str| -> Vec<u8> {
        let h: String = h.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..h.len() / 2)
            .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
            .collect()
    };
    text.lines()
        .filter_map(|l| {
            let (port, payload) = l.split_once('\t')?;
            Some((port.trim().parse().ok()?, hex(payload.trim())))
        })
        .collect()
}

/// The RTP packets (not RTCP: RFC 5761 §4, packet types 192..=223) of a capture sent to a port
/// in `ports`, whole.
pub fn rtp_to(pcap: &std::path::Path, ports: std::ops::RangeInclusive<u16>) -> Vec<Vec<u8>> {
    udp_payloads(pcap)
        .into_iter()
        .filter(|(port, p)| {
            ports.contains(port) && p.len() > 12 && p[0] >> 6 == 2 && !(192..=223).contains(&p[1])
        })
        .map(|(_, p)| p)
        .collect()
}
