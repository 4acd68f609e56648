//! Codec policy per leg and the transcoding decision (RFC 3264 offer/answer, per m-line).
//!
//! A leg's policy is the ordered list of codecs that may be offered to it (`codecs:` on a trunk,
//! `media.codecs` for other callers). For an offer from side S to side T:
//! * S's formats not in S's policy are not accepted from it (none left: 488);
//! * the offer to T lists, in the order of T's policy, each codec S offered (with S's payload
//!   type, rtpmap and fmtp) and each codec S did not offer but the relay can transcode to from
//!   one S offered (with its static payload type); telephone-event only when S offered it;
//!   nothing T's policy leaves out. No audio codec left: 488.
//!
//! When T's answer picks a codec S offered, media is forwarded as today. When it picks one the
//! relay added, the answer to S names S's first transcodable codec (S's preference), its
//! telephone-event and S's own `a=ptime`; the two legs get a [`Spec`] each (see
//! [`crate::transcode`]).
//!
//! DTMF: telephone-event in T's policy is offered to T also when S has none (payload type 101
//! or another free one). When only one side ends up with telephone-event, the relay
//! interworks (with the same codec on both sides too): the events of the side that has them
//! become tones for the other, the other's tones events ([`Inband`]).
//!
//! Without a policy on either side an m-line is not touched. Only `audio` m-lines over RTP
//! are subject to it.

use crate::sdp::{FormatsOut, Media};
use crate::transcode::{Codec, Inband, Spec};

/// A codec name of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecName {
    /// One the relay can transcode.
    Known(Codec),
    /// One it cannot (Opus in a build without it): allowed when offered, by its rtpmap
    /// encoding name, never added or transcoded.
    Named(String),
    /// RFC 4733 events (`telephone-event/8000`).
    TelephoneEvent,
    /// Not a codec: this leg signals DTMF in SIP INFO (`dtmf: info`). It is offered no
    /// telephone-event; the other leg's events become INFO for it and its INFO events for the
    /// other ([`Inband::Report`], [`Inband::Inject`]).
    DtmfInfo,
}

impl CodecName {
    /// `PCMU`, `PCMA`, `G722`, `opus` (a build with Opus) or `telephone-event`
    /// (case-insensitive); `None` otherwise.
    pub fn parse(s: &str) -> Option<CodecName> {
        if s.eq_ignore_ascii_case("telephone-event") {
            return Some(CodecName::TelephoneEvent);
        }
        if s.eq_ignore_ascii_case("opus") {
            return Some(match Codec::parse(s, 48_000) {
                Some(c) => CodecName::Known(c),
                None => CodecName::Named("opus".to_string()),
            });
        }
        Codec::parse(s, 8000).map(CodecName::Known)
    }
}

/// Why an offer cannot be made acceptable to the policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The offerer offered nothing its own policy allows.
    NoneAllowed,
    /// Nothing the other side's policy allows can be offered to it (not even by transcoding).
    NoCommon,
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::NoneAllowed => f.write_str("no codec of the offer is allowed"),
            CodecError::NoCommon => f.write_str("no codec the other side takes can be offered"),
        }
    }
}

/// One payload format of an m-line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Format {
    pt: u8,
    /// Encoding name and clock rate (from the rtpmap, else the static type).
    name: Option<(String, u32)>,
    rtpmap: Option<String>,
    fmtp: Option<String>,
}

impl Format {
    fn codec(&self) -> Option<Codec> {
        match &self.name {
            Some((n, r)) => Codec::parse(n, *r),
            None => Codec::of_static(self.pt),
        }
    }

    fn is_event(&self) -> bool {
        self.name
            .as_ref()
            .is_some_and(|(n, r)| n.eq_ignore_ascii_case("telephone-event") && *r == 8000)
    }

    fn is(&self, want: &CodecName) -> bool {
        match want {
            CodecName::Known(c) => self.codec() == Some(*c),
            CodecName::Named(n) => self
                .name
                .as_ref()
                .is_some_and(|(e, _)| e.eq_ignore_ascii_case(n)),
            CodecName::TelephoneEvent => self.is_event(),
            CodecName::DtmfInfo => false,
        }
    }

