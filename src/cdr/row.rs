//! One CDR as the sinks write it: JSON (serde) or CSV ([`CdrRow::csv_line`], columns in
//! [`CSV_HEADER`]), and its one-line log summary.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use media_relay::dataplane::LegStats;
use serde::Serialize;
use signaling::b2bua::CallRecord;

use super::WallClock;

/// One leg's media, as the relay saw it: `*_in` is what the leg's endpoint sent to the relay,
/// `*_out` what the relay sent to it; `remote_*` is what the endpoint reported (RTCP) about
/// the media it received.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LegMedia {
    pub codec: Option<String>,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub lost_in: i64,
    pub loss_in: f64,
    pub jitter_in_ms: f64,
    pub mos_in: Option<f64>,
    pub remote_loss: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub remote_mos: Option<f64>,
}

impl LegMedia {
    /// Adds a stream's final stats (counters add up; quality is the first stream's with media).
    pub fn add(&mut self, s: &LegStats) {
        let first = self.packets_in == 0;
        self.packets_in += s.rtp_packets_in;
        self.bytes_in += s.rtp_bytes_in;
        self.packets_out += s.rtp_packets_out;
        self.bytes_out += s.rtp_bytes_out;
        self.lost_in += s.packets_lost;
        if first && s.rtp_packets_in > 0 {
            self.loss_in = round3(s.fraction_lost);
            self.jitter_in_ms = round3(s.jitter_ms);
            self.mos_in = s.mos.map(round3);
            self.remote_loss = s.remote_fraction_lost.map(round3);
            self.remote_jitter_ms = s.remote_jitter_ms.map(round3);
            self.remote_mos = s.remote_mos.map(round3);
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    pub trunk: String,
    pub code: Option<u16>,
}

/// A call detail record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CdrRow {
    /// trunkline's call number (as in the admin API).
    pub call: u64,
    pub call_id: String,
    pub b_call_id: String,
    /// RFC 3339 UTC with milliseconds.
    pub start: String,
    pub ringing: Option<String>,
    pub answer: Option<String>,
    pub end: String,
    /// Start to end, and answer to end (0 when not answered), milliseconds; `billsec` is the
    /// billable time in whole seconds (rounded up).
    pub duration_ms: u64,
    pub billable_ms: u64,
    pub billsec: u64,
    pub caller: String,
    pub callee: String,
    pub caller_out: String,
    pub callee_out: String,
    pub source_trunk: Option<String>,
    pub dest_trunk: Option<String>,
    pub attempts: Vec<Attempt>,
    pub final_code: u16,
    pub hangup: &'static str,
    pub srtp: bool,
    pub transcoding: bool,
    pub a: LegMedia,
    pub b: LegMedia,
}

fn ms_between(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_millis() as u64
}

impl CdrRow {
    pub fn new(r: &CallRecord, source_trunk: Option<&str>, clock: WallClock) -> CdrRow {
        let ts = |t: Instant| rfc3339(clock.at(t));
        let billable_ms = r.answered.map_or(0, |a| ms_between(a, r.ended));
        CdrRow {
            call: r.call,
            call_id: r.a_call_id.clone(),
            b_call_id: r.b_call_id.clone(),
            start: ts(r.started),
            ringing: r.ringing.map(ts),
            answer: r.answered.map(ts),
            end: ts(r.ended),
            duration_ms: ms_between(r.started, r.ended),
            billable_ms,
            billsec: billable_ms.div_ceil(1000),
            caller: r.caller.clone(),
            callee: r.callee.clone(),
            caller_out: r.caller_out.clone(),
            callee_out: r.callee_out.clone(),
            source_trunk: source_trunk.map(str::to_string),
            dest_trunk: r.attempts.last().map(|a| a.trunk.clone()),
            attempts: r
                .attempts
                .iter()
                .map(|a| Attempt {
                    trunk: a.trunk.clone(),
                    code: a.code,
                })
                .collect(),
            final_code: r.final_code,
            hangup: r.hangup.as_str(),
            srtp: false,
            transcoding: false,
            a: LegMedia::default(),
            b: LegMedia::default(),
        }
    }

