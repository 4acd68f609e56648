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
//! * DTMF when only one side negotiated telephone-event ([`Inband`]): the sender's events
//!   become Q.23 tones in the audio sent on ([`Inband::Generate`]; the sender's own audio is
//!   muted while an event lasts), or tones found in the sender's audio (Q.24,
//!   [`codecs::tones::Detector`]) become RFC 4733 events for the receiver, start packet with
//!   the marker, one update per audio packet, the end three times (RFC 4733 §2.5.1.4), the
//!   tone itself muted ([`Inband::Detect`]).
//! * DTMF with a side that signals it in SIP INFO (`dtmf: info`): the sender's events are not
//!   sent on but reported once each, when it ends ([`Inband::Report`],
//!   [`Transcoder::take_dtmf`]); digits the signalling got are sent to the receiver as
//!   events, paced with the audio (one update per frame, the end three times; the audio muted
//!   meanwhile: [`Inband::Inject`], [`Transcoder::inject`]).

mod codec;
#[cfg(test)]
mod tests;

pub use codec::{Codec, OPUS_PT};
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
    /// DTMF interworking when only one side negotiated telephone-event.
    pub inband: Inband,
}

/// DTMF between RFC 4733 events and in-band tones (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Inband {
    #[default]
    Off,
    /// The sender's telephone-events (this payload type) are sent on as tones.
    Generate(u8),
    /// Tones in the sender's audio are sent on as telephone-events of this payload type.
    Detect(u8),
    /// The sender's telephone-events (this payload type) are reported to the signalling (it
    /// sends them as SIP INFO), not sent on.
    Report(u8),
    /// Digits from the signalling (SIP INFO) are sent to the receiver as telephone-events of
    /// this payload type.
    Inject(u8),
}

/// A digit a sender's telephone-events carried, for the signalling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtmf {
    /// RFC 4733 §3.2 event code (0-9, 10 `*`, 11 `#`, 12-15 A-D).
    pub code: u8,
    pub duration_ms: u32,
}

/// Digits waiting to be reported, at most.
const MAX_REPORTS: usize = 16;
/// An injected digit lasts this long at most (ms).
const MAX_INJECT_MS: u32 = 5000;

/// Most event packets queued for [`Transcoder::pop`].
const MAX_QUEUED_EVENTS: usize = 8;
/// Volume of the events made from detected tones (RFC 4733 §2.3.4: -10 dBm0).
const DETECTED_VOLUME: u8 = 10;
/// An event being turned into tones ends by itself when the sender's audio is this far (RTP
/// ticks, 1 s) past the event's last update: its end packets were lost.
const LOST_END: u32 = 8000;

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
    /// A telephone-event taken for the signalling ([`Inband::Report`]): nothing to send.
    Signalled,
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
    pt: u8,
    marker: bool,
    ts: u32,
    len: usize,
    payload: [u8; 16],
}

impl Event {
    /// A telephone-event packet trunkline makes itself (a tone it detected, a digit from SIP
    /// INFO): one event block at [`DETECTED_VOLUME`], `duration` ticks so far.
    fn dtmf(pt: u8, marker: bool, ts: u32, code: u8, end: bool, duration: u32) -> Event {
        let b = codecs::dtmf::TelephoneEvent {
            event: code,
            end,
            volume: DETECTED_VOLUME,
            duration: duration.min(u32::from(u16::MAX)) as u16,
        }
        .encode();
        let mut payload = [0u8; 16];
        payload[..4].copy_from_slice(&b);
        Event {
            pt,
            marker,
            ts,
            len: 4,
            payload,
        }
    }
}