    /// `c` as trunkline offers it: its static payload type, or for Opus a dynamic one none
    /// of `used` has (111 when free), with in-band FEC (RFC 7587 §6.1 `useinbandfec`).
    fn of(c: Codec, used: &[&[Format]]) -> Format {
        let pt = match c {
            Codec::Opus => std::iter::once(crate::transcode::OPUS_PT)
                .chain(96..=127)
                .find(|pt| used.iter().all(|u| u.iter().all(|f| f.pt != *pt)))
                .unwrap_or(crate::transcode::OPUS_PT),
            c => c.static_pt(),
        };
        Format {
            pt,
            name: Some((c.name().to_string(), c.clock_rate())),
            rtpmap: Some(format!("{pt} {}", c.rtpmap())),
            fmtp: (c == Codec::Opus).then(|| "useinbandfec=1".to_string()),
        }
    }

    /// telephone-event at `pt`, all DTMF events (RFC 4733 §2.4.1 `0-15`).
    fn event(pt: u8) -> Format {
        Format {
            pt,
            name: Some(("telephone-event".to_string(), 8000)),
            rtpmap: Some(format!("{pt} telephone-event/8000")),
            fmtp: Some("0-15".to_string()),
        }
    }

    fn attrs(&self, out: &mut Vec<String>) {
        if let Some(r) = &self.rtpmap {
            out.push(format!("rtpmap:{r}"));
        }
        if let Some(f) = &self.fmtp {
            out.push(format!("fmtp:{} {f}", self.pt));
        }
    }
}

/// A dynamic payload type none of `used` has: 101 (the common choice) when free.
fn free_pt(used: &[Format]) -> u8 {
    std::iter::once(101)
        .chain(96..=127)
        .find(|pt| used.iter().all(|f| f.pt != *pt))
        .unwrap_or(101)
}

/// The payload formats of `m`, in its order.
fn formats_of(m: &Media) -> Vec<Format> {
    m.formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .map(|pt| {
            let map = m.rtpmaps.iter().find(|r| r.payload_type == pt);
            Format {
                pt,
                name: map.map(|r| (r.encoding.clone(), r.clock_rate)),
                rtpmap: map.map(|r| {
                    let mut v = format!("{pt} {}/{}", r.encoding, r.clock_rate);
                    if let Some(p) = &r.params {
                        v.push('/');
                        v.push_str(p);
                    }
                    v
                }),
                fmtp: m
                    .fmtps
                    .iter()
                    .find(|(p, _)| *p == pt)
                    .map(|(_, v)| v.clone()),
            }
        })
        .collect()
}

/// An offer as it was negotiated, kept for its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Offered {
    /// The offerer's formats its policy allows, in its order.
    from: Vec<Format>,
    /// The offerer's `a=ptime`.
    from_ptime: Option<u16>,
    /// The offerer's and the answerer's leg signal DTMF in SIP INFO.
    info: (bool, bool),
}

fn out_of(formats: &[Format], ptime: Option<u16>) -> FormatsOut {
    let mut attrs = Vec::new();
    for f in formats {
        f.attrs(&mut attrs);
    }
    if let Some(p) = ptime {
        attrs.push(format!("ptime:{p}"));
    }
    FormatsOut {
        formats: formats.iter().map(|f| f.pt).collect(),
        attrs,
    }
}

