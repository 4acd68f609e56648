//! Codecs and payload formats trunkline handles itself, as pure functions (no I/O, no
//! allocation in the per-sample/per-packet functions):
//!
//! * [`g711`]: ITU-T G.711 mu-law and A-law, to and from 16-bit linear PCM.
//! * [`g722`]: ITU-T G.722 SB-ADPCM (64 kbit/s), 16 kHz PCM to and from octets.
//! * [`resample`]: 8 kHz ↔ 16 kHz by a half-band filter.
//! * [`tones`]: DTMF in band, Q.23 tones generated and Q.24 detection (Goertzel).
//! * [`dtmf`]: RFC 4733 telephone-event payloads (DTMF digits and flash).
//! * [`payload`]: the static RTP payload types of RFC 3551 (name, clock rate, channels).

#![forbid(unsafe_code)]

pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod payload;
pub mod resample;
pub mod tones;
