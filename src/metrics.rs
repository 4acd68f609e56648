//! Prometheus metrics and the small admin HTTP endpoint on `metrics.listen`:
//! `GET /metrics`, `GET /health`, `POST /reload`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use signaling::b2bua::CallEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Every series trunkline exports. Counters are updated from the core task; gauges that mirror
/// core state are refreshed just before each scrape.
pub struct Metrics {
    pub registry: Registry,
    pub calls: IntCounterVec,
    pub call_attempts: IntCounterVec,
    pub active_calls: IntGauge,
    pub post_dial_delay: Histogram,
    pub call_duration: Histogram,
    pub rejected_requests: IntCounterVec,
    pub messages_received: IntCounterVec,
    pub messages_sent: IntCounterVec,
    pub parse_errors: IntCounter,
    pub registered_contacts: IntGauge,
    pub keepalives: IntCounter,
    pub subscriptions: IntGauge,
    pub registers: IntCounterVec,
    pub instant_messages: IntCounterVec,
    pub messages_rejected: IntCounterVec,
    pub transactions: IntGauge,
    pub transactions_created: IntCounterVec,
    pub retransmissions: IntCounterVec,
    pub transaction_timeouts: IntCounter,
    pub relay_sessions: IntGauge,
    pub relay_packets: IntCounterVec,
    pub relay_packets_in: IntCounterVec,
    pub relay_kernel_flows: IntGauge,
    pub relay_ports_free: IntGauge,
    pub relay_bytes: IntCounterVec,
    pub relay_dropped: IntCounterVec,
    pub relay_mos: Histogram,
    pub relay_jitter: Histogram,
    pub relay_loss: Histogram,
    pub relay_backend: IntGaugeVec,
    pub media_timeouts: IntCounter,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub build_info: IntGaugeVec,
    pub requests_rate_limited: IntCounter,
    pub requests_blocked: IntCounterVec,
    pub rate_limit_sources: IntGauge,
    pub trunk_limit_rejections: IntCounterVec,
    pub trunk_active_calls: IntGaugeVec,
    pub mgcp_gateway_up: IntGaugeVec,
    pub mgcp_commands: IntCounterVec,
    pub mgcp_dropped: IntCounterVec,
    pub overload_rejections: IntCounterVec,
    pub overloaded: IntGauge,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}
fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}
fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}
fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            calls: counter_vec(
                &r,
                "trunkline_calls_total",
                "Calls by trunk, direction and final status class of leg A (2xx = answered). \
                 direction=\"outbound\": calls sent to the trunk (the last one tried); \
                 direction=\"inbound\": calls received from the trunk, including those refused \
                 before routing (no route, limits, overload).",
                &["trunk", "direction", "status_class"],
            ),
            call_attempts: counter_vec(
                &r,
                "trunkline_call_attempts_total",
                "INVITEs sent on leg B, by trunk (failover retries count again).",
                &["trunk"],
            ),
            active_calls: gauge(&r, "trunkline_active_calls", "Calls in progress."),
            post_dial_delay: histogram(
                &r,
                "trunkline_post_dial_delay_seconds",
                "Time from leg A's INVITE to the first ringing or answer.",
                vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
            ),
            call_duration: histogram(
                &r,
                "trunkline_call_duration_seconds",
                "Duration of answered calls.",
                vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ],
            ),
            rejected_requests: counter_vec(
                &r,
                "trunkline_sip_requests_rejected_total",
                "Requests answered with an error before becoming a call, by status code.",
                &["code"],
            ),
            messages_received: counter_vec(
                &r,
                "trunkline_sip_messages_received_total",
                "SIP messages received, by transport.",
                &["transport"],
            ),
            messages_sent: counter_vec(
                &r,
                "trunkline_sip_messages_sent_total",
                "SIP messages sent, by transport.",
                &["transport"],
            ),
            subscriptions: gauge(
                &r,
                "trunkline_sip_subscriptions",
                "Event subscriptions (SUBSCRIBE/NOTIFY, e.g. presence) being relayed.",
            ),
            keepalives: counter(
                &r,
                "trunkline_sip_keepalives_total",
                "NAT keep-alive OPTIONS sent to phones registered over UDP.",
            ),
            registered_contacts: gauge(
                &r,
                "trunkline_registered_contacts",
                "Contacts registered with the registrar (live bindings).",
            ),
            registers: counter_vec(
                &r,
                "trunkline_sip_registers_total",
                "REGISTER requests answered, by status (200, 401 challenge, 403, 423, ...).",
                &["status"],
            ),
            instant_messages: counter_vec(
                &r,
                "trunkline_sip_im_total",
                "Out-of-dialog MESSAGE requests (RFC 3428) answered, by status (relayed or trunkline's own).",
                &["status"],
            ),
            parse_errors: counter(
                &r,
                "trunkline_sip_parse_errors_total",
                "Messages that failed to parse (answered 400 where possible, else dropped).",
            ),
            messages_rejected: counter_vec(
                &r,
                "trunkline_sip_messages_rejected_total",
                "Received SIP messages refused before any routing, by reason: parse_error \
                 (unparseable: 400 or dropped), admission (RFC 3261 checks: 4xx), rate_limited \
                 (source over limits.source_rate: dropped), user_agent (block list: dropped).",
                &["reason"],
            ),
            transactions: gauge(&r, "trunkline_sip_transactions", "Live SIP transactions."),
            transactions_created: counter_vec(
                &r,
                "trunkline_sip_transactions_total",
                "SIP transactions created, by side (client, server).",
                &["side"],
            ),
            retransmissions: counter_vec(
                &r,
                "trunkline_sip_retransmissions_total",
                "Retransmissions sent by trunkline (sent) and absorbed from peers (absorbed).",
                &["kind"],
            ),
            transaction_timeouts: counter(
                &r,
                "trunkline_sip_transaction_timeouts_total",
                "Client transactions that timed out (Timer B/F).",
            ),
            relay_sessions: gauge(&r, "trunkline_relay_sessions", "Open relay port pairs."),
            relay_packets: counter_vec(
                &r,
                "trunkline_relay_packets_forwarded_total",
                "Packets (RTP and RTCP) the relay forwarded, by kind (all; kernel: the part the eBPF fast path forwarded).",
                &["kind"],
            ),
            relay_kernel_flows: gauge(
                &r,
                "trunkline_relay_kernel_flows",
                "RTP flows (one direction of a call each) forwarded by the kernel fast path now.",
            ),
            relay_packets_in: counter_vec(
                &r,
                "trunkline_relay_packets_received_total",
                "Packets received on relay ports, by kind (all, rtcp).",
                &["kind"],
            ),
            relay_bytes: counter_vec(
                &r,
                "trunkline_relay_bytes_forwarded_total",
                "Bytes (RTP and RTCP payload) the relay forwarded.",
                &["kind"],
            ),
            relay_ports_free: gauge(
                &r,
                "trunkline_relay_port_pairs_free",
                "Relay port pairs still free in media.ports.",
            ),
            relay_dropped: counter_vec(
                &r,
                "trunkline_relay_dropped_packets_total",
                "Packets the relay dropped, by reason.",
                &["reason"],
            ),
            relay_mos: histogram(
                &r,
                "trunkline_relay_mos",
                "MOS of finished media streams (per leg, E-model estimate).",
                vec![1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4, 4.5],
            ),
            relay_jitter: histogram(
                &r,
                "trunkline_relay_jitter_seconds",
                "Interarrival jitter of finished media streams (per leg).",
                vec![0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2],
            ),
            relay_loss: histogram(
                &r,
                "trunkline_relay_loss_ratio",
                "Fraction of packets lost on finished media streams (per leg).",
                vec![0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5],
            ),
            relay_backend: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_relay_backend_info",
                        "The relay data path in use (1 for the running back end).",
                    ),
                    &["backend"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            media_timeouts: counter(
                &r,
                "trunkline_media_timeouts_total",
                "Calls ended because no RTP arrived for media.timeout.",
            ),
            config_reloads: counter_vec(
                &r,
                "trunkline_config_reloads_total",
                "Configuration reloads, by result (success, failure).",
                &["result"],
            ),
            config_generation: gauge(
                &r,
                "trunkline_config_generation",
                "Generation of the configuration in use (1 at start, +1 per successful reload).",
            ),
            build_info: {
                let g = IntGaugeVec::new(
                    Opts::new("trunkline_build_info", "Build information."),
                    &["version"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            requests_rate_limited: counter(
                &r,
                "trunkline_requests_rate_limited_total",
                "Requests dropped unanswered because their source IP exceeded limits.source_rate.",
            ),
            requests_blocked: counter_vec(
                &r,
                "trunkline_requests_blocked_total",
                "Requests dropped unanswered by a block list, by reason (user_agent).",
                &["reason"],
            ),
            rate_limit_sources: gauge(
                &r,
                "trunkline_rate_limit_sources",
                "Source addresses with a request rate bucket (sources recently active).",
            ),
            trunk_limit_rejections: counter_vec(
                &r,
                "trunkline_trunk_limit_rejections_total",
                "Calls a trunk's limit kept from it (skipped target or 503), by trunk and limit \
                 (calls = max_calls, cps = max_cps).",
                &["trunk", "limit"],
            ),
            mgcp_gateway_up: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_mgcp_gateway_up",
                        "MGCP gateway trunks: 1 when the gateway answered its last command (an                          AUEP every 30 s when idle), 0 when it timed out.",
                    ),
                    &["gateway"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            mgcp_commands: counter_vec(
                &r,
                "trunkline_mgcp_commands_total",
                "MGCP commands sent to gateways, by verb and result (the return code, or timeout).",
                &["verb", "result"],
            ),
            mgcp_dropped: counter_vec(
                &r,
                "trunkline_mgcp_dropped_total",
                "MGCP datagrams dropped unanswered, by reason (unknown_source: from no configured \
                 gateway address and port; wrong_source: a response from another gateway than \
                 the command went to).",
                &["reason"],
            ),
            trunk_active_calls: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_trunk_active_calls",
                        "Calls in progress to or from each trunk (what max_calls counts).",
                    ),
                    &["trunk"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            overload_rejections: counter_vec(
                &r,
                "trunkline_overload_rejections_total",
                "New calls answered 503 + Retry-After because the process was overloaded, by \
                 reason (queue = input queue over limits.overload_queue, calls = limits.max_calls).",
                &["reason"],
            ),
            overloaded: gauge(
                &r,
                "trunkline_overloaded",
                "1 while the input queue is over limits.overload_queue (new calls get 503).",
            ),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.config_generation.set(1);
        for res in ["success", "failure"] {
            m.config_reloads.with_label_values(&[res]).inc_by(0);
        }
        m.requests_blocked
            .with_label_values(&["user_agent"])
            .inc_by(0);
        for reason in [
            "parse_error",
            "admission",
            "auth",
            "rate_limited",
            "user_agent",
        ] {
            m.messages_rejected.with_label_values(&[reason]).inc_by(0);
        }
        for reason in ["queue", "calls"] {
            m.overload_rejections.with_label_values(&[reason]).inc_by(0);
        }
        for reason in ["unknown_source", "wrong_source"] {
            m.mgcp_dropped.with_label_values(&[reason]).inc_by(0);
        }
        // The answers alerts and dashboards look at exist from the start.
        for status in ["200", "401", "403"] {
            m.registers.with_label_values(&[status]).inc_by(0);
        }
        for status in ["200", "202", "404", "408", "480"] {
            m.instant_messages.with_label_values(&[status]).inc_by(0);
        }
        m.relay_packets.with_label_values(&["kernel"]).inc_by(0);
        m
    }

    /// Count a call event; `source` is the trunk the call came from, if it came from one.
    pub fn on_call_event(&self, ev: &CallEvent, source: Option<&str>) {
        let status_class = |status: u16| match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            5 => "5xx",
            _ => "6xx",
        };
        match ev {
            CallEvent::Attempt { trunk, .. } => {
                self.call_attempts.with_label_values(&[trunk]).inc();
            }
            CallEvent::Finished {
                trunk,
                status,
                post_dial_delay,
                ..
            } => {
                let class = status_class(*status);
                self.calls
                    .with_label_values(&[trunk.as_deref().unwrap_or("none"), "outbound", class])
                    .inc();
                if let Some(src) = source {
                    self.calls.with_label_values(&[src, "inbound", class]).inc();
                }
                if let Some(d) = post_dial_delay {
                    self.post_dial_delay.observe(d.as_secs_f64());
                }
            }
            CallEvent::Ended { duration, .. } => {
                self.call_duration.observe(duration.as_secs_f64());
            }
            CallEvent::Rejected { status, .. } => {
                self.rejected_requests
                    .with_label_values(&[&status.to_string()])
                    .inc();
                if let Some(src) = source {
                    self.calls
                        .with_label_values(&[src, "inbound", status_class(*status)])
                        .inc();
                }
            }
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// Requests the admin endpoint hands to the core task.
pub enum AdminRequest {
    /// Refresh gauges that mirror core state, then answer.
    Refresh(tokio::sync::oneshot::Sender<()>),
    /// Reload the configuration file; answer with the outcome.
    Reload(tokio::sync::oneshot::Sender<Result<u64, String>>),
}

/// Serve `GET /metrics`, `GET /health` and `POST /reload` on `addr`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    admin: mpsc::Sender<AdminRequest>,
) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded); bodies are ignored.
            loop {
                let Ok(n) = s.read(&mut buf[len..]).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let mut parts = head.split_whitespace();
            let method = parts.next().unwrap_or("");
            let path = parts.next().unwrap_or("");
            let (status, ctype, body): (&str, &str, Vec<u8>) = match (method, path) {
                ("GET", "/metrics") => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if admin.send(AdminRequest::Refresh(tx)).await.is_ok() {
                        let _ = rx.await;
                    }
                    (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(),
                    )
                }
                ("GET", "/health") => ("200 OK", "text/plain", b"ok\n".to_vec()),
                ("POST", "/reload") => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let res = if admin.send(AdminRequest::Reload(tx)).await.is_ok() {
                        rx.await.unwrap_or_else(|_| Err("core stopped".into()))
                    } else {
                        Err("core stopped".into())
                    };
                    match res {
                        Ok(gen) => (
                            "200 OK",
                            "text/plain",
                            format!("reloaded: generation {gen}\n").into_bytes(),
                        ),
                        Err(e) => (
                            "422 Unprocessable Entity",
                            "text/plain",
                            format!("reload failed: {e}\n").into_bytes(),
                        ),
                    }
                }
                _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
            };
            let hdr = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(hdr.as_bytes()).await;
            let _ = s.write_all(&body).await;
            let _ = s.shutdown().await;
        });
    }
}

/// Bind the admin listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
