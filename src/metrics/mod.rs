//! Prometheus metrics and the small admin HTTP endpoint on `metrics.listen`:
//! `GET /metrics`, `GET /health`, `POST /reload`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use signaling::b2bua::CallEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

mod gauges;
mod http;
pub use gauges::refresh_gauges;
pub use http::*;

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
    pub trunk_auth: IntCounterVec,
    pub session_timers: IntCounterVec,
    pub transfers: IntCounterVec,
    pub udp_oversize: IntCounter,
    pub hep_packets: IntCounterVec,
    pub cdr_records: IntCounterVec,
    pub cdr_dropped: IntCounterVec,
    pub cdr_pending: IntGaugeVec,
    pub media_failures: IntCounter,
    pub subscriptions: IntGauge,
    pub presence_watchers: IntGauge,
    pub presence_publishers: IntGauge,
    pub presence_notifies: IntCounter,
    pub dtmf_info: IntCounterVec,
    pub cluster_up: IntGauge,
    pub cluster_errors: IntCounterVec,
    pub cluster_records: IntCounterVec,
    pub cluster_remote_aors: IntGauge,
    pub cluster_nodes: IntGauge,
    pub cluster_queue: IntGauge,
    pub cluster_call_records: IntCounterVec,
    pub cluster_calls_held: IntGauge,
    pub cluster_takeovers: IntCounter,
    pub registers: IntCounterVec,
    pub instant_messages: IntCounterVec,
    pub offline_messages: IntCounterVec,
    pub offline_messages_held: IntGauge,
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
    pub srtp_auth_failures: IntCounter,
    pub srtp_packets: IntCounter,
    pub media_processed_pairs: IntGaugeVec,
    pub transcode_frames: IntCounterVec,
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
    pub trunk_up: IntGaugeVec,
    pub trunk_dns_failures: IntCounterVec,
    pub trunk_dns_addresses: IntGaugeVec,
    pub trunk_registered: IntGaugeVec,
    pub trunk_registrations: IntCounterVec,
    pub mgcp_gateway_up: IntGaugeVec,
    pub mgcp_commands: IntCounterVec,
    pub mgcp_dropped: IntCounterVec,
    pub mgcp_connection_packets: IntCounterVec,
    pub mgcp_lines: IntGaugeVec,
    pub mgcp_calls: IntCounterVec,
    pub mgcp_rsips: IntCounterVec,
    pub stream_connections: IntGaugeVec,
    pub stream_refused: IntCounterVec,
    pub stream_closed: IntCounterVec,
    pub accept_errors: IntCounterVec,
    pub log_lines_suppressed: IntCounter,
    pub ng_refused: IntCounter,
    pub admin_refused: IntCounterVec,
    pub overload_rejections: IntCounterVec,
    pub overloaded: IntGauge,
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// The `outcome` labels of `trunkline_offline_messages_total`.
pub const OFFLINE_OUTCOMES: [&str; 6] = [
    "stored",
    "delivered",
    "expired",
    "failed",
    "refused_full",
    "refused_too_large",
];

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
            presence_watchers: gauge(
                &r,
                "trunkline_presence_watchers",
                "Watchers subscribed to the presence of served users (trunkline their presence agent).",
            ),
            presence_publishers: gauge(
                &r,
                "trunkline_presence_publishers",
                "Served users with a live PUBLISHed presence state.",
            ),
            cluster_up: gauge(
                &r,
                "trunkline_cluster_up",
                "1 while the cluster's Redis is reachable (cluster:), else 0; without cluster: always 0.",
            ),
            cluster_errors: counter_vec(
                &r,
                "trunkline_cluster_errors_total",
                "Failed Redis operations of the cluster link, by op (write, read).",
                &["op"],
            ),
            cluster_records: counter_vec(
                &r,
                "trunkline_cluster_records_total",
                "Location records the cluster link wrote, read, or dropped (writer queue full).",
                &["op"],
            ),
            cluster_nodes: gauge(
                &r,
                "trunkline_cluster_nodes",
                "Active cluster nodes with a live heartbeat (each takes its share of the trunk and process call limits).",
            ),
            cluster_queue: gauge(
                &r,
                "trunkline_cluster_write_queue",
                "Batches of binding changes waiting to be written to the cluster's Redis (replication lag; beyond 10,000 they are dropped and counted).",
            ),
            cluster_call_records: counter_vec(
                &r,
                "trunkline_cluster_call_records_total",
                "Answered calls' records (issue 16: for a standby to take them over), by op: written (set or deleted by this node), adopted (calls taken over from them, at a takeover or at start), failed (records that could not be taken over), unreplicable (answered calls with no record: SRTP or transcoded media).",
                &["op"],
            ),
            cluster_calls_held: gauge(
                &r,
                "trunkline_cluster_calls_held",
                "Other nodes' call records this node holds, ready for a takeover.",
            ),
            cluster_takeovers: counter(
                &r,
                "trunkline_cluster_takeovers_total",
                "Takeovers: the shared address arrived at this standby (or this node found its own records at start) and it adopted the calls.",
            ),
            cluster_remote_aors: gauge(
                &r,
                "trunkline_cluster_remote_aors",
                "AoRs with bindings at other cluster nodes (calls to them go through that node).",
            ),
            dtmf_info: counter_vec(
                &r,
                "trunkline_dtmf_info_total",
                "DTMF digits interworked with SIP INFO (trunks with dtmf: info), by direction: in (an INFO sent on as the other leg's telephone-events), out (telephone-events sent as INFO).",
                &["direction"],
            ),
            presence_notifies: counter(
                &r,
                "trunkline_presence_notifies_total",
                "NOTIFYs the presence agent sent to watchers.",
            ),
            subscriptions: gauge(
                &r,
                "trunkline_sip_subscriptions",
                "Event subscriptions (SUBSCRIBE/NOTIFY, e.g. presence) being relayed.",
            ),
            media_failures: counter(
                &r,
                "trunkline_media_answer_failures_total",
                "SDP answers (or late offers) the media relay could not take; the offer was ended with 488 on the leg that made it.",
            ),
            cdr_records: counter_vec(
                &r,
                "trunkline_cdr_records_total",
                "Call detail records by sink (file, postgres) and result: \"written\", or \
                 \"error\" (the file could not be opened or written; not retried).",
                &["sink", "result"],
            ),
            cdr_dropped: counter_vec(
                &r,
                "trunkline_cdr_dropped_total",
                "Call detail records dropped because the sink's queue (cdr.queue) was full.",
                &["sink"],
            ),
            cdr_pending: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_cdr_pending",
                        "Call detail records held by a sink that cannot write now (postgres: \
                         the batch being retried and its queue).",
                    ),
                    &["sink"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            hep_packets: counter_vec(
                &r,
                "trunkline_hep_packets_total",
                "SIP messages copied to the HEP collector (capture.hep): result=\"sent\", or \
                 \"dropped\" (the socket would have blocked, the collector is unreachable, or \
                 the message does not fit one datagram).",
                &["result"],
            ),
            session_timers: counter_vec(
                &r,
                "trunkline_session_timer_events_total",
                "Session timers (RFC 4028): event=\"refreshed\" (a refresh of trunkline's \
                 answered 2xx), \"expired\" (a leg's session ran out: the call ended), \
                 \"too_small\" (an interval below Min-SE refused 422), \"retried\" (leg B's \
                 INVITE sent again after the trunk's 422).",
                &["event"],
            ),
            transfers: counter_vec(
                &r,
                "trunkline_transfers_total",
                "REFERs trunkline carried out itself (a trunk's `refer: handle`): \
                 result=\"accepted\" (202, its target called), \"completed\" (the target took \
                 the call and the transferor was let go).",
                &["result"],
            ),
            trunk_auth: counter_vec(
                &r,
                "trunkline_trunk_auth_total",
                "Trunk Digest challenges to leg B's requests: result=\"answered\" (resent with \
                 the trunk's credentials), \"refused\" (no usable challenge, or challenged \
                 again: the failure goes to the caller).",
                &["result"],
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
            offline_messages: counter_vec(
                &r,
                "trunkline_offline_messages_total",
                "Messages for users who were not registered (registrar.offline_messages), by outcome: stored, delivered, expired, failed (dropped after the last attempt), refused_full, refused_too_large.",
                &["outcome"],
            ),
            offline_messages_held: gauge(
                &r,
                "trunkline_offline_messages_held",
                "Messages kept for users who are not registered, waiting for delivery.",
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
            udp_oversize: counter(
                &r,
                "trunkline_sip_udp_oversize_total",
                "Requests over 1300 bytes sent over UDP all the same (RFC 3261 §18.1.1 asks for \
                 TCP: the trunk has no `tcp_fallback`, or the peer is a phone on UDP).",
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
            srtp_auth_failures: counter(
                &r,
                "trunkline_srtp_auth_failures_total",
                "SRTP/SRTCP packets dropped because their authentication tag did not verify \
                 (forged, corrupted, or keyed for another leg); replays are counted in \
                 trunkline_relay_dropped_packets_total{reason=\"srtp_replay\"}.",
            ),
            srtp_packets: counter(
                &r,
                "trunkline_srtp_packets_total",
                "Packets the relay decrypted or encrypted (SRTP legs).",
            ),
            media_processed_pairs: gauge_vec(
                &r,
                "trunkline_media_processed_pairs",
                "Relay pairs processed in user space now, by kind: srtp (a leg encrypted) and \
                 transcode (the legs use different codecs).",
                &["kind"],
            ),
            transcode_frames: counter_vec(
                &r,
                "trunkline_transcode_frames_total",
                "Audio frames the relay encoded by transcoding, by codec received and codec sent.",
                &["from", "to"],
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
            mgcp_connection_packets: counter_vec(
                &r,
                "trunkline_mgcp_connection_packets_total",
                "RTP packets of the gateways' deleted connections, as their DLCX answers report them (P: PS, PR, PL), by direction (sent, received, lost).",
                &["direction"],
            ),
            mgcp_dropped: counter_vec(
                &r,
                "trunkline_mgcp_dropped_total",
                "MGCP datagrams dropped unanswered, by reason (unknown_source: from no configured \
                 gateway address and port; wrong_source: a response from another gateway than \
                 the command went to; bad_notify: a NTFY for an unknown endpoint, 500, or with \
                 a stale request identifier, 538).",
                &["reason"],
            ),
            mgcp_lines: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_mgcp_lines",
                        "Phone lines of MGCP gateways, by gateway and state (unarmed, idle, \
                         dialling, calling, ringing, talking, hanging).",
                    ),
                    &["gateway", "state"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            mgcp_calls: counter_vec(
                &r,
                "trunkline_mgcp_calls_total",
                "Calls through MGCP gateways, by gateway and direction (inbound: from a line \
                 or the PSTN into SIP; outbound: from SIP to the gateway).",
                &["gateway", "direction"],
            ),
            mgcp_rsips: counter_vec(
                &r,
                "trunkline_mgcp_rsips_total",
                "RestartInProgress commands from gateways, by gateway and restart method.",
                &["gateway", "method"],
            ),
            stream_connections: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_stream_connections",
                        "Inbound SIP connections open now (TLS: handshakes included), by transport.",
                    ),
                    &["transport"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            stream_refused: counter_vec(
                &r,
                "trunkline_stream_connections_refused_total",
                "Inbound SIP TCP/TLS connections closed at accept, by transport and reason \
                 (global_limit: limits.tcp.max_connections, source_limit: \
                 limits.tcp.max_per_source, handshakes_pending: the oldest of too many TLS handshakes in progress, \
                 closed for a new one).",
                &["transport", "reason"],
            ),
            stream_closed: counter_vec(
                &r,
                "trunkline_stream_connections_closed_total",
                "SIP TCP/TLS connections closed, by transport and reason (evicted: silent, \
                 closed for a new connection at limits.tcp.max_connections; idle, \
                 partial_message, handshake_timeout, handshake_failed, unframeable, too_large, \
                 write_backlog: the peer does not read its answers, peer: closed by the other \
                 side).",
                &["transport", "reason"],
            ),
            accept_errors: counter_vec(
                &r,
                "trunkline_accept_errors_total",
                "Failed accepts, by listener (tcp, tls, admin) and reason (resources: out of \
                 file descriptors or memory, the loop backs off 10 ms to 1 s; other).",
                &["listener", "reason"],
            ),
            ng_refused: counter(
                &r,
                "trunkline_ng_refused_total",
                "ng datagrams dropped unanswered: their source is neither loopback nor in media.ng_allow.",
            ),
            log_lines_suppressed: counter(
                &r,
                "trunkline_log_lines_suppressed_total",
                "Log lines about malformed input not written (at most one per source per minute).",
            ),
            admin_refused: counter_vec(
                &r,
                "trunkline_admin_requests_refused_total",
                "Admin endpoint connections and requests refused, by reason (not_allowed: \
                 source outside metrics.allow, closed unanswered; evicted / timeout: no request \
                 in time; cross_origin, unauthorized (401), reload_disabled / admin_disabled: POST /reload or \
                 an admin API request off loopback without a token configured, 403).",
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
            trunk_dns_failures: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "trunkline_trunk_dns_failures_total",
                        "Failed lookups of trunks named by DNS, by reason: no_records (the \
                         name has no usable record: the trunk is unavailable) or resolver \
                         (timeout or server error).",
                    ),
                    &["trunk", "reason"],
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            trunk_dns_addresses: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_trunk_dns_addresses",
                        "How many addresses a trunk named by DNS resolves to now (0: \
                         unavailable).",
                    ),
                    &["trunk"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            trunk_up: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_trunk_up",
                        "1 while a probed trunk answers its OPTIONS probes, 0 while it is down \
                         (routes skip it); only trunks with `probe:`.",
                    ),
                    &["trunk"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            trunk_registered: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "trunkline_trunk_registered",
                        "1 while trunkline is registered with the trunk (`register:`), else 0.",
                    ),
                    &["trunk"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            trunk_registrations: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "trunkline_trunk_registrations_total",
                        "REGISTER attempts with trunks by result: ok, the failure's status \
                         code, timeout, unregistered.",
                    ),
                    &["trunk", "result"],
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
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
        let shell = ["rate_limited", "user_agent"];
        for reason in signaling::b2bua::REJECT_REASONS.iter().chain(&shell) {
            m.messages_rejected.with_label_values(&[reason]).inc_by(0);
        }
        for reason in ["queue", "calls"] {
            m.overload_rejections.with_label_values(&[reason]).inc_by(0);
        }
        for l in ["tcp", "tls", "admin"] {
            for why in ["resources", "other"] {
                m.accept_errors.with_label_values(&[l, why]).inc_by(0);
            }
        }
        for why in [
            "not_allowed",
            "evicted",
            "timeout",
            "cross_origin",
            "unauthorized",
            "reload_disabled",
            "admin_disabled",
        ] {
            m.admin_refused.with_label_values(&[why]).inc_by(0);
        }
        for t in ["TCP", "TLS"] {
            m.stream_connections.with_label_values(&[t]).set(0);
        }
        for reason in ["unknown_source", "wrong_source", "bad_notify"] {
            m.mgcp_dropped.with_label_values(&[reason]).inc_by(0);
        }
        // The answers alerts and dashboards look at exist from the start.
        for status in ["200", "401", "403"] {
            m.registers.with_label_values(&[status]).inc_by(0);
        }
        for status in ["200", "202", "404", "408", "480"] {
            m.instant_messages.with_label_values(&[status]).inc_by(0);
        }
        for outcome in OFFLINE_OUTCOMES {
            m.offline_messages.with_label_values(&[outcome]).inc_by(0);
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
            // Counted by the trunk health state (`crate::carriers`).
            CallEvent::TrunkRegistration { .. } | CallEvent::TrunkProbe { .. } => {}
            // Counted from the core's stats (`trunkline_transfers_total`).
            CallEvent::Transferred { .. } => {}
            // Written by the CDR sinks (`crate::cdr`).
            CallEvent::Record(_) => {}
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
