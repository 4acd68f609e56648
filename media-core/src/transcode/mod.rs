//! Transcoding of one direction of a stream: RTP in one codec → RTP in another.
//!
//! A [`Transcoder`] belongs to the relay leg that *receives* the packets: what that leg's
//! endpoint sends in [`Spec::from`] is decoded to linear PCM, converted to the rate of
//! [`Spec::to`] (8 kHz ↔ 16 kHz for G.711 ↔ G.722), cut into frames of the other side's
//! packetization time ([`Spec::ptime_ms`]: 20 ms in, 30 ms out works, and back) and encoded.
//! Sans-IO in the quinn-proto way: [`Transcoder::push`] takes a packet, [`Transcoder::pop`]
//! writes the packets that are ready (none, one, or more than one for a shorter ptime).
//!
//! RTP (RFC 3550 §5.1) out of a transcoder:
//! * The SSRC is the sender's (a new SSRC restarts the coders: a new source).
//! * Sequence numbers are the transcoder's own, contiguous, starting at the sender's first:
//!   with equal ptimes a lost packet still leaves a gap of one (RFC 3550 §5.1 "the sequence
//!   number increments by one for each RTP data packet sent").
//! * Timestamps: all codecs here have an RTP clock of 8000 Hz (G.722 too, RFC 3551 §4.5.2),
//!   so a frame keeps the timestamp of its first sample. A packet whose timestamp is not the
//!   one expected (loss, a talk spurt after silence) starts a new run: what was buffered and
//!   is shorter than a frame is dropped, and the first packet of the run carries the marker.
//! * Header extensions, CSRCs and padding are not carried over (the payload is new).
//! * RFC 4733 telephone-events are relayed with the other side's payload type when both
//!   sides negotiated them ([`Spec::events`]), else dropped. Comfort noise (RFC 3389, and
//!   any payload type but the codec's and the events') is dropped: "comfort noise (CN) not
//!   forwarded into a codec that has none".

mod codec;
#[cfg(test)]
mod tests;

pub use codec::Codec;
use codec::{Decoder, Encoder, Rate};

/// RTP fixed header length (RFC 3550 §5.1).
const RTP_HEADER: usize = 12;
/// Longest payload decoded from one packet (octets); longer ones are dropped.
pub const MAX_PAYLOAD: usize = 1440;
/// Longest output ptime (ms): a frame must fit one datagram with its header.
pub const MAX_PTIME_MS: u16 = 120;

/// What one direction of a processed stream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The codec the sender uses and its payload type.
    pub from: Codec,
    pub from_pt: u8,
    /// The codec the receiver gets and its payload type.
    pub to: Codec,
    pub to_pt: u8,
    /// Packetization time of the output (the receiver's `a=ptime`, default 20).
    pub ptime_ms: u16,
    /// telephone-event payload types `(sender's, receiver's)` when both negotiated them.
    pub events: Option<(u8, u8)>,
}

/// Why [`Transcoder::push`] sent nothing on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not an RTP packet (too short, version ≠ 2, lengths past the end).
    Malformed,
    /// Comfort noise or a payload type the receiver does not get.
    Unsupported,
    /// Older than what was already sent (late or duplicated).
    Late,
    /// Kept: fewer samples than a frame are buffered.
    Buffered,
}

/// A parsed RTP packet (RFC 3550 §5.1), payload without padding.
struct Rtp<'a> {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &'a [u8],
}

fn parse(p: &[u8]) -> Option<Rtp<'_>> {
    let b0 = *p.first()?;
    if b0 >> 6 != 2 || p.len() < RTP_HEADER {
        return None;
    }
    let mut start = RTP_HEADER + 4 * (b0 & 0x0f) as usize;
    if b0 & 0x10 != 0 {
        // RFC 3550 §5.3.1: 16-bit profile, 16-bit length in 32-bit words
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    let mut end = p.len();
    if b0 & 0x20 != 0 {
        end = end.checked_sub(*p.last()? as usize)?;
    }
    let payload = p.get(start..end)?;
    Some(Rtp {
        marker: p[1] & 0x80 != 0,
        pt: p[1] & 0x7f,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload,
    })
}

