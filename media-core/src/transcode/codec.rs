//! The codecs the relay can decode and encode, and their per-stream coder state.
//!
//! G.711 and G.722 are the project's own (`codecs` crate); Opus (RFC 6716, over RTP RFC 7587)
//! is libopus through the `opus` binding crate, in a build with the `opus` feature. Without
//! it no [`Codec::Opus`] is ever made: `opus` in an SDP or a policy is a codec the relay does
//! not know (forwarded when both sides have it, never transcoded).

use codecs::{g711, g722, resample};

/// A codec the relay transcodes (RFC 3551 names; G.711 and G.722 have an RTP clock of
/// 8000 Hz and carry 8 octets per millisecond; Opus has a 48 kHz clock, RFC 7587 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, payload type 9 (16 kHz audio; RFC 3551 §4.5.2: clock 8000).
    G722,
    /// Opus, a dynamic payload type (`opus/48000/2`, RFC 7587 §7).
    Opus,
}

/// The payload type trunkline gives Opus when it adds it to an offer (dynamic, RFC 3551
/// §3; telephone-event takes 101).
pub const OPUS_PT: u8 = 111;

impl Codec {
    /// Every codec, in the order of [`Codec::index`].
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

    /// The position in [`Codec::ALL`] (for per-codec counters).
    pub fn index(self) -> usize {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 1,
            Codec::G722 => 2,
            Codec::Opus => 3,
        }
    }

    /// Whether this build can transcode Opus (the `opus` feature).
    pub const OPUS: bool = cfg!(feature = "opus");

    /// The codec of an `a=rtpmap` encoding name and clock rate (names case-insensitive,
    /// RFC 4855 §3). `opus/48000` only in a build that has Opus (RFC 7587 §7: "the RTP clock
    /// rate in "a=rtpmap" MUST be 48000 and the number of channels MUST be 2").
    pub fn parse(encoding: &str, clock_rate: u32) -> Option<Codec> {
        let c = match encoding.to_ascii_uppercase().as_str() {
            "PCMU" => Codec::Pcmu,
            "PCMA" => Codec::Pcma,
            "G722" => Codec::G722,
            "OPUS" if Codec::OPUS => return (clock_rate == 48_000).then_some(Codec::Opus),
            _ => return None,
        };
        (clock_rate == 8000).then_some(c)
    }

    /// The codec of a static payload type without an rtpmap (RFC 3551 Table 4).
    pub fn of_static(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// Its static payload type (RFC 3551 Table 4); Opus's dynamic one when trunkline adds it.
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
            Codec::Opus => OPUS_PT,
        }
    }

    /// The `a=rtpmap` value after the payload type (`PCMA/8000`, `opus/48000/2`).
    pub fn rtpmap(self) -> String {
        match self {
            Codec::Opus => "opus/48000/2".to_string(),
            c => format!("{}/8000", c.name()),
        }
    }

    /// The RTP clock rate (RFC 3551 §4.5.2: 8000 for G.722 too; RFC 7587 §4.1: 48 kHz).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 8000,
        }
    }

    /// Samples per second of the audio (not the RTP clock). Opus is coded at the rate of the
    /// codec on the other side ([`Codec::coding_rate`]); 16 kHz here.
    pub fn pcm_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 | Codec::Opus => 16000,
        }
    }

    /// The PCM rate this codec is decoded or encoded at when the other side is `other`:
    /// libopus codes at 8 or 16 kHz itself, so Opus takes the other side's rate and no
    /// resampling is needed.
    pub fn coding_rate(self, other: Codec) -> u32 {
        match (self, other) {
            (Codec::Opus, o) if o != Codec::Opus => o.pcm_rate(),
            (c, _) => c.pcm_rate(),
        }
    }

    /// Octets of payload per millisecond of audio at most (Opus: variable, at most 1275
    /// octets a frame, RFC 6716 §3.4 R2).
    pub const fn octets_per_ms(self) -> usize {
        match self {
            Codec::Opus => 64,
            _ => 8,
        }
    }
}

/// Decoder state of one stream.
#[derive(Debug)]
pub(crate) enum Decoder {
    Ulaw,
    Alaw,
    G722(Box<g722::Decoder>),
    /// libopus at the PCM rate given (`None`: no Opus in this build, or libopus refused).
    Opus(Option<opus_coder::Decoder>),
}

impl Decoder {
    /// A decoder of `c` producing PCM at `rate` (only Opus has a choice).
    pub fn new(c: Codec, rate: u32) -> Decoder {
        match c {
            Codec::Pcmu => Decoder::Ulaw,
            Codec::Pcma => Decoder::Alaw,
            Codec::G722 => Decoder::G722(Box::default()),
            Codec::Opus => Decoder::Opus(opus_coder::Decoder::new(rate)),
        }
    }

    /// Append the decoded samples of `payload` to `out` (at the codec's PCM rate).
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let start = out.len();
        match self {
            Decoder::Ulaw => out.extend(payload.iter().map(|&c| g711::ulaw_to_linear(c))),
            Decoder::Alaw => out.extend(payload.iter().map(|&c| g711::alaw_to_linear(c))),
            Decoder::G722(d) => {
                out.resize(start + payload.len() * 2, 0);
                let n = d.decode(payload, &mut out[start..]);
                out.truncate(start + n);
            }
            Decoder::Opus(Some(d)) => d.decode(payload, out),
            Decoder::Opus(None) => {}
        }
    }
}

