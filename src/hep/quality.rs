//! Quality reports in the capture stream: per call, per leg, what the relay measured (loss,
//! jitter, MOS, counters), as HEP protocol type 5 (RTCP) with the JSON body collectors
//! (heplify-server, Homer's QoS view) read for RTCP: one receiver-report block per leg, the
//! relay being the receiver, plus a `trunkline` object with the rest. Reports go out every
//! `capture.quality_interval` seconds for each call with media, and once more with the final
//! stats when the call's relay pair closes. Correlated by leg A's Call-ID like its SIP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use media_relay::control::Side;
use media_relay::{ClosedPairStats, LegPair, LegStats};
use serde::Serialize;

use super::{Captured, Hep, PROTO_RTCP};

/// One leg's report, ready to encode.
#[derive(Clone, Debug)]
pub struct Report {
    /// Leg A's Call-ID (the call's correlation id).
    pub correlation: String,
    /// Where the leg's media comes from (latched), else where its SDP said.
    pub peer: Option<SocketAddr>,
    /// The relay's end: its address and the leg's port.
    pub relay: SocketAddr,
    pub side: Side,
    pub stats: LegStats,
    pub last: bool,
}

/// The JSON body of `r`: an RTCP receiver report as collectors decode one (fraction lost in
/// 1/256, jitter in 8 kHz timestamp units), and trunkline's own measurements.
pub fn body(r: &Report) -> Vec<u8> {
    let s = &r.stats;
    let fraction = (s.fraction_lost.clamp(0.0, 1.0) * 256.0).min(255.0) as u8;
    // Typed and borrowed (no JSON map built per report: a report per leg every few seconds
    // for every call adds up).
    let body = Body {
        kind: 201,
        ssrc: 0,
        report_count: 1,
        report_blocks: [Block {
            source_ssrc: 0,
            highest_seq_no: 0,
            fraction_lost: fraction,
            ia_jitter: (s.jitter_ms * 8.0).round() as u64,
            packets_lost: s.packets_lost,
            lsr: 0,
            dlsr: 0,
        }],
        sdes_ssrc: 0,
        trunkline: Ext {
            leg: match r.side {
                Side::A => "a",
                Side::B => "b",
            },
            last: r.last,
            rtp_packets_in: s.rtp_packets_in,
            rtp_packets_out: s.rtp_packets_out,
            rtp_bytes_in: s.rtp_bytes_in,
            rtp_bytes_out: s.rtp_bytes_out,
            rtcp_packets_in: s.rtcp_packets_in,
            packets_dropped: s.packets_dropped,
            fraction_lost: s.fraction_lost,
            jitter_ms: s.jitter_ms,
            rtt_ms: s.rtt_ms,
            mos: s.mos,
            remote_mos: s.remote_mos,
            remote_fraction_lost: s.remote_fraction_lost,
            remote_jitter_ms: s.remote_jitter_ms,
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
struct Body {
    #[serde(rename = "type")]
    kind: u32,
    ssrc: u32,
    report_count: u32,
    report_blocks: [Block; 1],
    sdes_ssrc: u32,
    trunkline: Ext,
}

#[derive(Serialize)]
struct Block {
    source_ssrc: u32,
    highest_seq_no: u32,
    fraction_lost: u8,
    ia_jitter: u64,
    packets_lost: i64,
    lsr: u32,
    dlsr: u32,
}

#[derive(Serialize)]
struct Ext {
    leg: &'static str,
    #[serde(rename = "final")]
    last: bool,
    rtp_packets_in: u64,
    rtp_packets_out: u64,
    rtp_bytes_in: u64,
    rtp_bytes_out: u64,
    rtcp_packets_in: u64,
    packets_dropped: u64,
    fraction_lost: f64,
    jitter_ms: f64,
    rtt_ms: Option<f64>,
    mos: Option<f64>,
    remote_mos: Option<f64>,
    remote_fraction_lost: Option<f64>,
    remote_jitter_ms: Option<f64>,
}

impl Hep {
    /// Sends `r` (the leg's media towards the relay).
    pub fn quality(&self, r: &Report) {
        let payload = body(r);
        let unspecified = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0);
        self.sender.capture(&Captured {
            src: r.peer.unwrap_or(unspecified),
            dst: r.relay,
            transport: signaling::Transport::Udp,
            time: SystemTime::now(),
            correlation: r.correlation.as_bytes(),
            payload: &payload,
            proto_type: PROTO_RTCP,
        });
    }
}

/// The periodic reports, when due: every leg of every call the relay holds media for.
pub fn periodic(
    hep: &Hep,
    core: &signaling::b2bua::B2bua,
    policy: &mut crate::policy::LivePolicy,
    now: Instant,
) {
    let Some(q) = policy.quality.as_mut() else {
        return;
    };
    if !q.periodic_due(now) {
        return;
    }
    let relay_ip = q.relay_ip();
    let calls = core.call_summaries(now);
    let view = crate::admin::MediaView::of(policy, calls.iter().map(|c| c.a_call_id.as_str()));
    for (cid, infos) in &view.infos {
        for leg in infos.iter().flat_map(|i| &i.streams).flat_map(|s| &s.legs) {
            let stats = view.stats.get(&leg.port).unwrap_or(&leg.stats);
            hep.quality(&Report {
                correlation: cid.clone(),
                peer: stats.latched.or(leg.remote),
                relay: SocketAddr::new(relay_ip, leg.port),
                side: leg.side,
                stats: stats.clone(),
                last: false,
            });
        }
    }
}

/// A closing pair whose final stats are awaited, with what its report needs.
#[derive(Debug)]
struct Closing {
    correlation: String,
    remotes: [Option<SocketAddr>; 2],
    ports: [u16; 2],
    since: Instant,
}

/// How long a closing pair waits for its final stats before it is forgotten.
const FINAL_WAIT: Duration = Duration::from_secs(5);

/// The core task's side of the reports: the periodic schedule and the pairs whose final stats
/// are awaited (bounded by the pairs open: one entry per pair released, dropped when its
/// stats come or after [`FINAL_WAIT`]).
#[derive(Debug)]
pub struct QualityReports {
    interval: Option<Duration>,
    next: Option<Instant>,
    closing: HashMap<u16, Closing>,
    out: Vec<Report>,
    relay_ip: IpAddr,
}

impl QualityReports {
    /// `interval`: seconds between periodic reports (0: only the final one).
    pub fn new(interval: u32, relay_ip: IpAddr) -> QualityReports {
        QualityReports {
            interval: (interval > 0).then(|| Duration::from_secs(u64::from(interval))),
            next: None,
            closing: HashMap::new(),
            out: Vec::new(),
            relay_ip,
        }
    }

    /// Whether the periodic reports are due at `now` (and schedules the next).
    pub fn periodic_due(&mut self, now: Instant) -> bool {
        let Some(every) = self.interval else {
            return false;
        };
        match self.next {
            Some(t) if now < t => false,
            _ => {
                self.next = Some(now + every);
                true
            }
        }
    }

    /// A call released its media: `pairs` with the remotes its SDP named, per leg.
    pub fn released(
        &mut self,
        correlation: &str,
        pairs: &[(LegPair, [Option<SocketAddr>; 2])],
        now: Instant,
    ) {
        for (p, remotes) in pairs {
            self.closing.insert(
                p.a,
                Closing {
                    correlation: correlation.to_string(),
                    remotes: *remotes,
                    ports: [p.a, p.b],
                    since: now,
                },
            );
        }
    }

    /// Final stats of a closed pair: its two last reports, if the pair was one of ours.
    pub fn closed(&mut self, c: &ClosedPairStats) {
        let Some(k) = self.closing.remove(&c.pair.a) else {
            return;
        };
        for (i, (side, st)) in [(Side::A, &c.a), (Side::B, &c.b)].into_iter().enumerate() {
            self.out.push(Report {
                correlation: k.correlation.clone(),
                peer: st.latched.or(k.remotes[i]),
                relay: SocketAddr::new(self.relay_ip, k.ports[i]),
                side,
                stats: st.clone(),
                last: true,
            });
        }
    }

    /// Forgets closing pairs whose stats never came.
    pub fn expire(&mut self, now: Instant) {
        self.closing
            .retain(|_, c| now.saturating_duration_since(c.since) < FINAL_WAIT);
    }

    /// Pairs whose final stats are awaited.
    pub fn waiting(&self) -> bool {
        !self.closing.is_empty()
    }

    /// The reports ready to send.
    pub fn take(&mut self) -> Vec<Report> {
        std::mem::take(&mut self.out)
    }

    /// The relay's address in reports.
    pub fn relay_ip(&self) -> IpAddr {
        self.relay_ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(packets: u64) -> LegStats {
        LegStats {
            rtp_packets_in: packets,
            fraction_lost: 0.5,
            jitter_ms: 2.5,
            packets_lost: 7,
            mos: Some(3.9),
            latched: Some("10.0.0.9:4000".parse().unwrap()),
            ..LegStats::default()
        }
    }

    #[test]
    fn a_report_reads_as_an_rtcp_receiver_report_with_our_measurements() {
        let r = Report {
            correlation: "cid".into(),
            peer: None,
            relay: "10.0.0.1:20000".parse().unwrap(),
            side: Side::B,
            stats: stats(50),
            last: false,
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&r)).unwrap();
        assert_eq!(v["type"], 201);
        assert_eq!(v["report_blocks"][0]["fraction_lost"], 128);
        assert_eq!(v["report_blocks"][0]["ia_jitter"], 20);
        assert_eq!(v["report_blocks"][0]["packets_lost"], 7);
        assert_eq!(v["trunkline"]["leg"], "b");
        assert_eq!(v["trunkline"]["rtp_packets_in"], 50);
        assert_eq!(v["trunkline"]["mos"], 3.9);
        assert_eq!(v["trunkline"]["final"], false);
    }

    #[test]
    fn a_released_pair_reports_once_when_its_stats_come_and_is_forgotten_otherwise() {
        let t0 = Instant::now();
        let mut q = QualityReports::new(0, "10.0.0.1".parse().unwrap());
        assert!(!q.periodic_due(t0), "no periodic reports with interval 0");
        let pair = LegPair { a: 20000, b: 20002 };
        let remotes = [Some("10.0.0.5:5000".parse().unwrap()), None];
        q.released("call-1", &[(pair, remotes)], t0);
        assert!(q.waiting());
        let closed = ClosedPairStats {
            pair,
            duration: Duration::from_secs(3),
            a: stats(10),
            b: LegStats::default(),
        };
        q.closed(&closed);
        q.closed(&closed);
        let r = q.take();
        assert_eq!(r.len(), 2, "two legs, once");
        assert!(r.iter().all(|r| r.last && r.correlation == "call-1"));
        assert_eq!(
            r[0].peer,
            Some("10.0.0.9:4000".parse().unwrap()),
            "latched first"
        );
        assert_eq!(r[1].peer, None);
        assert_eq!(r[1].relay, "10.0.0.1:20002".parse().unwrap());
        q.released("call-2", &[(pair, remotes)], t0);
        q.expire(t0 + FINAL_WAIT);
        assert!(!q.waiting());
        let mut p = QualityReports::new(10, "10.0.0.1".parse().unwrap());
        assert!(p.periodic_due(t0));
        assert!(!p.periodic_due(t0 + Duration::from_secs(9)));
        assert!(p.periodic_due(t0 + Duration::from_secs(10)));
    }
}