/// One direction of a transcoded stream. See the module documentation.
#[derive(Debug)]
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
    events: std::collections::VecDeque<Event>,
    frames: u64,
    /// The event being generated as tones ([`Inband::Generate`]).
    gen: Option<Generating>,
    /// The tone detector and the event it found ([`Inband::Detect`]).
    det: Option<Box<codecs::tones::Detector>>,
    found: Option<Found>,
    /// PCM rates of the decoder and the encoder ([`Codec::coding_rate`]).
    in_rate: u32,
    out_rate: u32,
    /// Where the sender's timeline and the receiver's meet, when their RTP clocks differ
    /// (Opus's 48 kHz and G.711's 8 kHz): an input timestamp maps to `out_base` plus its
    /// distance from `in_base`, scaled.
    in_base: u32,
    out_base: u32,
    /// [`Inband::Report`]: the sender's event being followed (start timestamp, code, duration
    /// so far in ticks, reported yet) and the digits to report.
    following: Option<(u32, u8, u32, bool)>,
    reports: std::collections::VecDeque<Dtmf>,
    /// [`Inband::Inject`]: digits to send, and the one being sent (code, its length and how
    /// much was sent, in ticks; its timestamp once started).
    to_inject: std::collections::VecDeque<Dtmf>,
    injecting: Option<(u8, u32, u32, Option<u32>)>,
}

#[derive(Clone, Copy, Debug)]
struct Generating {
    code: u8,
    volume: u8,
    /// The event's timestamp, and how far (RTP ticks) its tone has been made.
    ts0: u32,
    made_to: u32,
    /// Samples of the tone made so far (its phase).
    samples: u64,
    ended: bool,
}

#[derive(Clone, Copy, Debug)]
struct Found {
    code: u8,
    ts0: u32,
    duration: u32,
}

impl Transcoder {
    pub fn new(spec: Spec) -> Transcoder {
        let mut ptime_ms = spec.ptime_ms.clamp(10, MAX_PTIME_MS);
        // RFC 6716 §2.1.4: Opus frames are 2.5, 5, 10, 20, 40 or 60 ms.
        if spec.to == Codec::Opus && ![10, 20, 40, 60].contains(&ptime_ms) {
            ptime_ms = 20;
        }
        let same_clock = spec.from.clock_rate() == spec.to.clock_rate();
        let spec = Spec {
            ptime_ms,
            // Events and tones count in an 8 kHz clock: not across clocks.
            events: spec.events.filter(|_| same_clock),
            inband: if same_clock { spec.inband } else { Inband::Off },
            ..spec
        };
        let in_rate = spec.from.coding_rate(spec.to);
        let out_rate = spec.to.coding_rate(spec.from);
        Transcoder {
            spec,
            dec: Decoder::new(spec.from, in_rate),
            enc: Encoder::new(spec.to, out_rate),
            rate: Rate::new(in_rate, out_rate),
            decoded: Vec::with_capacity(MAX_PAYLOAD * 2),
            pcm: Vec::with_capacity(4 * MAX_PAYLOAD),
            read: 0,
            out_ts: 0,
            next_in: None,
            ssrc: None,
            seq: 0,
            marker: true,
            events: std::collections::VecDeque::new(),
            frames: 0,
            gen: None,
            det: matches!(spec.inband, Inband::Detect(_))
                .then(|| Box::new(codecs::tones::Detector::new(in_rate))),
            found: None,
            in_rate,
            out_rate,
            in_base: 0,
            out_base: 0,
            following: None,
            reports: std::collections::VecDeque::new(),
            to_inject: std::collections::VecDeque::new(),
            injecting: None,
        }
    }

    /// [`Inband::Inject`]: send `digit` to the receiver as telephone-events from the next
    /// frame on (after any digit still being sent). Ignored in any other mode.
    pub fn inject(&mut self, digit: Dtmf) {
        if matches!(self.spec.inband, Inband::Inject(_)) && self.to_inject.len() < MAX_REPORTS {
            self.to_inject.push_back(Dtmf {
                code: digit.code,
                duration_ms: digit.duration_ms.clamp(40, MAX_INJECT_MS),
            });
        }
    }

    /// [`Inband::Report`]: the next digit the sender's events carried, once it ended.
    pub fn take_dtmf(&mut self) -> Option<Dtmf> {
        self.reports.pop_front()
    }

    /// The receiver's timestamp for the sender's `ts`.
    fn map_ts(&self, ts: u32) -> u32 {
        let (from, to) = (self.spec.from.clock_rate(), self.spec.to.clock_rate());
        if from == to {
            return ts;
        }
        let d = u64::from(ts.wrapping_sub(self.in_base)) * u64::from(to) / u64::from(from);
        self.out_base.wrapping_add(d as u32)
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
        self.spec.ptime_ms as usize * self.out_rate as usize / 1000
    }

