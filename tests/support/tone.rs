//! Test media shared by the media tests (`#[path = "support/tone.rs"] mod tone;`).

/// 2 s of a 440 Hz tone as 8 kHz G.711 mu-law in a WAV file (format tag 7), for SIPp's
/// `rtp_stream` (100 RTP packets of 20 ms).
pub fn tone_wav() -> Vec<u8> {
    let data: Vec<u8> = (0..16000)
        .map(|i| {
            let t = i as f64 / 8000.0;
            codecs::g711::linear_to_ulaw(
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16,
            )
        })
        .collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&7u16.to_le_bytes()); // mu-law
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}
