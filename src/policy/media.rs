//! The media relay as the core task sees it, and how its counters reach the metrics.

use std::sync::Arc;

use crate::metrics::Metrics;

/// The media relay as the core task sees it: call-level control over the data plane.
pub struct Media {
    pub calls: media_relay::control::MediaCalls,
    pub relay: Arc<media_relay::Relay>,
    pub events: crossbeam_channel::Receiver<media_relay::RelayEvent>,
    /// The ng control port's server and its own call table.
    pub ng: Option<(
        media_relay::ng::NgServer,
        Arc<std::sync::Mutex<media_relay::control::MediaCalls>>,
    )>,
}

/// What the relay tells the core task about a SIP call (by leg A's Call-ID and From tag).
pub enum MediaNotice {
    /// No RTP for the media timeout: the call ends.
    Timeout { call_id: String, from_tag: String },
    /// The endpoint on leg `from` sent `digit` as telephone-events; the other leg gets it as
    /// SIP INFO.
    Dtmf {
        call_id: String,
        from_tag: String,
        from: signaling::b2bua::Leg,
        digit: media_relay::transcode::Dtmf,
    },
}

impl Media {
    /// What the relay reported: calls whose media timed out, digits for SIP INFO.
    pub fn take_events(&mut self) -> Vec<MediaNotice> {
        let mut out = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                media_relay::RelayEvent::Dtmf { pair, port, digit } => {
                    if let Some((call_id, from_tag, side)) = self.calls.side_of_port(pair, port) {
                        let from = match side {
                            media_relay::control::Side::A => signaling::b2bua::Leg::A,
                            media_relay::control::Side::B => signaling::b2bua::Leg::B,
                        };
                        out.push(MediaNotice::Dtmf {
                            call_id,
                            from_tag,
                            from,
                            digit,
                        });
                    }
                }
                media_relay::RelayEvent::MediaTimeout(pair) => {
                    if let Some((call_id, from_tag)) = self.calls.call_for_pair(pair) {
                        out.push(MediaNotice::Timeout { call_id, from_tag });
                    } else if let Some((_, ng)) = &self.ng {
                        // An ng-controlled call: rtpengine deletes it on media timeout.
                        if let Ok(mut calls) = ng.lock() {
                            if let Some((cid, tag)) = calls.call_for_pair(pair) {
                                let _ = calls.delete(&cid, Some(&tag));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Copy the relay's counters into the Prometheus series.
    pub fn refresh_metrics(&self, m: &Metrics) {
        let t = self.relay.totals();
        m.relay_sessions.set(t.active_pairs as i64);
        set_counter(&m.relay_packets.with_label_values(&["all"]), t.packets_out);
        set_counter(&m.relay_bytes.with_label_values(&["all"]), t.bytes_out);
        set_counter(
            &m.relay_packets.with_label_values(&["kernel"]),
            t.kernel_packets,
        );
        m.relay_kernel_flows.set(t.kernel_flows as i64);
        if let Some((ng, _)) = &self.ng {
            set_counter(&m.ng_refused, ng.refused());
        }
        set_counter(
            &m.relay_packets_in.with_label_values(&["rtcp"]),
            t.rtcp_packets_in,
        );
        set_counter(
            &m.relay_packets_in.with_label_values(&["all"]),
            t.packets_in,
        );
        for (reason, v) in [
            ("not_ready", t.dropped_not_ready),
            ("foreign_source", t.dropped_foreign_source),
            ("probation", t.dropped_probation),
            ("no_destination", t.dropped_no_destination),
            ("truncated", t.dropped_truncated),
            ("send_error", t.send_errors),
            ("srtp_auth", t.srtp_auth_failures),
            ("srtp_replay", t.srtp_replays),
            ("transcode", t.transcode_drops),
        ] {
            set_counter(&m.relay_dropped.with_label_values(&[reason]), v);
        }
        m.relay_ports_free.set(t.ports_free as i64);
        set_counter(&m.srtp_auth_failures, t.srtp_auth_failures);
        set_counter(&m.srtp_packets, t.srtp_packets);
        for (kind, v) in [("srtp", t.pairs_srtp), ("transcode", t.pairs_transcode)] {
            m.media_processed_pairs
                .with_label_values(&[kind])
                .set(v as i64);
        }
        use media_relay::transcode::Codec;
        for from in Codec::ALL {
            for to in Codec::ALL {
                let n = t.transcode_frames[from.index() * Codec::ALL.len() + to.index()];
                if from != to {
                    let c = m
                        .transcode_frames
                        .with_label_values(&[from.name(), to.name()]);
                    set_counter(&c, n);
                }
            }
        }
    }

    /// Final stats of the pairs the relay closed since the last call, observed into the
    /// quality histograms (for the CDRs to take next).
    pub fn take_closed(&self, m: &Metrics) -> Vec<media_relay::ClosedPairStats> {
        let closed = self.relay.drain_closed_stats();
        for c in &closed {
            for leg in [&c.a, &c.b] {
                if leg.rtp_packets_in == 0 {
                    continue;
                }
                if let Some(mos) = leg.mos {
                    m.relay_mos.observe(mos);
                }
                m.relay_jitter.observe(leg.jitter_ms / 1000.0);
                m.relay_loss.observe(leg.fraction_lost);
            }
        }
        closed
    }
}

/// Prometheus counters only go up: add the difference to a monotonic source total.
pub fn set_counter(c: &prometheus::IntCounter, total: u64) {
    let cur = c.get();
    if total > cur {
        c.inc_by(total - cur);
    }
}