    /// RTP timestamp units in one output frame (the receiver's codec's clock).
    fn frame_ticks(&self) -> u32 {
        self.spec.ptime_ms as u32 * self.spec.to.clock_rate() / 1000
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
        if self.spec.inband == Inband::Generate(rtp.pt) {
            return self.push_generate(&rtp);
        }
        if self.spec.inband == Inband::Report(rtp.pt) {
            return self.push_report(&rtp);
        }
        if let Some(g) = self.gen.filter(|g| !g.ended) {
            // the sender's audio is muted while its event sounds; an event whose end
            // never came ends when the audio is well past it
            if rtp.ts.wrapping_sub(g.made_to) as i32 > LOST_END as i32 {
                self.gen = None;
            } else {
                return Err(Skip::Late);
            }
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
                self.out_ts = self.map_ts(rtp.ts);
                self.marker = true;
            }
        }
        self.marker |= rtp.marker;
        self.decoded.clear();
        self.dec.decode(rtp.payload, &mut self.decoded);
        // The packet's length in the sender's clock: what it decoded to, at its PCM rate
        // (G.711: one tick per octet; G.722: two samples at 16 kHz per 8 kHz tick; Opus:
        // whatever libopus says the frame held, at 48 kHz).
        let clock = u64::from(self.spec.from.clock_rate());
        let ticks = self.decoded.len() as u64 * clock / u64::from(self.in_rate);
        self.next_in = Some(rtp.ts.wrapping_add(ticks as u32));
        if self.det.is_some() {
            self.detect(&rtp);
        }
        if let Some((ts0, _, d, false)) = self.following {
            // an event whose end was lost is reported once the audio is well past it
            if rtp.ts.wrapping_sub(ts0.wrapping_add(d)) as i32 > LOST_END as i32 {
                self.report_followed();
            }
        }
        if matches!(self.spec.inband, Inband::Inject(_)) {
            self.inject_frame(ticks as u32);
        }
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
        let (_, pt) = self.spec.events.ok_or(Skip::Unsupported)?;
        let mut payload = [0u8; 16];
        payload[..len].copy_from_slice(rtp.payload);
        let ts = self.map_ts(rtp.ts);
        self.queue(Event {
            pt,
            marker: rtp.marker,
            ts,
            len,
            payload,
        });
        Ok(self.ready())
    }

    /// [`Inband::Report`]: an event packet of the sender's, followed until its end (or the
    /// next event) and reported then; nothing is sent on.
    fn push_report(&mut self, rtp: &Rtp<'_>) -> Result<usize, Skip> {
        let ev = codecs::dtmf::TelephoneEvent::parse(rtp.payload).ok_or(Skip::Malformed)?;
        match self.following {
            Some((ts0, ..)) if ts0 == rtp.ts => {}
            Some(_) => {
                self.report_followed();
                self.following = Some((rtp.ts, ev.event, 0, false));
            }
            None => self.following = Some((rtp.ts, ev.event, 0, false)),
        }
        if let Some(f) = self.following.as_mut() {
            f.2 = f.2.max(u32::from(ev.duration));
        }
        if ev.end {
            self.report_followed();
        }
        Err(Skip::Signalled)
    }

    fn report_followed(&mut self) {
        let Some((_, code, ticks, reported)) = self.following.as_mut() else {
            return;
        };
        if *reported {
            return;
        }
        *reported = true;
        let clock = u64::from(self.spec.from.clock_rate());
        let duration_ms = (u64::from(*ticks) * 1000 / clock) as u32;
        if self.reports.len() >= MAX_REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back(Dtmf {
            code: *code,
            duration_ms,
        });
    }

    /// [`Inband::Inject`]: the audio just decoded (`ticks` long) carries the digit being
    /// injected: its event packet goes out first, and the audio is muted.
    fn inject_frame(&mut self, ticks: u32) {
        let Inband::Inject(pt) = self.spec.inband else {
            return;
        };
        if self.injecting.is_none() {
            let Some(d) = self.to_inject.pop_front() else {
                return;
            };
            let total = d.duration_ms * self.spec.to.clock_rate() / 1000;
            self.injecting = Some((d.code, total, 0, None));
        }
        let Some((code, total, mut sent, ts0)) = self.injecting else {
            return;
        };
        // the event starts where the audio being buffered would have been sent
        let start = match ts0 {
            Some(t) => t,
            None => {
                let buffered = (self.pcm.len() - self.read) as u64;
                let clock = u64::from(self.spec.to.clock_rate());
                let ahead = (buffered * clock / u64::from(self.out_rate)) as u32;
                self.out_ts.wrapping_add(ahead)
            }
        };
        let out_ticks = (u64::from(ticks) * u64::from(self.spec.to.clock_rate())
            / u64::from(self.spec.from.clock_rate())) as u32;
        sent = (sent + out_ticks).min(total);
        let end = sent >= total;
        let mk = |marker: bool, end: bool| Event::dtmf(pt, marker, start, code, end, sent);
        if end {
            // RFC 4733 §2.5.1.4: the end packet three times
            for _ in 0..3 {
                self.queue(mk(false, true));
            }
            self.injecting = None;
        } else {
            self.queue(mk(ts0.is_none(), false));
            self.injecting = Some((code, total, sent, Some(start)));
        }
        self.decoded.iter_mut().for_each(|s| *s = 0);
    }

    fn queue(&mut self, ev: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    /// [`Inband::Generate`]: an event packet from the sender; its tone is made up to the
    /// duration it announces (RFC 4733 §2.5.1.3: every packet of an event carries its start
    /// timestamp and the duration so far).
    fn push_generate(&mut self, rtp: &Rtp<'_>) -> Result<usize, Skip> {
        let ev = codecs::dtmf::TelephoneEvent::parse(rtp.payload).ok_or(Skip::Malformed)?;
        if self.gen.is_none_or(|g| g.ts0 != rtp.ts) {
            // the tone starts where the audio sent so far ends, or a new run at the event
            let from = match self.next_in {
                Some(e) if (rtp.ts.wrapping_sub(e) as i32) <= 0 => e,
                _ => {
                    self.pcm.clear();
                    self.read = 0;
                    self.out_ts = rtp.ts;
                    self.marker = true;
                    rtp.ts
                }
            };
            self.gen = Some(Generating {
                code: ev.event,
                volume: ev.volume,
                ts0: rtp.ts,
                made_to: from,
                samples: 0,
                ended: false,
            });
        }
        let Some(mut g) = self.gen else {
            return Err(Skip::Unsupported);
        };
        if g.ended {
            // the end's retransmissions
            return Err(Skip::Late);
        }
        let until = g.ts0.wrapping_add(u32::from(ev.duration));
        let ticks = until.wrapping_sub(g.made_to);
        // at most a few frames per update (a wild duration makes no flood of tone)
        if (ticks as i32) > 0 && ticks <= 8 * u32::from(MAX_PTIME_MS) * 4 {
            let n = ticks as usize * self.out_rate as usize / 8000;
            if self.read > 0 && self.read * 2 > self.pcm.len() {
                self.pcm.drain(..self.read);
                self.read = 0;
            }
            let rate = self.out_rate;
            codecs::tones::generate(g.code, g.volume, rate, g.samples, n, &mut self.pcm);
            g.samples += n as u64;
            g.made_to = until;
            self.next_in = Some(until);
        } else if (ticks as i32) > 0 {
            g.made_to = until;
            self.next_in = Some(until);
        }
        g.ended = ev.end;
        self.gen = Some(g);
        match self.ready() {
            0 => Err(Skip::Buffered),
            n => Ok(n),
        }
    }

    /// [`Inband::Detect`]: look for tones in the packet just decoded; events out for what
    /// starts, lasts and stops; the tone's audio muted.
    fn detect(&mut self, rtp: &Rtp<'_>) {
        let (Some(det), Inband::Detect(pt)) = (self.det.as_mut(), self.spec.inband) else {
            return;
        };
        let mut changes = [None; 4];
        let mut k = 0;
        det.process(&self.decoded, |c| {
            if let Some(slot) = changes.get_mut(k) {
                *slot = Some(c);
                k += 1;
            }
        });
        let on = det.current();
        let ticks = rtp.payload.len() as u32;
        let event = |marker: bool, ts: u32, code: u8, end: bool, duration: u32| {
            Event::dtmf(pt, marker, ts, code, end, duration)
        };
        let mut started = false;
        for c in changes.into_iter().flatten() {
            match c {
                codecs::tones::Change::Start(code) => {
                    self.found = Some(Found {
                        code,
                        ts0: rtp.ts,
                        duration: ticks,
                    });
                    self.queue(event(true, rtp.ts, code, false, ticks));
                    started = true;
                }
                codecs::tones::Change::Stop(_) => {
                    if let Some(f) = self.found.take() {
                        // RFC 4733 §2.5.1.4: the end packet is sent three times
                        for _ in 0..3 {
                            self.queue(event(false, f.ts0, f.code, true, f.duration));
                        }
                    }
                }
            }
        }
        if !started {
            if let Some(f) = self.found.as_mut() {
                f.duration += ticks;
                let (ts0, code, d) = (f.ts0, f.code, f.duration);
                self.queue(event(false, ts0, code, false, d));
            }
        }
        if on.is_some() || started {
            self.decoded.iter_mut().for_each(|s| *s = 0);
        }
    }

    /// A new source (RFC 3550 §8.2): fresh coders, numbering continued from its packets.
    fn restart(&mut self, rtp: &Rtp<'_>) {
        self.ssrc = Some(rtp.ssrc);
        self.seq = rtp.seq;
        self.in_base = rtp.ts;
        self.out_base = rtp.ts;
        self.dec = Decoder::new(self.spec.from, self.in_rate);
        self.enc = Encoder::new(self.spec.to, self.out_rate);
        self.rate = Rate::new(self.in_rate, self.out_rate);
        self.pcm.clear();
        self.read = 0;
        self.next_in = None;
        self.marker = true;
        self.events.clear();
        self.gen = None;
        self.found = None;
        if self.det.is_some() {
            self.det = Some(Box::new(codecs::tones::Detector::new(self.in_rate)));
        }
    }

    /// Packets ready to pop.
    pub fn ready(&self) -> usize {
        self.events.len() + (self.pcm.len() - self.read) / self.frame_samples()
    }

    /// Write the next ready packet into `out` (which must hold a frame: 12 + 8 × ptime
    /// octets; 972 for the longest). Returns its length, `None` when nothing is ready.
    pub fn pop(&mut self, out: &mut [u8]) -> Option<usize> {
        let ssrc = self.ssrc?;
        if let Some(ev) = self.events.front().copied() {
            let end = RTP_HEADER + ev.len;
            header(
                out.get_mut(..RTP_HEADER)?,
                ev.marker,
                ev.pt,
                self.seq,
                ev.ts,
                ssrc,
            );
            out.get_mut(RTP_HEADER..end)?
                .copy_from_slice(&ev.payload[..ev.len]);
            self.events.pop_front();
            self.seq = self.seq.wrapping_add(1);
            return Some(end);
        }
        let n = self.frame_samples();
        if self.pcm.len() - self.read < n {
            return None;
        }
        let octets = self.spec.ptime_ms as usize * self.spec.to.octets_per_ms();
        // A fixed-rate frame needs its whole size; an Opus frame what libopus makes of it.
        let end = match self.spec.to {
            Codec::Opus => (RTP_HEADER + octets).min(out.len()),
            _ => RTP_HEADER + octets,
        };
        let body = out.get_mut(RTP_HEADER..end)?;
        let frame = &self.pcm[self.read..self.read + n];
        let written = self.enc.encode(frame, body);
        self.read += n;
        if written == 0 {
            // the encoder refused the frame (no room): it is lost, the timeline goes on
            self.out_ts = self.out_ts.wrapping_add(self.frame_ticks());
            return None;
        }
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