/// Encoder state of one stream.
#[derive(Debug)]
pub(crate) enum Encoder {
    Ulaw,
    Alaw,
    G722(Box<g722::Encoder>),
    Opus(Option<opus_coder::Encoder>),
}

impl Encoder {
    /// An encoder of `c` taking PCM at `rate` (only Opus has a choice).
    pub fn new(c: Codec, rate: u32) -> Encoder {
        match c {
            Codec::Pcmu => Encoder::Ulaw,
            Codec::Pcma => Encoder::Alaw,
            Codec::G722 => Encoder::G722(Box::default()),
            Codec::Opus => Encoder::Opus(opus_coder::Encoder::new(rate)),
        }
    }

    /// Encode `pcm` (at the codec's rate) into `out`; returns the octets written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self {
            Encoder::Ulaw => {
                let n = pcm.len().min(out.len());
                g711::encode_ulaw(&pcm[..n], &mut out[..n]);
                n
            }
            Encoder::Alaw => {
                let n = pcm.len().min(out.len());
                g711::encode_alaw(&pcm[..n], &mut out[..n]);
                n
            }
            Encoder::G722(e) => e.encode(pcm, out),
            Encoder::Opus(Some(e)) => e.encode(pcm, out),
            Encoder::Opus(None) => 0,
        }
    }
}

/// Rate conversion between the decoder's and the encoder's PCM.
#[derive(Clone, Debug)]
pub(crate) enum Rate {
    Same,
    Up(Box<resample::Upsampler>),
    Down(Box<resample::Downsampler>),
}

impl Rate {
    /// From PCM at `from` Hz to PCM at `to` Hz (8000 and 16000).
    pub fn new(from: u32, to: u32) -> Rate {
        match (from, to) {
            (a, b) if a == b => Rate::Same,
            (a, b) if a < b => Rate::Up(Box::default()),
            _ => Rate::Down(Box::default()),
        }
    }

    /// Append `input` converted to the target rate to `out`.
    pub fn convert(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match self {
            Rate::Same => out.extend_from_slice(input),
            Rate::Up(u) => {
                u.process(input, out);
            }
            Rate::Down(d) => {
                d.process(input, out);
            }
        }
    }
}

/// libopus (RFC 6716) through the `opus` crate: one mono coder per stream direction, at 8 or
/// 16 kHz. Without the `opus` feature these never exist (`new` gives `None`).
mod opus_coder {
    /// Longest Opus frame decoded (RFC 6716 §3.2.1: 120 ms), in samples at 16 kHz.
    #[cfg(feature = "opus")]
    const MAX_FRAME: usize = 120 * 16;

    pub(crate) struct Decoder {
        #[cfg(feature = "opus")]
        inner: opus::Decoder,
        #[cfg(feature = "opus")]
        buf: Vec<i16>,
    }

    pub(crate) struct Encoder {
        #[cfg(feature = "opus")]
        inner: opus::Encoder,
    }

    impl std::fmt::Debug for Decoder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("opus::Decoder")
        }
    }

    impl std::fmt::Debug for Encoder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("opus::Encoder")
        }
    }

    #[cfg(feature = "opus")]
    impl Decoder {
        pub fn new(rate: u32) -> Option<Decoder> {
            let inner = opus::Decoder::new(rate, opus::Channels::Mono).ok()?;
            Some(Decoder {
                inner,
                buf: vec![0; MAX_FRAME],
            })
        }

        /// Append the packet's samples to `out`; a packet libopus refuses adds nothing.
        pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
            if let Ok(n) = self.inner.decode(payload, &mut self.buf, false) {
                out.extend_from_slice(&self.buf[..n.min(self.buf.len())]);
            }
        }
    }

    #[cfg(feature = "opus")]
    impl Encoder {
        pub fn new(rate: u32) -> Option<Encoder> {
            let mut inner =
                opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip).ok()?;
            // Narrowband (8 kHz) or wideband: a bit rate that carries it well (RFC 7587 §3.1.1
            // suggests 8-12 kbit/s NB, 16-20 kbit/s WB); in-band FEC for lossy paths.
            let bitrate = if rate <= 8000 { 12_000 } else { 20_000 };
            inner.set_bitrate(opus::Bitrate::Bits(bitrate)).ok()?;
            inner.set_inband_fec(true).ok()?;
            // Complexity 5 of 10: about half libopus's default cost per frame (103 -> ~50 µs
            // for 20 ms at 8 kHz here), speech still well above G.711's quality.
            inner.set_complexity(5).ok()?;
            inner.set_signal(opus::Signal::Voice).ok()?;
            Some(Encoder { inner })
        }

        /// Encode one frame (2.5 to 60 ms of `pcm`) into `out`; the octets written (0: refused).
        pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
            self.inner.encode(pcm, out).unwrap_or(0)
        }
    }

    #[cfg(not(feature = "opus"))]
    impl Decoder {
        pub fn new(_rate: u32) -> Option<Decoder> {
            None
        }
        pub fn decode(&mut self, _payload: &[u8], _out: &mut Vec<i16>) {}
    }

    #[cfg(not(feature = "opus"))]
    impl Encoder {
        pub fn new(_rate: u32) -> Option<Encoder> {
            None
        }
        pub fn encode(&mut self, _pcm: &[i16], _out: &mut [u8]) -> usize {
            0
        }
    }
}