    /// The attempts as `trunk:code,trunk:code` (CSV, log line).
    pub fn attempts_text(&self) -> String {
        let mut s = String::new();
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&a.trunk);
            s.push(':');
            match a.code {
                Some(c) => s.push_str(&c.to_string()),
                None => s.push('-'),
            }
        }
        s
    }

    /// One structured line per call end, with the record's key fields.
    pub fn log_line(&self) {
        tracing::info!(
            target: "trunkline::cdr",
            call = self.call,
            call_id = %self.call_id,
            b_call_id = %self.b_call_id,
            caller = %self.caller,
            callee = %self.callee,
            source_trunk = self.source_trunk.as_deref().unwrap_or("-"),
            dest_trunk = self.dest_trunk.as_deref().unwrap_or("-"),
            attempts = %self.attempts_text(),
            final_code = self.final_code,
            hangup = self.hangup,
            duration_ms = self.duration_ms,
            billsec = self.billsec,
            "call ended"
        );
    }

    /// The record as one CSV line (RFC 4180 quoting), columns as [`CSV_HEADER`].
    pub fn csv_line(&self) -> String {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let leg = |l: &LegMedia| {
            vec![
                o(&l.codec),
                l.packets_in.to_string(),
                l.bytes_in.to_string(),
                l.packets_out.to_string(),
                l.bytes_out.to_string(),
                l.lost_in.to_string(),
                l.loss_in.to_string(),
                l.jitter_in_ms.to_string(),
                f(l.mos_in),
            ]
        };
        let mut cols = vec![
            self.call.to_string(),
            self.call_id.clone(),
            self.b_call_id.clone(),
            self.start.clone(),
            o(&self.ringing),
            o(&self.answer),
            self.end.clone(),
            self.duration_ms.to_string(),
            self.billable_ms.to_string(),
            self.billsec.to_string(),
            self.caller.clone(),
            self.callee.clone(),
            self.caller_out.clone(),
            self.callee_out.clone(),
            o(&self.source_trunk),
            o(&self.dest_trunk),
            self.attempts_text(),
            self.final_code.to_string(),
            self.hangup.to_string(),
            self.srtp.to_string(),
            self.transcoding.to_string(),
        ];
        cols.extend(leg(&self.a));
        cols.extend(leg(&self.b));
        let mut line = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            csv_field(&mut line, c);
        }
        line.push('\n');
        line
    }
}

/// The CSV columns.
pub const CSV_HEADER: &str = "call,call_id,b_call_id,start,ringing,answer,end,duration_ms,\
billable_ms,billsec,caller,callee,caller_out,callee_out,source_trunk,dest_trunk,attempts,\
final_code,hangup,srtp,transcoding,a_codec,a_packets_in,a_bytes_in,a_packets_out,a_bytes_out,\
a_lost_in,a_loss_in,a_jitter_in_ms,a_mos_in,b_codec,b_packets_in,b_bytes_in,b_packets_out,\
b_bytes_out,b_lost_in,b_loss_in,b_jitter_in_ms,b_mos_in\n";

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-12-02T14:05:09.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The codec of the first payload type of the first audio m-line in `sdp` (its a=rtpmap
/// name, or the static type's).
pub fn codec_of(sdp: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(sdp).ok()?;
    let mut lines = text.lines().map(str::trim);
    let m = lines.find(|l| l.starts_with("m=audio "))?;
    let pt: u8 = m.split_whitespace().nth(3)?.parse().ok()?;
    let prefix = format!("a=rtpmap:{pt} ");
    for l in lines {
        if l.starts_with("m=") {
            break;
        }
        if let Some(rest) = l.strip_prefix(&prefix) {
            return Some(rest.split('/').next().unwrap_or(rest).to_string());
        }
    }
    match codecs::payload::lookup(pt) {
        Some(t) => Some(t.name.to_string()),
        None => Some(format!("PT{pt}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_220_309_123);
        assert_eq!(rfc3339(t), "2026-12-02T14:05:09.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn codec_is_the_first_audio_payload() {
        let sdp = b"v=0\r\nm=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(codec_of(sdp).as_deref(), Some("PCMA"));
        let sdp = b"v=0\r\nm=audio 4000 RTP/AVP 96 0\r\na=rtpmap:96 opus/48000/2\r\n";
        assert_eq!(codec_of(sdp).as_deref(), Some("opus"));
        assert_eq!(codec_of(b"v=0\r\n"), None);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut s = String::new();
        csv_field(&mut s, "a,\"b\"");
        assert_eq!(s, "\"a,\"\"b\"\"\"");
        let cols = CSV_HEADER.trim_end().split(',').count();
        let clock = WallClock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        };
        let rec = CallRecord {
            call: 1,
            a_call_id: "x,y".into(),
            b_call_id: "b".into(),
            a_peer: "127.0.0.1:1".parse().expect("addr"),
            started: clock.mono,
            ringing: None,
            answered: Some(clock.mono),
            ended: clock.mono + Duration::from_millis(1500),
            caller: "a".into(),
            callee: "b".into(),
            caller_out: "a".into(),
            callee_out: "b".into(),
            attempts: vec![],
            final_code: 200,
            hangup: signaling::b2bua::Hangup::Caller,
            refused: false,
        };
        let row = CdrRow::new(&rec, None, clock);
        assert_eq!((row.billable_ms, row.billsec), (1500, 2));
        let line = row.csv_line();
        assert!(line.contains("\"x,y\""));
        assert_eq!(
            line.replace("\"x,y\"", "xy").trim_end().split(',').count(),
            cols
        );
    }
}