/// The offer `m` from a side with policy `from` to a side with policy `to` (see the module
/// documentation): the formats the offer leaves with, and what the answer needs. `Ok(None)`:
/// no policy applies, the m-line goes as it is.
pub(crate) fn offer(
    m: &Media,
    from: Option<&[CodecName]>,
    to: Option<&[CodecName]>,
) -> Result<Option<(FormatsOut, Offered)>, CodecError> {
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let mut mine = formats_of(m);
    if let Some(allowed) = from {
        mine.retain(|f| allowed.iter().any(|a| f.is(a)));
        if !mine.iter().any(|f| !f.is_event()) {
            return Err(CodecError::NoneAllowed);
        }
    }
    let can_transcode = mine.iter().any(|f| f.codec().is_some());
    let offered = match to {
        None => mine.clone(),
        Some(list) => {
            let mut out: Vec<Format> = Vec::new();
            for want in list {
                if let Some(f) = mine.iter().find(|f| f.is(want)) {
                    out.push(f.clone());
                } else if !can_transcode {
                    // nothing the relay can decode: no codec and no events of its own
                } else if let CodecName::Known(c) = want {
                    let f = Format::of(*c, &[&mine, &out]);
                    out.push(f);
                } else if matches!(want, CodecName::Named(_) | CodecName::DtmfInfo) {
                    // not offered and the relay cannot make it; or no format at all
                } else {
                    // events the offerer does not have: the relay interworks them with tones
                    out.push(Format::event(free_pt(&mine)));
                }
            }
            out
        }
    };
    if !offered.iter().any(|f| !f.is_event()) {
        return Err(CodecError::NoCommon);
    }
    let ptime = m.ptime;
    let info = |p: Option<&[CodecName]>| p.is_some_and(|l| l.contains(&CodecName::DtmfInfo));
    Ok(Some((
        out_of(&offered, ptime),
        Offered {
            from: mine,
            from_ptime: ptime,
            info: (info(from), info(to)),
        },
    )))
}

/// What an answer does to the stream: the formats it goes back to the offerer with (`None`:
/// as it is) and the transcoding of the leg facing the offerer and of the leg facing the
/// answerer (`None`: forwarded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Answered {
    pub formats: Option<FormatsOut>,
    pub offerer: Option<Spec>,
    pub answerer: Option<Spec>,
}

/// The answer `m` to an offer negotiated as `off`.
pub(crate) fn answer(m: &Media, off: &Offered) -> Answered {
    if m.is_rejected() {
        return Answered::default();
    }
    let theirs = formats_of(m);
    let Some(picked) = theirs.iter().find(|f| !f.is_event()) else {
        return Answered::default();
    };
    let same = |a: &Format, b: &Format| match (&a.name, &b.name) {
        (Some((n, r)), Some((n2, r2))) => n.eq_ignore_ascii_case(n2) && r == r2,
        (None, None) => a.pt == b.pt,
        _ => a.codec().is_some() && a.codec() == b.codec(),
    };
    let ev_mine = off.from.iter().find(|f| f.is_event());
    let ev_theirs = theirs.iter().find(|f| f.is_event());
    // the offerer's own format of the codec picked, or (transcoding) its first it can be
    // transcoded from
    let kept = off.from.iter().find(|f| same(f, picked));
    let (mine, from, to) = match (kept, picked.codec()) {
        (Some(k), Some(c)) => (k.clone(), c, c),
        (Some(_), None) => {
            // a codec the relay does not know, common to both: forwarded; only events the
            // relay added to the offer are kept from the offerer
            return match (ev_mine, ev_theirs) {
                (None, Some(e)) => Answered {
                    formats: Some(without(&theirs, e.pt, m.ptime)),
                    ..Answered::default()
                },
                _ => Answered::default(),
            };
        }
        (None, Some(to)) => match off.from.iter().find_map(|f| f.codec().map(|c| (f, c))) {
            Some((f, c)) => (f.clone(), c, to),
            None => return Answered::default(),
        },
        (None, None) => return Answered::default(),
    };
    let transcoding = kept.is_none();
    if !transcoding && from == Codec::Opus {
        // Opus on both sides is forwarded as it is; no tones are made or found in it.
        return Answered::default();
    }
    // DTMF: relayed when both have events; when one side has, the relay turns its events
    // into tones for the other and the other's tones into events for it
    let (mut to_a, mut to_b) = (Inband::Off, Inband::Off);
    let events = ev_mine.zip(ev_theirs);
    match (ev_mine, ev_theirs) {
        // the answerer signals DTMF in SIP INFO: the offerer's events go to it as INFO, its
        // INFO to the offerer as events
        (Some(e), None) if off.info.1 => {
            to_a = Inband::Report(e.pt);
            to_b = Inband::Inject(e.pt);
        }
        (None, Some(e)) if off.info.0 => {
            to_a = Inband::Inject(e.pt);
            to_b = Inband::Report(e.pt);
        }
        (Some(e), None) => {
            to_a = Inband::Generate(e.pt);
            to_b = Inband::Detect(e.pt);
        }
        (None, Some(e)) => {
            to_a = Inband::Detect(e.pt);
            to_b = Inband::Generate(e.pt);
        }
        _ if !transcoding => return Answered::default(),
        _ => {}
    }
    let mut back = vec![mine.clone()];
    back.extend(ev_mine.cloned());
    Answered {
        formats: Some(out_of(&back, off.from_ptime)),
        offerer: Some(Spec {
            from,
            from_pt: mine.pt,
            to,
            to_pt: picked.pt,
            ptime_ms: m.ptime.unwrap_or(20),
            events: events.map(|(a, b)| (a.pt, b.pt)),
            inband: to_a,
        }),
        answerer: Some(Spec {
            from: to,
            from_pt: picked.pt,
            to: from,
            to_pt: mine.pt,
            ptime_ms: off.from_ptime.unwrap_or(20),
            events: events.map(|(a, b)| (b.pt, a.pt)),
            inband: to_b,
        }),
    }
}

