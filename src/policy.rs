//! The B2BUA core's decisions, bound to the live configuration and the media relay.

use std::sync::Arc;

use config::{Action, Config, RouteQuery, TransportKind};
use signaling::b2bua::{CallEvent, CallRef, Leg, Policy, RouteOutcome, Target};
use signaling::{Peer, Request, Transport};

use crate::metrics::Metrics;

pub struct LivePolicy {
    /// The configuration new calls are routed with; swapped atomically on reload. Calls in
    /// progress keep the targets they were given at INVITE time.
    pub config: Arc<Config>,
    pub media: Option<Media>,
    pub metrics: Arc<Metrics>,
}

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

impl Media {
    /// Calls whose media timed out, as (leg A Call-ID, leg A From tag).
    pub fn take_timeouts(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                media_relay::RelayEvent::MediaTimeout(pair) => {
                    if let Some(c) = self.calls.call_for_pair(pair) {
                        out.push(c);
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
            ("no_destination", t.dropped_no_destination),
            ("truncated", t.dropped_truncated),
            ("send_error", t.send_errors),
        ] {
            set_counter(&m.relay_dropped.with_label_values(&[reason]), v);
        }
        m.relay_ports_free.set(t.ports_free as i64);
        for closed in self.relay.drain_closed_stats() {
            for leg in [&closed.a, &closed.b] {
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
    }
}

/// Prometheus counters only go up: add the difference to a monotonic source total.
pub fn set_counter(c: &prometheus::IntCounter, total: u64) {
    let cur = c.get();
    if total > cur {
        c.inc_by(total - cur);
    }
}

pub fn transport_of(t: TransportKind) -> Transport {
    match t {
        TransportKind::Udp => Transport::Udp,
        TransportKind::Tcp => Transport::Tcp,
        TransportKind::Tls => Transport::Tls,
    }
}

impl LivePolicy {
    fn trunk_of(&self, from: Peer) -> Option<&str> {
        self.config
            .trunks
            .values()
            .find(|t| t.address == from.addr)
            .map(|t| t.name.as_str())
    }
}

impl Policy for LivePolicy {
    fn route(&mut self, req: &Request, from: Peer, to_user: &str, from_user: &str) -> RouteOutcome {
        let q = RouteQuery {
            to_user,
            from_user,
            request_uri: &req.uri,
            source_trunk: self.trunk_of(from),
            source_ip: Some(from.addr.ip()),
        };
        let Some(d) = self.config.dialplan.lookup(&q) else {
            return RouteOutcome::Reject {
                code: 404,
                reason: "Not Found".into(),
            };
        };
        match d.action {
            Action::Route(names) => {
                let targets = names
                    .iter()
                    .filter_map(|n| self.config.trunks.get(n))
                    .map(|t| Target {
                        trunk: t.name.clone(),
                        peer: Peer {
                            transport: transport_of(t.transport),
                            addr: t.address,
                        },
                        host: t.address.to_string(),
                    })
                    .collect();
                RouteOutcome::Route {
                    targets,
                    to_user: d.to_user.unwrap_or_else(|| to_user.to_string()),
                    from_user: d.from_user.unwrap_or_else(|| from_user.to_string()),
                }
            }
            Action::Redirect(contacts, code) => RouteOutcome::Redirect { code, contacts },
            Action::Reject(code, reason) => RouteOutcome::Reject { code, reason },
        }
    }

    fn media_offer(&mut self, call: CallRef<'_>, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, String> {
        match &mut self.media {
            None => Ok(sdp.to_vec()),
            Some(m) => m
                .calls
                .offer_from(side(from), call.call_id, call.from_tag, sdp)
                .map_err(|e| e.to_string()),
        }
    }

    fn media_answer(
        &mut self,
        call: CallRef<'_>,
        from: Leg,
        sdp: &[u8],
    ) -> Result<Vec<u8>, String> {
        match &mut self.media {
            None => Ok(sdp.to_vec()),
            Some(m) => m
                .calls
                .answer_from(side(from), call.call_id, call.from_tag, None, sdp)
                .map_err(|e| e.to_string()),
        }
    }

    fn media_release(&mut self, call: CallRef<'_>) {
        if let Some(m) = &mut self.media {
            let _ = m.calls.delete(call.call_id, Some(call.from_tag));
        }
    }

    fn event(&mut self, ev: CallEvent) {
        self.metrics.on_call_event(&ev);
    }
}

fn side(l: Leg) -> media_relay::control::Side {
    match l {
        Leg::A => media_relay::control::Side::A,
        Leg::B => media_relay::control::Side::B,
    }
}
