//! The codecs the relay can decode and encode, and their per-stream coder state.

use codecs::{g711, g722, resample};

/// A codec the relay transcodes (RFC 3551 names; all three have an RTP clock of 8000 Hz and
/// carry 8 octets per millisecond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, payload type 9 (16 kHz audio; RFC 3551 §4.5.2: clock 8000).
    G722,
}

impl Codec {
    /// Every codec, in the order of [`Codec::index`].
    pub const ALL: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::G722];

    /// The position in [`Codec::ALL`] (for per-codec counters).
    pub fn index(self) -> usize {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 1,
            Codec::G722 => 2,
        }
    }

    /// The codec of an `a=rtpmap` encoding name and clock rate (names case-insensitive,
    /// RFC 4855 §3).
    pub fn parse(encoding: &str, clock_rate: u32) -> Option<Codec> {
        let c = match encoding.to_ascii_uppercase().as_str() {
            "PCMU" => Codec::Pcmu,
            "PCMA" => Codec::Pcma,
            "G722" => Codec::G722,
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
        }
    }

    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
        }
    }

    /// Samples per second of the audio (not the RTP clock).
    pub fn pcm_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 => 16000,
        }
    }

    /// Octets of payload per millisecond of audio.
    pub const fn octets_per_ms(self) -> usize {
        8
    }
}

/// Decoder state of one stream.
#[derive(Clone, Debug)]
pub(crate) enum Decoder {
    Ulaw,
    Alaw,
    G722(Box<g722::Decoder>),
}

impl Decoder {
    pub fn new(c: Codec) -> Decoder {
        match c {
            Codec::Pcmu => Decoder::Ulaw,
            Codec::Pcma => Decoder::Alaw,
            Codec::G722 => Decoder::G722(Box::default()),
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
        }
    }
}

/// Encoder state of one stream.
#[derive(Clone, Debug)]
pub(crate) enum Encoder {
    Ulaw,
    Alaw,
    G722(Box<g722::Encoder>),
}

impl Encoder {
    pub fn new(c: Codec) -> Encoder {
        match c {
            Codec::Pcmu => Encoder::Ulaw,
            Codec::Pcma => Encoder::Alaw,
            Codec::G722 => Encoder::G722(Box::default()),
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
    pub fn new(from: Codec, to: Codec) -> Rate {
        match (from.pcm_rate(), to.pcm_rate()) {
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