/// `formats` without payload type `pt`, for the answer to the offerer.
fn without(formats: &[Format], pt: u8, ptime: Option<u16>) -> FormatsOut {
    let kept: Vec<Format> = formats.iter().filter(|f| f.pt != pt).cloned().collect();
    out_of(&kept, ptime)
}

/// The m-lines a codec policy applies to.
pub(crate) fn applies(m: &Media) -> bool {
    m.kind.eq_ignore_ascii_case("audio") && m.proto.to_ascii_uppercase().contains("RTP/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Sdp;

    fn media(lines: &str) -> Media {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{lines}"
        );
        Sdp::parse(sdp.as_bytes()).expect("sdp").media()[0].clone()
    }

    fn names(v: &[&str]) -> Vec<CodecName> {
        v.iter()
            .map(|n| CodecName::parse(n).expect("name"))
            .collect()
    }

    const PHONE: &str = "m=audio 4000 RTP/AVP 9 0 101\r\na=rtpmap:9 G722/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";

    #[test]
    fn no_policy_no_change() {
        assert_eq!(offer(&media(PHONE), None, None), Ok(None));
    }

    #[test]
    fn offer_follows_the_receivers_order_and_adds_what_can_be_transcoded() {
        let to = names(&["PCMA", "PCMU", "telephone-event"]);
        let (out, off) = offer(&media(PHONE), None, Some(&to)).unwrap().unwrap();
        assert_eq!(out.formats, [8, 0, 101]);
        assert_eq!(
            out.attrs,
            [
                "rtpmap:8 PCMA/8000",
                "rtpmap:101 telephone-event/8000",
                "fmtp:101 0-15",
                "ptime:20"
            ]
        );
        assert_eq!(off.from.len(), 3);
        // G.722 left out: the trunk's list does not have it
        assert!(!out.formats.contains(&9));
    }

    #[test]
    fn answer_with_a_codec_of_the_offer_forwards() {
        let to = names(&["PCMA", "PCMU", "telephone-event"]);
        let (_, off) = offer(&media(PHONE), None, Some(&to)).unwrap().unwrap();
        let a = answer(
            &media("m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"),
            &off,
        );
        assert_eq!(a, Answered::default());
        // no events on either side: forwarded too
        let plain = media("m=audio 4000 RTP/AVP 0\r\n");
        let (_, off) = offer(&plain, None, Some(&names(&["PCMU"])))
            .unwrap()
            .unwrap();
        assert_eq!(answer(&plain, &off), Answered::default());
    }

    #[test]
    fn events_on_one_side_only_are_interworked_with_tones() {
        // the phone has events, the trunk (same codec) none: its events become tones
        let to = names(&["PCMU"]);
        let (out, off) = offer(&media(PHONE), None, Some(&to)).unwrap().unwrap();
        assert_eq!(out.formats, [0]);
        let a = answer(&media("m=audio 5000 RTP/AVP 0\r\n"), &off);
        assert_eq!(
            a.formats.expect("events kept for the phone").formats,
            [0, 101]
        );
        let (o, t) = (a.offerer.unwrap(), a.answerer.unwrap());
        assert_eq!(
            (o.from, o.to, o.inband),
            (Codec::Pcmu, Codec::Pcmu, Inband::Generate(101))
        );
        assert_eq!(
            (t.from, t.to, t.inband),
            (Codec::Pcmu, Codec::Pcmu, Inband::Detect(101))
        );
        assert_eq!((o.events, t.events), (None, None));

        // a phone without events, a trunk that wants them: offered at a free type, and the
        // phone's tones become the trunk's events
        let phone = media("m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 G726-32/8000\r\n");
        let to = names(&["PCMU", "telephone-event"]);
        let (out, off) = offer(&phone, None, Some(&to)).unwrap().unwrap();
        assert_eq!(out.formats, [0, 96], "101 is the phone's");
        assert!(out
            .attrs
            .contains(&"rtpmap:96 telephone-event/8000".to_string()));
        let a = answer(
            &media("m=audio 5000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"),
            &off,
        );
        assert_eq!(a.formats.expect("no events to the phone").formats, [0]);
        assert_eq!(a.offerer.unwrap().inband, Inband::Detect(96));
        assert_eq!(a.answerer.unwrap().inband, Inband::Generate(96));
    }

    #[test]
    fn answer_with_an_added_codec_transcodes_both_ways() {
        let to = names(&["PCMA", "telephone-event"]);
        let (_, off) = offer(&media(PHONE), None, Some(&to)).unwrap().unwrap();
        let a = answer(
            &media(
                "m=audio 5000 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:30\r\n",
            ),
            &off,
        );
        let f = a.formats.expect("rewritten back");
        assert_eq!(f.formats, [9, 101]);
        assert!(f.attrs.contains(&"ptime:20".to_string()));
        assert_eq!(
            a.offerer,
            Some(Spec {
                from: Codec::G722,
                from_pt: 9,
                to: Codec::Pcma,
                to_pt: 8,
                ptime_ms: 30,
                events: Some((101, 96)),
                inband: Inband::Off,
            })
        );
        assert_eq!(
            a.answerer,
            Some(Spec {
                from: Codec::Pcma,
                from_pt: 8,
                to: Codec::G722,
                to_pt: 9,
                ptime_ms: 20,
                events: Some((96, 101)),
                inband: Inband::Off,
            })
        );
    }

    #[test]
    fn nothing_allowed_or_nothing_in_common_is_refused() {
        let only_g729 = media("m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n");
        let pcma = names(&["PCMA"]);
        assert_eq!(
            offer(&only_g729, Some(&pcma), None),
            Err(CodecError::NoneAllowed)
        );
        // G.729 cannot be transcoded: nothing can be offered to a PCMA-only trunk
        assert_eq!(
            offer(&only_g729, None, Some(&pcma)),
            Err(CodecError::NoCommon)
        );
        // events alone are no codec
        let te = names(&["telephone-event"]);
        assert_eq!(
            offer(&media(PHONE), None, Some(&te)),
            Err(CodecError::NoCommon)
        );
    }

    #[test]
    fn the_offerers_policy_filters_what_it_may_send() {
        let from = names(&["PCMU", "telephone-event"]);
        let (out, off) = offer(&media(PHONE), Some(&from), None).unwrap().unwrap();
        assert_eq!(out.formats, [0, 101]);
        assert_eq!(off.from.len(), 2);
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            CodecName::parse("pcma"),
            Some(CodecName::Known(Codec::Pcma))
        );
        assert_eq!(
            CodecName::parse("Telephone-Event"),
            Some(CodecName::TelephoneEvent)
        );
        assert_eq!(CodecName::parse("G729"), None);
    }

    /// An Opus phone and a G.711 trunk (a build with Opus): the trunk is offered A-law, the
    /// answer transcodes with the clocks of both; a G.711 caller towards an Opus-only policy
    /// is offered Opus at a free dynamic type.
    #[cfg(feature = "opus")]
    #[test]
    fn opus_is_offered_and_transcoded() {
        let opus_phone = media(
            "m=audio 4000 RTP/AVP 111 8\r\na=rtpmap:111 opus/48000/2\r\n\
             a=fmtp:111 stereo=1;sprop-stereo=1\r\n",
        );
        let (out, off) = offer(
            &opus_phone,
            Some(&names(&["opus"])),
            Some(&names(&["PCMA"])),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            out.formats,
            [8],
            "the phone's A-law was not its policy's: added"
        );
        let a = answer(&media("m=audio 5000 RTP/AVP 8\r\n"), &off);
        assert_eq!(a.formats.unwrap().formats, [111]);
        let (o, t) = (a.offerer.unwrap(), a.answerer.unwrap());
        assert_eq!(
            (o.from, o.from_pt, o.to, o.to_pt),
            (Codec::Opus, 111, Codec::Pcma, 8)
        );
        assert_eq!((t.from, t.to, t.to_pt), (Codec::Pcma, Codec::Opus, 111));

        let caller = media("m=audio 4000 RTP/AVP 0 111\r\na=rtpmap:111 G726-32/8000\r\n");
        let (out, _) = offer(&caller, None, Some(&names(&["opus", "PCMU"])))
            .unwrap()
            .unwrap();
        assert_eq!(
            out.formats,
            [96, 0],
            "111 is the caller's: the next free type"
        );
        assert!(
            out.attrs.contains(&"rtpmap:96 opus/48000/2".to_string()),
            "{:?}",
            out.attrs
        );
        assert!(out.attrs.contains(&"fmtp:96 useinbandfec=1".to_string()));
        // Opus on both sides is forwarded, never decoded.
        let (_, off) = offer(&opus_phone, None, Some(&names(&["opus"])))
            .unwrap()
            .unwrap();
        let both = media("m=audio 5000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n");
        assert_eq!(answer(&both, &off), Answered::default());
    }

    /// Without Opus in the build, `opus` in a policy passes Opus through when it is offered
    /// and is never added.
    #[cfg(not(feature = "opus"))]
    #[test]
    fn without_opus_it_is_only_passed_through() {
        assert_eq!(
            CodecName::parse("opus"),
            Some(CodecName::Named("opus".into()))
        );
        let opus_phone = media("m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n");
        let (out, _) = offer(&opus_phone, None, Some(&names(&["opus", "PCMA"])))
            .unwrap()
            .unwrap();
        assert_eq!(out.formats, [111]);
        let g711 = media("m=audio 4000 RTP/AVP 8\r\n");
        let (out, _) = offer(&g711, None, Some(&names(&["opus", "PCMA"])))
            .unwrap()
            .unwrap();
        assert_eq!(out.formats, [8], "no Opus made up");
    }

    /// A trunk that signals DTMF in SIP INFO: offered no telephone-event; the phone's events
    /// are reported for INFO and the trunk's INFO digits injected as the phone's events, in
    /// either direction of the call.
    #[test]
    fn a_sip_info_leg_gets_reports_and_injections() {
        let mut trunk = names(&["PCMU"]);
        trunk.push(CodecName::DtmfInfo);
        let (out, off) = offer(&media(PHONE), None, Some(&trunk)).unwrap().unwrap();
        assert_eq!(out.formats, [0], "no telephone-event to an INFO trunk");
        let a = answer(&media("m=audio 5000 RTP/AVP 0\r\n"), &off);
        assert_eq!(
            a.formats.unwrap().formats,
            [0, 101],
            "the phone keeps its events"
        );
        let (o, t) = (a.offerer.unwrap(), a.answerer.unwrap());
        assert_eq!(
            (o.inband, t.inband),
            (Inband::Report(101), Inband::Inject(101))
        );
        // the trunk calls the phone: its offer's events are not taken, the phone's are
        let from_trunk =
            media("m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
        let phone = names(&["PCMU", "telephone-event"]);
        let (out, off) = offer(&from_trunk, Some(&trunk), Some(&phone))
            .unwrap()
            .unwrap();
        assert_eq!(
            out.formats,
            [0, 101],
            "events offered to the phone by the relay"
        );
        let a = answer(
            &media("m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"),
            &off,
        );
        assert_eq!(a.formats.unwrap().formats, [0], "none back to the trunk");
        let (o, t) = (a.offerer.unwrap(), a.answerer.unwrap());
        assert_eq!(
            (o.inband, t.inband),
            (Inband::Inject(101), Inband::Report(101))
        );
    }
}