fn header(out: &mut [u8], marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) {
    out[0] = 0x80;
    out[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// A telephone-event packet waiting to be sent on (RFC 4733 payloads are 4 octets per
/// event block; a few blocks with redundancy at most).
#[derive(Clone, Copy, Debug)]
struct Event {
    marker: bool,
    ts: u32,
    len: usize,
    payload: [u8; 16],
}

/// One direction of a transcoded stream. See the module documentation.
#[derive(Clone, Debug)]
pub struct Transcoder {
    spec: Spec,
    dec: Decoder,
    enc: Encoder,
    rate: Rate,
    /// Decoded samples at the decoder's rate (scratch).
    decoded: Vec<i16>,
    /// Samples at the encoder's rate not yet encoded, from `read`.
    pcm: Vec<i16>,
    read: usize,
    /// Timestamp of `pcm[read]`, and of the sample after the last one received.
    out_ts: u32,
    next_in: Option<u32>,
    ssrc: Option<u32>,
    seq: u16,
    /// The next packet out starts a run (RTP marker bit).
    marker: bool,
    event: Option<Event>,
    frames: u64,
}

impl Transcoder {
    pub fn new(spec: Spec) -> Transcoder {
        let spec = Spec {
            ptime_ms: spec.ptime_ms.clamp(10, MAX_PTIME_MS),
            ..spec
        };
        Transcoder {
            spec,
            dec: Decoder::new(spec.from),
            enc: Encoder::new(spec.to),
            rate: Rate::new(spec.from, spec.to),
            decoded: Vec::with_capacity(MAX_PAYLOAD * 2),
            pcm: Vec::with_capacity(4 * MAX_PAYLOAD),
            read: 0,
            out_ts: 0,
            next_in: None,
            ssrc: None,
            seq: 0,
            marker: true,
            event: None,
            frames: 0,
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Frames encoded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Samples (at the encoder's rate) in one output frame.
    fn frame_samples(&self) -> usize {
        self.spec.ptime_ms as usize * self.spec.to.pcm_rate() as usize / 1000
    }

    /// RTP timestamp units in one output frame (8000 Hz clock).
    fn frame_ticks(&self) -> u32 {
        self.spec.ptime_ms as u32 * 8
    }

    /// Take one RTP packet from the sender. `Ok(n)`: `n` packets are ready for
    /// [`Transcoder::pop`]; `Err` says why nothing is.
    pub fn push(&mut self, packet: &[u8]) -> Result<usize, Skip> {
        let rtp = parse(packet).ok_or(Skip::Malformed)?;
        if self.ssrc != Some(rtp.ssrc) {
            self.restart(&rtp);
        }
        if self.spec.events.is_some_and(|(from, _)| from == rtp.pt) {
            return self.push_event(&rtp);
        }
        if rtp.pt != self.spec.from_pt || rtp.payload.is_empty() {
            return Err(Skip::Unsupported);
        }
        if rtp.payload.len() > MAX_PAYLOAD {
            return Err(Skip::Malformed);
        }
        match self.next_in {
            Some(e) if e == rtp.ts => {}
            // older than what was received: late or a duplicate
            Some(e) if (rtp.ts.wrapping_sub(e) as i32) < 0 => return Err(Skip::Late),
            _ => {
                // a new run: what cannot make a whole frame is dropped
                self.pcm.clear();
                self.read = 0;
                self.out_ts = rtp.ts;
                self.marker = true;
            }
        }
        self.marker |= rtp.marker;
        // octets_per_ms × 1/8 ms per tick: one tick per octet for all three codecs
        self.next_in = Some(rtp.ts.wrapping_add(rtp.payload.len() as u32));
        self.decoded.clear();
        self.dec.decode(rtp.payload, &mut self.decoded);
        if self.read > 0 && self.read * 2 > self.pcm.len() {
            self.pcm.drain(..self.read);
            self.read = 0;
        }
        self.rate.convert(&self.decoded, &mut self.pcm);
        match self.ready() {
            0 => Err(Skip::Buffered),
            n => Ok(n),
        }
    }

    fn push_event(&mut self, rtp: &Rtp<'_>) -> Result<usize, Skip> {
        let len = rtp.payload.len();
        if len == 0 || len > 16 {
            return Err(Skip::Malformed);
        }
        let mut payload = [0u8; 16];
        payload[..len].copy_from_slice(rtp.payload);
        self.event = Some(Event {
            marker: rtp.marker,
            ts: rtp.ts,
            len,
            payload,
        });
        Ok(self.ready())
    }

    /// A new source (RFC 3550 §8.2): fresh coders, numbering continued from its packets.
    fn restart(&mut self, rtp: &Rtp<'_>) {
        self.ssrc = Some(rtp.ssrc);
        self.seq = rtp.seq;
        self.dec = Decoder::new(self.spec.from);
        self.enc = Encoder::new(self.spec.to);
        self.rate = Rate::new(self.spec.from, self.spec.to);
        self.pcm.clear();
        self.read = 0;
        self.next_in = None;
        self.marker = true;
        self.event = None;
    }

    /// Packets ready to pop.
    pub fn ready(&self) -> usize {
        usize::from(self.event.is_some()) + (self.pcm.len() - self.read) / self.frame_samples()
    }

    /// Write the next ready packet into `out` (which must hold a frame: 12 + 8 × ptime
    /// octets; 972 for the longest). Returns its length, `None` when nothing is ready.
    pub fn pop(&mut self, out: &mut [u8]) -> Option<usize> {
        let ssrc = self.ssrc?;
        if let Some(ev) = self.event.take() {
            let end = RTP_HEADER + ev.len;
            let (_, pt) = self.spec.events?;
            header(
                out.get_mut(..RTP_HEADER)?,
                ev.marker,
                pt,
                self.seq,
                ev.ts,
                ssrc,
            );
            out.get_mut(RTP_HEADER..end)?
                .copy_from_slice(&ev.payload[..ev.len]);
            self.seq = self.seq.wrapping_add(1);
            return Some(end);
        }
        let n = self.frame_samples();
        if self.pcm.len() - self.read < n {
            return None;
        }
        let octets = self.spec.ptime_ms as usize * self.spec.to.octets_per_ms();
        let body = out.get_mut(RTP_HEADER..RTP_HEADER + octets)?;
        let frame = &self.pcm[self.read..self.read + n];
        let written = self.enc.encode(frame, body);
        self.read += n;
        let (marker, ts) = (self.marker, self.out_ts);
        header(
            &mut out[..RTP_HEADER],
            marker,
            self.spec.to_pt,
            self.seq,
            ts,
            ssrc,
        );
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.out_ts = ts.wrapping_add(self.frame_ticks());
        self.frames += 1;
        Some(RTP_HEADER + written)
    }
}
